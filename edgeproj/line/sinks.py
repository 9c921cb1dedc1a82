"""Result sinks beside the SQLite store: the live page and MQTT, fed by the line without waiting on them.

A sink takes every frame's row (a dict, whatever fields the row has) with `publish`, run-level facts
(run id, source, thresholds, bundle checksum) with `status`, and ends with `close`. `publish` is called on
the line thread, so it only hands the row over (a bounded queue, a one-slot buffer) and returns; the
work happens on the sink's own threads. A sink never raises into the line from `publish`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Protocol

import numpy as np

VERDICTS = ("OK", "NG", "FAULT")


class Sink(Protocol):
    """What the inspection loop calls; `MqttPublisher` and `LivePage` implement it."""

    def status(self, **info) -> None:
        """Run-level facts merged into the sink's status (run_id, source, image_threshold, bundle_sha256...)."""

    def publish(self, row: dict, image: np.ndarray | None = None, anomaly_map: np.ndarray | None = None) -> None:
        """One processed frame: its row, and optionally the image and its anomaly map.

        `image` is the judged (ROI) frame as the sources deliver it (HxWxC float32 in [0, 1], RGB or gray),
        or an already rendered uint8 BGR picture; `anomaly_map` is HxW float. The arrays are kept by
        reference, not copied: the caller must not modify them afterwards.
        """

    def stats(self) -> dict:
        """Counters of the sink itself (sent, dropped, spooled...), JSON-ready."""

    def close(self) -> None:
        """Flush what can be flushed within the sink's own time limit and stop its threads."""


class Sinks:
    """Several sinks behind one: the loop calls this once per frame. An exception in one is not the line's."""

    def __init__(self, sinks: list[Sink] | None = None):
        self.sinks = list(sinks or [])
        self.errors = 0

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def add(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def status(self, **info) -> None:
        for s in self.sinks:
            try:
                s.status(**info)
            except Exception:  # as in publish: counted, never the line's problem
                self.errors += 1

    def publish(self, row: dict, image: np.ndarray | None = None, anomaly_map: np.ndarray | None = None) -> None:
        for s in self.sinks:
            try:
                s.publish(row, image, anomaly_map)
            except Exception:  # a sink's bug must not stop the line; counted, visible in stats()
                self.errors += 1

    def stats(self) -> dict:
        return {type(s).__name__: s.stats() for s in self.sinks} | {"sink_errors": self.errors}

    def close(self) -> None:
        for s in self.sinks:
            s.close()


class LineStats:
    """Counts by verdict, frames per second (sliding window) and latency percentiles; thread-safe.

    `add` is O(1) and runs on the line thread; `snapshot` computes the percentiles on the caller's thread.
    """

    def __init__(self, window_s: float = 5.0, latency_window: int = 1000, clock=time.monotonic):
        self.window_s = window_s
        self.clock = clock
        self.counts: Counter = Counter({v: 0 for v in VERDICTS})
        self.frames = 0
        self._arrivals: deque = deque(maxlen=10_000)
        self._latencies: deque = deque(maxlen=latency_window)
        self._t0: float | None = None
        self._lock = threading.Lock()

    def add(self, row: dict) -> None:
        now = self.clock()
        with self._lock:
            if self._t0 is None:
                self._t0 = now
            self.frames += 1
            self.counts[str(row.get("verdict", "?"))] += 1
            self._arrivals.append(now)
            lat = row.get("latency_ms")
            if isinstance(lat, int | float) and np.isfinite(lat):
                self._latencies.append(float(lat))

    def snapshot(self) -> dict:
        now = self.clock()
        with self._lock:
            counts = dict(self.counts)
            frames = self.frames
            recent = [t for t in self._arrivals if now - t <= self.window_s]
            lat = np.array(self._latencies, dtype=np.float64)
            span = min(self.window_s, now - self._t0) if self._t0 is not None else 0.0
        fps = len(recent) / span if span > 0 else 0.0
        return {
            "frames": frames,
            "counts": counts,
            "fps": round(fps, 3),
            "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_ms_p99": float(np.percentile(lat, 99)) if lat.size else None,
        }
