"""What an inspection run did: counts by verdict, capture and storage figures, latency; one JSON form."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgeproj.line.alarm import GateCounts
from edgeproj.runtime.verdict import FAULT, NG, OK

# Written after the run's own figures in the JSON form, in this order (the order `inspect --json` prints).
_TAIL = ("database", "image_threshold", "pixel_threshold", "sinks")


@dataclass
class Summary:
    """The run's figures, updated as frames are judged; `as_json()` is the summary line of `inspect --json`."""

    run_id: str
    source: str
    frames_read: int = 0
    processed: int = 0
    unreadable: int = 0  # frames judged FAULT because they could not be read (never projected)
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    ok: int = 0
    ng: int = 0
    fault: int = 0
    storage_alarms: int = 0
    rows_unstored: int = 0
    rows_lost_from_store: int = 0
    image_write_errors: int = 0
    seconds: float = 0.0
    latencies_ms: list = field(default_factory=list)
    stopped_by: str = "end of source"
    source_error: str = ""
    gate: GateCounts = field(default_factory=GateCounts)  # frames the frame gate stopped, by check; camera alarms
    database: str = ""
    image_threshold: float | None = None
    pixel_threshold: float | None = None
    sinks: dict | None = None  # the live page's and MQTT's own counters, when there were any

    def count(self, verdict: str, latency_ms: float, unreadable: bool) -> None:
        """One judged frame."""
        self.processed += 1
        self.unreadable += unreadable
        self.ok += verdict == OK
        self.ng += verdict == NG
        self.fault += verdict == FAULT
        self.latencies_ms.append(latency_ms)

    def took_capture(self, stats, dropped_at_stop: int) -> None:
        """The capture's figures (edgeproj.line.capture.CaptureStats); frames queued but never judged are dropped."""
        self.frames_read, self.dropped, self.corrupt, self.reconnects = stats.read, stats.dropped, stats.corrupt, stats.reconnects
        self.dropped += dropped_at_stop
        self.source_error = stats.failed

    def took_store(self, rows) -> None:
        """The guarded store's alarms (edgeproj.line.store.GuardedStore), once flushed."""
        self.storage_alarms, self.rows_unstored, self.rows_lost_from_store = rows.alarms, len(rows.pending), rows.lost

    @property
    def fps(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def latency_ms_p50(self) -> float:
        return self._percentile(50)

    @property
    def latency_ms_p99(self) -> float:
        return self._percentile(99)

    def _percentile(self, q: float) -> float:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        return float(np.nanpercentile(lat, q))

    def as_json(self) -> dict:
        """The summary as `inspect --json` writes it (no per-frame latencies; `sinks` only when there were any)."""
        d = {k: v for k, v in self.__dict__.items() if k != "latencies_ms" and k not in _TAIL}
        d |= {"seconds": round(self.seconds, 3), "gate": self.gate.as_json(), "fps": self.fps}
        d |= {"latency_ms_p50": self.latency_ms_p50, "latency_ms_p99": self.latency_ms_p99}
        d |= {"database": self.database, "image_threshold": self.image_threshold, "pixel_threshold": self.pixel_threshold}
        return d | ({"sinks": self.sinks} if self.sinks is not None else {})


class Ticker:
    """Calls `every(summary)` at most every `every_s` seconds (periodic progress lines); a no-op without `every`."""

    def __init__(self, every: Callable[[Summary], None] | None, every_s: float, clock=time.monotonic):
        self.every = every
        self.every_s = every_s
        self.clock = clock
        self.t0 = clock()
        self.next = self.t0 + every_s

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def tick(self, summary: Summary, gate: Callable[[], GateCounts]) -> None:
        if self.every is None or self.clock() < self.next:
            return
        self.next = self.clock() + self.every_s
        summary.seconds = self.elapsed()
        summary.gate = gate()
        self.every(summary)
