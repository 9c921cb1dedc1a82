"""Frame sources through OpenCV: camera index, V4L2 device, GStreamer pipeline (Jetson CSI preset),
RTSP/HTTP URL, video file, folder or glob of images.

Live sources (cameras, pipelines, URLs) may drop frames and are reopened when they disappear; files and
folders lose nothing and end cleanly.
"""

from __future__ import annotations

import glob as _glob
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeproj.data.images import IMAGE_EXTS, read_image
from edgeproj.errors import DataError


@dataclass
class Frame:
    """One captured frame: image HxWxC float32 [0, 1] (RGB or gray), or None when it was corrupt."""

    seq: int
    image: np.ndarray | None
    wall_ts: float
    mono_ts: float
    name: str = ""
    error: str = ""


class SourceLost(Exception):
    """A live source stopped delivering frames (it will be reopened)."""


def csi_pipeline(sensor: int = 0, width: int = 1920, height: int = 1080, fps: int = 30) -> str:
    """GStreamer pipeline for a Jetson CSI camera through nvarguscamerasrc (needs the system cv2 with GStreamer)."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={width},height={height},"
        f"framerate={fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink max-buffers=1 drop=true sync=false"
    )


def to_model_colors(bgr: np.ndarray, channels: int) -> np.ndarray:
    """An OpenCV frame (uint8/uint16 BGR or gray) as HxWxC float32 in [0, 1], RGB or gray as the bundle wants."""
    scale = 65535.0 if bgr.dtype == np.uint16 else 255.0
    img = bgr.astype(np.float32) / scale
    if img.ndim == 2:
        img = img[:, :, None]
    if channels == 1 and img.shape[2] >= 3:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2GRAY)[:, :, None]
    elif channels == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif channels == 3:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


class FrameSource:
    """Base: `read()` returns the next Frame, or None at the end of a file source."""

    live = False
    name = "source"

    def __init__(self, channels: int):
        self.channels = channels
        self.seq = 0

    def open(self) -> None:
        """(Re)open the underlying device or file."""

    def close(self) -> None:
        """Release it."""

    def read(self) -> Frame | None:
        raise NotImplementedError

    def _frame(self, image, name="", error="") -> Frame:
        f = Frame(self.seq, image, time.time(), time.monotonic(), name, error)
        self.seq += 1
        return f


class FolderSource(FrameSource):
    """Images from a folder or a glob, in name order; a corrupt file becomes a skipped, counted frame."""

    def __init__(self, spec: str, channels: int):
        super().__init__(channels)
        p = Path(spec)
        if p.is_dir():
            self.paths = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTS)
        else:
            self.paths = sorted(Path(q) for q in _glob.glob(spec) if Path(q).suffix.lower() in IMAGE_EXTS)
        if not self.paths:
            raise DataError(f"no images found at '{spec}' (a folder or a glob such as 'dir/*.png')")
        self.name = spec
        self._i = 0

    def read(self) -> Frame | None:
        if self._i >= len(self.paths):
            return None
        path = self.paths[self._i]
        self._i += 1
        try:
            return self._frame(read_image(path, channels=self.channels), name=path.name)
        except DataError as exc:
            return self._frame(None, name=path.name, error=str(exc))


class CaptureSource(FrameSource):
    """cv2.VideoCapture: a video file (lossless, ends cleanly) or a live device/pipeline/URL."""

    def __init__(self, spec, channels: int, live: bool, api: int = cv2.CAP_ANY, name: str | None = None):
        super().__init__(channels)
        self.spec, self.api, self.live = spec, api, live
        self.name = name or str(spec)
        self.cap = None
        self._bad_in_row = 0

    def open(self) -> None:
        self.close()
        cap = cv2.VideoCapture(self.spec, self.api)
        if not cap.isOpened():
            cap.release()
            if self.live:
                raise SourceLost(f"cannot open {self.name}")
            raise DataError(f"OpenCV cannot open '{self.name}': check the path and that this OpenCV build has the codec")
        self.cap = cap

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def read(self) -> Frame | None:
        if self.cap is None:
            self.open()
        ok, bgr = self.cap.read()
        if not ok or bgr is None:
            if self.live:
                raise SourceLost(f"{self.name} stopped delivering frames")
            # A file: end of stream, or an undecodable frame before the end (skip it, counted as corrupt).
            pos = self.cap.get(cv2.CAP_PROP_POS_FRAMES)
            total = self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
            if total > 0 and pos < total - 1 and self._bad_in_row < 8:
                self._bad_in_row += 1
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, pos + 1)
                return self._frame(None, error=f"undecodable frame at {int(pos)}")
            return None
        self._bad_in_row = 0
        return self._frame(to_model_colors(bgr, self.channels))


VIDEO_EXTS = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"}


def open_source(spec: str | None, channels: int, csi: int | None = None) -> FrameSource:
    """The source `spec` names (module docstring); `csi` selects the Jetson CSI preset instead."""
    if csi is not None:
        return CaptureSource(csi_pipeline(csi), channels, live=True, api=cv2.CAP_GSTREAMER, name=f"csi:{csi}")
    if not spec:
        raise DataError("give --source (camera index, /dev/videoN, GStreamer pipeline, URL, video, folder or glob) or --csi N")
    if spec.isdigit():
        return CaptureSource(int(spec), channels, live=True, name=f"camera:{spec}")
    if spec.startswith("/dev/video"):
        return CaptureSource(spec, channels, live=True, api=cv2.CAP_V4L2)
    if "!" in spec:
        return CaptureSource(spec, channels, live=True, api=cv2.CAP_GSTREAMER, name="gstreamer")
    if "://" in spec:
        return CaptureSource(spec, channels, live=True, api=cv2.CAP_FFMPEG)
    p = Path(spec)
    if p.is_file() and p.suffix.lower() in VIDEO_EXTS:
        return CaptureSource(str(p), channels, live=False, api=cv2.CAP_FFMPEG)
    if p.is_dir() or any(ch in spec for ch in "*?["):
        return FolderSource(spec, channels)
    if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
        return FolderSource(spec, channels)
    raise DataError(f"source '{spec}' is neither a camera, a device, a pipeline, a URL, a video file nor an image folder")
