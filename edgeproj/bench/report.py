"""The bench report: its rows, the line figure and the conditions they were measured in, and its JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeproj.bench.line import line_summary
from edgeproj.bench.rounds import NOISY_FACTOR, CpuLoad, Spread
from edgeproj.bench.rows import BenchRow


@dataclass
class BenchReport:
    """What `edgeproj bench` measured; `as_json()` is the report file, written from here only."""

    bundle: str
    variant: str
    iterations: int  # per timed projection
    warmup: int
    repeats: int  # interleaved rounds: one timed projection of every configuration per round
    flops: float | None  # per iteration and sample
    conv_gflops: Spread | None  # ONNX Runtime's own 3x3 Conv here: what the hardware gives ORT
    system: dict
    rows: list[BenchRow]
    unavailable: dict[str, str]  # configuration -> why it cannot run here
    loads: dict[str, CpuLoad] = field(default_factory=dict)  # "b<batch>" -> what else ran during its rounds
    line: dict | None = None

    def summary(self) -> dict:
        """The runtime's figures per configuration and batch (a noisy figure is None, with its reason), and the line's."""
        out = {f"{r.backend}_b{r.batch}": r.summary() for r in self.rows if r.measured and not r.backend.startswith("torch-")}
        if self.line:
            out["line"] = line_summary(self.line)
        return out

    def as_json(self) -> dict:
        doc = {
            "bundle": self.bundle,
            "variant": self.variant,
            "iterations_per_projection": self.iterations,
            "warmup_iterations": self.warmup,
            "repeats": self.repeats,
            "rounds": "interleaved",
            "noisy_factor": NOISY_FACTOR,
            "flops_per_iteration": self.flops,
            "reference_conv_gflops": self.conv_gflops.median if self.conv_gflops else None,
            "reference_conv_gflops_spread": self.conv_gflops.as_json() if self.conv_gflops else None,
            "system": self.system,
            "load": {k: v.as_json() for k, v in self.loads.items()},
            "results": [r.as_json() for r in self.rows],
            "unavailable": self.unavailable,
            "summary": self.summary(),
        }
        if self.line is not None:
            doc["line"] = self.line
        return doc
