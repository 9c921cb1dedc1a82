"""Anomaly maps without torch: DSSIM (11x11 Gaussian window, sigma 1.5), squared error, image scores.

The DSSIM map is full-size with reflected borders (OpenCV BORDER_REFLECT = scipy's 'reflect'), which is
scikit-image's structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from edgeproj.contract import SSIM_C1 as C1
from edgeproj.contract import SSIM_C2 as C2
from edgeproj.contract import SSIM_SIGMA
from edgeproj.errors import ConfigError
from edgeproj.runtime.manifest import IMAGE_SCORE_SPECS, IMAGE_SCORES, MAP_KINDS, projection_score
from edgeproj.runtime.texture import BORDER_EDGES, TextureStats, border_bins, local_contrast


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
    edge_* and norm_* kinds after normalizing the map by the normal images' statistics at each pixel's
    distance to the image border (and, norm_*, its local contrast): `norm`, with `image` the H x W x C
    frame of the map. The *_tex kinds fuse that score with the texture check (norm.texture). NaN in the
    map gives NaN (a FAULT)."""
    return image_scores(amap, (kind,), image, norm)[kind]


def image_scores(
    amap: np.ndarray,
    kinds: tuple[str, ...] = IMAGE_SCORES,
    image: np.ndarray | None = None,
    norm: MapNorm | None = None,
    zmap: np.ndarray | None = None,
) -> dict[str, float]:
    """Several image scores of one map (image_score), each projection score and the frame's texture score
    computed once however many kinds share them. `zmap`: the frame's |z| map, if already measured."""
    for kind in kinds:
        if kind not in IMAGE_SCORE_SPECS:
            raise ValueError(f"unknown image score '{kind}'; choose one of {IMAGE_SCORES}")
    a = np.asarray(amap, np.float32)
    finite = bool(np.isfinite(a).all())
    projection: dict[str, float] = {}
    texture = None
    out = {}
    for kind in kinds:
        base = projection_score(kind)
        if base != kind and (norm is None or norm.texture is None or image is None):
            raise ConfigError(f"image score '{kind}' needs the normal images' texture statistics: run `edgeproj calibrate`")
        if base not in projection:
            projection[base] = _projection_image_score(a, base, image, norm) if finite else float("nan")
        if base == kind:
            out[kind] = projection[base]
            continue
        if texture is None:
            texture = float((norm.texture.zmap(image) if zmap is None else zmap).max())
        out[kind] = norm.texture.combine(base, projection[base], texture)
    return out


def _projection_image_score(a: np.ndarray, kind: str, image: np.ndarray | None, norm: MapNorm | None) -> float:
    """A projection-only image score of a finite map."""
    sigma, normalization, _ = IMAGE_SCORE_SPECS[kind]
    if normalization:
        if norm is None or image is None:
            raise ConfigError(f"image score '{kind}' needs the normal images' map statistics: run `edgeproj calibrate`")
        a = norm.apply(a, image, contrast=normalization == "border_contrast")
    if sigma > 0:
        a = cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return float(a.max())


def available(kind: str, norm: MapNorm | None) -> bool:
    """Whether image score `kind` can be computed with the statistics `norm` (None: none measured)."""
    if IMAGE_SCORE_SPECS[kind][2]:
        return norm is not None and norm.texture is not None and projection_score(kind) in norm.texture.fusion
    return norm is not None or IMAGE_SCORE_SPECS[kind][1] is None


def fuses_pixels(kind: str, norm: MapNorm | None) -> bool:
    """Whether the pixel map of image score `kind` is the fused one (pixel_map): a *_tex score whose
    statistics hold the |z| pixels' (pixel_z). A bundle calibrated before the fused map keeps the projection
    map, the map its pixel threshold was set on."""
    return bool(IMAGE_SCORE_SPECS[kind][2]) and norm is not None and norm.texture is not None and norm.texture.pixel_z is not None


def pixel_map(amap: np.ndarray, kind: str, image: np.ndarray, norm: MapNorm | None, zmap: np.ndarray | None = None) -> np.ndarray:
    """The pixel map a line thresholds and draws for image score `kind`: the projection map, or for a *_tex
    score the fused map (fused_pixel_map), so that what the texture check finds is outlined too. The image
    score is always taken from the projection map. `zmap`: the frame's |z| map, if already measured."""
    return fused_pixel_map(amap, image, norm, zmap) if fuses_pixels(kind, norm) else amap


def fused_pixel_map(amap: np.ndarray, image: np.ndarray, norm: MapNorm, zmap: np.ndarray | None = None) -> np.ndarray:
    """The larger, pixel by pixel, of the projection map normalized by border distance and the texture check's
    |z| map standardized by the normal images' |z| pixels: both in normal standard deviations. NaN stays NaN."""
    z = norm.texture.standard_zmap(image, np.shape(amap), zmap)
    return np.maximum(norm.apply(amap, image, contrast=False), z)


def score_and_pixel_map(amap: np.ndarray, kind: str, image: np.ndarray, norm: MapNorm | None) -> tuple[float, np.ndarray]:
    """image_score and pixel_map of one frame, its |z| map measured once where both use it (a line's frame)."""
    if not fuses_pixels(kind, norm):
        return image_score(amap, kind, image, norm), amap
    z = norm.texture.zmap(image)
    return image_scores(amap, (kind,), image, norm, z)[kind], pixel_map(amap, kind, image, norm, z)


def raw_counterpart(kind: str) -> str:
    """The image score with the same smoothing, no normalization and no texture check
    (norm_max_smoothed_tex -> map_max_smoothed)."""
    kind = projection_score(kind)
    for prefix in ("norm_", "edge_"):
        if kind.startswith(prefix):
            return "map_" + kind[len(prefix) :]
    return kind


# What a good part's map looks like varies with position and content, and the image score is a maximum,
# so the largest normal values decide. Measured on a slab photograph (a 5000-step L2AE): the maximum of a
# good image's map lay within 8 px of the image border in 46% of the images (12% of the area), where the
# autoencoder's zero padding and the reflected SSIM window meet no overlapping tile; and DSSIM is larger
# on fine, high-contrast structure than on flat areas. MapNorm measures the normal maps' mean and spread
# per bin of distance to the border (BORDER_EDGES px) and, for norm_*, of local contrast (NORM_BINS
# quantile bins at the SSIM window's scale): a defect at the border still counts, against the border's
# own normal level, rather than being cropped away.
NORM_BINS = 16
NORM_SIGMA = 1.5
NORM_MIN_SPREAD = 1e-4
# A bin's spread is at least this fraction of the whole normal map's: a flat, saturated bin with almost no
# spread would otherwise turn a tiny deviation on a good part into a huge score. A bin with fewer pixels
# than NORM_MIN_PIXELS takes its border band's statistics (or the whole map's).
NORM_SPREAD_FLOOR = 0.1
NORM_MIN_PIXELS = 200
# Statistics are fitted on at most this many pixels (a seeded sample): calibration runs on the device.
NORM_MAX_PIXELS = 2_000_000


def _stats(v: np.ndarray, fallback: np.ndarray, floor: float) -> tuple[float, float]:
    """Mean and spread (at least `floor`) of `v`, or of `fallback` where `v` has too few values."""
    src = v if v.size >= NORM_MIN_PIXELS else fallback
    return float(src.mean()), max(float(src.std()), floor)


@dataclass(frozen=True)
class MapNorm:
    """Normal map statistics: per border-distance bin (`border_edges`), the mean and spread of normal map
    values (`border_mean`, `border_spread`), and per (border bin, contrast bin) (`edges`: increasing
    contrast quantiles) the same (`mean`, `spread`, nested lists). apply() gives (map - mean) / spread.
    `texture`: the normal local contrast and score scales of the *_tex kinds (edgeproj.runtime.texture)."""

    edges: tuple[float, ...]
    mean: tuple[tuple[float, ...], ...]
    spread: tuple[tuple[float, ...], ...]
    border_edges: tuple[int, ...] = BORDER_EDGES
    border_mean: tuple[float, ...] = ()
    border_spread: tuple[float, ...] = ()
    sigma: float = NORM_SIGMA
    texture: TextureStats | None = None

    def __post_init__(self):
        try:
            e = np.asarray(self.edges, np.float64)
            m, s = np.asarray(self.mean, np.float64), np.asarray(self.spread, np.float64)
            be = np.asarray(self.border_edges, np.float64)
            bm, bs = np.asarray(self.border_mean, np.float64), np.asarray(self.border_spread, np.float64)
        except (TypeError, ValueError):
            raise ConfigError("map_norm: the tables are not numeric arrays; recalibrate") from None
        nb, nc = len(be) + 1, len(e) + 1
        if m.shape != (nb, nc) or s.shape != (nb, nc) or bm.shape != (nb,) or bs.shape != (nb,):
            raise ConfigError("map_norm: need a mean and spread per border bin and per (border, contrast) bin; recalibrate")
        values = np.concatenate([e, m.ravel(), s.ravel(), be, bm, bs])
        if (
            not np.isfinite(values).all()
            or (s <= 0).any()
            or (bs <= 0).any()
            or (np.diff(e) < 0).any()
            or (np.diff(be) <= 0).any()
        ):
            raise ConfigError("map_norm: edges must increase, means be finite and spreads positive; recalibrate")
        if not self.sigma > 0:
            raise ConfigError("map_norm: the contrast window sigma must be positive; recalibrate")

    @classmethod
    def fit(cls, maps: list[np.ndarray], images: list[np.ndarray], bins: int = NORM_BINS) -> MapNorm:
        """The statistics of normal maps (one per image, the image's size) and of the texture check."""
        c = np.concatenate([local_contrast(img, NORM_SIGMA).ravel() for img in images])
        v = np.concatenate([np.asarray(m, np.float32).ravel() for m in maps])
        b = np.concatenate([border_bins(np.shape(m)).ravel() for m in maps])
        if v.size > NORM_MAX_PIXELS:
            keep = np.random.default_rng(0).choice(v.size, NORM_MAX_PIXELS, replace=False)
            c, v, b = c[keep], v[keep], b[keep]
        edges = np.unique(np.quantile(c, np.linspace(0, 1, bins + 1)[1:-1]))
        cb = np.digitize(c, edges)
        nb = len(BORDER_EDGES) + 1
        floor = max(NORM_MIN_SPREAD, NORM_SPREAD_FLOOR * float(v.std()))
        band = [v[b == i] for i in range(nb)]
        border = [_stats(band[i], v, floor) for i in range(nb)]
        table = [
            [
                _stats(v[(b == i) & (cb == j)], band[i] if band[i].size >= NORM_MIN_PIXELS else v, floor)
                for j in range(len(edges) + 1)
            ]
            for i in range(nb)
        ]
        norm = cls(
            edges=tuple(map(float, edges)),
            mean=tuple(tuple(t[0] for t in row) for row in table),
            spread=tuple(tuple(t[1] for t in row) for row in table),
            border_mean=tuple(t[0] for t in border),
            border_spread=tuple(t[1] for t in border),
        )
        # The *_tex kinds put each projection score on the normal images' scale: measured with this norm.
        kinds = tuple(k for k, (_, _, texture) in IMAGE_SCORE_SPECS.items() if not texture)
        per_map = [image_scores(m, kinds, img, norm) for m, img in zip(maps, images)]
        projection = {k: [s[k] for s in per_map] for k in kinds}
        return replace(norm, texture=TextureStats.fit(images).scaled(images, projection))

    def apply(self, amap: np.ndarray, image: np.ndarray, contrast: bool = True) -> np.ndarray:
        """The map normalized by border distance (and local contrast)."""
        shape = np.shape(amap)
        if np.shape(image)[:2] != shape:
            raise ConfigError(f"map_norm: map {shape} and frame {np.shape(image)[:2]} differ in size")
        b = border_bins(shape, self.border_edges)
        if contrast:
            cb = np.digitize(local_contrast(image, self.sigma), np.asarray(self.edges))
            mean, spread = np.asarray(self.mean, np.float32)[b, cb], np.asarray(self.spread, np.float32)[b, cb]
        else:
            mean, spread = np.asarray(self.border_mean, np.float32)[b], np.asarray(self.border_spread, np.float32)[b]
        return ((amap - mean) / spread).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "kind": "border distance x local contrast",
            "sigma": self.sigma,
            "edges": list(self.edges),
            "mean": [list(r) for r in self.mean],
            "spread": [list(r) for r in self.spread],
            "border_edges": list(self.border_edges),
            "border_mean": list(self.border_mean),
            "border_spread": list(self.border_spread),
        } | ({"texture": self.texture.to_dict()} if self.texture is not None else {})

    @classmethod
    def from_dict(cls, d: dict) -> MapNorm | None:
        """None for an empty section (calibrated before the normalization existed)."""
        if not d:
            return None
        try:
            return cls(
                tuple(d["edges"]),
                tuple(tuple(r) for r in d["mean"]),
                tuple(tuple(r) for r in d["spread"]),
                tuple(d["border_edges"]),
                tuple(d["border_mean"]),
                tuple(d["border_spread"]),
                float(d.get("sigma", NORM_SIGMA)),
                TextureStats.from_dict(d.get("texture")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"map_norm is malformed ({exc}); recalibrate the bundle") from None


@dataclass(frozen=True)
class Scorer:
    """The image score a bundle decides with: its kind and, for edge_*/norm_* kinds, the normal map statistics."""

    kind: str
    norm: MapNorm | None = None

    def __post_init__(self):
        if self.kind not in IMAGE_SCORE_SPECS:
            raise ConfigError(f"unknown image score '{self.kind}'; choose one of {', '.join(IMAGE_SCORES)}")
        if not available(self.kind, self.norm):
            raise ConfigError(
                f"image score '{self.kind}' needs the normal images' statistics, which this bundle lacks: "
                "run `edgeproj calibrate` on it"
            )

    @classmethod
    def of(cls, manifest, kind: str | None = None) -> Scorer:
        """The scorer of a manifest (or of another `kind` with the manifest's statistics)."""
        return cls(kind or manifest.projection.image_score, MapNorm.from_dict(manifest.calibration.map_norm))

    def __call__(self, amap: np.ndarray, image: np.ndarray | None = None) -> float:
        return image_score(amap, self.kind, image, self.norm)
