"""A capture thread feeding a bounded queue.

Live sources drop the oldest queued frame when the projection falls behind (counted); file and folder
sources block instead, so they lose nothing. A live source that disappears is reopened with
exponential backoff, and each reconnect is logged and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from edgeproj.line.sources import Frame, FrameSource, SourceLost

log = logging.getLogger("edgeproj.line")
END = object()


@dataclass
class CaptureStats:
    read: int = 0
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    failed: str = ""


class Capture:
    """Runs `source` in a daemon thread; `get()` returns Frames, then END."""

    def __init__(
        self,
        source: FrameSource,
        maxsize: int = 4,
        backoff: tuple[float, float] = (0.5, 8.0),
        max_reconnects: int | None = None,
        sleep: Callable[[float], object] | None = None,
    ):
        self.source = source
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.stats = CaptureStats()
        self.backoff = backoff
        self.max_reconnects = max_reconnects
        self._stop = threading.Event()
        # Backoff waits on the stop event, so a stop signal is not held up by a reconnect delay.
        self.sleep = sleep or self._stop.wait
        self._thread = threading.Thread(target=self._run, name="edgeproj-capture", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> Capture:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def get(self, timeout: float | None = None):
        return self.queue.get(timeout=timeout)

    def _put(self, item) -> None:
        if not self.source.live or item is END:
            while not self._stop.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue
            return
        with self._lock:
            while True:
                try:
                    self.queue.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self.queue.get_nowait()
                        self.stats.dropped += 1
                    except queue.Empty:
                        pass

    def _reopen(self) -> bool:
        """Reopen with exponential backoff; False after `max_reconnects` failed attempts in a row."""
        delay = self.backoff[0]
        attempts = 0
        while not self._stop.is_set():
            if self.max_reconnects is not None and attempts >= self.max_reconnects:
                return False
            attempts += 1
            self.stats.reconnects += 1
            log.warning("source %s lost; reconnect %d in %.1f s", self.source.name, self.stats.reconnects, delay)
            self.sleep(delay)
            try:
                self.source.open()
                return True
            except SourceLost:
                delay = min(delay * 2, self.backoff[1])
        return False

    def _run(self) -> None:
        try:
            try:
                self.source.open()
            except SourceLost:
                if not self._reopen():
                    self.stats.failed = f"cannot open {self.source.name} (after {self.stats.reconnects} attempts)"
                    return
            # Undecodable frames of a video file wait for the next good frame: inside the video they are
            # parts (FAULT), at its end they are the container's frame count running past its last frame.
            held: list[Frame] = []
            while not self._stop.is_set():
                try:
                    frame: Frame | None = self.source.read()
                except SourceLost as exc:
                    log.warning("%s", exc)
                    if not self._reopen():
                        self.stats.failed = str(exc)
                        return
                    continue
                if frame is None:
                    if held:
                        log.warning(
                            "%d undecodable frame(s) at the end of %s not judged: past its last frame",
                            len(held),
                            self.source.name,
                        )
                    return
                self.stats.read += 1
                if frame.image is None:  # queued: an unread part is judged FAULT, never skipped
                    self.stats.corrupt += 1
                    log.warning("corrupt frame %s (FAULT): %s", frame.name or frame.seq, frame.error)
                    if self.source.errors_may_trail:
                        held.append(frame)
                        continue
                for h in held:
                    self._put(h)
                held.clear()
                self._put(frame)
        except Exception as exc:  # surface the reason in the summary instead of dying silently
            self.stats.failed = f"{type(exc).__name__}: {exc}"
        finally:
            self.source.close()
            self._put(END)
