#!/usr/bin/env bash
# GPU check: run on a machine with an NVIDIA GPU (a workstation, a Jetson, a lent data-centre GPU).
#
#   scripts/gpu_check.sh [--exclude ort-trt,trt] [--tests-only]
#   EDGEPROJ_GPU_EXCLUDE=ort-trt,trt scripts/gpu_check.sh
#
# Every GPU backend (ort-cuda, ort-trt, trt) is REQUIRED unless excluded by name. The check fails
# (exit 1) when a required backend is missing, broken or skipped anywhere:
#   1. `edgeproj doctor` first (the table, then --require): a missing backend stops here, in seconds;
#   2. the GPU tests of tests/test_runtime.py for the required backends: a skipped test is a failure
#      (so is pytest's exit 5, nothing collected);
#   3. parity of every required configuration against ort-cpu on the demo data (energy trajectory
#      error, anomaly-map correlation, pixel-AUROC difference), then iterations/ms at batch 1, 8, 16
#      and the ratio to the same torch loop on the same GPU.
# It ends with one table. Sized for about 8 minutes on one data-centre GPU (engine builds included).
# --tests-only runs step 2 alone (what the test suite uses to prove that skips fail).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1

ALL="ort-cuda,ort-trt,trt"
EXCLUDE="${EDGEPROJ_GPU_EXCLUDE:-}"
TESTS_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --exclude) EXCLUDE="${EXCLUDE:+$EXCLUDE,}${2:?--exclude needs a comma list}"; shift 2 ;;
        --exclude=*) EXCLUDE="${EXCLUDE:+$EXCLUDE,}${1#*=}"; shift ;;
        --tests-only) TESTS_ONLY=1; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

REQUIRED=""
for b in ${EXCLUDE//,/ }; do
    case ",$ALL," in *",$b,"*) ;; *) echo "gpu_check: cannot exclude '$b': the GPU backends are $ALL" >&2; exit 2 ;; esac
done
for b in ${ALL//,/ }; do
    case ",$EXCLUDE," in *",$b,"*) ;; *) REQUIRED="${REQUIRED:+$REQUIRED,}$b" ;; esac
done
if [ -z "$REQUIRED" ]; then
    echo "gpu_check: FAILED: every GPU backend is excluded, nothing would be checked" >&2
    exit 1
fi
echo "gpu_check: required backends: $REQUIRED${EXCLUDE:+ (excluded: $EXCLUDE)}"

# ---------------------------------------------------------------- 2. GPU tests (skips are failures)
gpu_tests() {
    local marks=() expr log rc
    case ",$REQUIRED," in *",ort-cuda,"*|*",ort-trt,"*) marks+=("gpu") ;; esac
    case ",$REQUIRED," in *",trt,"*) marks+=("tensorrt") ;; esac
    expr=$(IFS='|'; echo "${marks[*]}"); expr=${expr//|/ or }
    log=$(mktemp)
    set +e
    python -m pytest -q -rs -p no:cacheprovider -m "$expr" tests/test_runtime.py 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -eq 5 ]; then
        echo "gpu_check: FAILED: pytest selected no test for '$expr'" >&2; return 1
    fi
    if [ "$rc" -ne 0 ]; then
        echo "gpu_check: FAILED: GPU tests (pytest exit $rc)" >&2; return 1
    fi
    if grep -Eq '[0-9]+ skipped|^SKIPPED' "$log"; then
        echo "gpu_check: FAILED: GPU tests were skipped (a skip is not a pass; reasons above)" >&2; return 1
    fi
    if ! grep -Eq '[0-9]+ passed' "$log"; then
        echo "gpu_check: FAILED: no GPU test passed" >&2; return 1
    fi
}

if [ "$TESTS_ONLY" -eq 1 ]; then
    gpu_tests
    exit $?
fi

# ---------------------------------------------------------------- 1. doctor first
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
edgeproj doctor || true
if ! edgeproj doctor --json --require "$REQUIRED" > "$OUT/doctor.json"; then
    echo "gpu_check: FAILED: required backend(s) unavailable (see the line above; exclude by name with --exclude)" >&2
    exit 1
fi

# A small bundle made here, so the check needs nothing but this tree.
edgeproj data make-demo "$OUT/data" --size 128 --n-train 16 --json > /dev/null
edgeproj train "$OUT/data" --category grid --variant l2ae --out "$OUT/run" --steps 300 --batch 16 --mode texture --resize 128 --json > /dev/null
edgeproj export "$OUT/run" --out "$OUT/bundle" --json > /dev/null

gpu_tests

# ---------------------------------------------------------------- 3. parity and speed, one table
python - "$OUT" "$REQUIRED" <<'PY'
import json
import sys
from pathlib import Path

import numpy as np

from edgeproj.bench.runner import BenchOptions, run_bench
from edgeproj.evaluation.testset import load_testset
from edgeproj.metrics import roc_auc
from edgeproj.runtime import Projector, load_manifest
from edgeproj.runtime.backends import REGISTRY, backend_options

out, required = Path(sys.argv[1]), sys.argv[2].split(",")
bundle = out / "bundle"
manifest = load_manifest(bundle)
fixed = manifest.projection.with_overrides(max_iterations=30).without_stop_rules()
test = load_testset(out / "data", "grid", manifest.preprocess)
labels = np.concatenate([m.ravel() for m in test.masks])

configs = {
    "ort-cuda": ("ort-cuda", {}),
    "ort-cuda+graph": ("ort-cuda", {"cuda_graph": True}),
    "ort-trt": ("ort-trt", {}),
    "trt": ("trt", {}),
    "trt+graph": ("trt", {"cuda_graph": True}),
}
configs = {k: v for k, v in configs.items() if v[0] in required}
if REGISTRY["trt"].fp16_unavailable_reason() is None and "trt" in required:
    configs["trt-fp16"] = ("trt", {"fp16": True})  # informative: FP16 parity is not judged by FP32 limits


def run(backend, opts):
    with Projector(manifest, backend=backend, options=backend_options(backend, **opts), batch=8, force_fp16=True) as p:
        return p.project(test.images, settings=fixed), p.providers


ref, _ = run("ort-cpu", {})
auc_ref = roc_auc(labels, np.concatenate([r.map.ravel() for r in ref]))
rows, failed = {}, []
for name, (backend, opts) in configs.items():
    try:
        got, providers = run(backend, opts)
    except Exception as exc:  # noqa: BLE001 - every failure is reported and fails the check
        rows[name] = {"error": f"{type(exc).__name__}: {exc}"}
        failed.append(name)
        continue
    traj = max(
        float(np.max(np.abs(np.array(a.energy_traces[0]) - np.array(b.energy_traces[0])) / np.abs(np.array(a.energy_traces[0]))))
        for a, b in zip(ref, got)
    )
    corr = min(float(np.corrcoef(a.map.ravel(), b.map.ravel())[0, 1]) for a, b in zip(ref, got))
    dauc = roc_auc(labels, np.concatenate([r.map.ravel() for r in got])) - auc_ref
    ok = name.endswith("fp16") or (traj < 1e-2 and corr > 0.99 and abs(dauc) < 0.005)
    rows[name] = {"trajectory_rel_err": traj, "map_corr_min": corr, "pixel_auroc_diff": dauc, "providers": providers, "ok": ok}
    if not ok:
        failed.append(name)

bench = run_bench(
    bundle, BenchOptions(backends=("ort-cpu", *required), batches=(1, 8, 16), iterations=30, warmup=5, repeats=3)
)
speed: dict = {}
for r in bench["results"]:
    cell = speed.setdefault(r["backend"], {})
    if "iterations_per_ms" in r:
        cell[r["batch"]] = (r["iterations_per_ms"], r.get("ratio_vs_torch_same_device"))
    else:
        cell[r["batch"]] = None
        failed.append(f"bench {r['backend']} b{r['batch']}: {r.get('error')}")
for name, why in bench.get("unavailable", {}).items():
    if name in required:
        failed.append(f"bench {name}: unavailable: {why}")

# Bench rows are named by configuration: native TensorRT is timed with CUDA graphs ("trt-fp32").
BENCH_NAME = {"trt": None, "trt+graph": "trt-fp32"}
(out / "gpu_check.json").write_text(json.dumps({"parity": rows, "bench": bench}, indent=2, default=str))
print(f"\nreference: ort-cpu, pixel AUROC {auc_ref:.4f} on {len(test.images)} demo images, 30 iterations")
head = f"{'backend':<16} {'traj err':>9} {'map corr':>9} {'dAUROC':>8} {'it/ms b1':>9} {'b8':>8} {'b16':>8}  {'x torch same device b1/b8/b16':<30}"
print(head)
print("-" * len(head))
for name in ["ort-cpu", "torch-cuda", *configs]:
    p = rows.get(name, {})
    s = speed.get(BENCH_NAME.get(name, name), {})
    if name == "ort-cpu":
        par = f"{'ref':>9} {'ref':>9} {'ref':>8}"
    elif name == "torch-cuda":
        par = f"{'-':>9} {'-':>9} {'-':>8}"
    elif "error" in p:
        par = f"ERROR {p['error'][:80]}"
    else:
        par = f"{p['trajectory_rel_err']:9.1e} {p['map_corr_min']:9.5f} {p['pixel_auroc_diff']:+8.4f}"
    its = " ".join(f"{s[b][0]:>{w}.3f}" if s.get(b) else f"{'-':>{w}}" for b, w in ((1, 9), (8, 8), (16, 8)))
    ratio = "/".join(f"{s[b][1]:.2f}" if s.get(b) and s[b][1] else "n/a" for b in (1, 8, 16))
    print(f"{name:<16} {par} {its}  {ratio}")
if not any(r["backend"] == "torch-cuda" for r in bench["results"]):
    print("torch same-device ratio: n/a (torch with CUDA is not installed here)")
for name, why in bench.get("unavailable", {}).items():
    print(f"unavailable: {name}: {why}")
print("note: native TensorRT is timed with CUDA graphs only (row trt+graph); the trt row is parity alone")
if failed:
    print("FAILED: " + "; ".join(failed))
    sys.exit(1)
print(f"all required GPU backends ({', '.join(required)}) agree with ort-cpu")
PY
