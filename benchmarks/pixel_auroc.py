#!/usr/bin/env python
"""Pixel AUROC of a bundle on an MVTec-layout test set, and the mean iterations per tile, through whichever
edgeproj is on the path (runs on the trees before issue 15 too: only `Projector.project` and `.map`).

    PYTHONPATH=TREE python -P benchmarks/pixel_auroc.py BUNDLE DATA_ROOT CATEGORY
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main() -> None:
    from edgeproj.evaluation.testset import load_testset
    from edgeproj.metrics import roc_auc
    from edgeproj.runtime import Projector, load_manifest

    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    bundle, data, category = sys.argv[1:]
    m = load_manifest(bundle)
    ts = load_testset(data, category, m.preprocess)
    labels = np.concatenate([k.ravel() for k in ts.masks])
    with Projector(m) as proj:
        res = proj.project(ts.images)
    # The projection's own map (`.map` on trees before the fused pixel map, which had no projection_map).
    auroc = roc_auc(labels, np.concatenate([getattr(r, "projection_map", r.map).ravel() for r in res]))
    iters = float(np.mean([i for r in res for i in r.iterations]))
    print(json.dumps({"bundle": bundle, "category": category, "pixel_auroc": auroc, "iterations_per_tile": iters}))


if __name__ == "__main__":
    main()
