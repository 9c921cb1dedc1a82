#!/usr/bin/env bash
# Issue 15's figures, one session, in this order (2-core CPU, nothing else running).
#   DEMO: an `edgeproj demo --out DEMO` folder (its calibrated grid-l2ae bundle and data)
#   RGB:  an RGB bundle (the real-photo 'weave' bundle of scripts/user_line_study.py)
#   OLD:  the tree before issue 15's work (git archive b88c388 | tar -x -C OLD)
#   PREV: the tree before lanes and frames in flight (git archive ab2f7b9 | tar -x -C PREV)
#   VIDEO: 256x256 frames of the demo line (400 frames)
set -euo pipefail
DEMO=${DEMO:?} RGB=${RGB:?} OLD=${OLD:?} PREV=${PREV:?} VIDEO=${VIDEO:?}
B=$DEMO/work/bundles/grid-l2ae
out=benchmarks
python benchmarks/line_speed.py "$B" --data "$DEMO/data" -c grid > $out/line-speed-demo.json
for tag in before prev after; do
  code=$([ $tag = before ] && echo "$OLD" || ([ $tag = prev ] && echo "$PREV" || echo "$PWD"))
  rm -rf /tmp/inspect-$tag
  # -P: no current folder on sys.path, so PYTHONPATH decides which edgeproj runs; the summary is the last line
  PYTHONPATH=$code python -P -m edgeproj inspect "$B" --source "$VIDEO" --max-frames 150 --out /tmp/inspect-$tag --json -q \
    | tail -n 1 > $out/inspect-demo-$tag.json
done
python -m edgeproj bench "$B" --frame-sizes 256,1024 --out $out/bench-line-gray.json -q
python -m edgeproj bench "$RGB" --frame-sizes 256,1024 --out $out/bench-line-rgb.json -q
python benchmarks/train_speed.py --steps 20 > $out/train-speed.json
# The fixed-iteration figure of the tree before issue 15, and the peak memory of the tree before lanes
# (from /tmp, so that `python -m` in the memory children cannot pick up this checkout).
PYTHONPATH=$OLD python -P -m edgeproj bench "$B" --out $out/bench-before.json -q
(cd /tmp && PYTHONPATH=$PREV python -c "import json, sys; from pathlib import Path; from edgeproj.bench.memory import compare_peak_memory; \
print(json.dumps(compare_peak_memory(Path(sys.argv[1]), 256)))" "$B") > $out/memory-prev.json
# The step graph as exported now (LeakyRelu's mask read from its output, so Conv+LeakyRelu fuse) against
# the same run's graph as exported before, alternating single-threaded rounds at batch 1.
rm -rf /tmp/issue15-reexport && python -m edgeproj export "$DEMO/work/runs/grid-l2ae" --out /tmp/issue15-reexport -q
python benchmarks/step_ab.py "$B" /tmp/issue15-reexport > $out/step-graph-ab.json
# Step size against iterations and pixel AUROC (PHOTOS: the folder of scripts/photo_textures.py; the
# slab bundle next to the RGB one).
python benchmarks/step_size_sweep.py 0.05,0.07,0.1,0.15 \
  $DEMO/work/bundles/{grid-l2ae:$DEMO/data:grid,grid-dsae:$DEMO/data:grid,stone-l2ae:$DEMO/data:stone,stone-dsae:$DEMO/data:stone} \
  "$(dirname "$RGB")/slab-after_rule:${PHOTOS:?}:slab" "$RGB:$PHOTOS:weave" --out $out/step-size-sweep.json
# The largest lane batch (--batch) against peak memory and frames per second.
python benchmarks/lane_batch.py "$B" > $out/lane-batch.json
