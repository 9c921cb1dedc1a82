"""Frames for the line figure: the bundle's own normal training images resized, or smooth noise without them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeproj.runtime.manifest import Manifest


def line_frames(manifest: Manifest, size: int, count: int) -> tuple[list[np.ndarray], str]:
    """`count` frames of size x size: the bundle's training images resized, or smooth noise without them."""
    import cv2

    from edgeproj.data.images import IMAGE_EXTS, read_image

    src = Path((manifest.training.get("data") or {}).get("source") or "")
    folder = src / "train" / "good" if (src / "train" / "good").is_dir() else src
    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_EXTS) if str(src) and folder.is_dir() else []
    frames = []
    for p in paths[:count]:
        img = read_image(p, channels=manifest.channels)
        frames.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR).reshape(size, size, manifest.channels))
    if frames:
        return frames, f"{len(frames)} training images of '{folder}' resized to {size}x{size}"
    rng = np.random.default_rng(0)
    for _ in range(count):
        small = rng.random((size // 16, size // 16, manifest.channels)).astype(np.float32)
        frames.append(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC).reshape(size, size, -1).clip(0, 1))
    return frames, f"{count} smooth noise frames (the training images are not reachable): stop rules rarely fire"
