"""`edgeproj inpaint`: fill a known masked region (paper eq. 7) or repair blindly (eq. 8)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from edgeproj.cli.common import AlphaOverride, LamOverride, MaxIterationsOverride, backend_flags
from edgeproj.cli.groups import takes

if TYPE_CHECKING:
    from edgeproj.runtime.projector import BackendChoice


@takes(backend_flags(batch=8))
def command(
    bundle: Path = typer.Argument(..., help="Bundle directory."),
    image: Path = typer.Argument(..., help="Image to repair."),
    out: Path = typer.Option(..., "--out", "-o", help="Output PNG."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Known region to fill (nonzero = fill); none: blind inpainting."),
    choice: BackendChoice = None,
    max_iterations: Optional[int] = MaxIterationsOverride,
    alpha: Optional[float] = AlphaOverride,
    lam: Optional[float] = LamOverride,
    json_out: bool = typer.Option(False, "--json", help="Print a summary as JSON on stdout."),
):
    """Inpaint an image: with --mask only the masked pixels move (eq. 7); without, the tuned update (eq. 8)."""
    import cv2
    import numpy as np

    from edgeproj.cli.common import output_file
    from edgeproj.cli.output import console, emit_json
    from edgeproj.data.images import read_image, read_mask, write_png
    from edgeproj.runtime import load_manifest

    manifest = load_manifest(bundle)
    output_file(out)
    settings = manifest.projection.with_overrides(max_iterations=max_iterations, alpha=alpha, lam=lam)
    if mask is not None:
        # Known-mask inpainting follows eq. 7: the plain gradient restricted to Omega, no stop on L_r.
        settings = settings.with_overrides(tuned=False).without_rec_loss_stop()
    img = read_image(image, channels=manifest.channels)
    weights = None
    if mask is not None:
        m = read_mask(mask, img.shape[:2]).astype(np.float32)
        weights = [np.repeat(m[:, :, None], img.shape[2], axis=2)]
    with choice.projector(manifest) as proj:
        (res,) = proj.project([img], weights=weights, settings=settings)
    repaired = cv2.resize(res.projection, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR).reshape(img.shape)
    if mask is not None:
        # Outside Omega the image is untouched by construction; copy it bit-exactly past the resizes.
        keep = weights[0] == 0
        repaired[keep] = img[keep]
    write_png(out, repaired)
    summary = {
        "image": str(image),
        "mask": str(mask) if mask else None,
        "mode": "known-mask (eq. 7)" if mask else "blind (eq. 8)",
        "out": str(out),
        **res.summary(),
    }
    if json_out:
        emit_json(summary)
    else:
        console().print(f"{summary['mode']}: {summary['iterations_mean']:.0f} iterations, written to {out}")
