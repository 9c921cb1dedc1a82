"""PNG renderings of results (OpenCV only): heat maps, overlays with the defect contour."""

from __future__ import annotations

import cv2
import numpy as np


def to_u8(img: np.ndarray) -> np.ndarray:
    """HxW or HxWxC float [0, 1] -> uint8 BGR (3 channels)."""
    a = np.clip(np.nan_to_num(np.asarray(img, np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0, 1)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    u8 = (a * 255 + 0.5).astype(np.uint8)
    return cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR) if u8.ndim == 2 else cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)


def colour_top(pixel_threshold: float | None) -> float | None:
    """The map value drawn at the top of the colour scale: twice the pixel threshold, so the contour sits
    mid-scale (None, the map's own maximum, without a positive threshold)."""
    return 2 * pixel_threshold if pixel_threshold is not None and pixel_threshold > 0 else None


def heatmap(amap: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """A map as a BGR heat image scaled to [0, vmax] (vmax: the map's max when not given); NaN shows as 0."""
    amap = np.nan_to_num(np.asarray(amap, np.float32), nan=0.0, posinf=np.float32(np.finfo(np.float32).max), neginf=0.0)
    top = float(vmax if vmax is not None else max(float(amap.max()), 1e-12))
    norm = np.clip(amap / top, 0, 1)
    return cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)


def overlay(
    image: np.ndarray,
    amap: np.ndarray,
    threshold: float | None = None,
    vmax: float | None = None,
    gt_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Image blended with the heat map; the thresholded region outlined in cyan, ground truth in green."""
    base = to_u8(image)
    if base.shape[:2] != amap.shape:
        base = cv2.resize(base, (amap.shape[1], amap.shape[0]))
    out = cv2.addWeighted(base, 0.55, heatmap(amap, vmax), 0.45, 0)
    if gt_mask is not None:
        cs, _ = cv2.findContours(np.asarray(gt_mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, cs, -1, (0, 255, 0), 1)
    if threshold is not None:
        cs, _ = cv2.findContours((amap > threshold).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, cs, -1, (255, 255, 0), 1)
    return out


def write(path, bgr: np.ndarray) -> None:
    """Write a BGR uint8 image, creating the folder."""
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), bgr):
        from edgeproj.errors import DataError

        raise DataError(f"could not write '{path}'; check the folder is writable and the extension is .png")
