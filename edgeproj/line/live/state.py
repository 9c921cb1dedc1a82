"""What the live page shows, shared by the line (which writes rows), the renderer (images) and the web app (reads).

The line's side is O(1): a row is counted and its frame left in a one-slot buffer (the newest wins:
frames are dropped for the page, never for the line). The renderer turns the buffer into JPEGs and
commits the page's state as one JSON text with a version; the web app serves that text as it is.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable

import numpy as np

from edgeproj.jsonio import strict_json
from edgeproj.line.sinks import LineStats

NG_META = ("seq", "name", "score", "verdict", "capture_ts", "wall_ts")  # what an NG thumbnail's caption may show


class LiveState:
    """The page's state. `info` holds run-level facts (title, thresholds, run id, alarm, gate counts)."""

    def __init__(self, info: dict, history: int = 300, ng_keep: int = 8):
        self.info = info
        self.line = LineStats()
        self.lock = threading.Lock()
        self.new = threading.Event()  # set when there is something to render
        self.on_commit: Callable[[], None] | None = None  # the web app's wake-up for its event streams
        self.counters = collections.Counter(rendered=0, skipped=0, render_errors=0)
        self.frame_jpeg: bytes | None = None
        self.ng_jpeg: dict[int, bytes] = {}
        self.json = "{}"  # the committed state, served as it is
        self.version = 0
        self._latest: tuple | None = None  # (row, image, map): the one-slot buffer
        self._last_row: dict | None = None
        self._history: collections.deque = collections.deque(maxlen=history)
        self._ng_pending: collections.deque = collections.deque(maxlen=ng_keep)
        self._ng: collections.deque = collections.deque(maxlen=ng_keep)  # (key, meta)
        self._frame_v = 0
        self._ng_seq = 0

    # ---- the line's side (any thread) -------------------------------------------------------------

    def publish(self, row: dict, image: np.ndarray | None = None, anomaly_map: np.ndarray | None = None) -> None:
        """Count the row and leave the frame in the one-slot buffer; O(1), never waits on the page."""
        self.line.add(row)
        score = row.get("score")
        point = (
            row.get("seq"),
            float(score) if isinstance(score, int | float) and np.isfinite(score) else None,
            row.get("verdict"),
        )
        with self.lock:
            self._history.append(point)
            self._last_row = row
            if image is not None:
                if self._latest is not None:
                    self.counters["skipped"] += 1
                self._latest = (row, image, anomaly_map)
                if row.get("verdict") in ("NG", "FAULT"):
                    self._ng_pending.append((row, image, anomaly_map))
        self.new.set()

    def status(self, **info) -> None:
        """Merge run-level facts into `info`."""
        with self.lock:
            self.info.update(info)
        self.new.set()

    # ---- the renderer's side ---------------------------------------------------------------------

    def take(self) -> tuple[tuple | None, list[tuple], dict]:
        """Empty the buffers: the latest frame (or None), the NG/FAULT frames since, and a copy of `info`."""
        with self.lock:
            latest, self._latest = self._latest, None
            pending = list(self._ng_pending)
            self._ng_pending.clear()
            return latest, pending, dict(self.info)

    def set_frame(self, jpeg: bytes) -> None:
        self.frame_jpeg = jpeg
        self._frame_v += 1

    def add_ng(self, row: dict, jpeg: bytes) -> None:
        """A new NG thumbnail; the oldest beyond `ng_keep` is forgotten with its image."""
        self._ng_seq += 1
        key = self._ng_seq
        self.ng_jpeg[key] = jpeg
        self._ng.append((key, {k: row.get(k) for k in NG_META}))
        live = {k for k, _ in self._ng}
        for old in [k for k in self.ng_jpeg if k not in live]:
            del self.ng_jpeg[old]

    def commit(self, info: dict) -> None:
        """Publish the state as the next version of the JSON the page reads, and wake the page's streams."""
        self.json = json.dumps(strict_json(self._snapshot(info)), allow_nan=False)
        self.version += 1
        if self.on_commit is not None:
            self.on_commit()

    def _snapshot(self, info: dict) -> dict:
        with self.lock:
            history = list(self._history)
            row = self._last_row
        return {
            "v": self.version + 1,
            "info": info,
            "stats": self.line.snapshot(),
            "row": row,
            "history": history,
            "frame_v": self._frame_v if self.frame_jpeg else 0,
            "ng": [{"key": k} | meta for k, meta in reversed(self._ng)],
            "page": dict(self.counters),
        }
