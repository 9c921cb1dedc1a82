"""Preprocessing shared by training, export and the runtime (numpy/OpenCV only), described by the manifest.

Two modes, as in the paper (section 4.1):
  texture: the image is resized to `resize` x `resize` (paper: 512 for MVTec's 1024-pixel images; the
           default for other data is chosen in edgeproj.data.preprocess_choice; non-square frames keep their aspect
           ratio with the short side at `resize`); training takes random 128x128 crops, inference tiles
           it into overlapping 128x128 patches and stitches the maps (mean over overlaps).
  object:  the image is resized to 128x128; training adds rotation and translation augmentation.
Maps are resized back to the original image size before scoring. OpenCV is imported where it is used,
so a manifest (which holds a Preprocess) loads without it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgeproj.errors import ConfigError

MODES = ("texture", "object")


@dataclass(frozen=True)
class Preprocess:
    """How a raw image becomes 128x128 model inputs.

    Attributes:
        mode: texture or object.
        resize: side the whole image is resized to (texture: see edgeproj.data.preprocess_choice; object: equals patch).
        patch: model input side (128).
        stride: tile stride at inference (texture mode); patch // 2 gives 50% overlap.
        channels: 1 or 3.
        rotation: object augmentation, max degrees.
        translation: object augmentation, max fraction of the side.
    """

    mode: str = "texture"
    resize: int = 512
    patch: int = 128
    stride: int = 64
    channels: int = 1
    rotation: float = 15.0
    translation: float = 0.05

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"preprocessing mode must be one of {MODES}, got '{self.mode}'")
        if self.mode == "object" and self.resize != self.patch:
            raise ConfigError("object mode resizes to the patch size: set resize equal to patch")
        if self.resize < self.patch:
            raise ConfigError(f"resize ({self.resize}) must be at least the patch size ({self.patch})")
        if not 0 < self.stride <= self.patch:
            raise ConfigError(f"stride must be in 1..{self.patch}, got {self.stride}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocess:
        return cls(**data)


def working_size(hw: tuple[int, int], pre: Preprocess) -> tuple[int, int]:
    """Height and width an image of size `hw` is resized to before tiling.

    Objects: patch x patch. Textures: resize x resize for square images; otherwise the short side
    becomes `resize` and the aspect ratio is kept, so a wide camera frame keeps the texture's scale.
    """
    if pre.mode == "object":
        return pre.patch, pre.patch
    h, w = hw
    if h == w:
        return pre.resize, pre.resize
    s = pre.resize / min(h, w)
    return max(pre.resize, round(h * s)), max(pre.resize, round(w * s))


def resize_to(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize HxWxC float32 to hw (area filter when shrinking)."""
    import cv2

    h, w = img.shape[:2]
    if (h, w) == tuple(hw):
        return img
    interp = cv2.INTER_AREA if hw[0] * hw[1] < h * w else cv2.INTER_LINEAR
    out = cv2.resize(img, (hw[1], hw[0]), interpolation=interp)
    return out.reshape(hw[0], hw[1], img.shape[2])


def prepare(img: np.ndarray, pre: Preprocess) -> np.ndarray:
    """The image at its working size (see `working_size`)."""
    return resize_to(img, working_size(img.shape[:2], pre))


def tile_origins(side: int, patch: int, stride: int) -> list[int]:
    """Top-left offsets covering [0, side) with the given stride; the last tile is flush with the edge."""
    if side <= patch:
        return [0]
    starts = list(range(0, side - patch + 1, stride))
    if starts[-1] != side - patch:
        starts.append(side - patch)
    return starts


def to_patches(img: np.ndarray, pre: Preprocess) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """An HxWxC image as model inputs (P x C x 128 x 128) and the tile origins in the working frame."""
    work = prepare(img, pre)
    h, w = work.shape[:2]
    p = pre.patch
    origins = [(y, x) for y in tile_origins(h, p, pre.stride) for x in tile_origins(w, p, pre.stride)]
    tiles = np.stack([work[y : y + p, x : x + p] for y, x in origins]).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(tiles, dtype=np.float32), origins


def stitch(maps: np.ndarray, origins: list[tuple[int, int]], pre: Preprocess, out_hw: tuple[int, int]) -> np.ndarray:
    """Average per-tile maps (P x 128 x 128) over overlaps, then resize to the original image size."""
    import cv2

    h, w = working_size(out_hw, pre)
    p = pre.patch
    acc = np.zeros((h, w), np.float64)
    cnt = np.zeros((h, w), np.float64)
    for m, (y, x) in zip(maps, origins):
        acc[y : y + p, x : x + p] += m
        cnt[y : y + p, x : x + p] += 1
    full = (acc / np.maximum(cnt, 1)).astype(np.float32)
    if (h, w) != tuple(out_hw):
        full = cv2.resize(full, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR)
    return full


def augment_object(img: np.ndarray, pre: Preprocess, rng: np.random.Generator) -> np.ndarray:
    """Random rotation and translation of a resized object image (border replicated)."""
    import cv2

    side = img.shape[0]
    angle = rng.uniform(-pre.rotation, pre.rotation)
    tx, ty = rng.uniform(-pre.translation, pre.translation, size=2) * side
    mat = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    mat[:, 2] += (tx, ty)
    out = cv2.warpAffine(img, mat, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out.reshape(side, side, img.shape[2])


def random_patch(img: np.ndarray, pre: Preprocess, rng: np.random.Generator) -> np.ndarray:
    """One training sample (C x 128 x 128) from a preprocessed (resized) image."""
    p = pre.patch
    if pre.mode == "object":
        out = augment_object(img, pre, rng)
    else:
        y, x = rng.integers(0, img.shape[0] - p + 1), rng.integers(0, img.shape[1] - p + 1)
        out = img[y : y + p, x : x + p]
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)
