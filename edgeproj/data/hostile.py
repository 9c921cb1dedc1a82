"""Frames that show no judgeable part, built from a good frame: what a real line meets when the camera,
the lighting or the conveyor goes wrong. The frame gate must turn every one of them into FAULT (or NG),
never OK; the tests and `benchmarks/gate_trial.py` use this one list.

Each class makes an array (HxWxC float in [0, 1] unless its file format says otherwise) and names the
file format it is written in: 8-bit PNG, or a 32-bit float TIFF for the classes about float images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class HostileClass:
    """One kind of frame the gate must stop: its name, its group in the reports, and how it is made."""

    name: str
    group: str  # blank, flat, blurred, exposure, occluded, other product, tiny, distorted, camera, float, non-finite
    make: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
    fmt: str = "png"  # png (8 bit) or tiff32 (float32 TIFF, values as made)
    rgb_only: bool = False  # a colour fault (a cast, a gray camera mode): made for RGB products only


def _shape(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.reshape(a.shape[0], a.shape[1], like.shape[2]), np.float32)


def _blur(sigma: float):
    return lambda g, o, r: _shape(cv2.GaussianBlur(g, (0, 0), sigma, borderType=cv2.BORDER_REFLECT), g)


def _exposure(f: float):
    return lambda g, o, r: np.clip(g * f, 0.0, 1.0).astype(np.float32)


def _half(g: np.ndarray, fill: np.ndarray) -> np.ndarray:
    out = g.copy()
    w = g.shape[1]
    out[:, w // 2 :] = fill[:, w // 2 :]
    return out


def _tiny(side: int, back_up: bool):
    def make(g, o, r):
        t = _shape(cv2.resize(g, (side, side), interpolation=cv2.INTER_AREA), g)
        if not back_up:
            return t
        return _shape(cv2.resize(t, (g.shape[1], g.shape[0]), interpolation=cv2.INTER_LINEAR), g)

    return make


def _stretch(g, o, r, f: float = 1.5):
    h, w = g.shape[:2]
    big = _shape(cv2.resize(g, (round(w * f), h), interpolation=cv2.INTER_LINEAR), g)
    x = (big.shape[1] - w) // 2
    return np.ascontiguousarray(big[:, x : x + w])


def _rotate(g, o, r, deg: float = 20.0):
    h, w = g.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return _shape(cv2.warpAffine(g, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), g)


def _perspective(g, o, r):
    h, w = g.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[0.2 * w, 0], [0.8 * w, 0], [w, h], [0, h]])  # the camera tilted: a keystone
    m = cv2.getPerspectiveTransform(src, dst)
    return _shape(cv2.warpPerspective(g, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), g)


def _zoom(g, o, r, f: float = 2.0):
    """The camera moved closer: the centre 1/f of the view fills the frame."""
    h, w = g.shape[:2]
    y, x = round(h * (1 - 1 / f) / 2), round(w * (1 - 1 / f) / 2)
    return _shape(cv2.resize(g[y : h - y, x : w - x], (w, h), interpolation=cv2.INTER_LINEAR), g)


def _glare(g, o, r):
    h, w = g.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    out = g.copy()
    out[((yy - h / 2) / (h / 5)) ** 2 + ((xx - w / 3) / (w / 6)) ** 2 < 1] = 1.0
    return out


def _vignette(g, o, r):
    h, w = g.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    fall = 1.0 - 0.6 * ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (h * h / 2)
    return (g * fall[:, :, None]).astype(np.float32)


def _jpeg(g, o, r, quality: int = 5):
    u8 = np.round(g * 255).astype(np.uint8)
    ok, buf = cv2.imencode(
        ".jpg", u8 if g.shape[2] == 1 else cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    out = out if g.shape[2] == 1 else cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
    return _shape(out.astype(np.float32) / 255.0, g)


def _patch(value: float):
    def make(g, o, r):
        out = g.copy()
        y, x = g.shape[0] // 3, g.shape[1] // 3
        out[y : y + 10, x : x + 10] = value
        return out

    return make


CLASSES: tuple[HostileClass, ...] = (
    HostileClass("blank_gray", "blank", lambda g, o, r: np.full_like(g, 0.5)),
    HostileClass("blank_black", "blank", lambda g, o, r: np.zeros_like(g)),
    HostileClass("blank_white", "blank", lambda g, o, r: np.ones_like(g)),
    HostileClass("flat_mean", "flat", lambda g, o, r: np.broadcast_to(g.mean(axis=(0, 1)), g.shape).astype(np.float32).copy()),
    HostileClass(
        "flat_noise", "flat",
        lambda g, o, r: np.clip(g.mean(axis=(0, 1)) + r.normal(0, 2 / 255, g.shape), 0, 1).astype(np.float32),
    ),
    HostileClass("blur_1px", "blurred", _blur(1.0)),
    HostileClass("blur_2px", "blurred", _blur(2.0)),
    HostileClass("blur_4px", "blurred", _blur(4.0)),
    HostileClass("motion_blur", "blurred", lambda g, o, r: _shape(cv2.filter2D(g, -1, np.full((1, 9), 1 / 9, np.float32)), g)),
    HostileClass("exposure_30", "exposure", _exposure(0.3)),
    HostileClass("exposure_50", "exposure", _exposure(0.5)),
    HostileClass("exposure_150", "exposure", _exposure(1.5)),
    HostileClass("exposure_200", "exposure", _exposure(2.0)),
    HostileClass("occluded_black", "occluded", lambda g, o, r: _half(g, np.zeros_like(g))),
    HostileClass("occluded_flat", "occluded", lambda g, o, r: _half(g, np.full_like(g, float(g.mean())))),
    HostileClass("occluded_other", "occluded", lambda g, o, r: _half(g, o)),
    HostileClass("other_product", "other product", lambda g, o, r: o.copy()),
    HostileClass("tiny_4", "tiny", _tiny(4, back_up=False)),
    HostileClass("tiny_16", "tiny", _tiny(16, back_up=False)),
    HostileClass("tiny_4_upsampled", "tiny", _tiny(4, back_up=True)),
    HostileClass("tiny_16_upsampled", "tiny", _tiny(16, back_up=True)),
    HostileClass("stretched", "distorted", _stretch),
    HostileClass("rotated", "distorted", _rotate),
    HostileClass("keystone", "distorted", _perspective),
    HostileClass("zoom_2x", "distorted", _zoom),
    HostileClass("sensor_noise", "camera", lambda g, o, r: np.clip(g + r.normal(0, 0.1, g.shape), 0, 1).astype(np.float32)),
    HostileClass("gamma_0.5", "camera", lambda g, o, r: np.sqrt(g).astype(np.float32)),
    HostileClass("gamma_2", "camera", lambda g, o, r: (g * g).astype(np.float32)),
    HostileClass("glare", "camera", _glare),
    HostileClass("vignette", "camera", _vignette),
    HostileClass("jpeg_q5", "camera", _jpeg),
    HostileClass(
        "colour_cast", "camera", lambda g, o, r: np.clip(g * np.array([1.3, 1.0, 0.75], np.float32), 0, 1), rgb_only=True
    ),
    HostileClass("gray_mode", "camera", lambda g, o, r: np.repeat(g.mean(axis=2, keepdims=True), 3, axis=2), rgb_only=True),
    HostileClass("float_0_255", "float", lambda g, o, r: (g * 255.0).astype(np.float32), fmt="tiff32"),
    HostileClass("nonfinite_inf", "non-finite", _patch(np.inf), fmt="tiff32"),
    HostileClass("nonfinite_nan", "non-finite", _patch(np.nan), fmt="tiff32"),
)  # fmt: skip
GROUPS = tuple(dict.fromkeys(c.group for c in CLASSES))


def other_like(other: np.ndarray, good: np.ndarray) -> np.ndarray:
    """`other` (another product's image) at the good frame's size and channel count."""
    o = np.asarray(other, np.float32)
    if o.ndim == 2:
        o = o[:, :, None]
    if o.shape[2] != good.shape[2]:
        o = np.repeat(o[:, :, :1], 3, axis=2) if good.shape[2] == 3 else o.mean(axis=2, keepdims=True)
    o = cv2.resize(o, (good.shape[1], good.shape[0]), interpolation=cv2.INTER_AREA)
    return _shape(o, good)


def make_frames(good: np.ndarray, other: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Every class's frame made from one good frame and another product's image (colour faults only for RGB)."""
    good = np.asarray(good, np.float32)
    if good.ndim == 2:
        good = good[:, :, None]
    o = other_like(other, good)
    rng = np.random.default_rng(seed)
    return {c.name: c.make(good, o, rng) for c in CLASSES if good.shape[2] == 3 or not c.rgb_only}


def write_frames(folder: Path, good: np.ndarray, other: np.ndarray, seed: int = 0, prefix: str = "") -> dict[str, Path]:
    """Write every class's frame into `folder` (PNG or float32 TIFF); returns class name -> file."""
    from edgeproj.data.images import write_png

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fmts = {c.name: c.fmt for c in CLASSES}
    out = {}
    for name, img in make_frames(good, other, seed).items():
        if fmts[name] == "tiff32":
            path = folder / f"{prefix}{name}.tiff"
            arr = img[:, :, 0] if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(path), np.ascontiguousarray(arr, np.float32)):
                raise OSError(f"OpenCV cannot write the float TIFF {path}")
        else:
            path = write_png(folder / f"{prefix}{name}.png", img)
        out[name] = path
    return out
