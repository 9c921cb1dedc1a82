#!/usr/bin/env python
"""Issue 15's line-speed investigation: frames per second of the demo's 256x256 frames, path by path.

In one process, on the same frames (the bundle's normal training images, or --frames), stop rules on:

  before        the path of the issue's baseline: x0 evaluated by its own graph run, f(x_T) evaluated
                at the end, the full ImageResult (baseline map, projection and reconstruction images)
  fused         x0 evaluated inside the first step (the CPU runner undoes it for tiles that stop at x0)
  fused+lean    and only what a verdict needs (`Projector.project(lean=True)`), the batch split once between lanes
  lanes take tiles  fused+lean with each lane taking the next tiles as it finishes (`LanePool`)
  lanes, stream fused+lean on lanes with the next frame in flight (`Projector.stream`, what `inspect` runs)
  2 frames/call fused+lean with two consecutive frames in one call (18 tiles in full lanes)
  threads=2     fused+lean with one two-threaded session instead of two single-threaded lanes
  torch eager   the same tiles and stop rules in eager PyTorch (edgeproj.bench.line)

and the pixel AUROC of the demo test set through the `before` and `fused+lean, lanes` paths (--data, -c).

    python benchmarks/line_speed.py BUNDLE --data DEMO_DATA -c grid > benchmarks/line-speed.json
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
    with Projector(m, batch=tiles) as proj:
        # One untimed pass over every frame first: ONNX Runtime plans memory per input shape on its first
        # run, and the stop rules make many shapes (the active tiles of each lane). Then the three paths
        # --rounds times, alternating; each path's figure is its median round (drift and noise show in both).
        fps(proj, frames, lean=False)
        rounds: dict[str, list[dict]] = {}
        pool = proj._pool
        paths = (
            ("before", False, False, None, False),
            ("fused", True, False, None, False),
            ("fused+lean", True, True, None, False),
            ("fused+lean, lanes take tiles", True, True, pool, False),
            ("fused+lean, lanes, stream", True, True, pool, True),
        )
        for _ in range(args.rounds):
            for name, fuse, lean, lanes, stream in paths:
                proj.runner.fuses_first_step = fuse
                proj._pool = lanes  # None: the batch split once between the lanes (the path before lanes)
                rounds.setdefault(name, []).append(fps(proj, frames, lean=lean, stream=stream))
        proj._pool = pool
        for name, rs in rounds.items():
            med = sorted(rs, key=lambda r: r["fps"])[len(rs) // 2]
            out["paths"][name] = med | {"fps_rounds": [r["fps"] for r in rs]}
    with Projector(m, batch=2 * tiles) as proj:
        pool, proj._pool = proj._pool, None  # the static split, as measured before lanes
        fps(proj, frames, lean=True, per_call=2)
        out["paths"]["fused+lean, 2 frames/call"] = fps(proj, frames, lean=True, per_call=2)
        proj._pool = pool
    with Projector(m, batch=tiles, options=backend_options("ort-cpu", threads=2)) as proj:
        fps(proj, frames, lean=True)
        out["paths"]["fused+lean, threads=2"] = fps(proj, frames, lean=True)
    t = bench_line_torch(m, frames, 2)
    out["paths"]["torch eager"] = {"fps": t["fps"], "ms_p50": t["latency_ms"]["p50"], "ms_p99": t["latency_ms"]["p99"],
                                   "iterations_per_tile": t["iterations_per_tile"]}  # fmt: skip
    base = out["paths"]["before"]["fps"]
    for row in out["paths"].values():
        row["x_before"] = row["fps"] / base
    if args.data and args.category:
        from edgeproj.evaluation.testset import load_testset
        from edgeproj.metrics import roc_auc

        ts = load_testset(args.data, args.category, m.preprocess)
        labels = np.concatenate([k.ravel() for k in ts.masks])
        auroc = {}
        with Projector(m) as proj:
            pool = proj._pool
            for name, fuse, lean, lanes in (("before", False, False, None), ("fused+lean, lanes", True, True, pool)):
                proj.runner.fuses_first_step = fuse
                proj._pool = lanes
                maps = [r.map for r in proj.project(ts.images, lean=lean)]
                auroc[name] = roc_auc(labels, np.concatenate([x.ravel() for x in maps]))
            proj._pool = pool
        out["pixel_auroc"] = auroc
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
