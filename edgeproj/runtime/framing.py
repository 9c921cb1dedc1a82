"""Frame geometry the user states: a region of interest and a resize, applied before the frame gate.

The gate refuses frames whose size or aspect ratio does not match the calibration images (a wrong
camera mode, binning or ROI). A user who knows the camera's geometry states it with `--roi` and
`--resize`; the gate then checks the frame as stated. Nothing here guesses.
"""

from __future__ import annotations

import numpy as np

from edgeproj.errors import ConfigError

MAX_SIDE = 16384


def crop_roi(image: np.ndarray, roi: tuple[int, int, int, int] | None) -> np.ndarray:
    """The ROI (x, y, w, h) of a frame; ConfigError when it does not lie inside the frame (never clipped silently)."""
    if roi is None:
        return image
    x, y, w, h = roi
    fh, fw = image.shape[:2]
    if x + w > fw or y + h > fh:
        raise ConfigError(f"--roi {x},{y},{w},{h} does not fit the {fw}x{fh} frame (x + w <= {fw}, y + h <= {fh})")
    return image[y : y + h, x : x + w]


def check_roi(roi: tuple[int, int, int, int] | None) -> None:
    """ConfigError unless `roi` is None or (x, y, w, h) with x, y >= 0 and w, h >= 1."""
    if roi is not None:
        x, y, w, h = roi
        if x < 0 or y < 0 or w < 1 or h < 1:
            raise ConfigError(f"--roi {x},{y},{w},{h}: x and y must be >= 0, width and height >= 1")


def check_resize(size: tuple[int, int] | None) -> None:
    """ConfigError unless `size` is None or (width, height) with both in 1..MAX_SIDE."""
    if size is not None and not all(1 <= int(v) <= MAX_SIDE for v in size):
        raise ConfigError(f"--resize {size[0]}x{size[1]}: width and height must be in 1..{MAX_SIDE}")


def resize_frame(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """The frame resized to (width, height) as the user stated (area filter when shrinking); as is for None."""
    if size is None:
        return image
    from edgeproj.preprocess import resize_to

    w, h = int(size[0]), int(size[1])
    return resize_to(np.asarray(image, np.float32), (h, w))


def frame_as_stated(image: np.ndarray, roi: tuple[int, int, int, int] | None, size: tuple[int, int] | None) -> np.ndarray:
    """ROI first, then the resize: the frame the gate and the projection see."""
    return resize_frame(crop_roi(image, roi), size)
