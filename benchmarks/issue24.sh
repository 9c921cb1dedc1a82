#!/usr/bin/env bash
# Issue 24's figures: real photograph sets, every default (train until the plateau, export, calibrate,
# evaluate), against the patch-kNN reference. WORK holds runs, bundles and JSON; MINUTES caps each
# training (the session's budget; unset for the plateau alone).
#   PHOTOS=/path/vpython_data WORK=/tmp/m24 MINUTES=18 benchmarks/issue24.sh slab granite weave wood gravel stucco
set -euo pipefail
WORK=${WORK:-/tmp/issue24}; SET=${SET:-$WORK/photoset}; mkdir -p "$WORK"
[ $# -eq 0 ] && set -- slab granite weave wood gravel stucco
cats=("$@")
if [ ! -f "$SET/${cats[0]}/knn_reference.json" ]; then
  python scripts/photo_textures.py ${PHOTOS:+--photos "$PHOTOS"} --out "$SET" --categories "$(IFS=,; echo "${cats[*]}")" \
    --train 200 --test-good 200 --test-defect 60 --knn
fi
cap=${MINUTES:+--max-minutes $MINUTES}
for s in "${cats[@]}"; do
  edgeproj train "$SET/$s" --out "$WORK/run-$s" $cap --json > "$WORK/train-$s.json"
  edgeproj export "$WORK/run-$s" --out "$WORK/b-$s" --overwrite > "$WORK/export-$s.txt"
  edgeproj calibrate "$WORK/b-$s" "$SET/$s/train/good" --quiet --json > "$WORK/cal-$s.json"
  edgeproj evaluate "$WORK/b-$s" "$SET" --category "$s" --no-study --out "$WORK/eval-$s" --quiet --json > "$WORK/eval-$s.json"
  python benchmarks/image_score_limits.py "$WORK/b-$s" "$SET" "$s" --out "$WORK/limits-$s.json" > /dev/null
  python benchmarks/easy_patches.py "$WORK/b-$s" "$SET" "$s" --out "$WORK/easy-$s.json" > /dev/null
  python benchmarks/pixel_map.py "$WORK/b-$s" "$SET" "$s" --out "$WORK/pixel-map-$s.json" > /dev/null
done
python benchmarks/verdict_table.py "$WORK" "$SET" "${cats[@]}"
# The step size on these bundles and the rule over the sets; the synthetic check against the real defects.
for s in "${cats[@]}"; do
  python benchmarks/step_size.py measure "$WORK/b-$s" "$SET" "$s" --alphas 0.05,0.02 --out "$WORK/step-size-$s.json" > /dev/null
  python benchmarks/synthetic_choice.py "$WORK/b-$s" "$SET" "$s" --out "$WORK/choice-$s.json" > /dev/null
done
reports=(); for s in "${cats[@]}"; do reports+=("$WORK/step-size-$s.json"); done
python benchmarks/step_size.py choose "${reports[@]}"
python benchmarks/texture_window.py "$SET" "$(IFS=,; echo "${cats[*]}")" --out "$WORK/texture-window.json" > /dev/null
