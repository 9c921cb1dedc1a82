#!/usr/bin/env python
"""Step-graph time of two bundles of the same run, alternating rounds on one thread (batch 1 and 4).

python benchmarks/step_ab.py OLD_BUNDLE NEW_BUNDLE > benchmarks/step-graph-ab.json
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main() -> None:
    import onnxruntime as ort

    from edgeproj import contract
    from edgeproj.bench.line import line_frames
    from edgeproj.preprocess import to_patches
    from edgeproj.runtime import load_manifest
    from edgeproj.runtime.backends.base import settings_feed

    paths = sys.argv[1:3]
    out: dict = {"bundles": paths, "threads": 1, "batches": {}}
    for batch in (1, 4):
        sessions = []
        for p in paths:
            m = load_manifest(p)
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            s = ort.InferenceSession(str(m.graph_path("step")), so, providers=["CPUExecutionProvider"])
            frame = line_frames(m, 256, 1)[0][0]
            x = np.ascontiguousarray(to_patches(frame, m.preprocess)[0][:batch], np.float32)
            n = len(x)
            feed = {contract.X: x, contract.X0: x.copy(), contract.M: np.zeros_like(x), contract.V: np.zeros_like(x),
                    contract.STEP: np.zeros(n, np.float32), contract.WEIGHT: np.ones_like(x),
                    contract.ACTIVE: np.ones(n, np.float32), **settings_feed(m.projection)}  # fmt: skip
            for _ in range(5):
                s.run(None, feed)
            sessions.append((s, feed))
        rounds: list[list[float]] = [[], []]
        for _ in range(12):
            for i, (s, feed) in enumerate(sessions):
                t = time.perf_counter()
                for _ in range(8):
                    s.run(None, feed)
                rounds[i].append((time.perf_counter() - t) / 8 * 1000)
        med = [float(np.median(r)) for r in rounds]
        out["batches"][str(batch)] = {"step_ms_median": med, "old_over_new": med[0] / med[1]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
