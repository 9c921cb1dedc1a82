#!/usr/bin/env python
"""The projection's step size on real photographs: pixel and image AUROC of the deployed projection (the
bundle's calibrated stop rules on) for several alphas, and the rule that picks the default.

    python benchmarks/step_size.py measure BUNDLE PHOTOSET CATEGORY --alphas 0.05,0.02 --out slab.json
    python benchmarks/step_size.py choose slab.json weave.json wood.json granite.json

`measure` projects the category's test images and 40 training images (the map statistics of the edge_*
and norm_* scores, as calibration's calibration images) with each alpha, every other setting the bundle's.
`choose` applies the rule written before the study (evaluation/studies.py's update-rule choice without
AU-PRO): per set, rank the alphas by pixel AUROC and by image AUROC of the score the bundle's calibration
chose, among the alphas measured on every set; average the ranks over sets; the lowest mean rank wins,
and within 0.25 of it the alpha with fewer iterations.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from photoset import add_photoset_args, load_photoset, write_report


def measure(args) -> dict:
    from edgeproj.metrics import roc_auc
    from edgeproj.runtime.manifest import IMAGE_SCORES
    from edgeproj.runtime.projector import Projector
    from edgeproj.runtime.scoring import MapNorm, image_scores

    m, ts, read = load_photoset(args)
    normals = read(0, 40)
    labels = np.concatenate([mk.ravel() for mk in ts.masks])
    rows = {}
    with Projector(m, batch=16) as proj:
        for alpha in args.alphas:
            t0 = time.perf_counter()
            settings = proj.settings(alpha=alpha)
            res = proj.project(ts.images, settings=settings, lean=True)
            norm = MapNorm.fit([r.projection_map for r in proj.project(normals, settings=settings, lean=True)], normals)
            maps = [r.projection_map for r in res]
            per_map = [image_scores(x, IMAGE_SCORES, im, norm) for x, im in zip(maps, ts.images)]
            row = {
                "pixel_auroc": float(roc_auc(labels, np.concatenate([x.ravel() for x in maps]))),
                "iterations_mean": float(np.mean([np.mean(r.iterations) for r in res])),
                "image_auroc": {k: float(roc_auc(ts.labels, np.array([s[k] for s in per_map]))) for k in IMAGE_SCORES},
                "seconds": round(time.perf_counter() - t0, 1),
            }
            rows[str(alpha)] = row
            print(f"{args.category} alpha {alpha}: pixel {row['pixel_auroc']:.4f}, image ({m.projection.image_score}) "
                  f"{row['image_auroc'][m.projection.image_score]:.4f}, {row['iterations_mean']:.1f} it", flush=True)  # fmt: skip
    return {"bundle": str(args.bundle), "category": args.category, "chosen_score": m.projection.image_score,
            "deployed_alpha": m.projection.alpha, "rows": rows}  # fmt: skip


def choose(reports: list[dict]) -> dict:
    from scipy.stats import rankdata

    ranks: dict[str, list[float]] = {}
    iters: dict[str, list[float]] = {}
    common = set.intersection(*(set(rep["rows"]) for rep in reports))
    for rep in reports:
        alphas = [a for a in rep["rows"] if a in common]
        pix = [rep["rows"][a]["pixel_auroc"] for a in alphas]
        img = [rep["rows"][a]["image_auroc"][rep["chosen_score"]] for a in alphas]
        for figures in (pix, img):
            # A NaN figure (a diverged projection) ranks last, as in evaluation/studies.py.
            for a, r in zip(alphas, rankdata(-np.nan_to_num(np.asarray(figures, float), nan=-1.0))):
                ranks.setdefault(a, []).append(float(r))
        for a in alphas:
            iters.setdefault(a, []).append(rep["rows"][a]["iterations_mean"])
    mean = {a: float(np.mean(r)) for a, r in ranks.items()}
    best = min(mean.values())
    near = [a for a in mean if mean[a] <= best + 0.25]
    chosen = min(near, key=lambda a: np.mean(iters[a]))
    return {"mean_rank": mean, "mean_iterations": {a: float(np.mean(v)) for a, v in iters.items()}, "chosen": chosen}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = add_photoset_args(sub.add_parser("measure"))
    m.add_argument("--alphas", type=lambda s: [float(v) for v in s.split(",")], default=[0.05, 0.03, 0.02, 0.01])
    c = sub.add_parser("choose")
    c.add_argument("reports", type=Path, nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "measure":
        return write_report(measure(args), args.out)
    return write_report(choose([json.loads(p.read_text()) for p in args.reports]), None)


if __name__ == "__main__":
    raise SystemExit(main())
