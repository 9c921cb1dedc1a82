"""A small procedural data set in the MVTec AD layout, for demos and end-to-end tests.

Two textures: ``grid`` (a regular woven mesh) and ``stone`` (an irregular band-pass noise texture).
Four defect kinds, each with an exact mask:

* ``scratch``: a thin (1-3 px) straight or curved line blended 35-60 % towards bright or dark;
  mask = the rasterised line (every changed pixel).
* ``hole``: a sharp-edged elliptical spot 0.2-0.3 darker or brighter than the texture it covers,
  keeping a quarter of that texture's contrast;
  mask = the ellipse (every changed pixel).
* ``stain``: a soft gaussian-profile blob that shifts intensity by up to +-0.10..0.20;
  mask = pixels where the stain's opacity exceeds ``STAIN_MASK_LEVEL`` (0.3).
* ``patch``: a square replaced by texture from elsewhere in the image, rotated 20-70 degrees and
  rescaled 0.75-0.87x or 1.15-1.4x; mask = the square.

Every image, good or not, gets the same sensor model last: gaussian noise (sigma ``NOISE_SIGMA``)
and 8-bit quantisation, so a defect cannot be found by missing noise. Output is deterministic per seed.
"""

from __future__ import annotations

import json
import shutil
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeproj.data.images import write_png
from edgeproj.errors import ConfigError, DataError

NOISE_SIGMA = 0.02
STAIN_MASK_LEVEL = 0.3
CATEGORIES = ("grid", "stone")
DEFECT_KINDS = ("scratch", "hole", "stain", "patch")
MARKER = "edgeproj_demo.json"


@dataclass
class Rendered:
    """One generated image: the clean float texture (defect included), its mask and the final 8-bit image."""

    clean: np.ndarray  # float64 HxW in [0, 1], before the sensor model
    mask: np.ndarray  # bool HxW
    image: np.ndarray  # uint8 HxW


# ---------------------------------------------------------------- textures


def _smooth_field(rng: np.random.Generator, s: int, cells: int = 6) -> np.ndarray:
    """Zero-mean, unit-scale low-frequency field (bicubic upsampling of a coarse random grid)."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (s, s), interpolation=cv2.INTER_CUBIC).astype(np.float64)


def _bandpass(rng: np.random.Generator, s: int, f0: float, bw: float) -> np.ndarray:
    """White noise filtered by a gaussian ring (centre f0, width bw, cycles/pixel), unit std."""
    noise = rng.standard_normal((s, s))
    f = np.hypot(np.fft.fftfreq(s)[:, None], np.fft.rfftfreq(s)[None, :])
    out = np.fft.irfft2(np.fft.rfft2(noise) * np.exp(-0.5 * ((f - f0) / bw) ** 2), s=(s, s))
    return out / out.std()


def _illumination(rng: np.random.Generator, s: int) -> np.ndarray:
    """A gentle linear light gradient (+-3 % across the image)."""
    g = np.linspace(-0.5, 0.5, s)
    return 1.0 + rng.uniform(-0.03, 0.03) * g[None, :] + rng.uniform(-0.03, 0.03) * g[:, None]


def _grid(rng: np.random.Generator, s: int) -> np.ndarray:
    """Woven mesh: rounded threads crossing over/under, with phase, width and brightness varied per image."""
    ss = 2 * s  # supersampled, then area-averaged, so thread edges are not aliased
    period = ss / 16 * rng.uniform(0.98, 1.02)
    half_width = rng.uniform(0.21, 0.25)  # thread half-width, fraction of the period
    angle = np.deg2rad(rng.uniform(-1.0, 1.0))
    c, sn = np.float32(np.cos(angle) / period), np.float32(np.sin(angle) / period)
    yy, xx = np.mgrid[0:ss, 0:ss].astype(np.float32) - np.float32((ss - 1) / 2.0)
    u = c * xx + sn * yy + np.float32(rng.uniform(0, 2))
    v = c * yy - sn * xx + np.float32(rng.uniform(0, 2))
    i, j = np.round(u), np.round(v)

    def profile(d):
        return np.sqrt(np.clip(1 - (d / np.float32(half_width)) ** 2, 0, 1))

    # Each thread dips where it passes under the crossing one; parity of (i + j) picks which is on top.
    pi = np.float32(np.pi)
    horiz = profile(np.abs(v - j)) * (0.72 + 0.28 * np.cos(pi * (u + j)))
    vert = profile(np.abs(u - i)) * (0.72 + 0.28 * np.cos(pi * (v + i + 1)))
    thread = np.maximum(horiz, vert)
    thread = cv2.resize(thread, (s, s), interpolation=cv2.INTER_AREA).astype(np.float64)
    background = rng.uniform(0.16, 0.20)
    amplitude = rng.uniform(0.57, 0.63)
    grain = 1.0 + 0.04 * _smooth_field(rng, s, 24)
    return (background + amplitude * thread * grain) * _illumination(rng, s)


def _stone(rng: np.random.Generator, s: int) -> np.ndarray:
    """Irregular stone-like texture: a new band-pass random field per image at three scales."""
    coarse = _bandpass(rng, s, 0.0, 10.0 / s)  # low-pass: pebble-sized blobs, ~20 px at 256
    medium = _bandpass(rng, s, 24.0 / s, 10.0 / s)
    fine = _bandpass(rng, s, 64.0 / s, 24.0 / s)
    base = rng.uniform(0.47, 0.53)
    tex = base + 0.10 * np.tanh(1.3 * coarse) + 0.04 * medium + 0.03 * fine
    return tex * _illumination(rng, s)


_TEXTURES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {"grid": _grid, "stone": _stone}


# ---------------------------------------------------------------- defects


def _center(rng: np.random.Generator, s: int, margin: float) -> np.ndarray:
    return rng.uniform(margin, s - 1 - margin, size=2)


def _scratch(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = img.shape[0]
    length = rng.uniform(0.15, 0.35) * s
    c = _center(rng, s, 0.25 * length + 0.05 * s)
    a = rng.uniform(0, np.pi)
    d, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    p0, p2 = c - d * length / 2, c + d * length / 2
    p1 = c + n * rng.uniform(-0.25, 0.25) * length  # 0 = straight, otherwise a quadratic bow
    t = np.linspace(0.0, 1.0, 64)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    m8 = np.zeros((s, s), np.uint8)
    width = int(rng.integers(1, 4))
    cv2.polylines(m8, [np.round(pts).astype(np.int32)], False, 1, thickness=width, lineType=cv2.LINE_8)
    mask = m8.astype(bool)
    target = 0.95 if rng.random() < 0.5 else 0.05
    alpha = rng.uniform(0.35, 0.6)
    out = img.copy()
    out[mask] = (1 - alpha) * img[mask] + alpha * target
    return out, mask


def _hole(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = img.shape[0]
    axes = rng.uniform(0.025, 0.045, size=2) * s
    c = _center(rng, s, axes.max() + 0.05 * s)
    m8 = np.zeros((s, s), np.uint8)
    cv2.ellipse(
        m8,
        (int(round(c[0])), int(round(c[1]))),
        (int(round(axes[0])), int(round(axes[1]))),
        rng.uniform(0, 180),
        0,
        360,
        1,
        thickness=-1,
        lineType=cv2.LINE_8,
    )
    mask = m8.astype(bool)
    inside = img[mask]
    target = np.clip(inside.mean() + rng.uniform(0.2, 0.3) * rng.choice([-1, 1]), 0.08, 0.92)
    out = img.copy()
    out[mask] = target + 0.25 * (inside - inside.mean())
    return out, mask


def _stain(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = img.shape[0]
    sig = rng.uniform(0.025, 0.045, size=2) * s
    c = _center(rng, s, 2.2 * sig.max() + 0.03 * s)
    a = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    dx, dy = xx - c[0], yy - c[1]
    p = (np.cos(a) * dx + np.sin(a) * dy) / sig[0]
    q = (-np.sin(a) * dx + np.cos(a) * dy) / sig[1]
    # An irregular rim: the gaussian opacity is modulated by a smooth random field.
    opacity = np.clip(np.exp(-0.5 * (p**2 + q**2)) * (1 + 0.2 * _smooth_field(rng, s, 10)), 0.0, 1.0)
    opacity[opacity < 0.02] = 0.0  # a local stain: no sub-quantisation tail over the whole image
    delta = rng.uniform(0.10, 0.20) * (1 if rng.random() < 0.5 else -1)
    return img + delta * opacity, opacity > STAIN_MASK_LEVEL


def _patch(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = img.shape[0]
    side = int(round(rng.uniform(0.09, 0.14) * s))
    x0, y0 = (int(v) for v in rng.integers(int(0.04 * s), s - side - int(0.04 * s), size=2))
    dst = np.array([x0 + (side - 1) / 2, y0 + (side - 1) / 2])
    while True:  # a source far enough away that the content is really from elsewhere
        src = rng.uniform(side, s - 1 - side, size=2)
        if np.hypot(*(src - dst)) >= 1.5 * side:
            break
    angle = np.deg2rad(rng.uniform(20, 70) * rng.choice([-1, 1]))
    scale = rng.uniform(1.15, 1.4) if rng.random() < 0.5 else rng.uniform(0.75, 0.87)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / scale
    affine = np.hstack([rot, (src - rot @ dst)[:, None]])  # destination pixel -> source position
    warped = cv2.warpAffine(
        img.astype(np.float32),
        affine,
        (s, s),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    ).astype(np.float64)
    mask = np.zeros((s, s), bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    out = img.copy()
    out[mask] = warped[mask]
    return out, mask


_DEFECTS = {"scratch": _scratch, "hole": _hole, "stain": _stain, "patch": _patch}


# ---------------------------------------------------------------- rendering and writing


def _key(seed: int, *parts: str | int) -> list[int]:
    return [int(seed)] + [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]


def render(category: str, kind: str, key: Sequence[int], size: int = 256) -> Rendered:
    """Render one image; texture, defect and noise draw from separate streams of ``key``.

    The same key with kind "good" gives the defect image's texture and noise without the defect,
    which is what the tests use to check the masks.
    """
    tex_ss, defect_ss, noise_ss = np.random.SeedSequence(list(key)).spawn(3)
    clean = _TEXTURES[category](np.random.default_rng(tex_ss), size)
    mask = np.zeros((size, size), bool)
    if kind != "good":
        clean, mask = _DEFECTS[kind](clean, np.random.default_rng(defect_ss))
    clean = np.clip(clean, 0.0, 1.0)
    noisy = clean + np.random.default_rng(noise_ss).normal(0.0, NOISE_SIGMA, clean.shape)
    image = np.round(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Rendered(clean=clean, mask=mask, image=image)


def _prepare(out: Path, categories: Sequence[str]) -> None:
    """Clear earlier demo output; refuse to write into a folder this generator did not make."""
    marker = out / MARKER
    for cat in categories:
        d = out / cat
        if d.exists() and any(d.iterdir()):
            if not marker.is_file():
                raise DataError(f"{d} exists and is not empty; choose an empty output folder")
            shutil.rmtree(d)


def make_demo(
    out: Path,
    seed: int = 0,
    size: int = 256,
    n_train: int = 48,
    n_test_good: int = 6,
    n_test_per_defect: int = 3,
    categories: tuple = CATEGORIES,
) -> dict:
    """Write the procedural demo data set (8-bit grayscale PNGs, MVTec layout) under ``out``.

    Args:
        out: Output root; categories become ``out/<category>``. Earlier demo output there is replaced.
        seed: Seed; the same seed gives byte-identical files.
        size: Image side in pixels (texture and defect scales follow it).
        n_train: Good training images per category.
        n_test_good: Good test images per category.
        n_test_per_defect: Test images per defect kind and category.
        categories: Subset of ("grid", "stone").

    Returns:
        Summary: root, seed, size, noise sigma, stain mask level, defect kinds and counts per category.

    Raises:
        ConfigError: unknown category or out-of-range size/count.
        DataError: ``out/<category>`` holds files not made by this generator.
    """
    unknown = [c for c in categories if c not in _TEXTURES]
    if unknown or not categories:
        raise ConfigError(f"unknown demo categories {unknown}; choose from {', '.join(CATEGORIES)}")
    if size < 64:
        raise ConfigError(f"--size must be at least 64, not {size}")
    if n_train < 1 or n_test_good < 0 or n_test_per_defect < 0:
        raise ConfigError("--n-train must be at least 1 and test counts at least 0")
    out = Path(out)
    _prepare(out, categories)

    counts: dict[str, dict] = {}
    for cat in categories:
        root = out / cat
        plan = [("train", "good", n_train), ("test", "good", n_test_good)]
        plan += [("test", k, n_test_per_defect) for k in DEFECT_KINDS]
        test_counts: dict[str, int] = {}
        for split, kind, n in plan:
            for idx in range(n):
                r = render(cat, kind, _key(seed, cat, f"{split}/{kind}", idx), size)
                write_png(root / split / kind / f"{idx:03d}.png", r.image)
                if kind != "good":
                    write_png(root / "ground_truth" / kind / f"{idx:03d}_mask.png", r.mask)
            if split == "test":
                test_counts[kind] = n
        counts[cat] = {"train": n_train, "test": test_counts, "masks": n_test_per_defect * len(DEFECT_KINDS)}

    summary = {
        "seed": seed,
        "size": size,
        "noise_sigma": NOISE_SIGMA,
        "stain_mask_level": STAIN_MASK_LEVEL,
        "defect_kinds": list(DEFECT_KINDS),
        "categories": counts,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    return {"root": str(out), **summary}
