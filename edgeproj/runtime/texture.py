"""The texture check: does each neighbourhood of a frame have the local contrast of a good part?

A reconstruction-based map misses what is easy to reconstruct: a patch of a smoother material, a worn or
filled area, a blur. On a texture those show as local contrast outside the normal range, which the
autoencoder does not measure. TextureStats holds the normal images' log local contrast (per band of
distance to the image border, where the reflected window differs) and turns a frame into |z| per pixel;
its maximum is the texture score. The *_tex image scores (IMAGE_SCORE_SPECS) fuse it with a projection
score: each is put on the normal images' scale ((score - mean) / spread over the calibration images) and
the larger decides, so either kind of evidence can reject a part (the threshold, a quantile of the larger,
sits higher than the projection score's own at the same false-reject target). The pixel map of such a
score fuses the same way pixel by pixel (scoring.pixel_map), so what the texture check finds is outlined too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import cv2
import numpy as np

from edgeproj.errors import ConfigError

# Distance-to-border bins (px) for the normal statistics of maps and of local contrast.
BORDER_EDGES = (2, 4, 8, 16)
# Gaussian window of the local contrast the texture check measures, in pixels of the image. Measured on
# three real photograph sets (benchmarks/texture_window.py: image AUROC of the texture score alone against
# the slab / wood / granite contaminations): sigma 1 0.806 / 0.863 / 0.641, 1.5 0.894 / 0.891 / 0.639,
# 2 0.937 / 0.906 / 0.630, 3 0.942 / 0.889 / 0.597. Two: the best mean (0.824; 3: 0.809).
TEXTURE_SIGMA = 2.0
# Added to the local standard deviation before the log: a flat (saturated) area has a finite, very low
# value instead of -inf.
TEXTURE_EPS = 1e-3
MIN_SPREAD = 1e-6
# The pixel map of a *_tex score (scoring.pixel_map) keeps, pixel by pixel, the larger of the projection map
# normalized by border distance (MapNorm) and the |z| map standardized by its normal pixels' mean and spread
# (`pixel_z`): both in normal standard deviations. Measured on the deployed maps of four real photograph sets
# (benchmarks/pixel_map.py, pixel AUROC against the contaminations' masks, slab / wood / granite / weave):
# the projection map 0.753 / 0.981 / 0.527 / 0.987, fused this way 0.922 / 0.974 / 0.714 / 0.987, each map
# divided by its normal 99th percentile instead 0.922 / 0.963 / 0.719 / 0.969 (the rug's normal local
# contrast varies more than its contaminations').


def local_contrast(image: np.ndarray, sigma: float) -> np.ndarray:
    """Local standard deviation of the channel mean of an H x W x C (or H x W) image, Gaussian window."""
    g = np.asarray(image, np.float32)
    g = g.mean(axis=2) if g.ndim == 3 else g
    mu = cv2.GaussianBlur(g, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    sq = cv2.GaussianBlur(g * g, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return np.sqrt(np.maximum(sq - mu * mu, 0.0))


def border_bins(shape: tuple[int, int], edges=BORDER_EDGES) -> np.ndarray:
    """Each pixel's bin of distance to the nearest image border (0 for the outermost `edges[0]` px); read-only,
    shared between calls with the same shape (a line's frames all have one)."""
    return _border_bins(tuple(int(v) for v in shape), tuple(edges))


@lru_cache(maxsize=4)  # uint8: a 64-megapixel frame's bins are 64 MB
def _border_bins(shape: tuple[int, int], edges: tuple) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    bins = np.digitize(np.minimum.reduce([yy, xx, h - 1 - yy, w - 1 - xx]), np.asarray(edges)).astype(np.uint8)
    bins.setflags(write=False)
    return bins


def log_contrast(image: np.ndarray, sigma: float = TEXTURE_SIGMA) -> np.ndarray:
    """log(local contrast + TEXTURE_EPS), H x W."""
    return np.log(local_contrast(image, sigma) + TEXTURE_EPS)


@dataclass(frozen=True)
class TextureStats:
    """Normal log local contrast per border bin (`mean`, `spread`) of frames of `frame_hw` pixels (other
    sizes are resized to it first: the window is in pixels), and the mean and spread over normal images of
    the texture score (`score_mean`, `score_spread`), of every projection image score the *_tex kinds
    fuse with (`fusion`: kind -> (mean, spread)) and the mean and spread of the normal images' |z| pixels
    (`pixel_z`, for the fused pixel map; None in bundles calibrated before it)."""

    mean: tuple[float, ...]
    spread: tuple[float, ...]
    frame_hw: tuple[int, int]
    score_mean: float = 0.0
    score_spread: float = 1.0
    fusion: dict = field(default_factory=dict)
    border_edges: tuple[int, ...] = BORDER_EDGES
    sigma: float = TEXTURE_SIGMA
    pixel_z: tuple[float, float] | None = None

    def __post_init__(self):
        try:
            m, s = np.asarray(self.mean, np.float64), np.asarray(self.spread, np.float64)
            be = np.asarray(self.border_edges, np.float64)
            fus = np.asarray([tuple(v) for v in self.fusion.values()], np.float64).reshape(-1, 2)
            values = np.concatenate([m, s, be, [self.score_mean, self.score_spread, self.sigma], fus.ravel()])
            hw = tuple(int(v) for v in self.frame_hw)
            px = None if self.pixel_z is None else np.asarray(self.pixel_z, np.float64)
        except (TypeError, ValueError):
            raise ConfigError("map_norm.texture: the statistics are not numbers; recalibrate") from None
        if len(hw) != 2 or min(hw) < 1 or hw != tuple(self.frame_hw):
            raise ConfigError("map_norm.texture: frame_hw must be two positive integers; recalibrate")
        if m.shape != (len(be) + 1,) or s.shape != m.shape:
            raise ConfigError("map_norm.texture: need a mean and spread per border bin; recalibrate")
        if (
            not np.isfinite(values).all()
            or (s <= 0).any()
            or self.score_spread <= 0
            or (fus[:, 1] <= 0).any()
            or self.sigma <= 0
            or (np.diff(be) <= 0).any()
        ):
            raise ConfigError("map_norm.texture: means must be finite, spreads and sigma positive; recalibrate")
        if px is not None and (px.shape != (2,) or not np.isfinite(px).all() or px[1] <= 0):
            raise ConfigError("map_norm.texture: pixel_z must be a finite mean and a positive spread; recalibrate")

    @classmethod
    def fit(cls, images: list[np.ndarray], sigma: float = TEXTURE_SIGMA) -> TextureStats:
        """Per-pixel statistics of normal images, all of one size (the score and fusion scales follow
        with `scaled`). A border band with no pixel (an image under 33 px a side) takes all pixels'."""
        nb = len(BORDER_EDGES) + 1
        n, s1, s2 = np.zeros(nb), np.zeros(nb), np.zeros(nb)
        for img in images:
            v = log_contrast(img, sigma).astype(np.float64)
            b = border_bins(v.shape)
            n += np.bincount(b.ravel(), minlength=nb)
            s1 += np.bincount(b.ravel(), v.ravel(), minlength=nb)
            s2 += np.bincount(b.ravel(), (v * v).ravel(), minlength=nb)
        empty = n == 0
        n[empty], s1[empty], s2[empty] = n.sum(), s1.sum(), s2.sum()
        mean = s1 / n
        spread = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
        hw = tuple(int(x) for x in np.shape(images[0])[:2])
        return cls(tuple(map(float, mean)), tuple(float(max(x, MIN_SPREAD)) for x in spread), hw, sigma=sigma)

    def scaled(self, images: list[np.ndarray], fusion_scores: dict[str, np.ndarray]) -> TextureStats:
        """These statistics with the normal scale of the texture score and of the |z| pixels (on `images`) and
        of each projection score (`fusion_scores`: kind -> the normal images' scores)."""
        t, n, z1, z2 = [], 0, 0.0, 0.0
        for img in images:  # one |z| map at a time: a calibration set of large frames is not held twice
            z = self.zmap(img)
            t.append(float(z.max()))
            n, z1, z2 = n + z.size, z1 + float(z.sum(dtype=np.float64)), z2 + float(np.square(z, dtype=np.float64).sum())
        fus = {k: _mean_spread(np.asarray(v, np.float64)) for k, v in fusion_scores.items()}
        tm, ts = _mean_spread(np.array(t, np.float64))  # refuses a NaN |z| map, so the pixel sums are finite
        zm = z1 / n
        pixel_z = (zm, float(max(np.sqrt(max(z2 / n - zm * zm, 0.0)), MIN_SPREAD)))
        return replace(self, score_mean=tm, score_spread=ts, fusion=fus, pixel_z=pixel_z)

    def zmap(self, image: np.ndarray) -> np.ndarray:
        """|z| of each pixel's log local contrast against the normal images', at `frame_hw`."""
        image = np.asarray(image, np.float32)
        h, w = self.frame_hw
        if image.shape[:2] != (h, w):
            # The window is in pixels: another camera resolution would shift every local contrast.
            smaller = image.shape[0] * image.shape[1] > h * w
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_LINEAR)
        with np.errstate(invalid="ignore"):  # an Inf pixel gives NaN here, and NaN is the verdict's FAULT
            v = log_contrast(image, self.sigma)
        b = border_bins(v.shape, self.border_edges)
        return (np.abs(v - np.asarray(self.mean, np.float32)[b]) / np.asarray(self.spread, np.float32)[b]).astype(np.float32)

    def score(self, image: np.ndarray) -> float:
        """The texture score: the largest |z| of the frame."""
        return float(self.zmap(image).max())

    def standard_zmap(self, image: np.ndarray, shape: tuple[int, int], zmap: np.ndarray | None = None) -> np.ndarray:
        """The frame's |z| map standardized by the normal images' |z| pixels (pixel_z), at `shape` (the
        projection map's). NaN stays NaN. `zmap`: the frame's |z| map, if already measured."""
        if self.pixel_z is None:
            raise ConfigError(
                "map_norm.texture has no pixel statistics (calibrated before the fused pixel map): recalibrate the bundle"
            )
        z = self.zmap(image) if zmap is None else zmap
        h, w = shape
        if z.shape != (h, w):
            # Shrinking by area does not skip a narrow peak the image score saw (sampling can); growing interpolates.
            smaller = h * w < z.size
            z = cv2.resize(z, (w, h), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_LINEAR)
        m, s = self.pixel_z
        return ((z - np.float32(m)) / np.float32(s)).astype(np.float32)

    def combine(self, kind: str, projection_score: float, texture_score: float) -> float:
        """max(projection score, texture score), each on the normal images' scale. NaN or Inf in either
        (a non-finite map or frame) gives NaN: a FAULT, never a low score."""
        if kind not in self.fusion:
            raise ConfigError(f"map_norm.texture has no normal scale for '{kind}'; recalibrate the bundle")
        m, s = self.fusion[kind]
        zp = (projection_score - m) / s
        zt = (texture_score - self.score_mean) / self.score_spread
        if not (np.isfinite(zp) and np.isfinite(zt)):
            return float("nan")
        return float(max(zp, zt))

    def to_dict(self) -> dict:
        return {
            "kind": "log local contrast by border distance",
            "sigma": self.sigma,
            "frame_hw": list(self.frame_hw),
            "border_edges": list(self.border_edges),
            "mean": list(self.mean),
            "spread": list(self.spread),
            "score_mean": self.score_mean,
            "score_spread": self.score_spread,
            "fusion": {k: list(v) for k, v in self.fusion.items()},
        } | ({"pixel_z": list(self.pixel_z)} if self.pixel_z is not None else {})

    @classmethod
    def from_dict(cls, d: dict | None) -> TextureStats | None:
        """None where the section is absent (calibrated before the texture check existed)."""
        if d is None:
            return None
        if not isinstance(d, dict):
            raise ConfigError("map_norm.texture is malformed (not an object); recalibrate the bundle")
        try:
            return cls(
                tuple(d["mean"]),
                tuple(d["spread"]),
                tuple(d["frame_hw"]),
                float(d["score_mean"]),
                float(d["score_spread"]),
                {str(k): (float(v[0]), float(v[1])) for k, v in dict(d["fusion"]).items()},
                tuple(d["border_edges"]),
                float(d["sigma"]),
                None if d.get("pixel_z") is None else tuple(float(v) for v in d["pixel_z"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"map_norm.texture is malformed ({exc}); recalibrate the bundle") from None


def _mean_spread(v: np.ndarray) -> tuple[float, float]:
    if v.size == 0 or not np.isfinite(v).all():
        raise ConfigError("texture statistics: a normal image's score is not finite; check the calibration images")
    return float(v.mean()), float(max(v.std(), MIN_SPREAD))
