"""Image and mask I/O: float32 RGB/gray in [0, 1], with explicit checks for missing, broken and truncated files.

Imports only numpy, OpenCV and the stdlib: the device runtime uses this module.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

# OpenCV refuses to decode images larger than this (its own guard, checked on the header); set before
# cv2 is first used, so a 20000 x 20000 PNG of a few hundred KB cannot take gigabytes of memory.
MAX_PIXELS = 64_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edgeproj.errors import DataError  # noqa: E402

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# A 3-channel image whose channels differ by at most this much (in [0, 1] units) counts as gray:
# grayscale content saved as RGB, or as a colour JPEG, is off by a rounding step at most.
GRAY_TOLERANCE = 2.0 / 255.0

# Float samples within this of [0, 1] are rounding, not an unnormalized image.
FLOAT_SLACK = 1e-6

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_truncated(data: bytes) -> bool:
    """True when the chunk chain runs past the end of the file or never reaches IEND."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return True
        if ctype == b"IEND":
            return False
        pos = end
    return True


def _jpeg_truncated(data: bytes) -> bool:
    # Zero padding after the EOI marker is common (fixed-size buffers); anything else is not.
    return not data.rstrip(b"\x00").endswith(b"\xff\xd9")


def header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG, JPEG or BMP header without decoding the pixels (None: unknown)."""
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"BM") and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    if data.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 9 <= len(data):
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                pos += 2
                continue
            length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
            # Start-of-frame markers (baseline, progressive, ...) carry the size; DHT/JPG/DAC do not.
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return w, h
            pos += 2 + length
    return None


def check_pixels(w: int, h: int, max_pixels: int, what: str) -> None:
    """DataError when an image of w x h pixels exceeds the limit (a memory bound on small devices)."""
    if w * h > max_pixels:
        raise DataError(
            f"{what} is {w}x{h} = {w * h / 1e6:.1f} MP, above the limit of {max_pixels / 1e6:.1f} MP; "
            "resize it or raise --max-pixels"
        )


def _decode(path: Path, what: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read and decode a file with IMREAD_UNCHANGED after checking that it exists, is complete and not too large."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} {path} does not exist; check the path")
    if not path.is_file():
        raise DataError(f"{what} {path} is not a file; pass the path of an image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {what} {path} ({exc.strerror}); check its permissions") from None
    if not data:
        raise DataError(f"{what} {path} is empty (0 bytes); re-export or remove it")
    if data.startswith(_PNG_SIGNATURE) and _png_truncated(data):
        raise DataError(f"{what} {path} is a truncated PNG (no IEND chunk); re-copy or re-export it")
    if data.startswith(b"\xff\xd8") and _jpeg_truncated(data):
        raise DataError(f"{what} {path} is a truncated JPEG (no FFD9 end marker); re-copy or re-export it")
    size = header_size(data)
    if size is not None:
        check_pixels(*size, max_pixels, f"{what} {path}")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is not None and img.size:
        check_pixels(img.shape[1], img.shape[0], max_pixels, f"{what} {path}")
    if img is None or img.size == 0:
        raise DataError(f"{what} {path} cannot be decoded; it must be a PNG, JPEG, BMP or TIFF file (re-export or remove it)")
    return img


def float_problem(a: np.ndarray) -> str:
    """What makes float samples unusable ('' when nothing does, and for integer samples): NaN or infinite
    values, or values outside [0, 1] beyond rounding (FLOAT_SLACK). Reading and the frame gate both ask."""
    if not np.issubdtype(a.dtype, np.floating):
        return ""
    finite = np.isfinite(a)
    if not finite.all():
        return f"{int(a.size - np.count_nonzero(finite))} NaN or infinite value(s)"
    lo, hi = float(a.min()), float(a.max())
    if lo < -FLOAT_SLACK or hi > 1.0 + FLOAT_SLACK:
        return f"values {lo:.4g}..{hi:.4g}, outside [0, 1]"
    return ""


def _to_float(img: np.ndarray, path: Path) -> np.ndarray:
    """Samples as float32 in [0, 1]. A float image is taken as it is, never repaired: a non-finite value
    or one outside [0, 1] (beyond rounding, FLOAT_SLACK) is a DataError naming the file."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    if img.dtype in (np.float32, np.float64):
        if problem := float_problem(img):
            raise DataError(
                f"float image {path} holds {problem}: a broken camera or export, or samples in 0-255; fix the file, or "
                "save it scaled to [0, 1] or as 8- or 16-bit (edgeproj never repairs pixels)"
            )
        return np.clip(img, 0.0, 1.0).astype(np.float32)  # only rounding-level excess is left to clip
    raise DataError(f"image {path} has unsupported sample type {img.dtype}; save it as 8- or 16-bit")


def read_image(path: str | Path, channels: int | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image as float32 HxWxC in [0, 1], RGB channel order.

    8- and 16-bit PNG, JPEG, BMP and TIFF are supported. Alpha is dropped (RGBA -> RGB, gray+alpha -> gray).

    Channel rule when ``channels`` is given:
      * ``channels=1``: a gray image is returned as is; a 3-channel image is accepted only if its
        channels differ by at most 2/255 everywhere (gray content stored as RGB) and is then
        returned as their mean; a real colour image raises DataError.
      * ``channels=3``: an RGB image is returned; a gray image raises DataError (no silent replication).

    Args:
        path: Image file.
        channels: Expected channel count (1 or 3), or None to keep the file's own (1 or 3).
        max_pixels: Refuse larger images (checked on the header before decoding where the format allows).

    Returns:
        float32 array of shape (H, W, C).

    Raises:
        DataError: missing, empty, unreadable or truncated file, unsupported sample type, or channel mismatch.
    """
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, not {channels}")
    path = Path(path)
    raw = _decode(path, max_pixels=max_pixels)
    img = _to_float(raw, path)
    if img.ndim == 2:
        img = img[:, :, None]
    elif img.shape[2] == 2:
        img = img[:, :, :1]
    elif img.shape[2] >= 3:
        img = np.ascontiguousarray(img[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped
    if channels is None or img.shape[2] == channels:
        return img
    if channels == 1:
        if float(np.ptp(img, axis=2).max()) <= GRAY_TOLERANCE:
            return img.mean(axis=2, keepdims=True, dtype=np.float32)
        raise DataError(
            f"image {path} is RGB but 1 channel (grayscale) is expected; convert it to grayscale or use a 3-channel model"
        )
    raise DataError(f"image {path} is grayscale but 3 channels (RGB) are expected; convert it to RGB or use a 1-channel model")


def read_mask(path: str | Path, shape_hw: tuple[int, ...]) -> np.ndarray:
    """Read a ground-truth mask as bool HxW (nonzero in any channel = defect).

    Args:
        path: Mask file.
        shape_hw: The image's shape; only the first two entries (H, W) are used.

    Raises:
        DataError: missing, unreadable or truncated file, or a size different from the image's.
    """
    path = Path(path)
    raw = _decode(path, "mask")
    mask = raw != 0
    if mask.ndim == 3:
        mask = mask.any(axis=2)
    h, w = int(shape_hw[0]), int(shape_hw[1])
    if mask.shape != (h, w):
        raise DataError(
            f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image is {w}x{h}; masks must have their image's size"
        )
    return mask


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write an array as PNG, creating parent folders.

    Args:
        path: Output file.
        array: HxW or HxWxC (C = 1, 3 RGB or 4 RGBA); float in [0, 1] (clipped, stored as 8 bit),
            uint8, uint16 or bool (stored as 0/255).

    Returns:
        The path written.
    """
    path = Path(path)
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png: unsupported dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    elif arr.ndim != 2:
        raise ValueError(f"write_png: expected HxW or HxWxC with C in 1, 3, 4; got shape {arr.shape}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:  # pragma: no cover - OpenCV fails only on invalid input, excluded above
        raise DataError(f"cannot encode {path} as PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
    return path


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside a folder, sorted by name (hidden files skipped).

    Raises:
        DataError: the folder is missing, not a folder, or holds no image file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"folder {folder} does not exist; check the path")
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; pass a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DataError(f"folder {folder} holds no images (looked for {', '.join(IMAGE_EXTS)}); add images or fix the path")
    return files


def unique_stems(paths: list[Path]) -> list[str]:
    """Output names for input images: the file stem, and for names that collide, as many parent folders
    as it takes to tell them apart (a/good/000.png, b/good/000.png -> a_good_000, b_good_000)."""
    resolved = [Path(p).resolve() for p in paths]
    depth = [0] * len(resolved)

    def name(i: int) -> str:
        p = resolved[i]
        parents = p.parent.parts[len(p.parent.parts) - depth[i] :] if depth[i] else ()
        return "_".join([*(q for q in parents if q != os.sep), p.stem])

    while True:
        names = [name(i) for i in range(len(resolved))]
        groups: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            groups.setdefault(n, []).append(i)
        grow = [i for g in groups.values() if len(g) > 1 for i in g if depth[i] < len(resolved[i].parent.parts)]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    seen: dict[str, int] = {}
    out = []
    for n in names:  # the same file given twice still gets two outputs
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}_{k}")
    return out
