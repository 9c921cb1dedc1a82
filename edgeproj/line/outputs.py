"""The line's local outputs, fed on the line thread with each judged frame's overlay: saved PNGs, the video, the window.

Unlike the live page and MQTT (edgeproj.line.sinks), these are synchronous: the overlay is drawn once
for all of them, saved files are named in the frame's database row, and an error of the video or the
window ends the run as before (a saved-frame error is counted and raises one alarm instead).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeproj import overlays
from edgeproj.errors import ConfigError, EdgeprojError
from edgeproj.runtime.verdict import NG, OK, Verdict

log = logging.getLogger("edgeproj.line")

Saved = tuple[str | None, str | None]  # map PNG, overlay PNG: the paths a frame's row names
NOT_SAVED: Saved = (None, None)


@dataclass(frozen=True)
class Shot:
    """One judged frame as the outputs see it: its overlay (BGR uint8), map (NaN as 0) and verdict."""

    stem: str  # file name stem, unique in the run
    overlay: np.ndarray
    amap: np.ndarray
    vmax: float | None  # the map value drawn as the hottest colour
    verdict: str
    score: float


class OverlaySink(Protocol):
    """A local output of the overlay; `SavedFrames`, `VideoFile` and `Window` implement it."""

    def wants(self, verdict: Verdict) -> bool:
        """Whether this frame's overlay is needed here (an overlay no output wants is never drawn)."""

    def write(self, shot: Shot) -> Saved | None:
        """Take the frame; an output that keeps files returns their paths for the frame's row."""

    def close(self) -> None:
        """Release files and windows."""


class SavedFrames:
    """Map/overlay PNGs under OUT/frames for NG and FAULT frames (every frame with `save_all`), at most
    `keep` pairs (the oldest deleted, earlier runs included)."""

    def __init__(self, folder: Path, keep: int, save_all: bool = False):
        self.folder = folder
        self.keep = keep
        self.save_all = save_all
        existing = sorted(folder.glob("*_overlay.png"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
        self.saved: deque[Path] = deque(p.with_name(p.name.replace("_overlay.png", "")) for p in existing)
        self.errors = 0

    def wants(self, verdict: Verdict) -> bool:
        return verdict.rejected or self.save_all

    def write(self, shot: Shot) -> Saved:
        """Write one pair; on a storage error count it, raise one alarm, and return no paths."""
        if self.keep == 0:
            return NOT_SAVED
        base = self.folder / shot.stem
        map_path, overlay_path = base.with_name(f"{shot.stem}_map.png"), base.with_name(f"{shot.stem}_overlay.png")
        try:
            overlays.write(map_path, overlays.heatmap(shot.amap, shot.vmax))
            overlays.write(overlay_path, shot.overlay)
        except (OSError, EdgeprojError) as exc:
            if self.errors == 0:
                log.error("ALARM: cannot save frame images under %s (%s); verdicts go on", self.folder, exc)
            self.errors += 1
            return NOT_SAVED
        self.saved.append(base)
        while len(self.saved) > self.keep:
            old = self.saved.popleft()
            for suffix in ("_map.png", "_overlay.png"):
                old.with_name(old.name + suffix).unlink(missing_ok=True)
        return str(map_path), str(overlay_path)

    def close(self) -> None:
        pass


class VideoFile:
    """An annotated overlay video (.avi: MJPG, .mp4: mp4v, 10 frames/s), opened at the first frame's size."""

    def __init__(self, path: Path):
        self.path = path
        self._writer = None

    def wants(self, verdict: Verdict) -> bool:
        return True

    def write(self, shot: Shot) -> None:
        if self._writer is None:
            self._writer = _video_writer(self.path, shot.overlay.shape[1], shot.overlay.shape[0])
        self._writer.write(annotate(shot.overlay, shot.verdict, shot.score))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


class Window:
    """An OpenCV window with the annotated overlay; closing it with `q` stops the run like a signal."""

    def __init__(self, stop):
        self.stop = stop  # edgeproj.line.pipeline.StopFlag

    @staticmethod
    def check() -> None:
        """ConfigError unless this OpenCV build can open a window (checked before the run starts)."""
        import cv2

        if "GUI:                           NONE" in cv2.getBuildInformation() or not hasattr(cv2, "imshow"):
            raise ConfigError("--show needs an OpenCV build with GUI support; this one is headless (opencv-python-headless)")

    def wants(self, verdict: Verdict) -> bool:
        return True

    def write(self, shot: Shot) -> None:
        import cv2

        cv2.imshow("edgeproj inspect", annotate(shot.overlay, shot.verdict, shot.score))
        if cv2.waitKey(1) & 0xFF == ord("q"):
            self.stop.reason = "window closed"
            self.stop.event.set()

    def close(self) -> None:
        import cv2

        cv2.destroyAllWindows()


class OverlaySinks:
    """The local outputs behind one call per frame: draws the overlay once, when one of them wants it."""

    def __init__(self, sinks: list[OverlaySink], pixel_threshold: float | None):
        self.sinks = sinks
        self.pixel_threshold = pixel_threshold
        self.vmax = overlays.colour_top(pixel_threshold)

    def write(self, stem: str, image: np.ndarray, amap: np.ndarray, score: float, verdict: Verdict) -> Saved:
        """Feed the outputs that want this frame, in order; the saved files' paths (or none)."""
        wanting = [s for s in self.sinks if s.wants(verdict)]
        if not wanting:
            return NOT_SAVED
        amap = np.nan_to_num(amap, nan=0.0)
        over = overlays.overlay(image, amap, self.pixel_threshold, vmax=self.vmax)
        shot = Shot(stem, over, amap, self.vmax, verdict.verdict, score)
        saved = NOT_SAVED
        for s in wanting:
            saved = s.write(shot) or saved
        return saved

    @property
    def image_write_errors(self) -> int:
        return sum(getattr(s, "errors", 0) for s in self.sinks)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def _video_writer(path: Path, w: int, h: int):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix.lower() == ".mp4" else "MJPG"))
    vw = cv2.VideoWriter(str(path), fourcc, 10.0, (w, h))
    if not vw.isOpened():
        raise ConfigError(f"cannot write video '{path}': use .avi (MJPG) or .mp4")
    return vw


def annotate(bgr: np.ndarray, verdict: str, score: float) -> np.ndarray:
    """A copy of `bgr` with the verdict and score written in its corner (green OK, red NG, amber FAULT)."""
    import cv2

    out = bgr.copy()
    color = (0, 200, 0) if verdict == OK else ((0, 0, 255) if verdict == NG else (0, 165, 255))
    cv2.putText(out, f"{verdict} {score:.3f}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, color, 2)
    return out
