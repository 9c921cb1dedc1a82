"""Anomaly maps without torch: DSSIM (11x11 Gaussian window, sigma 1.5), squared error, image scores.

The DSSIM map is full-size with reflected borders (OpenCV BORDER_REFLECT = scipy's 'reflect'), which is
scikit-image's structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgeproj.contract import SSIM_C1 as C1
from edgeproj.contract import SSIM_C2 as C2
from edgeproj.contract import SSIM_SIGMA
from edgeproj.errors import ConfigError
from edgeproj.runtime.manifest import IMAGE_SCORE_SPECS, IMAGE_SCORES, MAP_KINDS


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


def image_score(amap: np.ndarray, kind: str = "map_max", image: np.ndarray | None = None, norm: MapNorm | None = None) -> float:
    """Image-level anomaly score `kind` (IMAGE_SCORE_SPECS) of a map: its maximum, after an optional
    Gaussian blur (sigma in pixels of the image) that a single noisy pixel cannot dominate, and for the
    norm_* kinds after normalizing the map by the normal images' statistics at the image's local
    contrast (`norm`, with `image` the H x W x C frame of the map). NaN in the map gives NaN (a FAULT)."""
    if kind not in IMAGE_SCORE_SPECS:
        raise ValueError(f"unknown image score '{kind}'; choose one of {IMAGE_SCORES}")
    sigma, normalized = IMAGE_SCORE_SPECS[kind]
    a = np.asarray(amap, np.float32)
    if not np.isfinite(a).all():
        return float("nan")
    if normalized:
        if norm is None or image is None:
            raise ConfigError(f"image score '{kind}' needs the normal images' map statistics: run `edgeproj calibrate`")
        a = norm.apply(a, image)
    if sigma > 0:
        a = cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return float(a.max())


def raw_counterpart(kind: str) -> str:
    """The image score with the same smoothing and no normalization (norm_max_smoothed -> map_max_smoothed)."""
    return "map_" + kind[len("norm_") :] if kind.startswith("norm_") else kind


# Local contrast of the frame (the SSIM window's own scale) decides how large DSSIM is on a good part: a
# fine, high-contrast structure reconstructs worse than a flat one. MapNorm measures the normal images'
# map mean and spread in NORM_BINS contrast bins, so that a defect on a flat area and a normal crystal
# edge can be compared on one scale.
NORM_BINS = 16
NORM_SIGMA = 1.5
NORM_MIN_SPREAD = 1e-4


def local_contrast(image: np.ndarray, sigma: float = NORM_SIGMA) -> np.ndarray:
    """Local standard deviation of the channel mean of an H x W x C (or H x W) image, Gaussian window."""
    g = np.asarray(image, np.float32)
    g = g.mean(axis=2) if g.ndim == 3 else g
    mu = cv2.GaussianBlur(g, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    sq = cv2.GaussianBlur(g * g, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return np.sqrt(np.maximum(sq - mu * mu, 0.0))


@dataclass(frozen=True)
class MapNorm:
    """Normal map statistics by local contrast: `edges` (NORM_BINS - 1 increasing contrast quantiles),
    and per bin the mean and spread of normal map values. apply() gives (map - mean) / spread."""

    edges: tuple[float, ...]
    mean: tuple[float, ...]
    spread: tuple[float, ...]
    sigma: float = NORM_SIGMA

    def __post_init__(self):
        e, m, s = (np.asarray(v, np.float64) for v in (self.edges, self.mean, self.spread))
        if not (len(m) == len(s) == len(e) + 1 >= 1):
            raise ConfigError("map_norm: need one mean and spread per contrast bin (edges + 1); recalibrate")
        if (
            not (np.isfinite(e).all() and np.isfinite(m).all() and np.isfinite(s).all())
            or (s <= 0).any()
            or (np.diff(e) < 0).any()
        ):
            raise ConfigError("map_norm: edges must increase, means be finite and spreads positive; recalibrate")
        if not self.sigma > 0:
            raise ConfigError("map_norm: the contrast window sigma must be positive; recalibrate")

    @classmethod
    def fit(cls, maps: list[np.ndarray], images: list[np.ndarray], bins: int = NORM_BINS) -> MapNorm:
        """The statistics of normal maps (one per image, same size as the image)."""
        c = np.concatenate([local_contrast(img).ravel() for img in images]).astype(np.float64)
        v = np.concatenate([np.asarray(m, np.float64).ravel() for m in maps])
        edges = np.unique(np.quantile(c, np.linspace(0, 1, bins + 1)[1:-1]))
        b = np.digitize(c, edges)
        mean, spread = [], []
        for k in range(len(edges) + 1):
            vk = v[b == k]
            mu = float(vk.mean()) if vk.size else float(v.mean())
            sd = float(vk.std()) if vk.size > 1 else float(v.std())
            mean.append(mu)
            spread.append(max(sd, NORM_MIN_SPREAD))
        return cls(tuple(map(float, edges)), tuple(mean), tuple(spread))

    def apply(self, amap: np.ndarray, image: np.ndarray) -> np.ndarray:
        c = local_contrast(image, self.sigma)
        if c.shape != np.shape(amap):
            raise ConfigError(f"map_norm: map {np.shape(amap)} and frame {c.shape} differ in size")
        b = np.digitize(c, np.asarray(self.edges))
        return ((amap - np.asarray(self.mean, np.float32)[b]) / np.asarray(self.spread, np.float32)[b]).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "kind": "local_contrast",
            "sigma": self.sigma,
            "edges": list(self.edges),
            "mean": list(self.mean),
            "spread": list(self.spread),
        }

    @classmethod
    def from_dict(cls, d: dict) -> MapNorm | None:
        """None for an empty section (calibrated before the normalization existed)."""
        if not d:
            return None
        try:
            return cls(tuple(d["edges"]), tuple(d["mean"]), tuple(d["spread"]), float(d.get("sigma", NORM_SIGMA)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"map_norm is malformed ({exc}); recalibrate the bundle") from None


@dataclass(frozen=True)
class Scorer:
    """The image score a bundle decides with: its kind and, for norm_* kinds, the normal map statistics."""

    kind: str
    norm: MapNorm | None = None

    def __post_init__(self):
        if self.kind not in IMAGE_SCORE_SPECS:
            raise ConfigError(f"unknown image score '{self.kind}'; choose one of {', '.join(IMAGE_SCORES)}")
        if IMAGE_SCORE_SPECS[self.kind][1] and self.norm is None:
            raise ConfigError(
                f"image score '{self.kind}' needs the normal images' map statistics, which this bundle lacks: "
                "run `edgeproj calibrate` on it"
            )

    @classmethod
    def of(cls, manifest, kind: str | None = None) -> Scorer:
        """The scorer of a manifest (or of another `kind` with the manifest's statistics)."""
        return cls(kind or manifest.projection.image_score, MapNorm.from_dict(manifest.calibration.map_norm))

    def __call__(self, amap: np.ndarray, image: np.ndarray | None = None) -> float:
        return image_score(amap, self.kind, image, self.norm)
