#!/usr/bin/env bash
# GPU check: run on a machine with an NVIDIA GPU (a workstation, a Jetson, a lent data-centre GPU).
#
#   scripts/gpu_check.sh [--exclude ort-trt,trt] [--tests-only]
#   scripts/gpu_check.sh --bundle DIR [--data DIR --category C] [--exclude ...]
#   EDGEPROJ_GPU_EXCLUDE=ort-trt,trt scripts/gpu_check.sh
#   (in the Jetson image: docker run --rm --runtime nvidia --entrypoint edgeproj-gpu-check IMAGE --bundle /work/b)
#
# Every GPU backend of the registry (today ort-cuda, ort-trt, trt) is REQUIRED unless excluded by name. The check fails
# (exit 1) when a required backend is missing, broken or skipped anywhere:
#   1. `edgeproj doctor` first (the table, then --require): a missing backend stops here, in seconds;
#   2. the GPU tests of tests/test_runtime.py for the required backends: a skipped test is a failure
#      (so is pytest's exit 5, nothing collected);
#   3. `python -m edgeproj.bench.gpu_check`: parity of every required configuration against ort-cpu with
#      the stop rules off (energy trajectory, anomaly-map correlation, pixel-AUROC difference; trt-fp16
#      under FP16 limits), the production case with the stop rules on (the active mask changes between
#      runs on CUDA graphs) against ort-cpu checking the rule at the same point, then iterations/ms at
#      batch 1, 8, 16 with the device memory each configuration takes.
# --bundle DIR runs 1 and 3 on a bundle made elsewhere (no torch, no pytest, no tests/ needed: what the
# Jetson image carries); the test images are the demo data made here unless --data names a folder.
# It ends with one table. Sized for about 8 minutes on one data-centre GPU (engine builds included).
# --tests-only runs step 2 alone (what the test suite uses to prove that skips fail).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
export PYTHONUNBUFFERED=1

EXCLUDE="${EDGEPROJ_GPU_EXCLUDE:-}"
TESTS_ONLY=0
BUNDLE=""
DATA=""
CATEGORY="grid"
while [ $# -gt 0 ]; do
    case "$1" in
        --exclude) EXCLUDE="${EXCLUDE:+$EXCLUDE,}${2:?--exclude needs a comma list}"; shift 2 ;;
        --exclude=*) EXCLUDE="${EXCLUDE:+$EXCLUDE,}${1#*=}"; shift ;;
        --tests-only) TESTS_ONLY=1; shift ;;
        --bundle) BUNDLE="${2:?--bundle needs a folder}"; shift 2 ;;
        --data) DATA="${2:?--data needs a folder}"; shift 2 ;;
        --category) CATEGORY="${2:?--category needs a name}"; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ -n "$BUNDLE" ] && [ ! -f "$BUNDLE/manifest.json" ]; then
    echo "gpu_check: --bundle '$BUNDLE' is not a bundle (no manifest.json); make one with edgeproj export" >&2; exit 2
fi
if [ -n "$DATA" ] && [ ! -d "$DATA/$CATEGORY/test" ]; then
    echo "gpu_check: --data '$DATA' has no $CATEGORY/test folder (MVTec layout)" >&2; exit 2
fi
if [ -n "$BUNDLE" ] && [ "$TESTS_ONLY" -eq 1 ]; then
    echo "gpu_check: --tests-only runs the repository's GPU tests; it does not take --bundle" >&2; exit 2
fi

# The CLI as installed, or from this checkout where it is not on PATH (a bare image with the packages).
PY="$(command -v python3 || command -v python)"
command -v edgeproj > /dev/null || edgeproj() { "$PY" -m edgeproj "$@"; }
# The GPU backends are the registry's (edgeproj.runtime.backends): a new one is checked without an edit here.
ALL="$("$PY" -c 'from edgeproj.runtime.backends import gpu_backends; print(",".join(gpu_backends()))')" || ALL=""
if [ -z "$ALL" ]; then
    echo "gpu_check: cannot read the backend registry with $PY (is edgeproj installed, or PYTHONPATH set to the checkout?)" >&2
    exit 2
fi

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
    cd "$HERE/.."
    "$PY" -m pytest -q -rs -p no:cacheprovider -m "$expr" tests/test_runtime.py 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    cd - > /dev/null
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

if [ -z "$BUNDLE" ]; then
    # A small bundle made here, so the check needs nothing but this tree (and torch to train it).
    edgeproj data make-demo "$OUT/data" --size 128 --n-train 16 --json > /dev/null
    edgeproj train "$OUT/data" --category grid --variant l2ae --out "$OUT/run" --steps 300 --batch 16 --mode texture --resize 128 --json > /dev/null
    edgeproj export "$OUT/run" --out "$OUT/bundle" --json > /dev/null
    BUNDLE="$OUT/bundle"
    DATA="$OUT/data"
    CATEGORY=grid
    gpu_tests
elif [ -z "$DATA" ]; then
    edgeproj data make-demo "$OUT/data" --size 128 --n-train 16 --json > /dev/null
    DATA="$OUT/data"
    CATEGORY=grid
fi
edgeproj doctor --bundle "$BUNDLE" --require "$REQUIRED" || true  # the device memory each backend takes

# ---------------------------------------------------------------- 3. parity (fixed and production case) and speed
"$PY" -m edgeproj.bench.gpu_check "$BUNDLE" "$DATA" --category "$CATEGORY" --required "$REQUIRED" --out "$OUT/gpu_check.json"
