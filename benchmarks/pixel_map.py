#!/usr/bin/env python
"""The pixel map of a texture line: pixel AUROC of candidate fusions of the projection map with the texture
check, against a photo set's contamination masks and against synthetic defects.

Projects through BUNDLE, with its deployed settings: 60 training images (140-199, the normal statistics:
MapNorm and the texture check fitted on them), the test set's defective images and every second good one,
and two synthetic defects (calibration's draw) on each of 40 other training images (100-139). Candidates:
the projection map, its border normalization, the texture check's |z| map, and the larger of a projection
map and |z| on three scales (normal standard deviations: scoring.fused_pixel_map, the deployed one; each
map's normal 99th percentile; 99th of the map and 99.9th of |z|).

    python benchmarks/pixel_map.py BUNDLE PHOTOSET CATEGORY [--out report.json]
"""

from __future__ import annotations

import argparse

import numpy as np
from photoset import add_photoset_args, load_photoset, write_report


def main(argv=None) -> int:
    args = add_photoset_args(argparse.ArgumentParser(description=__doc__.split("\n")[0])).parse_args(argv)

    from edgeproj.calibration.score_choice import synthetic_defects
    from edgeproj.metrics import roc_auc
    from edgeproj.runtime.projector import Projector
    from edgeproj.runtime.scoring import MapNorm, fused_pixel_map

    m, ts, read = load_photoset(args)
    normals, bases = read(140, 200), read(100, 140)
    if len(normals) < 8 or len(bases) < 8:
        print(f"pixel_map: needs at least 148 training images in {args.root / args.category / 'train' / 'good'}")
        return 2
    keep = [i for i, lb in enumerate(ts.labels) if lb] + [i for i, lb in enumerate(ts.labels) if not lb][::2]
    test_imgs, test_masks = [ts.images[i] for i in keep], [ts.masks[i] for i in keep]
    syn = [d for _, d in synthetic_defects(bases, seed=0, per_image=2)]
    with Projector(m, batch=16) as proj:
        settings = proj.settings(rec_loss_threshold=m.calibration.rec_loss_threshold)

        def maps(imgs):
            return [r.projection_map for r in proj.project(imgs, settings=settings, lean=True)]

        normal_maps, test_maps, syn_maps = maps(normals), maps(test_imgs), maps([d.image for d in syn])
    norm = MapNorm.fit(normal_maps, normals)
    t = norm.texture

    def plain(amaps, imgs) -> dict[str, list]:
        return {
            "projection": amaps,
            "projection_border": [norm.apply(a, im, contrast=False) for a, im in zip(amaps, imgs)],
            "texture_z": [t.zmap(im) for im in imgs],
        }

    ref = plain(normal_maps, normals)
    # Floored: a flat normal map (a perfect reconstruction) must not divide by zero.
    q = {
        k: {p: max(float(np.quantile(np.concatenate([a.ravel() for a in v]), p)), 1e-12) for p in (0.99, 0.999)}
        for k, v in ref.items()
    }

    def candidates(amaps, imgs) -> dict[str, list]:
        c = plain(amaps, imgs)
        c["fused_standardized (deployed)"] = [fused_pixel_map(a, im, norm) for a, im in zip(amaps, imgs)]
        for name, (qa, qz) in {"fused_q99": (0.99, 0.99), "fused_q99_z999": (0.99, 0.999)}.items():
            c[name] = [np.maximum(a / q["projection"][qa], z / q["texture_z"][qz]) for a, z in zip(amaps, c["texture_z"])]
        return c

    def aucs(c: dict, masks: list) -> dict[str, float]:
        labels = np.concatenate([mk.ravel() for mk in masks])
        return {k: float(roc_auc(labels, np.concatenate([a.ravel() for a in v]))) for k, v in c.items()}

    real = aucs(candidates(test_maps, test_imgs), test_masks)
    synthetic = aucs(candidates(syn_maps, [d.image for d in syn]), [d.mask for d in syn])
    report = {
        "bundle": str(args.bundle),
        "category": args.category,
        "images": {"normal": len(normals), "test": len(test_imgs), "synthetic_defects": len(syn)},
        "pixel_auroc": {k: {"real": real[k], "synthetic": synthetic[k]} for k in real},
    }
    return write_report(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
