#!/usr/bin/env bash
# Issue 15's figures, one session, in this order (2-core CPU, nothing else running).
#   DEMO: an `edgeproj demo --out DEMO` folder (its calibrated grid-l2ae bundle and data)
#   RGB:  an RGB bundle (the real-photo 'weave' bundle of scripts/user_line_study.py)
#   OLD:  a checkout of the commit before the change (for `inspect`), e.g. git worktree add OLD b88c388
#   VIDEO: 256x256 frames of the demo line (400 frames)
set -euo pipefail
DEMO=${DEMO:?} RGB=${RGB:?} OLD=${OLD:?} VIDEO=${VIDEO:?}
B=$DEMO/work/bundles/grid-l2ae
out=benchmarks
python benchmarks/line_speed.py "$B" --data "$DEMO/data" -c grid > $out/line-speed-demo.json
for code in "$OLD" "$PWD"; do
  tag=$([ "$code" = "$OLD" ] && echo before || echo after)
  rm -rf /tmp/inspect-$tag
  # -P: no current folder on sys.path, so PYTHONPATH decides which edgeproj runs; the summary is the last line
  PYTHONPATH=$code python -P -m edgeproj inspect "$B" --source "$VIDEO" --max-frames 150 --out /tmp/inspect-$tag --json -q \
    | tail -n 1 > $out/inspect-demo-$tag.json
done
python -m edgeproj bench "$B" --frame-sizes 256,1024 --out $out/bench-line-gray.json -q
python -m edgeproj bench "$RGB" --frame-sizes 256,1024 --out $out/bench-line-rgb.json -q
python benchmarks/train_speed.py --steps 20 > $out/train-speed.json
