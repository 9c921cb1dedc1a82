#!/usr/bin/env python
"""Issue 13's measurement: a user's own texture line, old preprocessing guess against the stated rule.

For each category of an MVTec-layout folder (e.g. the real-photo set of scripts/photo_textures.py):

  * trains L2AE with the preprocessing the old name-based guess gave an unknown name (object mode) and
    with the new rule (`edgeproj.data.preprocess_choice`, every default), plus any --resize alternatives;
  * exports and evaluates each bundle on the labelled test set (baseline and projection, stop rules on);
  * on the new rule's bundle, ranks the baseline and four projection settings on the real labelled
    defects and on synthetic defects drawn on the images training held out, with their rank correlation.

    python scripts/user_line_study.py --data /tmp/photoset --out /tmp/uls --steps 2500

Writes OUT/results.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def train_export(data: Path, cat: str, work: Path, tag: str, steps: int, **overrides) -> tuple[Path, dict]:
    from edgeproj.data.images import read_image
    from edgeproj.data.mvtec import normal_images
    from edgeproj.data.preprocess_choice import choose_for_paths
    from edgeproj.export.bundle import ExportOptions, export_bundle
    from edgeproj.models.config import ModelConfig
    from edgeproj.training.trainer import TrainConfig, train

    images = normal_images(data / cat)
    channels = read_image(images[0]).shape[2]
    choice = choose_for_paths(images, cat, channels, **overrides)
    run, bundle = work / "runs" / f"{cat}-{tag}", work / "bundles" / f"{cat}-{tag}"
    t = time.perf_counter()
    res = train(images, run, ModelConfig(variant="l2ae", channels=channels), choice.preprocess, TrainConfig(steps=steps, until="steps"),
                data_info={"source": str(data / cat), "category": cat}, preprocess_choice=choice.to_dict())  # fmt: skip
    seconds = time.perf_counter() - t
    export_bundle(run, bundle, ExportOptions(parity_steps=10))
    return bundle, {
        "preprocess": choice.preprocess.to_dict(),
        "reasons": choice.reasons,
        "stationarity": choice.stationarity,
        "train_seconds": round(seconds, 1),
        "samples_per_s": round(res.samples_per_s, 1),
        "convergence": res.heldout.get("convergence"),
        "heldout_stop": res.heldout.get("stop"),
    }


def evaluate(bundle: Path, data: Path, cat: str) -> dict:
    from edgeproj.evaluation.evaluate import EvalOptions, evaluate_bundle
    from edgeproj.evaluation.testset import load_testset
    from edgeproj.runtime import Projector, load_manifest

    m = load_manifest(bundle)
    ts = load_testset(data, cat, m.preprocess)
    with Projector(m) as proj:
        r, _ = evaluate_bundle(proj, ts, EvalOptions(study=False))
    keys = ("pixel_auroc", "au_pro", "image_auroc")
    return {"baseline": {k: r["baseline"][k] for k in keys}, "grad": {k: r["grad"][k] for k in keys},
            "iterations_mean": r["iterations"]["mean"]}  # fmt: skip


def ranking(bundle: Path, data: Path, cat: str, work: Path) -> dict:
    from edgeproj.evaluation.testset import load_testset
    from edgeproj.runtime import Projector, load_manifest
    from edgeproj.workstation.synthetic_check import CATEGORY, build_synthetic_set, ranking_check

    m = load_manifest(bundle)
    info = build_synthetic_set(m, data / cat / "train" / "good", work / "synthetic" / cat)
    with Projector(m) as proj:
        doc = ranking_check(
            proj, load_testset(data, cat, m.preprocess), load_testset(work / "synthetic" / cat, CATEGORY, m.preprocess)
        )
    return doc | {"synthetic_set": info}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--categories", default="slab,weave")
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--alt-resize", default="", help="comma list of extra texture --resize values to compare")
    ap.add_argument("--no-ranking", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    for cat in [c for c in args.categories.split(",") if c]:
        rows = doc.setdefault(cat, {})
        variants = {"before_object": {"mode": "object"}, "after_rule": {}}
        variants |= {f"texture_{r}": {"mode": "texture", "resize": int(r)} for r in args.alt_resize.split(",") if r}
        for tag, overrides in variants.items():
            if tag in rows:
                continue
            bundle, info = train_export(args.data, cat, args.out, tag, args.steps, **overrides)
            rows[tag] = info | evaluate(bundle, args.data, cat) | {"bundle": str(bundle)}
            path.write_text(json.dumps(doc, indent=2) + "\n")
            print(cat, tag, json.dumps({k: rows[tag][k] for k in ("baseline", "grad")}), flush=True)
        if not args.no_ranking and "ranking" not in rows:
            rows["ranking"] = ranking(Path(rows["after_rule"]["bundle"]), args.data, cat, args.out)
            path.write_text(json.dumps(doc, indent=2) + "\n")
            print(cat, rows["ranking"]["verdict"], flush=True)
    print("| category | preprocessing | pixel AUROC base -> grad | AU-PRO grad | image AUROC grad | convergence |")
    print("|---|---|---|---|---|---|")
    for cat, rows in doc.items():
        for tag, r in rows.items():
            if tag == "ranking":
                continue
            p = r["preprocess"]
            pre = f"{tag}: {p['mode']} {p['resize']}"
            print(f"| {cat} | {pre} | {r['baseline']['pixel_auroc']:.3f} -> {r['grad']['pixel_auroc']:.3f} | "
                  f"{r['grad']['au_pro']:.3f} | {r['grad']['image_auroc']:.3f} | {(r['convergence'] or {}).get('verdict')} |")  # fmt: skip


if __name__ == "__main__":
    main()
