"""Anomaly maps without torch: DSSIM (11x11 Gaussian window, sigma 1.5), squared error, image scores.

The DSSIM map is full-size with reflected borders (OpenCV BORDER_REFLECT = scipy's 'reflect'), which is
scikit-image's structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False).
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeproj.contract import SSIM_C1 as C1
from edgeproj.contract import SSIM_C2 as C2
from edgeproj.contract import SSIM_SIGMA
from edgeproj.runtime.manifest import IMAGE_SCORE_SIGMA, IMAGE_SCORES, MAP_KINDS


def _blur(a: np.ndarray, window: int, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(a, (window, window), sigma, borderType=cv2.BORDER_REFLECT)


def ssim_map(a: np.ndarray, b: np.ndarray, window: int = 11, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Full-size SSIM map of two H x W (or C x H x W, averaged over C) images in [0, 1]."""
    if a.ndim == 3:
        return np.mean([ssim_map(ai, bi, window, sigma) for ai, bi in zip(a, b)], axis=0)
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    mu_a, mu_b = _blur(a, window, sigma), _blur(b, window, sigma)
    s_aa = _blur(a * a, window, sigma) - mu_a * mu_a
    s_bb = _blur(b * b, window, sigma) - mu_b * mu_b
    s_ab = _blur(a * b, window, sigma) - mu_a * mu_b
    num = (2 * mu_a * mu_b + C1) * (2 * s_ab + C2)
    den = (mu_a * mu_a + mu_b * mu_b + C1) * (s_aa + s_bb + C2)
    return (num / den).astype(np.float32)


def dssim_map(a: np.ndarray, b: np.ndarray, window: int = 11) -> np.ndarray:
    """(1 - SSIM) / 2, full size."""
    return (1.0 - ssim_map(a, b, window)) / 2.0


def dssim_maps(a: np.ndarray, b: np.ndarray, window: int = 11) -> np.ndarray:
    """DSSIM maps of two stacks of patches (N x C x H x W): N x H x W."""
    return np.stack([dssim_map(ai, bi, window) for ai, bi in zip(a, b)])


def anomaly_map(kind: str, x0: np.ndarray, projection: np.ndarray, recon: np.ndarray, window: int = 11) -> np.ndarray:
    """One patch's map (H x W) from C x H x W arrays; `kind` is one of MAP_KINDS."""
    if kind == "dssim_projection":
        return dssim_map(x0, projection, window)
    if kind == "dssim_recon":
        return dssim_map(x0, recon, window)
    if kind == "squared_error":
        return ((x0 - projection) ** 2).mean(axis=0).astype(np.float32)
    raise ValueError(f"unknown map kind '{kind}'; choose one of {MAP_KINDS}")


def image_score(amap: np.ndarray, kind: str = "map_max", sigma: float = IMAGE_SCORE_SIGMA) -> float:
    """Image-level anomaly score: the map's maximum, or its maximum after a Gaussian blur (sigma in pixels
    of the image), which a single noisy pixel cannot dominate. NaN in the map gives NaN (a FAULT)."""
    if kind == "map_max":
        return float(np.max(amap))
    if kind == "map_max_smoothed":
        a = np.asarray(amap, np.float32)
        if not np.isfinite(a).all():
            return float("nan")
        return float(cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_REFLECT).max())
    raise ValueError(f"unknown image score '{kind}'; choose one of {IMAGE_SCORES}")
