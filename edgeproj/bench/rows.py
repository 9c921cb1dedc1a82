"""One bench row (a configuration at a batch size, timed over interleaved rounds) and its JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeproj.bench.rounds import CpuLoad, Spread, noisy_reason, spread_of
from edgeproj.bench.workload import latency_stats

# The ratios a row carries: against the CPU torch loop, and against the torch loop on the row's own device;
# with `bench --compare BUNDLE`, also against the same configuration on the compared bundle (COMPARED).
RATIOS = ("ratio_vs_torch", "ratio_vs_torch_same_device")
COMPARED = "ratio_vs_compared"


@dataclass
class BenchRow:
    """A configuration at one batch size: one timed projection of `iterations` steps per round."""

    backend: str
    batch: int
    iterations: int = 0
    latency_rounds_ms: list[float] = field(default_factory=list)
    device_rounds_ms: list[float] = field(default_factory=list)  # CUDA-event time of the steps alone
    error: str | None = None
    providers: list[str] | None = None
    setup_s: float | None = None
    threads: int | None = None
    torch: str | None = None
    device: str | None = None
    on_gpu: bool = False
    device_memory_mb: float | None = None  # what the configuration takes on the device (GPU rows; None: unknown)
    flops_per_iteration: float | None = None
    # Per-round ratios (this row's iterations/ms over the reference's in the same round), None: no reference.
    ratio_rounds: dict[str, list[float] | None] = field(default_factory=dict)
    load: CpuLoad | None = None  # what else ran on the CPU during these rounds

    @property
    def measured(self) -> bool:
        return self.error is None and bool(self.latency_rounds_ms)

    @property
    def step_ms(self) -> float:
        return float(np.median(self.latency_rounds_ms)) / self.iterations

    @property
    def iterations_per_ms(self) -> float:
        return self.batch / self.step_ms

    @property
    def images_per_s(self) -> float:
        return 1000.0 * self.batch / (self.step_ms * self.iterations)

    @property
    def gflops(self) -> float | None:
        return self.flops_per_iteration * self.iterations_per_ms / 1e6 if self.flops_per_iteration else None

    def ratio(self, name: str) -> float | None:
        """The median over rounds of a per-round ratio (None without a reference)."""
        r = self.ratio_rounds.get(name)
        return float(np.median(r)) if r else None

    def spreads(self) -> dict[str, Spread]:
        """Each figure of the row over its rounds."""
        out = {"iterations_per_ms": spread_of([self.batch * self.iterations / ms for ms in self.latency_rounds_ms])}
        for name in (*RATIOS, COMPARED):
            if self.ratio_rounds.get(name):
                out[name] = spread_of(self.ratio_rounds[name])
        return out

    def noisy(self) -> dict[str, str]:
        """Figures whose rounds disagree by more than NOISY_FACTOR, with the reason."""
        return {k: noisy_reason(s, self.load) for k, s in self.spreads().items() if s.noisy}

    def headline(self, name: str) -> float | None:
        """A figure as a summary may give it: None when it is noisy (or not measured)."""
        if not self.measured or name in self.noisy():
            return None
        return self.iterations_per_ms if name == "iterations_per_ms" else self.ratio(name)

    def as_json(self) -> dict:
        """The row as the report's JSON: today's keys, plus rounds, spread and noisy."""
        out: dict = {"backend": self.backend, "batch": self.batch}
        if not self.measured:
            return out | {"error": self.error or "not measured"}
        facts = {"providers": self.providers, "setup_s": self.setup_s, "threads": self.threads}
        out |= {k: v for k, v in facts.items() if v is not None}
        out |= {
            "step_ms": self.step_ms,
            "iterations_per_ms": self.iterations_per_ms,
            "images_per_s": self.images_per_s,
            "latency_ms": latency_stats(self.latency_rounds_ms),
        }
        if self.device_rounds_ms:
            out["device_ms"] = latency_stats(self.device_rounds_ms)
        out |= {k: v for k, v in {"torch": self.torch, "device": self.device}.items() if v is not None}
        if self.on_gpu:
            out["device_memory_mb"] = self.device_memory_mb
        out |= {name: self.ratio(name) for name in RATIOS}
        if self.ratio_rounds.get(COMPARED):
            out[COMPARED] = self.ratio(COMPARED)
        if self.gflops is not None:
            out["gflops"] = self.gflops
        out["rounds"] = {"latency_ms": self.latency_rounds_ms} | {k: v for k, v in self.ratio_rounds.items() if v}
        out["spread"] = {k: s.as_json() for k, s in self.spreads().items()}
        out["noisy"] = self.noisy()
        return out

    def summary(self) -> dict:
        """The row's entry in the report's summary: a noisy figure is None there, its spread says why."""
        return {
            "iterations_per_ms": None if (v := self.headline("iterations_per_ms")) is None else round(v, 4),
            **{name: self.headline(name) for name in RATIOS},
            "spread": {k: s.as_json() for k, s in self.spreads().items()},
            "noisy": self.noisy(),
        }
