"""The timed work every bench figure shares: its input batch and the latency statistics of its timings."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack

import numpy as np

from edgeproj.runtime.manifest import Manifest


def bench_inputs(manifest: Manifest, batch: int, seed: int = 0) -> np.ndarray:
    """A batch of smooth random images in the data range, shaped for the bundle."""
    rng = np.random.default_rng(seed)
    c, s = manifest.channels, manifest.size
    # The work per step does not depend on the content, so any image in range times the same.
    return np.clip(0.5 + 0.15 * rng.standard_normal((batch, c, s, s)), 0, 1).astype(np.float32)


def latency_stats(ms: list[float]) -> dict:
    """min, mean and percentiles (p50, p90, p95, p99) of latencies in ms."""
    a = np.asarray(ms)
    return {
        "min": float(a.min()),
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
    }


class TimedLoop:
    """One configuration's loop in the interleaved rounds: opened and warmed up on entry (the subclass),
    closed on exit, one timed projection per `once()`; `latencies` holds each round's ms."""

    name: str

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.error: str | None = None  # set when a timed round failed: the row reports it instead of figures
        self._close = ExitStack()

    def __exit__(self, *exc) -> None:
        self._close.close()

    def _timed(self, run: Callable[[], object]) -> float:
        t = time.perf_counter()
        run()
        self.latencies.append((time.perf_counter() - t) * 1000)
        return self.latencies[-1]
