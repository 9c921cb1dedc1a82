"""The paper's inpainting study (section 4.2) on images the project makes: a known mask (eq. 7) and blind (eq. 8).

Clean normal images get a square painted over; each method fills it, through the deployed runtime:
  reconstruction  f(x) pasted into the square (the autoencoder baseline),
  eq. 7           Adam on the plain gradient restricted to the known mask Omega,
  eq. 8           the tuned update on the whole image, without the mask (blind).
PSNR and SSIM are measured against the clean image, inside the square and over the whole image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeproj import contract
from edgeproj.runtime.projector import Projector
from edgeproj.runtime.scoring import ssim_map


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(ssim_map(np.moveaxis(a, -1, 0), np.moveaxis(b, -1, 0)).mean())


def corrupt(img: np.ndarray, rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The image with a side x side square painted flat gray plus noise, and the square's mask (H x W bool)."""
    h, w = img.shape[:2]
    y, x = int(rng.integers(side, h - 2 * side)), int(rng.integers(side, w - 2 * side))
    mask = np.zeros((h, w), bool)
    mask[y : y + side, x : x + side] = True
    out = img.copy()
    out[mask] = np.clip(0.5 + rng.normal(0, 0.05, (int(mask.sum()), img.shape[2])), 0, 1)
    return out, mask


def reconstruction(proj: Projector, image: np.ndarray) -> np.ndarray:
    """f(x) of a whole image in the model's working frame (tiles reconstructed and stitched)."""
    from edgeproj.preprocess import to_patches, working_size
    from edgeproj.runtime.projector import stitch_image

    pre = proj.manifest.preprocess
    tiles, origins = to_patches(image, pre)
    recon = proj.gradient(tiles, tiles)[contract.RECON]
    return stitch_image(recon, origins, pre, working_size(image.shape[:2], pre))


def inpainting_study(proj: Projector, images: list[np.ndarray], side: int = 32, iterations: int = 200, seed: int = 0):
    """Fill a painted square in each clean image by the three methods; returns (figures per image, panels)."""
    import cv2

    rng = np.random.default_rng(seed)
    rows, panels = [], []
    for clean in images:
        bad, mask = corrupt(clean, rng, side)
        omega = np.repeat(mask[:, :, None], clean.shape[2], axis=2).astype(np.float32)
        base = proj.settings(max_iterations=iterations).without_rec_loss_stop()
        eq7 = base.with_overrides(tuned=False)
        (r7,) = proj.project([bad], weights=[omega], settings=eq7)
        (r8,) = proj.project([bad], settings=base)
        h, w = clean.shape[:2]
        size = lambda a: cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR).reshape(clean.shape)  # noqa: E731
        recon = bad.copy()
        recon[mask] = size(reconstruction(proj, bad))[mask]
        out7 = bad.copy()
        out7[mask] = size(r7.projection)[mask]  # outside Omega the image is untouched by construction
        out8 = size(r8.projection)
        ys, xs = np.nonzero(mask)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        pad = (slice(max(0, box[0].start - 8), box[0].stop + 8), slice(max(0, box[1].start - 8), box[1].stop + 8))
        fig = {}
        for name, img in (("corrupted", bad), ("reconstruction", recon), ("eq7_known_mask", out7), ("eq8_blind", out8)):
            fig[name] = {"psnr_region": psnr(img[box], clean[box]), "ssim_region": _ssim(img[pad], clean[pad]),
                         "psnr_image": psnr(img, clean), "ssim_image": _ssim(img, clean)}  # fmt: skip
        fig["iterations"] = {"eq7": float(np.mean(r7.iterations)), "eq8": float(np.mean(r8.iterations))}
        rows.append(fig)
        panels.append([clean, bad, recon, out7, out8])
    return rows, panels


def summarize(rows: list[dict]) -> dict:
    """Mean PSNR/SSIM per method over the images."""
    methods = [k for k in rows[0] if k != "iterations"]
    return {m: {k: float(np.mean([r[m][k] for r in rows])) for k in rows[0][m]} for m in methods}


def write_figure(panels: list[list[np.ndarray]], path: Path) -> Path:
    """One row per image: clean, corrupted, reconstruction, eq. 7, eq. 8."""
    import cv2

    from edgeproj import overlays

    titles = ("clean", "corrupted", "reconstruction f(x)", "eq. 7 known mask", "eq. 8 blind")
    rows = []
    for row in panels:
        tiles = [np.pad(overlays.to_u8(p), ((18, 2), (2, 2), (0, 0)), constant_values=255) for p in row]
        strip = np.hstack(tiles)
        for j, t in enumerate(titles):
            cv2.putText(strip, t, (j * tiles[0].shape[1] + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        rows.append(strip)
    overlays.write(path, np.vstack(rows))
    return path
