#!/usr/bin/env python
"""Where a step graph's time goes: ONNX Runtime's profile of one graph of a bundle, per op type.

One thread, the given batch, 30 runs (stop rules play no part: one graph run is profiled).

    python benchmarks/profile_step.py BUNDLE [--graph step|forward|update] [--batch 4]
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np


def main() -> None:
    import onnxruntime as ort

    from edgeproj import contract
    from edgeproj.runtime import load_manifest
    from edgeproj.runtime.backends.base import settings_feed

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--graph", default="step", choices=("step", "forward", "update"))
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    m = load_manifest(args.bundle)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.enable_profiling = True
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(m.graph_path(args.graph)), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    x0 = rng.random((args.batch, m.channels, m.size, m.size), np.float32)
    n = args.batch
    values = {contract.X: x0, contract.X0: x0, contract.M: np.zeros_like(x0), contract.V: np.zeros_like(x0),
              contract.STEP: np.zeros(n, np.float32), contract.WEIGHT: np.ones_like(x0),
              contract.ACTIVE: np.ones(n, np.float32), contract.RECON: x0, **settings_feed(m.projection)}  # fmt: skip
    feed = {}
    for i in sess.get_inputs():
        if i.name.startswith(contract.SAVED_PREFIX):  # LeakyReLU signs: about half positive
            shape = [n if isinstance(d, str) else d for d in i.shape]
            feed[i.name] = rng.random(shape) > 0.5
        else:
            feed[i.name] = values[i.name]
    runs = 30
    for _ in range(runs):
        sess.run(None, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    total, count = collections.Counter(), collections.Counter()
    for ev in events:
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            op = ev["args"].get("op_name")
            total[op] += ev["dur"]
            count[op] += 1
    all_us = sum(total.values())
    print(f"{args.graph} graph, batch {n}, one thread: {all_us / runs / 1000:.2f} ms per run")
    for op, us in total.most_common():
        print(f"{op:16s} {us / runs / 1000:7.3f} ms {100 * us / all_us:5.1f}%  {count[op] // runs} nodes")


if __name__ == "__main__":
    main()
