"""Frame sources through OpenCV: camera index, V4L2 device, GStreamer pipeline (Jetson CSI preset),
RTSP/HTTP URL, video file, folder or glob of images.

Live sources (cameras, pipelines, URLs) may drop frames and are reopened when they disappear; files and
folders lose nothing and end cleanly.

One colour rule for every source: frames are converted to the bundle's channel count (colour to gray by
luminance, gray to RGB by repetition), and the first conversion is logged once per source.
"""

from __future__ import annotations

import glob as _glob
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeproj.data.images import IMAGE_EXTS, MAX_PIXELS, check_pixels, read_image
from edgeproj.errors import DataError

log = logging.getLogger("edgeproj.line")
# OpenCV's own warnings (a camera that does not open, a codec probe) would break the one-line errors.
if hasattr(cv2, "utils") and hasattr(cv2.utils, "logging"):
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


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


def match_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    """HxWxC float32 RGB or gray -> the bundle's channel count (the one colour rule of every source)."""
    if rgb.shape[2] == channels:
        return np.ascontiguousarray(rgb)
    if channels == 1:
        if not np.ptp(rgb[:, :, :3], axis=2).any():  # gray content in colour channels: exactly the gray values
            return np.ascontiguousarray(rgb[:, :, :1])
        return np.ascontiguousarray(cv2.cvtColor(rgb[:, :, :3], cv2.COLOR_RGB2GRAY)[:, :, None])
    return np.ascontiguousarray(np.repeat(rgb[:, :, :1], 3, axis=2))


def to_model_colors(bgr: np.ndarray, channels: int) -> np.ndarray:
    """An OpenCV frame (uint8/uint16 BGR or gray) as HxWxC float32 in [0, 1], RGB or gray as the bundle wants."""
    scale = 65535.0 if bgr.dtype == np.uint16 else 255.0
    img = bgr.astype(np.float32) / scale
    if img.ndim == 2:
        img = img[:, :, None]
    elif img.shape[2] >= 3:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
    return match_channels(img, channels)


class FrameSource:
    """Base: `read()` returns the next Frame, or None at the end of a file source."""

    live = False
    name = "source"
    # True where a source may report unreadable frames past its real end (a video container's frame count):
    # those are held until a good frame shows they were parts (edgeproj.line.capture).
    errors_may_trail = False

    def __init__(self, channels: int, max_pixels: int = MAX_PIXELS):
        self.channels = channels
        self.max_pixels = max_pixels
        self.seq = 0
        self._said_colors = False

    def _colors(self, native: int) -> None:
        """Log the colour rule the first time a frame needs it."""
        if native != self.channels and not self._said_colors:
            self._said_colors = True
            kind = {1: "gray", 3: "colour"}
            log.warning(
                "%s delivers %s frames; they are converted to %s for this %d-channel bundle",
                self.name,
                kind.get(native, f"{native}-channel"),
                kind[self.channels],
                self.channels,
            )

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
    """Images from a folder or a glob, in name order; a file that cannot be read (corrupt, NaN or infinite
    samples, a float image outside [0, 1]) becomes a frame without an image: FAULT, counted as corrupt."""

    def __init__(self, spec: str, channels: int, max_pixels: int = MAX_PIXELS):
        super().__init__(channels, max_pixels)
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
            img = read_image(path, max_pixels=self.max_pixels)
        except DataError as exc:
            return self._frame(None, name=path.name, error=str(exc))
        self._colors(img.shape[2])
        return self._frame(match_channels(img, self.channels), name=path.name)


class CaptureSource(FrameSource):
    """cv2.VideoCapture: a video file (lossless, ends cleanly) or a live device/pipeline/URL."""

    def __init__(
        self, spec, channels: int, live: bool, api: int = cv2.CAP_ANY, name: str | None = None, max_pixels: int = MAX_PIXELS
    ):
        super().__init__(channels, max_pixels)
        self.spec, self.api, self.live = spec, api, live
        self.errors_may_trail = not live
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
            # A file: end of stream, or an undecodable frame before the end (a frame without an image:
            # FAULT once a good frame follows it, see errors_may_trail).
            pos = self.cap.get(cv2.CAP_PROP_POS_FRAMES)
            total = self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
            if total > 0 and pos < total - 1 and self._bad_in_row < 8:
                self._bad_in_row += 1
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, pos + 1)
                return self._frame(None, error=f"undecodable frame at {int(pos)}")
            return None
        self._bad_in_row = 0
        try:
            check_pixels(bgr.shape[1], bgr.shape[0], self.max_pixels, f"a frame of {self.name}")
        except DataError as exc:
            return self._frame(None, error=str(exc))
        self._colors(1 if bgr.ndim == 2 else bgr.shape[2])
        return self._frame(to_model_colors(bgr, self.channels))


VIDEO_EXTS = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"}


def open_source(spec: str | None, channels: int, csi: int | None = None, max_pixels: int = MAX_PIXELS) -> FrameSource:
    """The source `spec` names (module docstring); `csi` selects the Jetson CSI preset instead.

    File sources are opened here, so a missing or unreadable video is a DataError before any work; live
    sources are opened by the capture thread (with reconnects).
    """
    src = _make_source(spec, channels, csi, max_pixels)
    if not src.live and isinstance(src, CaptureSource):
        src.open()
        src.close()
    return src


def _make_source(spec: str | None, channels: int, csi: int | None, max_pixels: int) -> FrameSource:
    if csi is not None:
        return CaptureSource(
            csi_pipeline(csi), channels, live=True, api=cv2.CAP_GSTREAMER, name=f"csi:{csi}", max_pixels=max_pixels
        )
    if not spec:
        raise DataError("give --source (camera index, /dev/videoN, GStreamer pipeline, URL, video, folder or glob) or --csi N")
    if spec.isdigit():
        return CaptureSource(int(spec), channels, live=True, name=f"camera:{spec}", max_pixels=max_pixels)
    if spec.startswith("/dev/video"):
        return CaptureSource(spec, channels, live=True, api=cv2.CAP_V4L2, max_pixels=max_pixels)
    if "!" in spec:
        return CaptureSource(spec, channels, live=True, api=cv2.CAP_GSTREAMER, name="gstreamer", max_pixels=max_pixels)
    if "://" in spec:
        return CaptureSource(spec, channels, live=True, api=cv2.CAP_FFMPEG, max_pixels=max_pixels)
    p = Path(spec)
    is_glob = any(ch in spec for ch in "*?[")  # 'dir/*.png' names no file: the glob decides
    if not p.exists() and not is_glob and p.suffix.lower() in VIDEO_EXTS | set(IMAGE_EXTS):
        raise DataError(f"source file '{spec}' does not exist; check the path")
    if p.is_file() and p.suffix.lower() in VIDEO_EXTS:
        return CaptureSource(str(p), channels, live=False, api=cv2.CAP_FFMPEG, max_pixels=max_pixels)
    if p.is_dir() or is_glob:
        return FolderSource(spec, channels, max_pixels)
    if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
        return FolderSource(spec, channels, max_pixels)
    raise DataError(f"source '{spec}' is neither a camera, a device, a pipeline, a URL, a video file nor an image folder")
