#!/usr/bin/env python
"""Where a CPU training step spends its time, and what channels-last and bf16 autocast change.

Times `steps` optimizer steps (batch 16, 128x128 crops, L2AE by default) for each combination of
memory format (NCHW, channels-last) and precision (fp32, bf16 autocast), gray and RGB, after warm-up,
in one process; then the data path alone (PatchDataset items for one batch). Prints JSON.

    python benchmarks/train_speed.py --steps 30 > benchmarks/train-speed.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def step_time(variant: str, channels: int, channels_last: bool, bf16: bool, steps: int, batch: int) -> dict:
    from edgeproj.models.autoencoder import build_model
    from edgeproj.models.config import ModelConfig

    torch.manual_seed(0)
    model = build_model(ModelConfig(variant=variant, channels=channels))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, channels, 128, 128).to(memory_format=fmt)
    losses = []

    def one() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = model(x, loss=True)
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        opt.step()
        return float(loss.detach())

    for _ in range(3):
        one()
    t = time.perf_counter()
    for _ in range(steps):
        losses.append(one())
    ms = (time.perf_counter() - t) * 1000 / steps
    return {"channels": channels, "channels_last": channels_last, "bf16": bf16, "step_ms": ms,
            "samples_per_s": 1000 * batch / ms, "last_loss": losses[-1]}  # fmt: skip


def data_time(batch: int, resize: int, channels: int) -> dict:
    from edgeproj.preprocess import Preprocess
    from edgeproj.training.dataset import PatchDataset

    pre = Preprocess(mode="texture", resize=resize, channels=channels)
    imgs = [np.random.default_rng(i).random((resize, resize, channels), dtype=np.float32) for i in range(8)]
    ds = PatchDataset(imgs, pre, length=10_000, seed=0)
    t = time.perf_counter()
    for i in range(batch * 20):
        ds[i]
    return {"resize": resize, "channels": channels, "batch_ms": (time.perf_counter() - t) * 1000 / 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--variant", default="l2ae")
    args = ap.parse_args()
    rows = []
    for channels in (1, 3):
        for cl in (False, True):
            for bf16 in (False, True):
                rows.append(step_time(args.variant, channels, cl, bf16, args.steps, args.batch))
    data = [data_time(args.batch, r, c) for r in (256, 512) for c in (1, 3)]
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "cpu_capability": torch.backends.cpu.get_cpu_capability(), "variant": args.variant,
                      "batch": args.batch, "steps": rows, "data": data}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
