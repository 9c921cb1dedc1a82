"""Result sinks beside the SQLite store: the live page and MQTT, fed by the line without waiting on them.

`open_sinks` starts the sinks a run's SinkOptions (edgeproj.line.options) name.

A sink takes every frame's row (a dict, whatever fields the row has) with `publish`, run-level facts
(run id, source, thresholds, bundle checksum) with `status`, and ends with `close`. `publish` is called on
the line thread, so it only hands the row over (a bounded queue, a one-slot buffer) and returns; the
work happens on the sink's own threads. A sink never raises into the line from `publish`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeproj.errors import ConfigError
from edgeproj.line.options import SinkOptions

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

    @property
    def urls(self) -> list[str]:
        """The pages a person can open (the live page's address)."""
        return [s.url for s in self.sinks if hasattr(s, "url")]

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def open_sinks(options: SinkOptions, out_dir: Path, title: str, image_threshold, pixel_threshold) -> Sinks:
    """The live page and the MQTT publisher `options` ask for, started (ConfigError on a bad option).

    The MQTT spool is OUT/mqtt-spool.sqlite; `title` and the thresholds are shown on the live page.
    """
    sinks = Sinks()
    try:
        if options.mqtt:
            from edgeproj.line.mqtt import MqttPublisher, parse_mqtt_url

            m = options.mqtt
            cfg = parse_mqtt_url(m.url, username=m.user, password=m.password(), ca_file=m.ca, cert_file=m.cert,
                                 key_file=m.key, insecure=m.insecure)  # fmt: skip
            sinks.add(MqttPublisher(cfg, out_dir / "mqtt-spool.sqlite", spool_max=m.spool).start())
        if options.live:
            from edgeproj.line.live import LivePage, parse_listen

            host, port = parse_listen(options.live.listen)
            page = LivePage(host, port, token=options.live.token, image_threshold=image_threshold,
                            pixel_threshold=pixel_threshold, title=title)  # fmt: skip
            sinks.add(page.start())
    except ImportError as exc:
        sinks.close()
        raise ConfigError(
            f"--serve and --mqtt need the line extra ({exc.name} is missing): pip install 'edgeproj[line]'"
        ) from None
    except BaseException:
        sinks.close()
        raise
    return sinks


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
