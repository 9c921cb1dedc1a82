#!/usr/bin/env python
"""Issue 15's line-speed investigation: frames per second of the demo's 256x256 frames, path by path.

In one process, on the same frames (the bundle's normal training images, or --frames), stop rules on,
the paths --rounds times in alternation (each path's figure is its median round):

  split: full result          forward and update graphs (a tile the stop rule ends pays for the forward
                              only), the full ImageResult (baseline map, projection and reconstruction)
  split: lean                 only what a verdict needs (`Projector.project(lean=True)`)
  split: lean, stream         and the next frame in flight (`Projector.stream`, what `inspect` runs)
  step graph: lean, stream    the same, each probe running the whole step graph (bundles without the
                              split; the cost of the line before the split)
  threads=2: lean             one two-threaded session instead of two single-threaded lanes
  torch eager                 the same tiles and stop rules in eager PyTorch (edgeproj.bench.line)

and the pixel AUROC of the demo test set (--data, -c) through the split and the step-graph paths.
The figures of the trees before (issue 15's baseline, the previous stop) come from
`benchmarks/issue15.sh` (`edgeproj inspect` and `benchmarks/pixel_auroc.py` on each tree).

    python benchmarks/line_speed.py BUNDLE --data DEMO_DATA -c grid > benchmarks/line-speed-demo.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def fps(proj, frames, lean: bool, per_call: int = 1, warmup: int = 2, stream: bool = False) -> dict:
    for f in frames[:warmup]:
        proj.project([f], lean=lean)
    if stream:  # the line path: tiles of the next frame start while this frame's last tiles finish
        t = time.perf_counter()
        iters = [i for r in proj.stream(frames, lean=lean) for i in r.iterations]
        wall = time.perf_counter() - t
        return {"fps": len(frames) / wall, "ms_mean": wall * 1000 / len(frames), "iterations_per_tile": float(np.mean(iters))}
    lat = []
    iters = []
    for i in range(0, len(frames) - per_call + 1, per_call):
        t = time.perf_counter()
        res = proj.project(frames[i : i + per_call], lean=lean)
        lat.append((time.perf_counter() - t) * 1000 / per_call)
        for r in res:
            iters += r.iterations
    a = np.asarray(lat)
    return {"fps": 1000 / a.mean(), "ms_mean": a.mean(), "ms_p50": float(np.percentile(a, 50)),
            "ms_p99": float(np.percentile(a, 99)), "iterations_per_tile": float(np.mean(iters))}  # fmt: skip


def main() -> None:
    from edgeproj.bench.line import bench_line_torch, line_frames
    from edgeproj.preprocess import to_patches
    from edgeproj.runtime import Projector, load_manifest
    from edgeproj.runtime.backends import backend_options

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--data", type=Path)
    ap.add_argument("-c", "--category")
    args = ap.parse_args()
    m = load_manifest(args.bundle)
    frames, source = line_frames(m, args.size, args.frames + 2)
    tiles = len(to_patches(frames[0], m.preprocess)[0])
    out: dict = {"bundle": str(args.bundle), "frames": source, "tiles_per_frame": tiles, "paths": {}}
    split, whole = Projector(m, batch=tiles), Projector(m, batch=tiles, options=backend_options("ort-cpu", whole_step=True))
    with split, whole:
        # One untimed pass over every frame first: ONNX Runtime's first run of each input shape is slow, and
        # the stop rules make many shapes (the active tiles of each lane).
        fps(split, frames, lean=False)
        fps(whole, frames, lean=False)
        rounds: dict[str, list[dict]] = {}
        paths = (
            ("split: full result", split, False, False),
            ("split: lean", split, True, False),
            ("split: lean, stream", split, True, True),
            ("step graph: lean, stream", whole, True, True),
        )
        for _ in range(args.rounds):
            for name, proj, lean, stream in paths:
                rounds.setdefault(name, []).append(fps(proj, frames, lean=lean, stream=stream))
        for name, rs in rounds.items():
            med = sorted(rs, key=lambda r: r["fps"])[len(rs) // 2]
            out["paths"][name] = med | {"fps_rounds": [r["fps"] for r in rs]}
    with Projector(m, batch=tiles, options=backend_options("ort-cpu", threads=2)) as proj:
        fps(proj, frames, lean=True)
        out["paths"]["threads=2: lean"] = fps(proj, frames, lean=True)
    t = bench_line_torch(m, frames, 2)
    out["paths"]["torch eager"] = {"fps": t["fps"], "ms_p50": t["latency_ms"]["p50"], "ms_p99": t["latency_ms"]["p99"],
                                   "iterations_per_tile": t["iterations_per_tile"]}  # fmt: skip
    base = out["paths"]["step graph: lean, stream"]["fps"]
    for row in out["paths"].values():
        row["x_step_graph"] = row["fps"] / base
    if args.data and args.category:
        from edgeproj.evaluation.testset import load_testset
        from edgeproj.metrics import roc_auc

        ts = load_testset(args.data, args.category, m.preprocess)
        labels = np.concatenate([k.ravel() for k in ts.masks])
        auroc = {}
        for name, whole_step in (("split", False), ("step graph", True)):
            with Projector(m, options=backend_options("ort-cpu", whole_step=whole_step)) as proj:
                maps = [r.projection_map for r in proj.project(ts.images, lean=True)]
            auroc[name] = roc_auc(labels, np.concatenate([x.ravel() for x in maps]))
        out["pixel_auroc"] = auroc
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
