#!/usr/bin/env bash
# GPU check: run on a machine with an NVIDIA GPU (the `device` tool, a workstation, a Jetson).
# Runs the GPU tests, then benchmarks every available GPU backend against ort-cpu on one bundle and
# checks that their final anomaly maps agree. Exits non-zero on any mismatch or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
export PYTHONUNBUFFERED=1

python - <<'PY'
import onnxruntime as ort
print("onnxruntime", ort.__version__, ort.get_available_providers())
try:
    import tensorrt as trt
    print("tensorrt", trt.__version__)
except ImportError:
    print("tensorrt: not installed")
PY

# A tiny bundle made here, so the check needs nothing but this tree.
edgeproj data make-demo "$OUT/data" --size 128 --n-train 8 --json > /dev/null
edgeproj train "$OUT/data" --category grid --variant l2ae --out "$OUT/run" --steps 60 --batch 8 --mode texture --resize 128 --json > /dev/null
edgeproj export "$OUT/run" --out "$OUT/bundle" --json > /dev/null

python -m pytest -q -m "gpu or tensorrt" tests/test_runtime.py

python - "$OUT/bundle" <<'PY'
import sys
import numpy as np
from edgeproj.runtime import Projector, load_manifest
from edgeproj.runtime.backends import available_backends, backend_options
from edgeproj.runtime.scoring import dssim_map
from edgeproj.bench.runner import BenchOptions, run_bench

bundle = sys.argv[1]
rng = np.random.default_rng(0)
x0 = np.clip(0.5 + 0.15 * rng.standard_normal((8, 1, 128, 128)), 0, 1).astype(np.float32)
fixed = load_manifest(bundle).projection.with_overrides(max_iterations=30).without_stop_rules()
with Projector.from_bundle(bundle) as p:
    ref = p.project_patches(x0, settings=fixed)
failed = []
configs = {"ort-cuda": {}, "ort-cuda+graph": {"cuda_graph": True}, "ort-trt": {}, "trt": {}, "trt+graph": {"cuda_graph": True}}
avail = available_backends()
for name, opts in configs.items():
    backend = name.split("+")[0]
    if backend not in avail:
        print(f"{name}: not available, skipped")
        continue
    try:
        with Projector.from_bundle(bundle, backend=backend, options=backend_options(backend, **opts)) as p:
            got = p.project_patches(x0, settings=fixed)
        corr = min(np.corrcoef(dssim_map(x0[i], ref.projection[i]).ravel(), dssim_map(x0[i], got.projection[i]).ravel())[0, 1] for i in range(8))
        traj = np.max(np.abs(np.array(ref.traces) - np.array(got.traces)) / np.abs(np.array(ref.traces)))
        ok = corr > 0.99 and traj < 1e-2
        print(f"{name}: map correlation min {corr:.5f}, energy trajectory rel err {traj:.2e} -> {'OK' if ok else 'MISMATCH'}")
        if not ok:
            failed.append(name)
    except Exception as exc:
        print(f"{name}: FAILED {type(exc).__name__}: {exc}")
        failed.append(name)
report = run_bench(bundle, BenchOptions(batches=(1, 8), iterations=30, warmup=5, repeats=3))
for r in report["results"]:
    if "iterations_per_ms" in r:
        print(f"{r['backend']:>16} b{r['batch']:<3} {r['iterations_per_ms']:8.3f} iter/ms  x torch {r.get('ratio_vs_torch') or 0:.2f}")
    else:
        print(f"{r['backend']:>16} b{r['batch']:<3} error {r.get('error')}")
        failed.append(f"bench {r['backend']} b{r['batch']}")
print("FAILED: " + ", ".join(failed) if failed else "all GPU backends agree with ort-cpu")
sys.exit(1 if failed else 0)
PY
