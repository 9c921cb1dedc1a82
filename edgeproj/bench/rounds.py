"""Interleaved rounds: a figure is the median over rounds, with its spread, and marked noisy when the rounds disagree.

Every configuration is measured once per round, round after round, so a disturbance (another process on
the CPU, a clock change) hits all of them alike; a ratio is taken within each round and then its median.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np

# Rounds of one figure that disagree by more than this (max over min) make it noisy: never a headline.
NOISY_FACTOR = 1.5


@dataclass(frozen=True)
class Spread:
    """A figure over its rounds: the median (the figure) and how far the rounds lie from each other."""

    median: float
    min: float
    max: float
    rounds: int

    @property
    def max_over_min(self) -> float:
        return self.max / self.min if self.min > 0 else float("inf")

    @property
    def rel_half_range(self) -> float:
        """(max - min) / 2 over the median: the "+-" printed next to the figure."""
        return (self.max - self.min) / (2 * self.median) if self.median else 0.0

    @property
    def noisy(self) -> bool:
        return self.max_over_min > NOISY_FACTOR

    def as_json(self) -> dict:
        return asdict(self) | {"max_over_min": self.max_over_min, "rel_half_range": self.rel_half_range}


def spread_of(values: list[float]) -> Spread:
    """The median and range of one figure's per-round values."""
    a = np.asarray(values, dtype=float)
    return Spread(float(np.median(a)), float(a.min()), float(a.max()), len(a))


@dataclass(frozen=True)
class CpuSample:
    """The machine's busy CPU time and this process's own, at one instant (Linux /proc/stat; else None)."""

    wall: float
    busy_s: float | None
    own_s: float
    loadavg: float | None


def cpu_sample() -> CpuSample:
    busy = None
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    t = os.times()
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        load = None
    return CpuSample(time.perf_counter(), busy, t.user + t.system, load)


@dataclass(frozen=True)
class CpuLoad:
    """What else ran on the CPU between two samples: the other processes' share of all cores, the load average."""

    other_share: float | None
    loadavg_before: float | None
    loadavg_after: float | None
    cpu_count: int

    @classmethod
    def between(cls, a: CpuSample, b: CpuSample) -> CpuLoad:
        cores = os.cpu_count() or 1
        share = None
        if a.busy_s is not None and b.busy_s is not None and b.wall > a.wall:
            other = (b.busy_s - a.busy_s) - (b.own_s - a.own_s)
            share = min(1.0, max(0.0, other / ((b.wall - a.wall) * cores)))
        return cls(share, a.loadavg, b.loadavg, cores)

    def as_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        parts = []
        if self.other_share is not None:
            parts.append(f"other processes took {100 * self.other_share:.0f}% of the CPU during these rounds")
        if self.loadavg_after is not None:
            parts.append(f"load average {self.loadavg_before:.1f} -> {self.loadavg_after:.1f} on {self.cpu_count} cores")
        return "; ".join(parts)


QUIET_SHARE = 0.1  # other processes under this share of the CPU: the machine was quiet


def noisy_reason(s: Spread, load: CpuLoad | None) -> str:
    """Why a figure is not given: its rounds disagree, and what else used the CPU meanwhile (measured, so
    a quiet machine is not blamed: then the figure itself varies and longer rounds steady it)."""
    why = f"rounds disagree by {s.max_over_min:.2f}x (max/min over {s.rounds} rounds)"
    extra = load.describe() if load else ""
    share = load.other_share if load else None
    if share is None:
        cause = "another process may have used the CPU"
    elif share >= QUIET_SHARE:
        cause = "another process used the CPU"
    else:
        cause = "no other process used the CPU: the figure itself varies; more --iterations or --repeats steady it"
    return f"{why}; {cause} ({extra})" if extra else f"{why}; {cause}"
