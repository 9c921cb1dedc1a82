"""`edgeproj export`: a training run -> a deployable bundle (gradient and step graphs + manifest)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from edgeproj.cli.common import LossName, float_option, loss_option, model_option
from edgeproj.runtime.manifest import ALPHA_RANGE, LAM_RANGE, MAX_ITERATIONS_RANGE

YOUR_MODEL = "Your own autoencoder (instead of a run)"  # the help section of --model and its options


def command(
    run: Optional[Path] = typer.Argument(
        None, help="Training run directory written by `edgeproj train` (or --model with --weights instead)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to write."),
    model: Optional[str] = model_option(
        "Your autoencoder instead of a run: 'package.module:Name' (nn.Module class or factory).", YOUR_MODEL
    ),
    weights: Optional[Path] = typer.Option(
        None,
        help="--model's weights: .safetensors or a PyTorch state dict.",
        rich_help_panel=YOUR_MODEL,
    ),
    input_shape: Optional[str] = typer.Option(
        None,
        "--input",
        help="--model's input as CxHxW, e.g. 1x128x128 or 3x256x256 (square, C 1 or 3).",
        rich_help_panel=YOUR_MODEL,
    ),
    loss: Optional[LossName] = loss_option("--model's reconstruction loss L_r in the energy [default: l2].", YOUR_MODEL),
    preprocess: Optional[Literal["object", "texture"]] = typer.Option(
        None,
        help="--model: whole frame resized to the input (object, the default) or tiles of its side (texture).",
        rich_help_panel=YOUR_MODEL,
    ),
    emitter: Literal["auto", "hand", "traced"] = typer.Option(
        "auto", help="Network graphs: hand-written (built-in SSIM-AE), traced from PyTorch (any model); auto picks."
    ),
    alpha: float = float_option(0.05, *ALPHA_RANGE, "Default Adam step size."),
    lam: float = float_option(0.05, *LAM_RANGE, "Default weight of ||x - x0||_1 (paper: 0.05)."),
    max_iterations: int = typer.Option(
        100, min=MAX_ITERATIONS_RANGE[0], max=MAX_ITERATIONS_RANGE[1], help="Default iteration limit."
    ),
    tuned: bool = typer.Option(True, help="Weight the update by (x - f(x))^2 (paper eq. 8)."),
    tuned_on_step: bool = typer.Option(
        True, help="Apply the tuned weight to Adam's step (after) rather than the gradient (before)."
    ),
    convtranspose: Literal["native", "phase", "phase3"] = typer.Option(
        "native",
        help="Stride-2 transposed convs: native ConvTranspose (fastest on ORT CPU), or phase/phase3 convs + DepthToSpace.",
    ),
    parity: bool = typer.Option(
        True, help="Measure parity against PyTorch and refuse a bundle past its bounds (--no-parity: not measured, recorded)."
    ),
    parity_steps: int = typer.Option(50, min=1, max=1000, help="Projection steps of the trajectory parity figures."),
    accept_parity_failure: bool = typer.Option(
        False,
        "--accept-parity-failure",
        help="Write the bundle even when a parity figure is past its bound; the failures are recorded in the manifest.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle, dropping its calibration."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress output (bars on a terminal, timestamped lines otherwise)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the manifest as JSON on stdout."),
):
    """Export the autoencoder with its analytic energy gradient as ONNX graphs and a manifest."""
    from edgeproj.cli.common import output_dir
    from edgeproj.cli.output import console, emit_json, progress
    from edgeproj.errors import ConfigError
    from edgeproj.export.bundle import ExportOptions, ExportSource, export_bundle
    from edgeproj.runtime.manifest import MANIFEST, Projection

    source = _source(run, model, weights, input_shape, loss, preprocess)
    projection = Projection(alpha=alpha, lam=lam, max_iterations=max_iterations, tuned=tuned, tuned_on_step=tuned_on_step)
    opts = ExportOptions(
        projection=projection,
        convtranspose=convtranspose,
        parity=parity,
        parity_steps=parity_steps,
        accept_parity_failure=accept_parity_failure,
        emitter=emitter,
    )
    if (out / MANIFEST).is_file() and not overwrite:
        raise ConfigError(
            f"'{out}' already holds a bundle (its calibration would be lost); export to a new folder, or pass --overwrite"
        )
    created = not out.exists()
    output_dir(out)
    c = console()
    try:
        with progress(enabled=not (quiet or json_out)) as prog:
            if not isinstance(source, Path):  # loaded and checked before any graph is written (a new folder is removed)
                source = ExportSource.from_weights(*source)
            manifest = export_bundle(source, out, opts, progress=prog)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed export leaves no folder it made
        raise
    from edgeproj.export.parity_report import ParityReport

    p = ParityReport.of(manifest.parity)
    # On stderr (stdout may be JSON): what the parity figures were measured on, and what was accepted.
    if not p.measured:
        c.print("parity: not measured (--no-parity); the manifest records it")
    elif p.synthetic_probe:
        c.print(f"parity probe: {p.probe}; smooth synthetic patches were used instead")
    if p.accepted_failures:
        c.print(f"parity failure accepted (--accept-parity-failure, recorded in the manifest): {'; '.join(p.accepted_failures)}")
    if p.split_dropped:
        c.print(f"warning: {p.split_dropped}")
    if json_out:
        emit_json(manifest.to_dict())
        return
    how = {"hand": "hand-written per layer", "traced": "traced from PyTorch autograd and lowered"}
    c.print(f"network graphs: {how.get(manifest.versions.get('emitter'), 'hand-written per layer')}")
    for name, g in manifest.graphs.items():
        c.print(f"{name}: {out / g.file} ({g.bytes / 1e6:.2f} MB, opset {g.opset}, sha256 {g.sha256[:12]})")
    if p.measured and p.gradient:
        _print_parity(c, p)
    c.print(f"bundle written to {out}")


def parse_input(text: str) -> tuple[int, int]:
    """'CxHxW' -> (channels, side); ConfigError unless it parses and H equals W (ModelConfig checks the values)."""
    from edgeproj.errors import ConfigError

    try:
        c, h, w = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--input must be CxHxW, e.g. 1x128x128, got '{text}'") from None
    if h != w:
        raise ConfigError(f"--input {text}: the input must be square")
    return c, h


def _source(run, model, weights, input_shape, loss, preprocess):
    """The run folder, or (ModelConfig, weights, preprocessing mode) for ExportSource.from_weights; every
    combination checked here."""
    from edgeproj.errors import ConfigError

    if model is None:
        if run is None:
            raise ConfigError("give a training run folder, or --model with --weights and --input")
        flags = (("--weights", weights), ("--input", input_shape), ("--loss", loss), ("--preprocess", preprocess))
        given = [f for f, v in flags if v is not None]
        if given:
            raise ConfigError(f"{' and '.join(given)} go with --model; a training run carries its own")
        return run
    if run is not None:
        raise ConfigError("give either a training run folder or --model, not both")
    if weights is None or input_shape is None:
        raise ConfigError("--model needs --weights and --input (CxHxW)")
    from edgeproj.models.config import ModelConfig
    from edgeproj.models.user import resolve
    from edgeproj.models.variants import loss_variant

    resolve(model)  # an import path that does not import is one line, before any work
    if not weights.is_file():
        raise ConfigError(f"--weights '{weights}' is not a file")
    channels, size = parse_input(input_shape)
    try:
        config = ModelConfig(variant=loss_variant(loss or "l2"), channels=channels, size=size, architecture=model)
    except ConfigError as exc:
        raise ConfigError(f"--input {input_shape}: {exc}") from None
    return (config, weights, preprocess or "object")


def _print_parity(c, p) -> None:
    """The parity figures, one line each: graph against PyTorch, PyTorch's own spread, the bound."""
    if not p.synthetic_probe:
        c.print(f"parity probe: {p.probe}")
    for g in p.gradient:
        c.print(
            f"gradient parity {g.batch}: max|g_onnx - g_torch| / max|g_torch| = {g.graph:.2e} "
            f"(float32 autograd {g.float32:.2e}, float64 {g.float64:.2e})"
        )
    for t in p.trajectories:
        if t.uninformative:
            c.print(
                f"{t.rule} (not deployed): PyTorch float32 and float64 disagree past the limit on "
                f"{', '.join(t.uninformative)}; bounded by 3x that spread, the deployed rule carries the check"
            )
        e, m, a = t.energy, t.map_correlation, t.pixel_auroc_diff
        c.print(
            f"{p.steps}-step {t.rule} (graph vs nearer PyTorch | PyTorch float32 vs float64 | bound): "
            f"energy {e.graph:.1e} | {e.spread:.1e} | {e.bound:.1e}; map corr {m.graph:.4f} | {m.spread:.4f} | {m.bound:.4f}; "
            f"pixel AUROC diff {a.graph:.4f} | {a.spread:.4f} | {a.bound:.4f}"
        )
    for f in p.optimizer:
        c.print(
            f"optimizer {f.rule} ({f.steps} steps from a non-zero state vs numpy Adam): x {f.x_abs:.1e} abs, "
            f"m {f.m_rel:.1e}, v {f.v_rel:.1e} rel"
        )
    if p.split_max_err is not None:
        c.print(f"forward + update graphs vs step graph: largest difference {p.split_max_err:.1e}")
    c.print("parity: every figure within its bound" if p.passed else "parity: FAILED (accepted)")
