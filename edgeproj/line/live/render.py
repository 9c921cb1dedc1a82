"""The live page's render thread: overlays and JPEGs drawn at most `max_updates_per_s` times a second."""

from __future__ import annotations

import threading
import time

import numpy as np

from edgeproj.line.live.state import LiveState


class Renderer:
    """Draws the latest frame and new NG thumbnails from `state`'s buffers, then commits the state.

    Runs on its own thread, rate-limited: the line is never waiting on it. A frame it cannot draw is
    counted (`render_errors`) and skipped.
    """

    def __init__(self, state: LiveState, max_updates_per_s: float = 10.0, max_width: int = 640, jpeg_quality: int = 85):
        self.state = state
        self.max_updates_per_s = max_updates_per_s
        self.max_width = max_width
        self.jpeg_quality = jpeg_quality
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="edgeproj-live-render", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self.state.new.set()
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def _loop(self) -> None:
        period = 1.0 / self.max_updates_per_s if self.max_updates_per_s > 0 else 0.0
        next_at = 0.0
        state = self.state
        while not self._closing.is_set():
            state.new.wait(1.0)  # also wakes once a second so frames/s decays on an idle line
            if self._closing.is_set():
                break
            now = time.monotonic()
            if now < next_at:
                self._closing.wait(next_at - now)  # rate limit for the page; the line is not waiting
                continue
            state.new.clear()
            next_at = time.monotonic() + period
            latest, pending, info = state.take()
            try:
                self._draw(latest, pending, info.get("pixel_threshold"))
            except Exception:  # a frame the page cannot draw is skipped; the page and the line go on
                state.counters["render_errors"] += 1
            state.commit(info)

    def _draw(self, latest: tuple | None, pending: list[tuple], pix: float | None) -> None:
        from edgeproj.overlays import colour_top

        vmax = colour_top(pix)
        if latest is not None:
            self.state.set_frame(self.encode(latest[1], latest[2], pix, vmax))
        for row, image, amap in pending:
            self.state.add_ng(row, self.encode(image, amap, pix, vmax, width=240))
        self.state.counters["rendered"] += latest is not None

    def encode(self, image, amap, pix, vmax, width: int | None = None) -> bytes:
        """One frame as a JPEG: its overlay when a map is given; scaled to `width` (thumbnails) or the page's width."""
        import cv2

        from edgeproj import overlays

        if amap is not None:
            bgr = overlays.overlay(image, amap, pix, vmax=vmax)
        elif image.dtype != np.uint8:
            bgr = overlays.to_u8(image)
        else:
            bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 or image.shape[2] == 1 else image
        limit = width or self.max_width
        if bgr.shape[1] > limit:
            h = max(1, round(bgr.shape[0] * limit / bgr.shape[1]))
            bgr = cv2.resize(bgr, (limit, h), interpolation=cv2.INTER_AREA)
        elif bgr.shape[1] < 256 and width is None:  # small ROIs: scale up, crisp pixels, for the operator's eye
            f = max(1, 384 // bgr.shape[1])
            bgr = cv2.resize(bgr, (bgr.shape[1] * f, bgr.shape[0] * f), interpolation=cv2.INTER_NEAREST)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return buf.tobytes()
