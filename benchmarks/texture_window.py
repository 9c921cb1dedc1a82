#!/usr/bin/env python
"""The texture check's window: image AUROC of the texture score alone (no projection, no bundle) against a
photo set's contaminations, for several Gaussian window sigmas.

For each category and sigma: edgeproj.runtime.texture.TextureStats fitted on every training image, the
texture score (largest |z| of log local contrast) of every good and contaminated test image, their AUROC.
With --gain-normalized, the same with every image (training and test) first scaled to a mean of 0.5: a
texture check blind to the frame's brightness (a lighting gain), for comparison.

    python benchmarks/texture_window.py PHOTOSET slab,wood,granite [--sigmas 1,1.5,2,3] [--gain-normalized] [--out report.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from photoset import write_report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("categories")
    ap.add_argument("--sigmas", default="1,1.5,2,3")
    ap.add_argument("--gain-normalized", action="store_true", help="also: each image scaled to a mean of 0.5 first")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    from edgeproj.data.images import read_image
    from edgeproj.metrics import roc_auc
    from edgeproj.runtime.texture import TextureStats

    sigmas = [float(s) for s in args.sigmas.split(",")]
    report = {"root": str(args.root), "sigmas": sigmas, "image_auroc": {}}
    for cat in args.categories.split(","):
        base = args.root / cat
        first = next(iter(sorted((base / "train" / "good").glob("*.png"))), None)
        if first is None:
            print(f"texture_window: no training images (*.png) in {base / 'train' / 'good'}")
            return 2
        img0 = read_image(first)
        channels = 3 if img0.ndim == 3 and img0.shape[2] == 3 else 1

        def read(folder: Path) -> list:
            return [read_image(p, channels) for p in sorted(folder.glob("*.png"))]

        train = read(base / "train" / "good")
        good = read(base / "test" / "good")
        bad = [img for d in sorted((base / "test").iterdir()) if d.is_dir() and d.name != "good" for img in read(d)]
        if not good or not bad:
            print(f"texture_window: {base / 'test'} needs good and defective images (has {len(good)} and {len(bad)})")
            return 2
        labels = np.r_[np.zeros(len(good)), np.ones(len(bad))].astype(bool)
        row = {}
        for sigma in sigmas:
            t = TextureStats.fit(train, sigma)
            row[str(sigma)] = float(roc_auc(labels, np.array([t.score(img) for img in good + bad])))
        report["image_auroc"][cat] = row
        if args.gain_normalized:
            train_g, test_g = (
                [img * np.float32(0.5 / max(float(img.mean()), 1e-3)) for img in imgs] for imgs in (train, good + bad)
            )
            gain = {}
            for sigma in sigmas:
                t = TextureStats.fit(train_g, sigma)
                gain[str(sigma)] = float(roc_auc(labels, np.array([t.score(img) for img in test_g])))
            report.setdefault("image_auroc_gain_normalized", {})[cat] = gain
    mean = {str(s): float(np.mean([r[str(s)] for r in report["image_auroc"].values()])) for s in sigmas}
    report["mean_over_sets"] = mean
    report["best"] = max(mean, key=mean.get)
    if args.gain_normalized:
        g = report["image_auroc_gain_normalized"]
        report["mean_over_sets_gain_normalized"] = {str(s): float(np.mean([r[str(s)] for r in g.values()])) for s in sigmas}
    return write_report(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
