#!/usr/bin/env python
"""Largest lane batch (`--batch`) against peak memory and frames per second on the line path.

Peak resident memory of a fresh child per batch size (streaming 10 frames, two in flight, as `inspect`),
then frames per second of every batch size in alternating rounds in one process. Prints JSON.

    python benchmarks/lane_batch.py BUNDLE > benchmarks/lane-batch.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

BATCHES = (9, 2, 1)


def child(bundle: str, batch: int) -> float:
    from edgeproj.bench.line import line_frames
    from edgeproj.bench.memory import peak_rss_mb
    from edgeproj.runtime import Projector, load_manifest

    m = load_manifest(bundle)
    frames, _ = line_frames(m, 256, 10)
    with Projector(m, batch=batch) as proj:
        for _ in proj.stream(frames, lean=True):
            pass
    return peak_rss_mb()


def main() -> None:
    if sys.argv[1] == "--child":
        print(child(sys.argv[2], int(sys.argv[3])))
        return
    from edgeproj.bench.line import line_frames
    from edgeproj.runtime import Projector, load_manifest

    bundle = sys.argv[1]
    out: dict = {"bundle": bundle, "peak_rss_mb": {}, "fps_rounds": {}}
    for b in BATCHES:
        run = subprocess.run([sys.executable, __file__, "--child", bundle, str(b)], capture_output=True, text=True, check=True)
        out["peak_rss_mb"][b] = float(run.stdout.split()[-1])
    m = load_manifest(bundle)
    frames, out["frames"] = line_frames(m, 256, 24)
    projectors = {b: Projector(m, batch=b) for b in BATCHES}
    for p in projectors.values():
        p.open()
        for _ in p.stream(frames, lean=True):  # warm-up pass
            pass
    for _ in range(4):
        for b, p in projectors.items():
            t = time.perf_counter()
            for _ in p.stream(frames, lean=True):
                pass
            out["fps_rounds"].setdefault(b, []).append(len(frames) / (time.perf_counter() - t))
    for p in projectors.values():
        p.close()
    out["fps_median"] = {b: float(np.median(r)) for b, r in out["fps_rounds"].items()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
