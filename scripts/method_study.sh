#!/usr/bin/env bash
# The method study of issue 16 on the demo data: for each (category, variant), train (or reuse) the demo's
# model, export, calibrate like the demo, then `edgeproj evaluate --rule-study --appendix-b` on the
# deployed projection (stop rules on). The report folders' results.json feed the choice of defaults
# (edgeproj.evaluation.studies.choose_update_rule / choose_image_score), aggregated at the end.
set -euo pipefail
OUT=${1:-study-out}
CATEGORIES=${CATEGORIES:-grid stone}
VARIANTS=${VARIANTS:-l2ae dsae}
edgeproj data make-demo "$OUT/data" --json > /dev/null
for c in $CATEGORIES; do
  for v in $VARIANTS; do
    edgeproj evaluate "$OUT/data" -c "$c" --variants "$v" --work "$OUT/work" --steps 600 --lr 5e-4 --resize 256 \
      -o "$OUT/eval-$c-$v" --no-study --quiet --json > /dev/null  # trains and exports once (reused below)
    b="$OUT/work/bundles/$c-$v"
    ls "$OUT/data/$c/train/good/"*.png | head -16 > "$OUT/cal-$c.txt"
    mkdir -p "$OUT/cal-$c" && xargs -a "$OUT/cal-$c.txt" cp -t "$OUT/cal-$c/"
    edgeproj calibrate "$b" "$OUT/cal-$c" --quiet --json > /dev/null
    edgeproj evaluate "$b" "$OUT/data" -c "$c" -o "$OUT/study-$c-$v" --no-study --rule-study --appendix-b \
      --study-iterations 30 --study-every 3 --quiet --json > "$OUT/study-$c-$v.json"
  done
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from edgeproj.evaluation.studies import choose_image_score, choose_update_rule
out = Path(sys.argv[1])
results = [json.loads(p.read_text()) for p in sorted(out.glob("study-*.json"))]
doc = {"pairs": [f"{r['category']}/{r['variant']}" for r in results],
       "update_rule": choose_update_rule([r["rule_study"] for r in results]),
       "image_score": choose_image_score([r["image_scores"] for r in results])}
(out / "choice.json").write_text(json.dumps(doc, indent=2))
print(json.dumps({"update_rule": doc["update_rule"]["choice"], "image_score": doc["image_score"]["choice"]}))
PY
