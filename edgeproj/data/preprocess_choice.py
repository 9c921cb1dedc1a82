"""Choose the preprocessing (texture or object, working scale, patch, stride) for a training set, with reasons.

Nothing is guessed from a name the tool does not know. The order of precedence, per setting:

1. what the user gave (``--mode``, ``--resize``, ``--stride``);
2. MVTec AD's own category names keep the paper's setting (textures: resized to 512, objects: whole
   image at 128);
3. otherwise a rule measured on the images themselves:

   * **mode**: a texture is stationary: its local contrast and edge density are about the same in every
     cell of a 4x4 grid over the image, while an object on a background has empty and busy cells.
     The score is the larger coefficient of variation of those two figures over the cells (median over
     up to 16 images); below ``STATIONARY_LIMIT`` the set is a texture. Measured on real photographs:
     texture photographs score 0.04-0.26 (single 256-pixel crops of a woven rug up to 0.27), portraits
     and scenes 0.30-0.96, a centred object on a plain background 0.5-1. The limit sits above the
     textures' range because taking a texture for an object is the costly mistake (object mode shrinks
     the whole image to one 128-pixel patch); a close score is reported as borderline.
   * **scale** (texture): the paper halves MVTec's 1024-pixel images to 512, so the working image is
     half the source's short side, but never smaller than two patches (a single tile would leave
     training no room for random crops and inference no overlap) and never larger than the source:
     the default never upsamples. A source smaller than one patch is upsampled to the patch, and says so.

The choice is printed by ``edgeproj train`` and recorded in the run's config.json and the bundle's manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeproj.errors import ConfigError
from edgeproj.preprocess import MODES, Preprocess

MVTEC_TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
MVTEC_OBJECTS = ("bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw", "toothbrush", "transistor", "zipper")
PAPER_TEXTURE_RESIZE = 512
STATIONARY_LIMIT = 0.35
# Scores within this factor of the limit are reported as borderline (the user should confirm with --mode).
BORDERLINE = 1.25
GRID = 4
SAMPLE_IMAGES = 16
ANALYSIS_SIDE = 256  # images are measured with their short side at this size


@dataclass(frozen=True)
class PreprocessChoice:
    """The preprocessing chosen for a training set and why, one reason per setting."""

    preprocess: Preprocess
    reasons: dict[str, str]
    source_size: tuple[int, int]  # (height, width) of the source images (median)
    stationarity: float | None = None  # the texture/object score, when it was measured
    borderline: bool = False
    measured: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        d["source_size"] = list(self.source_size)
        return d

    def lines(self) -> list[str]:
        """Human-readable summary, one line per setting, for the start of `edgeproj train`."""
        p = self.preprocess
        h, w = self.source_size
        out = [f"preprocessing: {p.mode} mode, source images {w}x{h}"]
        out.append(f"  mode {p.mode}: {self.reasons['mode']}")
        if p.mode == "texture":
            out.append(f"  working size {p.resize} (scale {p.resize / min(h, w):.2f}): {self.reasons['resize']}")
            out.append(f"  patch {p.patch}, stride {p.stride}: {self.reasons['stride']}")
        else:
            out.append(f"  whole image resized to {p.patch}x{p.patch}, rotation +-{p.rotation:g} deg augmentation")
        if self.borderline:
            out.append("  the texture/object score is close to the limit: confirm with --mode texture or --mode object")
        return out


def stationarity(image: np.ndarray) -> float:
    """How much local contrast and edge density vary over a 4x4 grid (0: perfectly stationary)."""
    import cv2

    g = image.mean(axis=2) if image.ndim == 3 else image
    g = np.asarray(g, np.float32)
    h, w = g.shape
    s = ANALYSIS_SIDE / min(h, w)
    if s < 1:
        g = cv2.resize(g, (max(GRID, round(w * s)), max(GRID, round(h * s))), interpolation=cv2.INTER_AREA)
    # Contrast after removing slow illumination changes, which are not texture.
    high = g - cv2.GaussianBlur(g, (0, 0), 8)
    mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    h, w = g.shape
    ch, cw = h // GRID, w // GRID
    contrast, edges = [], []
    for i in range(GRID):
        for j in range(GRID):
            cell = (slice(i * ch, (i + 1) * ch), slice(j * cw, (j + 1) * cw))
            contrast.append(float(high[cell].std()))
            edges.append(float(mag[cell].mean()))

    def cv(values: list[float]) -> float:
        a = np.asarray(values)
        return float(a.std() / (a.mean() + 1e-3))

    return max(cv(contrast), cv(edges))


def _sample(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    idx = np.unique(np.linspace(0, len(images) - 1, min(SAMPLE_IMAGES, len(images))).round().astype(int))
    return [images[i] for i in idx]


def texture_resize(short_side: int, patch: int) -> tuple[int, str]:
    """The working size of a texture from its source's short side, and the rule's reason."""
    half = round(short_side / 2)
    if short_side < patch:
        return patch, f"the source ({short_side} px) is smaller than one patch: upsampled to {patch}"
    if half >= 2 * patch:
        return half, "half the source's short side, as the paper's 512 for MVTec's 1024-pixel images"
    size = min(short_side, 2 * patch)
    why = "the source kept at full resolution" if size == short_side else f"two patches ({2 * patch}) wide"
    return size, f"{why}: half the source ({half}) would leave fewer than two patches across; never upsampled"


def choose_preprocess(
    images: Sequence[np.ndarray],
    category: str | None,
    channels: int,
    mode: str | None = None,
    resize: int | None = None,
    stride: int | None = None,
    patch: int = 128,
) -> PreprocessChoice:
    """The preprocessing for these training images (HxWxC float arrays), with a stated reason per setting."""
    if not images:
        raise ConfigError("no training images to choose the preprocessing from")
    if mode is not None and mode not in MODES:
        raise ConfigError(f"preprocessing mode must be one of {MODES}, got '{mode}'")
    sizes = np.array([img.shape[:2] for img in images])
    h, w = (int(v) for v in np.median(sizes, axis=0))
    name = (category or "").lower()
    score = None
    borderline = False
    measured: dict = {}
    if mode is not None:
        mode_why = "given by the user (--mode)"
    elif name in MVTEC_TEXTURES:
        mode, mode_why = "texture", f"'{name}' is an MVTec AD texture category (paper setting)"
    elif name in MVTEC_OBJECTS:
        mode, mode_why = "object", f"'{name}' is an MVTec AD object category (paper setting)"
    else:
        scores = [stationarity(img) for img in _sample(images)]
        score = float(np.median(scores))
        measured = {"stationarity_per_image": [round(s, 4) for s in scores], "limit": STATIONARY_LIMIT}
        mode = "texture" if score < STATIONARY_LIMIT else "object"
        borderline = STATIONARY_LIMIT / BORDERLINE <= score <= STATIONARY_LIMIT * BORDERLINE
        relation = "below" if mode == "texture" else "at or above"
        mode_why = (
            f"measured on {len(scores)} images: local contrast and edge density vary by {score:.2f} over a "
            f"{GRID}x{GRID} grid, {relation} the stationarity limit {STATIONARY_LIMIT} "
            f"({'a stationary texture' if mode == 'texture' else 'an object or scene on a background'})"
        )
    reasons = {"mode": mode_why}
    if mode == "object":
        if resize is not None and resize != patch:
            raise ConfigError(f"--resize applies to texture mode; object mode resizes the whole image to {patch}")
        reasons |= {"resize": f"object mode: the whole image resized to {patch}", "stride": "object mode: one patch per image"}
        pre = Preprocess(mode="object", resize=patch, patch=patch, stride=stride or patch // 2, channels=channels)
    else:
        if resize is not None:
            size, size_why = resize, "given by the user (--resize)"
        elif name in MVTEC_TEXTURES and min(h, w) >= PAPER_TEXTURE_RESIZE:
            size, size_why = PAPER_TEXTURE_RESIZE, "MVTec AD texture category: the paper's 512"
        else:
            size, size_why = texture_resize(min(h, w), patch)
        reasons["resize"] = size_why
        reasons["stride"] = "given by the user (--stride)" if stride else "half a patch: tiles overlap by 50% at inference"
        pre = Preprocess(mode="texture", resize=size, patch=patch, stride=stride or patch // 2, channels=channels)
    return PreprocessChoice(pre, reasons, (h, w), score, borderline, measured)


def choose_for_paths(paths: Sequence[Path], category: str | None, channels: int, **overrides) -> PreprocessChoice:
    """`choose_preprocess` on image files (reads at most SAMPLE_IMAGES of them for the measurement)."""
    from edgeproj.data.images import read_image

    picked = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, min(SAMPLE_IMAGES, len(paths))).round().astype(int))]
    return choose_preprocess([read_image(p, channels=channels) for p in picked], category, channels, **overrides)
