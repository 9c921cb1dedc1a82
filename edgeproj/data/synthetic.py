"""Synthetic defects with exact masks, injected into held-out normal images: a quality check without labels.

Realistic defects are pasted into defect-free images and written as an MVTec-AD-layout test set, so the
ordinary evaluation scores a model on a category that has no labelled defects. The generator shares no
code with the procedural demo data (``edgeproj.data.demo``): rankings measured here are compared with
rankings on the demo's own defects, and a shared generator would make that comparison circular.

Kinds (each drawn at a size log-uniform from about 16 px of area, 4 px across, up to
``max_area_fraction`` of the image; for a scratch the length is log-uniform over the matching range):

* ``foreign``: a patch from another image (or a far part of the same one), rotated 30-150 degrees
  and/or rescaled 0.5-0.75x or 1.4-2x, pasted with an irregular outline.
* ``scratch``: a thin (1-3 px) anti-aliased cubic Bezier curve, 0.15-0.4 brighter or darker.
* ``stain``: an irregular blob with soft edges that scales intensity by +-10-30 %; in RGB with a tint.
* ``missing``: an irregular hole with a hard edge showing a nearly flat dark or bright background.
* ``blur``: an irregular region gaussian-blurred with sigma 1.5-4 px.

The mask is exactly the visibly changed pixels: values are clipped and quantized to 8-bit levels first,
then a pixel of the defect's support is in the mask when it changed by at least ``MASK_MIN_CHANGE`` in
any channel. Pixels outside the mask differ from the (quantized) original by less than that, so the
mask is exact with respect to the written PNGs.

Imports numpy, OpenCV, the stdlib and edgeproj's image writer and errors only (no torch).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeproj.data.images import write_png
from edgeproj.errors import ConfigError, DataError

KINDS = ("foreign", "scratch", "stain", "missing", "blur")
# A pixel belongs to the defect mask when the defect changed it by at least this (any channel, [0, 1]
# units): the mask is exactly the visibly changed pixels. 0.02 * 255 = 5.1, so it means "6 levels or
# more" with no rounding ambiguity on 8-bit values.
MASK_MIN_CHANGE = 0.02
MIN_SIZE = 64  # smallest image side accepted
MIN_AREA = 16.0  # smallest drawn extent in pixels of area: a defect about 4 px across
MIN_MASK_PIXELS = 9  # fewer changed pixels than this is no defect: redraw
MAX_ATTEMPTS = 30  # redraws before the image is declared unsuitable for a kind
MARKER = "synthetic.json"  # written into the category folder; a rerun may replace only such a folder


@dataclass(frozen=True)
class SyntheticDefect:
    """One injected defect.

    Attributes:
        image: HxWxC float32 in [0, 1], on 8-bit levels (k / 255) like a saved PNG read back.
        mask: bool HxW, exactly the pixels changed by at least ``MASK_MIN_CHANGE``.
        kind: one of ``KINDS``.
        area_fraction: ``mask.sum() / (H * W)``.
    """

    image: np.ndarray
    mask: np.ndarray
    kind: str
    area_fraction: float


# ---------------------------------------------------------------- helpers


def _levels(x: np.ndarray) -> np.ndarray:
    """8-bit levels, rounded exactly as ``write_png`` rounds a float image."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _from_levels(levels: np.ndarray) -> np.ndarray:
    # The same expression read_image uses, so values equal a PNG read back bit for bit.
    return levels.astype(np.float32) / 255.0


def quantize(image: np.ndarray) -> np.ndarray:
    """An image clipped to [0, 1] and rounded to 8-bit levels (float32 k / 255), as a PNG round trip gives."""
    return _from_levels(_levels(np.asarray(image, dtype=np.float32)))


def _check_image(image: np.ndarray, what: str) -> np.ndarray:
    """The image as float32 HxWxC (HxW becomes HxWx1), or DataError."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise DataError(f"{what} must be HxWxC with C = 1 or 3, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{what} must be float in [0, 1] (as read_image returns), not {arr.dtype}")
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIZE:
        raise DataError(f"{what} is {w}x{h}; synthetic defects need at least {MIN_SIZE} px on each side")
    if not np.isfinite(arr).all():
        raise DataError(f"{what} holds NaN or infinite values")
    return arr.astype(np.float32, copy=False)


def _check_donor(donor: np.ndarray, i: int, channels: int) -> np.ndarray:
    """A donor as HxWxC float (cheap checks only: its values are checked where a patch is read)."""
    arr = np.asarray(donor)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.floating) or min(arr.shape) < 1:
        raise DataError(f"donor {i} must be a float HxWxC image in [0, 1], got {arr.dtype} of shape {arr.shape}")
    if arr.shape[2] != channels:
        raise DataError(f"donor {i} has {arr.shape[2]} channels but the image has {channels}; donors must match the image")
    return arr


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown synthetic defect kind '{kind}'; choose from {', '.join(KINDS)}")


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency random field: a coarse gaussian grid upsampled bicubically (float32 h x w)."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _fill_holes(region: np.ndarray) -> np.ndarray:
    """A bool region with its enclosed holes filled (flood fill of the background from outside)."""
    pad = np.pad(region, 1).astype(np.uint8)
    flood = pad.copy()
    cv2.floodFill(flood, np.zeros((pad.shape[0] + 2, pad.shape[1] + 2), np.uint8), (0, 0), 1)
    return region | (flood[1:-1, 1:-1] == 0)


def _blob(rng: np.random.Generator, area: float) -> np.ndarray:
    """An irregular connected region of about ``area`` pixels, centred in a bool window.

    Smoothed random noise over an elongated elliptical falloff, thresholded at the level that keeps
    ``area`` pixels: the falloff keeps the region local, the noise makes the outline irregular.
    """
    aspect = rng.uniform(1.0, 2.5)
    a = math.sqrt(area * aspect / math.pi)  # semi-axes of the ellipse of that area
    b = math.sqrt(area / (aspect * math.pi))
    side = 2 * math.ceil(2.0 * a) + 5  # room for the noise to push the outline out
    theta = rng.uniform(0.0, math.pi)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) - np.float32((side - 1) / 2)
    u = math.cos(theta) * xx + math.sin(theta) * yy
    v = -math.sin(theta) * xx + math.cos(theta) * yy
    noise = _smooth_noise(rng, side, side, int(rng.integers(3, 6))) + 0.5 * _smooth_noise(
        rng, side, side, int(rng.integers(7, 12))
    )
    field = rng.uniform(0.3, 0.7) * noise - ((u / a) ** 2 + (v / b) ** 2)
    k = max(1, int(round(area)))
    flat = field.ravel()
    region = (field >= np.partition(flat, flat.size - k)[flat.size - k]).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
    if n > 2:  # keep the largest piece: one defect, not a scatter
        region = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    return _fill_holes(region.astype(bool))


def _offset(rng: np.random.Generator, dim: int, win: int) -> int:
    """Window start along one axis: inside the image when it fits, else centred anywhere in the image."""
    if win <= dim:
        return int(rng.integers(0, dim - win + 1))
    return int(rng.integers(0, dim)) - win // 2


def _blob_window(rng: np.random.Generator, hw: tuple[int, int], area: float) -> tuple[slice, slice, np.ndarray]:
    """A blob placed in the image: the image rows and columns it covers and the region there (clipped)."""
    region = _blob(rng, area)
    (h, w), (wh, ww) = hw, region.shape
    top, left = _offset(rng, h, wh), _offset(rng, w, ww)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + wh, h), min(left + ww, w)
    return slice(y0, y1), slice(x0, x1), region[y0 - top : y1 - top, x0 - left : x1 - left]


def _inner_distance(region: np.ndarray) -> np.ndarray:
    """Distance of each region pixel to the nearest pixel outside it (0 outside)."""
    return cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 3)


# ---------------------------------------------------------------- the kinds
# Each takes the quantized image, the drawn area and the largest allowed (pixels), the generator and the
# donors; it returns the image rows and columns it touches, the support there (bool) and the new values
# there. Pixels outside the support keep their original values.

Drawn = tuple[slice, slice, np.ndarray, np.ndarray]


def _foreign(base: np.ndarray, area: float, max_area: float, rng: np.random.Generator, donors: Sequence[np.ndarray]) -> Drawn:
    ys, xs, region = _blob_window(rng, base.shape[:2], area)
    h, w = region.shape
    c = base.shape[2]
    donor = donors[int(rng.integers(len(donors)))] if donors else base
    # Rotation alone, rescaling alone or both; the ranges stay clear of 0 degrees and 1x so the pasted
    # texture's orientation or scale is visibly off.
    mode = int(rng.integers(3))
    angle = math.radians(rng.uniform(30.0, 150.0) * rng.choice([-1.0, 1.0])) if mode != 1 else 0.0
    scale = 1.0
    if mode != 0:
        scale = rng.uniform(0.5, 0.75) if rng.random() < 0.5 else rng.uniform(1.4, 2.0)
    reach = 0.5 * math.hypot(h, w) / scale + 2.0  # radius of the donor area the patch reads
    dh, dw = donor.shape[:2]
    lo = np.array([min(reach, (dh - 1) / 2), min(reach, (dw - 1) / 2)])
    hi = np.array([dh - 1, dw - 1]) - lo
    if donors:
        src = rng.uniform(lo, hi)
    else:  # the same image: the farthest of a few random centres, so the content is from elsewhere
        dst = np.array([(ys.start + ys.stop - 1) / 2, (xs.start + xs.stop - 1) / 2])
        cands = rng.uniform(lo, hi, size=(16, 2))
        src = cands[int(np.argmax(np.hypot(*(cands - dst).T)))]
    # Warp from a donor crop only: cheap on large donors, and the anti-alias blur stays local.
    r = int(math.ceil(reach)) + 4
    sy0, sx0 = max(int(src[0]) - r, 0), max(int(src[1]) - r, 0)
    crop = np.asarray(donor[sy0 : int(src[0]) + r + 1, sx0 : int(src[1]) + r + 1], dtype=np.float32)
    if not np.isfinite(crop).all():
        raise DataError("a donor image holds NaN or infinite values")
    crop = np.ascontiguousarray(np.clip(crop, 0.0, 1.0))
    if scale < 1.0:  # shrinking samples sparser than a pixel: low-pass first so it does not alias
        crop = cv2.GaussianBlur(crop, (0, 0), 0.5 * math.sqrt(1.0 / scale**2 - 1.0)).reshape(crop.shape)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) / scale
    centre_dst = np.array([(w - 1) / 2, (h - 1) / 2])  # (x, y)
    centre_src = np.array([src[1] - sx0, src[0] - sy0])
    affine = np.hstack([rot, (centre_src - rot @ centre_dst)[:, None]])  # patch pixel -> crop position
    new = cv2.warpAffine(crop, affine, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)
    return ys, xs, region, new.reshape(h, w, c)


def _scratch(base: np.ndarray, area: float, max_area: float, rng: np.random.Generator, donors: Sequence[np.ndarray]) -> Drawn:
    h, w = base.shape[:2]
    width = int(rng.integers(1, 4))
    # The extent of a scratch is its length: log-uniform between the lengths whose footprint (about
    # width + 1 px wide once anti-aliased) covers MIN_AREA and max_area, and at most 3/4 of the short
    # side. The drawn area's position on its log scale sets the length's, so the cap does not pile
    # draws up at the longest length.
    pos = math.log(area / MIN_AREA) / math.log(max_area / MIN_AREA) if max_area > MIN_AREA else 0.0
    shortest = max(4.0, MIN_AREA / (width + 1))
    longest = max(shortest, min(0.75 * min(h, w), max_area / (width + 1)))
    length = shortest * (longest / shortest) ** pos
    a = rng.uniform(0.0, math.pi)
    d, n = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])  # (x, y)
    half = length / 2
    centre = np.array([rng.uniform(half + 2, w - 3 - half), rng.uniform(half + 2, h - 3 - half)])
    # Cubic Bezier: independent sideways offsets of the inner control points give bows and S-curves.
    p0, p3 = centre - d * half, centre + d * half
    p1 = centre - d * half / 3 + n * length * rng.uniform(-0.3, 0.3)
    p2 = centre + d * half / 3 + n * length * rng.uniform(-0.3, 0.3)
    t = np.linspace(0.0, 1.0, max(8, int(length / 2)) + 1)[:, None]
    pts = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
    # Candidates: the curve drawn thick in its bounding box; exact distances to the polyline only there.
    y0, x0 = (max(int(v) - width - 4, 0) for v in pts.min(axis=0)[::-1])
    y1, x1 = min(int(pts[:, 1].max()) + width + 5, h), min(int(pts[:, 0].max()) + width + 5, w)
    cand = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.polylines(cand, [np.round(pts - (x0, y0)).astype(np.int32)], False, 1, thickness=width + 4)
    yy, xx = np.nonzero(cand)
    yy, xx = yy + y0, xx + x0
    p = np.stack([xx, yy], axis=1).astype(np.float64)
    seg_a, seg = pts[:-1], np.diff(pts, axis=0)
    rel = p[:, None, :] - seg_a[None]
    s = np.clip((rel * seg).sum(-1) / np.maximum((seg * seg).sum(-1), 1e-12), 0.0, 1.0)
    dist = np.sqrt(((rel - s[..., None] * seg) ** 2).sum(-1)).min(axis=1)
    # Box-filter anti-aliasing: full coverage within width/2 of the centre line, a 1 px linear ramp outside.
    coverage = np.clip(width / 2 + 0.5 - dist, 0.0, 1.0)
    ys, xs = slice(int(yy.min()), int(yy.max()) + 1), slice(int(xx.min()), int(xx.max()) + 1)
    cov = np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.float32)
    cov[yy - ys.start, xx - xs.start] = coverage
    delta = rng.uniform(0.15, 0.4) * rng.choice([-1.0, 1.0])
    return ys, xs, cov > 0, base[ys, xs] + np.float32(delta) * cov[..., None]


def _stain(base: np.ndarray, area: float, max_area: float, rng: np.random.Generator, donors: Sequence[np.ndarray]) -> Drawn:
    ys, xs, region = _blob_window(rng, base.shape[:2], area)
    h, w = region.shape
    # Opacity rises smoothly from 0 at the outline, so the stain has no edge of its own; a faint
    # mottling keeps its interior from being perfectly even.
    t = np.clip(_inner_distance(region) / max(1.0, rng.uniform(0.15, 0.35) * math.sqrt(area)), 0.0, 1.0)
    opacity = t * t * (3 - 2 * t) * (0.85 + 0.15 * np.tanh(_smooth_noise(rng, h, w, 5)))
    shift = np.full(base.shape[2], rng.uniform(0.10, 0.30) * rng.choice([-1.0, 1.0]))
    if base.shape[2] == 3:
        # A colour cast: a tint orthogonal to grey moves the hue while the mean gain sets the brightness.
        tint = rng.standard_normal(3)
        tint -= tint.mean()
        shift += tint * rng.uniform(0.05, 0.15) / max(float(np.linalg.norm(tint)), 1e-6)
    return ys, xs, region, base[ys, xs] * (1.0 + opacity[..., None] * shift.astype(np.float32))


def _missing(base: np.ndarray, area: float, max_area: float, rng: np.random.Generator, donors: Sequence[np.ndarray]) -> Drawn:
    ys, xs, region = _blob_window(rng, base.shape[:2], area)
    h, w = region.shape
    c = base.shape[2]
    # Mostly the side that contrasts with the material around, sometimes not (a dark hole in dark stuff).
    mean = float(base[ys, xs][region].mean()) if region.any() else 0.5
    dark = rng.random() < (0.85 if mean >= 0.4 else 0.15)
    level = rng.uniform(0.02, 0.15) if dark else rng.uniform(0.85, 0.98)
    # What shows through is out of focus and unevenly lit: a faint gradient and slight noise, no texture.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = rng.uniform(0.0, 2 * math.pi)
    ramp = (math.cos(g) * xx + math.sin(g) * yy) / max(h, w)
    fill = level + rng.uniform(-0.04, 0.04) * ramp
    new = fill[..., None] + rng.normal(0.0, rng.uniform(0.004, 0.012), (h, w, c)).astype(np.float32)
    if c == 3:
        new += rng.uniform(-0.015, 0.015, 3).astype(np.float32)  # a near-neutral tint
    return ys, xs, region, new


def _blur(base: np.ndarray, area: float, max_area: float, rng: np.random.Generator, donors: Sequence[np.ndarray]) -> Drawn:
    ys, xs, region = _blob_window(rng, base.shape[:2], area)
    sigma = rng.uniform(1.5, 4.0)
    # Blur a margin around the region too, so its edge pixels average real neighbours, not a border rule.
    m = int(math.ceil(3 * sigma)) + 1
    y0, x0 = max(ys.start - m, 0), max(xs.start - m, 0)
    ext = np.ascontiguousarray(base[y0 : ys.stop + m, x0 : xs.stop + m])
    blurred = cv2.GaussianBlur(ext, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101).reshape(ext.shape)
    blurred = blurred[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    alpha = np.clip(_inner_distance(region) / 2.0, 0.0, 1.0)[..., None]  # a 2 px feather at the outline
    crop = base[ys, xs]
    return ys, xs, region, crop + alpha * (blurred - crop)


_DRAW = {"foreign": _foreign, "scratch": _scratch, "stain": _stain, "missing": _missing, "blur": _blur}


# ---------------------------------------------------------------- public API


def inject(
    image: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    donors: Sequence[np.ndarray] = (),
    max_area_fraction: float = 0.03,
) -> SyntheticDefect:
    """Inject one synthetic defect into a normal image.

    Args:
        image: HxWxC (C = 1 or 3; HxW is taken as HxWx1) float in [0, 1], at least 64 px on each side.
            It is quantized to 8-bit levels first, as if read back from a PNG.
        kind: one of ``KINDS``.
        rng: the only source of randomness: the same generator state gives the same defect.
        donors: other images of the same channel count for ``foreign`` (empty: a far part of ``image``).
        max_area_fraction: largest drawn extent, as a fraction of the image area; the mask never exceeds it.

    Returns:
        SyntheticDefect with the quantized defect image and its exact mask.

    Raises:
        ConfigError: unknown kind, or a max_area_fraction outside (0, 1] or below 16 px of area.
        DataError: a bad image or donor, or no draw among ``MAX_ATTEMPTS`` changed at least
            ``MIN_MASK_PIXELS`` pixels (the image is too flat or saturated for this kind).
    """
    _check_kind(kind)
    base_img = _check_image(image, "image")
    h, w, c = base_img.shape
    if not 0.0 < max_area_fraction <= 1.0:
        raise ConfigError(f"max_area_fraction must be in (0, 1], not {max_area_fraction}")
    max_area = max_area_fraction * h * w
    if max_area < MIN_AREA:
        raise ConfigError(
            f"max_area_fraction {max_area_fraction} allows {max_area:.1f} px on a {w}x{h} image; at least {MIN_AREA:.0f} px are needed"
        )
    # Donors are only validated here: a set of large images passes each one to every call, and only
    # the patch read from one of them is converted (in _foreign).
    donor_imgs = [_check_donor(d, i, c) for i, d in enumerate(donors)]

    base_levels = _levels(base_img)
    base = _from_levels(base_levels)
    too_small = too_large = 0
    for _ in range(MAX_ATTEMPTS):
        area = math.exp(rng.uniform(math.log(MIN_AREA), math.log(max_area)))  # log-uniform extent
        ys, xs, support, new = _DRAW[kind](base, area, max_area, rng, donor_imgs)
        # Clip and quantize before measuring, so the mask is exact for the PNG that will be written.
        window = base_levels[ys, xs].copy()
        window[support] = _levels(new)[support]
        changed = np.abs(_from_levels(window) - base[ys, xs]).max(axis=2) >= MASK_MIN_CHANGE
        mask_window = support & changed
        n = int(mask_window.sum())
        if n < MIN_MASK_PIXELS:
            too_small += 1
        elif n > max_area:
            too_large += 1
        else:
            levels = base_levels.copy()
            levels[ys, xs] = window
            mask = np.zeros((h, w), bool)
            mask[ys, xs] = mask_window
            return SyntheticDefect(image=_from_levels(levels), mask=mask, kind=kind, area_fraction=n / (h * w))
    if too_small >= too_large:
        raise DataError(
            f"no '{kind}' defect changed {MIN_MASK_PIXELS} pixels or more by {MASK_MIN_CHANGE} in {MAX_ATTEMPTS} draws: "
            "the image is too flat or saturated for this kind; use a textured image or another kind"
        )
    raise DataError(  # pragma: no cover - the shapes are drawn within the area bound
        f"every '{kind}' draw exceeded max_area_fraction {max_area_fraction} in {MAX_ATTEMPTS} draws; raise max_area_fraction"
    )


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name:
        # A leading dot would make the image a hidden file, which the layout loader skips.
        raise ConfigError(f"{what} {name!r} must be a plain file name (not empty, no '/', not starting with '.')")
    return name


def _prepare(cat_dir: Path) -> None:
    """Clear an earlier synthetic set; refuse to write into a non-empty folder this module did not make."""
    if cat_dir.exists() and not cat_dir.is_dir():
        raise DataError(f"{cat_dir} exists and is not a folder; choose another output folder or category")
    if cat_dir.is_dir() and any(cat_dir.iterdir()):
        if not (cat_dir / MARKER).is_file():
            raise DataError(f"{cat_dir} exists and is not empty; choose an empty output folder or another category")
        shutil.rmtree(cat_dir)


def write_synthetic_set(
    images: Sequence[np.ndarray],
    names: Sequence[str],
    out_root: Path,
    category: str = "synthetic",
    per_image: int = 5,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    max_area_fraction: float = 0.03,
) -> dict:
    """Write normal images and synthetic defects in them as an MVTec-layout test set.

    Layout under ``out_root/category``: ``test/good/<name>.png`` (each clean image, quantized),
    ``test/<kind>/<name>_<k>.png`` and ``ground_truth/<kind>/<name>_<k>_mask.png`` for defect k of an
    image, and ``train/good/`` with a copy of the first clean image (the layout loader needs a train
    folder; it is not meant for training). Image i, defect k gets ``kinds[(i * per_image + k) % len(kinds)]``
    and the other images as donors, drawn from ``default_rng([seed, i, k])``. An earlier synthetic set in
    the same folder is replaced; ``synthetic.json`` there holds the returned summary.

    Returns:
        {"images", "defects", "per_kind", "area_fraction": {"min", "median", "max"}, "kinds", "seed",
        "mask_min_change", "max_area_fraction"}.

    Raises:
        ConfigError: unknown kind, per_image < 1, no images, names and images of different lengths,
            duplicate or unusable names, a negative seed.
        DataError: an image smaller than 64 px or of another channel count than the first, a non-empty
            output folder not made by this function, or an image too flat for a kind.
    """
    kinds = tuple(kinds)
    if not kinds:
        raise ConfigError(f"kinds is empty; choose from {', '.join(KINDS)}")
    for kind in kinds:
        _check_kind(kind)
    if isinstance(per_image, bool) or not isinstance(per_image, (int, np.integer)) or per_image < 1:
        raise ConfigError(f"per_image must be an integer of at least 1, not {per_image!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, not {seed!r}")
    if len(images) == 0:
        raise ConfigError("no images given; pass at least one normal image")
    if len(names) != len(images):
        raise ConfigError(f"{len(names)} names for {len(images)} images; give one name per image")
    names = [_check_name(n, "image name") for n in names]
    if len(set(names)) != len(names):
        raise ConfigError("image names must be unique (they become file names)")
    _check_name(category, "category")
    clean = [quantize(_check_image(img, f"image '{n}'")) for img, n in zip(images, names)]
    for n, img in zip(names, clean):
        if img.shape[2] != clean[0].shape[2]:
            raise DataError(
                f"image '{n}' has {img.shape[2]} channels but '{names[0]}' has {clean[0].shape[2]}; use one channel count"
            )

    cat_dir = Path(out_root) / category
    _prepare(cat_dir)
    for n, img in zip(names, clean):
        write_png(cat_dir / "test" / "good" / f"{n}.png", img)
    write_png(cat_dir / "train" / "good" / f"{names[0]}.png", clean[0])

    per_kind = dict.fromkeys(kinds, 0)
    fractions = []
    for i, (n, img) in enumerate(zip(names, clean)):
        donors = clean[:i] + clean[i + 1 :]
        for k in range(per_image):
            kind = kinds[(i * per_image + k) % len(kinds)]
            # One stream per (image, defect): a defect does not change when others are added or fail.
            d = inject(img, kind, np.random.default_rng([int(seed), i, k]), donors, max_area_fraction)
            write_png(cat_dir / "test" / kind / f"{n}_{k}.png", d.image)
            write_png(cat_dir / "ground_truth" / kind / f"{n}_{k}_mask.png", d.mask)
            per_kind[kind] += 1
            fractions.append(d.area_fraction)

    summary = {
        "images": len(clean),
        "defects": len(fractions),
        "per_kind": per_kind,
        "area_fraction": {
            "min": float(np.min(fractions)),
            "median": float(np.median(fractions)),
            "max": float(np.max(fractions)),
        },
        "kinds": list(kinds),
        "seed": int(seed),
        "mask_min_change": MASK_MIN_CHANGE,
        "max_area_fraction": float(max_area_fraction),
    }
    (cat_dir / MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
