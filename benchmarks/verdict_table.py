#!/usr/bin/env python
"""The issue-24 table from the files benchmarks/issue24.sh writes: per photo set, the patch-kNN reference,
the baseline and the projection (pixel and image AUROC, with the image score calibrate chose), the pixel
map the line draws (fused with the texture check for a *_tex score), the targets (the pixel target on the
line's map), the training budget and the parity verdict.

    python benchmarks/verdict_table.py WORK PHOTOSET slab granite weave wood
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def row(work: Path, photos: Path, cat: str) -> dict:
    knn = _load(photos / cat / "knn_reference.json")
    ev = _load(work / f"eval-{cat}.json")
    tr = _load(work / f"train-{cat}.json")
    held = _load(work / f"run-{cat}" / "heldout.json")
    man = _load(work / f"b-{cat}" / "manifest.json")
    if not ev:
        return {"set": cat, "missing": "no evaluation"}
    scores = ev.get("image_scores", {})
    base_img = max(scores.get("baseline_map_max", 0.0), scores.get("baseline_map_max_smoothed", 0.0))
    proj_img = ev["grad"]["image_auroc"]
    # Evaluations made before the fused pixel map have no "pixel_map": the line drew the projection's. A NaN
    # AUROC reads back as null from the strict JSON: no target is met with it.
    line_pixel = (ev.get("pixel_map") or ev["grad"])["pixel_auroc"]
    line_pixel = float("nan") if line_pixel is None else line_pixel
    stopped = tr.get("stopped") or held.get("stopped") or {}
    return {
        "set": cat,
        "knn_pixel": knn.get("pixel_auroc"),
        "knn_image": knn.get("image_auroc"),
        "baseline_pixel": ev["baseline"]["pixel_auroc"],
        "baseline_image_best": base_img,
        "projection_pixel": ev["grad"]["pixel_auroc"],
        "projection_image": proj_img,
        "line_pixel": line_pixel,
        "image_score": (ev.get("image_score") or {}).get("deployed"),
        "image_target": max(base_img, 0.80),
        "image_target_met": proj_img >= max(base_img, 0.80),
        "pixel_target": 0.9 * knn["pixel_auroc"] if knn else None,
        "pixel_target_met": bool(knn) and line_pixel >= 0.9 * knn["pixel_auroc"],
        "steps": stopped.get("steps"),
        "stopped_by": stopped.get("by"),
        "convergence": (held.get("convergence") or {}).get("verdict"),
        "heldout_median_over_stop": ((held.get("stop") or {}).get("median_over_threshold")),
        "parity_passed": (man.get("parity") or {}).get("passed"),
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    work, photos, cats = Path(argv[0]), Path(argv[1]), argv[2:]
    rows = [row(work, photos, c) for c in cats]
    cols = ["set", "knn_pixel", "knn_image", "baseline_pixel", "baseline_image_best", "projection_pixel", "projection_image",
            "line_pixel", "image_score", "image_target_met", "pixel_target_met", "steps", "stopped_by", "convergence", "parity_passed"]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [r.get(c) for c in cols]
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in cells) + " |")
    (work / "verdict-table.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
