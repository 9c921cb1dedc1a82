#!/usr/bin/env python
"""Iterations per tile against pixel AUROC when only the step size (alpha) changes, stop rules as calibrated.

Each SPEC is BUNDLE:DATA_ROOT:CATEGORY (an MVTec-layout folder with test/ and ground_truth/). Prints one
line per (bundle, alpha) and writes the figures as JSON to --out.

    python benchmarks/step_size_sweep.py 0.05,0.07,0.1,0.15 DEMO/work/bundles/grid-l2ae:DEMO/data:grid ... \
        --out benchmarks/step-size-sweep.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    from edgeproj.evaluation.testset import load_testset
    from edgeproj.metrics import roc_auc
    from edgeproj.runtime import Projector, load_manifest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("alphas")
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    out: dict = {}
    for spec in args.specs:
        bundle, data, category = spec.split(":")
        m = load_manifest(bundle)
        ts = load_testset(data, category, m.preprocess)
        labels = np.concatenate([k.ravel() for k in ts.masks])
        with Projector(m) as proj:
            for alpha in (float(a) for a in args.alphas.split(",")):
                res = proj.project(ts.images, settings=proj.settings(alpha=alpha), lean=True)
                it = float(np.mean([i for r in res for i in r.iterations]))
                auroc = roc_auc(labels, np.concatenate([r.map.ravel() for r in res]))
                out.setdefault(bundle, {})[str(alpha)] = {"pixel_auroc": auroc, "iterations_per_tile": it}
                print(f"{bundle} alpha {alpha}: pixel AUROC {auroc:.4f}, {it:.2f} iterations per tile", flush=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
