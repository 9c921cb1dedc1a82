"""`edgeproj calibrate`: thresholds from normal images, written into the bundle's manifest (runs on the device)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

import typer

from edgeproj.calibration.score_choice import CHOICE_PER_IMAGE
from edgeproj.cli.common import backend_flags, float_option
from edgeproj.cli.groups import takes
from edgeproj.runtime.backends import REGISTRY
from edgeproj.runtime.manifest import IMAGE_SCORES

if TYPE_CHECKING:
    from edgeproj.runtime.projector import BackendChoice


@takes(backend_flags(batch=8))
def command(
    bundle: Path = typer.Argument(..., help="Bundle directory (its manifest is rewritten atomically)."),
    normal_images: Path = typer.Argument(..., help="Folder of normal images, or an MVTec category folder (train/good)."),
    labelled: Optional[Path] = typer.Option(
        None, help="MVTec-layout root with labelled defects (with --category): best-F1 figures."
    ),
    category: Optional[str] = typer.Option(None, "--category", "-c", help="Category of --labelled."),
    stop: Literal["min", "quantile"] = typer.Option(
        "min", help="L_r stop threshold: 'min' over normal images (paper) or 'quantile'."
    ),
    stop_quantile: float = float_option(0.0, 0.0, 1.0, "Quantile for --stop quantile."),
    pixel_fpr: float = float_option(0.01, 0.0, 0.5, "Target per-pixel false-positive rate on normal images."),
    image_frr: float = float_option(0.01, 0.0, 0.5, "Target false-reject rate of normal images."),
    holdout: float = float_option(0.25, 0.0, 0.9, "Fraction of normal images held out to measure the rates reached."),
    synthetic_miss_rate: Optional[float] = typer.Option(
        None,
        min=0.0,
        max=0.5,
        help="Set the image threshold for this miss rate on synthetic defects drawn on the normal images "
        "(instead of --image-frr; the normal false-reject rate reached is recorded beside it).",
    ),
    synthetic_per_image: int = typer.Option(2, min=1, max=50, help="Synthetic defects per normal image."),
    gate_margin: float = float_option(
        3.0, 0.5, 50.0, "Frame gate: robust SDs beyond the normal images' min and max that a frame statistic may reach."
    ),
    aspect_tolerance: float = float_option(
        0.05, 0.0, 1.0, "Frame gate: accepted relative difference between a frame's aspect ratio and the normal images'."
    ),
    image_score: str = typer.Option(
        "auto",
        help="Image score: auto chooses it on synthetic defects drawn on the held-out images; or one of "
        + ", ".join(IMAGE_SCORES)
        + ".",
    ),
    choice_defects: int = typer.Option(
        CHOICE_PER_IMAGE, min=1, max=64, help="--image-score auto: synthetic defects drawn on each held-out image."
    ),
    choice: BackendChoice = None,
    precision_check: bool = typer.Option(
        False,
        "--precision-check",
        help="Measure FP16 vs FP32 on the backend's FP16 path ("
        + ", ".join(f"{n}: on {b.fp16_check or 'none, refused'}" for n, b in REGISTRY.items())
        + ").",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress output (bars on a terminal, timestamped lines otherwise)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the calibration section as JSON on stdout."),
):
    """Calibrate stop, pixel and image thresholds and the frame gate on normal images; no re-export needed.

    The frame gate records what a good frame looks like (brightness, contrast, sharpness, detail,
    clipped pixels, the flattest tile, the model's L_r at x0): a frame outside it is FAULT, never OK.
    Held-out images (those training never saw first) measure the false-reject rate of good parts, with
    its 95% upper bound. Refuses images with NaN or infinite pixels and never writes a non-finite
    threshold; the bundle must be writable (checked before any work).
    """
    from edgeproj.calibration.calibrate import CalibrationOptions, calibrate_bundle, load_normal
    from edgeproj.cli.output import console, emit_json, progress
    from edgeproj.data.mvtec import normal_images as list_normal
    from edgeproj.errors import ConfigError
    from edgeproj.runtime import load_manifest
    from edgeproj.runtime.backends import fp16_check_backend
    from edgeproj.runtime.manifest import check_writable

    if getattr(choice.options, "fp16", False) or choice.force_fp16:
        # The manifest records no precision: thresholds measured on FP16 maps would judge FP32 runs unseen.
        raise ConfigError(
            "calibrate measures its thresholds in FP32; drop --fp16/--force-fp16 (FP16 is measured against them "
            "with --precision-check, and `inspect --fp16` uses it only where that check allowed it)"
        )
    # Where the FP16 check runs is the backend's declaration; one that does not apply is refused before any work.
    fp16_backend = fp16_check_backend(choice.backend) if precision_check else None
    opts = CalibrationOptions(stop_rule=stop, stop_quantile=stop_quantile, pixel_fpr=pixel_fpr, image_frr=image_frr,
                              holdout=holdout, backend=choice.backend, batch=choice.batch, options=choice.options,
                              force_fp16=choice.force_fp16, synthetic_miss_rate=synthetic_miss_rate,
                              synthetic_per_image=synthetic_per_image, gate_margin=gate_margin,
                              aspect_tolerance=aspect_tolerance, image_score=image_score,
                              choice_per_image=choice_defects)  # fmt: skip
    if labelled is not None and not category:
        raise ConfigError("--labelled needs --category")
    manifest = load_manifest(bundle)
    check_writable(bundle, "bundle")
    paths = list_normal(normal_images)
    ts = None
    if labelled is not None:
        from edgeproj.evaluation.testset import load_testset

        ts = load_testset(labelled, category, manifest.preprocess)
    precision = None
    if precision_check:
        from edgeproj.calibration.precision import measure_fp16

        fp16 = measure_fp16(manifest, load_normal(paths[:8], manifest.channels), fp16_backend, ts)
        precision = {"fp32": "reference", "fp16": fp16, "int8": "not offered (see docs): FP32/FP16 only"}
    c = console()
    with progress(enabled=not (quiet or json_out)) as prog:
        calibration = calibrate_bundle(bundle, paths, opts, labelled=ts, precision=precision, progress=prog)
    if json_out:
        if warning := calibration.image_score_choice.get("warning"):
            c.print(f"warning: {warning}", soft_wrap=True)  # stderr: a weak line is said in every mode
        emit_json(calibration.to_dict())
        return
    from edgeproj.calibration.summary import CalibrationSummary

    _print_summary(c, CalibrationSummary.of(calibration, manifest.channels), pixel_fpr, image_frr, synthetic_miss_rate)
    c.print(f"manifest updated: {bundle / 'manifest.json'}")


def _print_summary(c, s, pixel_fpr: float, image_frr: float, synthetic_miss_rate) -> None:
    """The thresholds and the figures behind them, a line each."""
    c.print(
        f"stop threshold L_r < {s.rec_loss_threshold:.4g}; pixel threshold {s.pixel_threshold:.4g}; "
        f"image threshold {s.image_threshold:.4g}"
    )
    c.print(
        f"pixel FPR {s.pixel_fpr:.4f} (target {pixel_fpr}), image false-reject {s.image_frr:.3f} "
        f"(target {image_frr}) on {s.calibration_images} calibration images"
    )
    if s.synthetic:
        c.print(
            f"image threshold set by synthetic defects: miss rate {s.synthetic.miss_rate:.3f} (target {synthetic_miss_rate}) "
            f"over {s.synthetic.defects} defects; normal false-reject at this threshold {s.image_frr:.3f} "
            f"(the --image-frr target would give {s.synthetic.threshold_at_normal_frr_target:.4g})"
        )
    if s.gate:
        _print_gate(c, s.gate)
    choice = s.score_choice
    if choice and choice.candidates_auroc:
        ranked = sorted(choice.candidates_auroc.items(), key=lambda kv: -kv[1])
        ok = set(choice.eligible or choice.candidates_auroc)
        listed = ", ".join(f"{k} {v:.3f}" for k, v in ranked if k in ok)
        others = [(k, v) for k, v in ranked if k not in ok]
        c.print(
            f"image score {choice.chosen} (was {choice.before}): AUROC of synthetic defects "
            f"({choice.defects_per_image or 1} per image) vs the {choice.normal_images} held-out normal images: {listed}"
            + (f"; not eligible on a texture line (no texture check): best {others[0][0]} {others[0][1]:.3f}" if others else "")
        )
    elif choice:
        c.print(f"image score {choice.chosen}: {choice.rule}")
    if choice and choice.warning:
        c.print(f"warning: {choice.warning}", soft_wrap=True)
    c.print(f"pixel threshold: {s.pixel_method}")
    if choice and choice.pixel_auroc:
        c.print("pixel AUROC of the synthetic defects: " + ", ".join(f"{k} map {v:.3f}" for k, v in choice.pixel_auroc.items()))
    h = s.heldout
    if h:
        c.print(
            f"held-out normal images ({h.images}): pixel FPR {h.pixel_fpr:.4f}, image false-reject {h.image_frr:.3f}, "
            f"with the frame gate {h.frr_with_gate:.3f} (the gate rejected {h.gate_rejected})"
        )
        pr = h.promise
        seen = (
            f"{pr.unseen_by_training} of them never seen by training: {pr.unseen_rejected} rejected, at most "
            f"{100 * pr.unseen_upper_95:.1f}%"
            if pr.unseen_by_training
            else "all of them training images: expect more rejects on new parts"
        )
        c.print(
            f"good parts rejected: {pr.rejected} of {pr.images} held-out ({100 * pr.rate:.1f}%), at most "
            f"{100 * pr.upper_95:.1f}% at 95% confidence ({seen}); more held-out images narrow the bound"
        )
    else:
        c.print("no held-out images (fewer than 4 normal images, or --holdout 0): no false-reject rate can be promised")
    if s.labelled:
        lab = s.labelled
        c.print(
            f"labelled: pixel AUROC {lab.pixel_auroc:.3f}, best pixel F1 {lab.best_pixel_f1:.3f} at "
            f"{lab.best_pixel_threshold:.4g}; best image F1 {lab.best_image_f1:.3f}"
        )


def _print_gate(c, spec) -> None:
    """The frame gate's accepted ranges, one line per statistic."""
    h, w = spec.reference_hw
    c.print(
        f"frame gate ({spec.images} images {w}x{h}, aspect within {100 * spec.aspect_tolerance:g}%, margin {spec.margin:g} "
        "robust SDs): a frame outside these ranges is FAULT"
    )
    from edgeproj.calibration.gate import describe_ranges

    for r in describe_ranges(spec):
        lo = "-" if r.lo is None else f"{r.lo:.4g}"
        hi = "-" if r.hi is None else f"{r.hi:.4g}"
        c.print(
            f"  {r.statistic:<14} accepted {lo:>9} .. {hi:<9} (normal images {r.seen_min:.4g}..{r.seen_max:.4g}; {r.unit})",
            soft_wrap=True,
        )
