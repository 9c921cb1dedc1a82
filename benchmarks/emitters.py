#!/usr/bin/env python
"""Hand-written vs traced graphs for the four built-ins, and the user models of tests/user_models.py.

For each built-in variant: a brief training run on the demo grid (the step time does not depend on how
far a model trained; the stop rules are off in bench), exported twice with parity on (--emitter hand,
--emitter traced), then `edgeproj bench TRACED --compare HAND`, which times both bundles' configurations
in the same interleaved rounds. For each user model: trained, exported (traced, parity on) and benched
against PyTorch eager. Writes the figures to OUT (JSON) and prints one markdown table.

    python benchmarks/emitters.py OUT.json [--steps 60] [--repeats 7] [--iterations 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER = {"BatchNormAE": "user_models:BatchNormAE", "UpsampleAE": "user_models:UpsampleAE", "DeepRGBAE": "user_models:deep_rgb"}


def edgeproj(*args, cwd=None) -> dict:
    out = subprocess.run([sys.executable, "-m", "edgeproj", *map(str, args), "--json"], check=True, capture_output=True,
                         text=True, cwd=cwd)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1] if args[0] == "inspect" else out.stdout)


def graph_facts(bundle: Path) -> dict:
    import onnx

    m = json.loads((bundle / "manifest.json").read_text())
    facts = {}
    for name, g in m["graphs"].items():
        proto = onnx.load(str(bundle / g["file"]))
        facts[name] = {
            "bytes": g["bytes"],
            "nodes": len(proto.graph.node),
            "saved": sum(o.startswith("saved_") for o in g["outputs"]),
        }
    p = m["parity"]
    traj = p["trajectory"][p["deployed_rule"]]["float32"]
    return {
        "graphs": facts,
        "step_flops": m["cost"]["step_flops_per_sample"],
        "parity": {
            "grad_rel_max_err": max(p["gradient"][b]["grad_rel_max_err"] for b in ("batch1", "batch7")),
            "energy_traj": traj["energy_traj_rel_max_err"],
            "map_correlation": traj["map_correlation"],
            "optimizer_x_abs": max(o["x_max_abs_err"] for o in p["optimizer"].values()),
            "split_max_err": p["split"]["max_err"],
            "passed": p["passed"],
        },
    }


def bench(bundle: Path, args, *extra) -> dict:
    # From tests/: PyTorch eager imports the user models from there.
    return edgeproj("bench", bundle, "--backends", "ort-cpu", "--batches", "1,4", "--iterations", args.iterations,
                    "--repeats", args.repeats, "--no-line", *extra, cwd=ROOT / "tests")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=20)
    args = ap.parse_args()
    from edgeproj.data.demo import make_demo
    from edgeproj.models.variants import variant_names

    results: dict = {"builtins": {}, "user": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_demo(tmp / "demo", seed=0, size=128, n_train=8, n_test_good=2, n_test_per_defect=1)
        data = tmp / "demo" / "grid"
        for v in variant_names():
            run = tmp / f"run-{v}"
            edgeproj("train", data, "--variant", v, "--steps", args.steps, "--until", "steps", "--batch", 8, "--out", run)
            row = {}
            for emitter in ("hand", "traced"):
                edgeproj("export", run, "--out", tmp / f"{v}-{emitter}", "--emitter", emitter, "--parity-steps", 20)
                row[emitter] = graph_facts(tmp / f"{v}-{emitter}")
            doc = bench(tmp / f"{v}-traced", args, "--compare", tmp / f"{v}-hand", "--no-torch")
            row["traced_over_hand"] = {f"{r['backend']} b{r['batch']}": r for r in doc["compare"]["rows"]}
            results["builtins"][v] = row
            print(v, json.dumps(row["traced_over_hand"]), file=sys.stderr)
        for name, path in USER.items():
            run = tmp / f"run-{name}"
            train_data = data
            if name == "DeepRGBAE":  # the grid in colour
                import cv2
                import numpy as np

                train_data = tmp / "rgb"
                for p in (data / "train" / "good").glob("*.png"):
                    f = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
                    (train_data / "train" / "good").mkdir(parents=True, exist_ok=True)
                    rgb = np.clip(np.stack([1 - 0.7 * f, 0.3 + 0.6 * f, f], -1), 0, 1)
                    cv2.imwrite(str(train_data / "train" / "good" / p.name), (rgb * 255).astype(np.uint8))
            edgeproj("train", train_data, "--model", path, "--steps", args.steps, "--until", "steps", "--batch", 8,
                     "--out", run, cwd=ROOT / "tests")  # fmt: skip
            bundle = tmp / f"{name}-traced"
            edgeproj("export", run, "--out", bundle, "--parity-steps", 20, cwd=ROOT / "tests")
            row = {"traced": graph_facts(bundle)}
            doc = bench(bundle, args)
            row["x_torch"] = {f"{r['backend']} b{r['batch']}": None if "ratio_vs_torch" in r.get("noisy", {}) else r.get("ratio_vs_torch")
                              for r in doc["results"] if not r["backend"].startswith("torch")}  # fmt: skip
            row["iterations_per_ms"] = {f"{r['backend']} b{r['batch']}": r.get("iterations_per_ms")
                                        for r in doc["results"] if not r["backend"].startswith("torch")}  # fmt: skip
            results["user"][name] = row
            print(name, json.dumps(row["x_torch"]), file=sys.stderr)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(
        "| model | emitter | step graph nodes | step graph MB | forward+update nodes | saved values | gradient parity | traced / hand iter/ms (ort-cpu b1, b4) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for v, row in results["builtins"].items():
        for e in ("hand", "traced"):
            f = row[e]
            g = f["graphs"]
            ratio = ""
            if e == "traced":
                ratio = ", ".join(
                    "noisy" if r["ratio_vs_compared"] is None else f"{r['ratio_vs_compared']:.2f} ±{100 * r['spread']['rel_half_range']:.0f}%"
                    for r in row["traced_over_hand"].values() if r["backend"] == "ort-cpu"
                )  # fmt: skip
            print(f"| {v} | {e} | {g['step']['nodes']} | {g['step']['bytes'] / 1e6:.2f} | "
                  f"{g.get('forward', {}).get('nodes', 0)}+{g.get('update', {}).get('nodes', 0)} | {g.get('forward', {}).get('saved', 0)} | "
                  f"{f['parity']['grad_rel_max_err']:.1e} | {ratio} |")  # fmt: skip
    for name, row in results["user"].items():
        f = row["traced"]
        g = f["graphs"]
        print(f"| {name} | traced | {g['step']['nodes']} | {g['step']['bytes'] / 1e6:.2f} | "
              f"{g.get('forward', {}).get('nodes', 0)}+{g.get('update', {}).get('nodes', 0)} | {g.get('forward', {}).get('saved', 0)} | "
              f"{f['parity']['grad_rel_max_err']:.1e} | x PyTorch eager: "
              f"{', '.join(f'{k} {v:.2f}' if v else f'{k} noisy' for k, v in row['x_torch'].items())} |")  # fmt: skip


if __name__ == "__main__":
    main()
