#!/usr/bin/env bash
# Issue 23's figures: the frame gate on the demo data and on real texture photographs (2-core CPU).
#   PHOTOS: scripts/photo_textures.py --categories brick,tissue,slab,weave --train 200 --test-good 200
#           --test-defect 60 --out PHOTOS   (vpython's and scikit-image's photographs)
#   WORK:   a scratch folder for runs, bundles, the demo and the trial outputs
# Every model trains with every default of `edgeproj train` (5000 steps, texture mode chosen by the rule)
# and is calibrated with every default of `edgeproj calibrate` on its category folder (train/good); the
# held-out good parts of the trial are the category's test/good images (never trained or calibrated on).
# The export of the RGB sets needs --accept-parity-failure today (issue 24: bounds that judge the chaos).
set -euo pipefail
PHOTOS=${PHOTOS:?} WORK=${WORK:?}
mkdir -p "$WORK"
declare -A OTHER=([brick]=slab [slab]=brick [tissue]=weave [weave]=tissue)
for cat in brick tissue slab weave; do
  [ -f "$WORK/b-$cat/manifest.json" ] || {
    edgeproj train "$PHOTOS/$cat" --out "$WORK/run-$cat"
    edgeproj export "$WORK/run-$cat" --out "$WORK/b-$cat" --accept-parity-failure
  }
  edgeproj calibrate "$WORK/b-$cat" "$PHOTOS/$cat" --json > "$WORK/cal-$cat.json"
  # gate_trial.py exits 1 when a hostile frame came out OK: reported, and the other sets still run.
  python benchmarks/gate_trial.py "$WORK/b-$cat" --good "$PHOTOS/$cat/test/good" \
    --other "$PHOTOS/${OTHER[$cat]}/test/good/000.png" --out "$WORK/trial-$cat" || true
done
# The demo: its own pipeline (600 steps, 16 calibration images), recalibrated as the demo does; new good
# parts from another seed.
[ -d "$WORK/demo/work/bundles" ] || edgeproj demo --categories grid,stone --variants l2ae --out "$WORK/demo" --quiet
for cat in grid stone; do
  python -c "from pathlib import Path; from edgeproj.workstation.demo import _calibrate; _calibrate(Path('$WORK/demo/work/bundles/$cat-l2ae'), Path('$WORK/demo/data/$cat'), 16)"
done
python -c "from pathlib import Path; from edgeproj.data.demo import make_demo; make_demo(Path('$WORK/demo-new'), seed=7, n_train=200, n_test_good=1, n_test_per_defect=1)"
python benchmarks/gate_trial.py "$WORK/demo/work/bundles/grid-l2ae" --good "$WORK/demo-new/grid/train/good" \
  --other "$WORK/demo-new/stone/train/good/000.png" --out "$WORK/trial-demo-grid" || true
python benchmarks/gate_trial.py "$WORK/demo/work/bundles/stone-l2ae" --good "$WORK/demo-new/stone/train/good" \
  --other "$WORK/demo-new/grid/train/good/000.png" --out "$WORK/trial-demo-stone" || true
python benchmarks/gate_summary.py "$WORK"/trial-*/gate-trial.json > benchmarks/gate-trial.json
