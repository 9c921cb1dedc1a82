"""`edgeproj train`: train one of the paper's four autoencoders on normal images."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from edgeproj.cli.common import LossName, float_option, loss_option, model_option
from edgeproj.models.config import USER_SIZE_RANGE
from edgeproj.models.variants import variant_names

# The registry's names as the option's choices (models.variants imports no torch: --help stays instant).
VariantName = Literal[variant_names()]


def command(
    data: Path = typer.Argument(..., help="MVTec AD root (with --category), a category folder, or a folder of normal images."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write (resumes if it holds a checkpoint)."),
    category: Optional[str] = typer.Option(None, "--category", "-c", help="Category under an MVTec root."),
    variant: Optional[VariantName] = typer.Option(
        None, "--variant", "-v", help="Autoencoder variant [default: l2ae].", rich_help_panel="Model"
    ),
    model: Optional[str] = model_option("Your autoencoder instead: 'package.module:Name' (nn.Module class or factory).", "Model"),
    loss: Optional[LossName] = loss_option("--model's reconstruction loss [default: l2].", "Model"),
    size: Optional[int] = typer.Option(
        None, min=USER_SIZE_RANGE[0], max=USER_SIZE_RANGE[1], help="--model's input side [default: 128].", rich_help_panel="Model"
    ),
    steps: int = typer.Option(
        30000, min=1, max=10_000_000, help="Step cap (with --until steps: the exact number of optimizer steps)."
    ),
    until: Literal["plateau", "steps"] = typer.Option(
        "plateau", help="plateau: stop when held-out L_r stops falling (within the caps); steps: train --steps steps."
    ),
    max_minutes: Optional[float] = typer.Option(
        None, min=0.01, max=1e6, help="Time cap in minutes (resume later with the same --out)."
    ),
    batch: int = typer.Option(16, min=1, max=4096, help="Batch size."),
    lr: float = float_option(1e-4, 1e-8, 1.0, "Adam learning rate (paper: 1e-4)."),
    latent: Optional[int] = typer.Option(
        None, min=1, max=4096, help="Latent dimension [default: 100, the paper's].", rich_help_panel="Model"
    ),
    width: Optional[int] = typer.Option(
        None, min=1, max=1024, help="Base width of the SSIM-AE layers [default: 32].", rich_help_panel="Model"
    ),
    mode: Optional[Literal["texture", "object"]] = typer.Option(
        None, help="Preprocessing mode (default: MVTec's own category names, else measured on the images; printed)."
    ),
    resize: Optional[int] = typer.Option(
        None, min=128, max=8192, help="Texture mode: working side (default: half the source, at least 256, never upsampled)."
    ),
    stride: Optional[int] = typer.Option(None, min=1, max=128, help="Texture mode: tile stride at inference (default 64)."),
    holdout: float = float_option(0.1, 0.0, 0.5, "Fraction of the normal images held out to watch L_r on unseen parts."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    precision: Literal["fp32", "bf16"] = typer.Option(
        "fp32", help="bf16: autocast the forward pass (faster on CPUs with AVX512-BF16 and on recent GPUs)."
    ),
    seed: int = typer.Option(0, min=0, help="Seed for initialization and patch sampling."),
    workers: int = typer.Option(0, min=0, max=256, help="DataLoader worker processes."),
    checkpoint_every: int = typer.Option(500, min=1, help="Steps between resumable checkpoints."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress output (bars on a terminal, timestamped lines otherwise)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
):
    """Train an autoencoder on normal images; writes weights, config, log and L_r statistics."""
    from edgeproj.cli.common import output_dir
    from edgeproj.cli.output import console, emit_json, progress
    from edgeproj.data.images import read_image
    from edgeproj.data.mvtec import normal_images
    from edgeproj.data.preprocess_choice import choose_for_paths
    from edgeproj.models.config import ModelConfig
    from edgeproj.training.trainer import TrainConfig, _dist_info, resolve_device, train

    resolve_device(device)  # an unknown device or a missing GPU is an error before any work
    model_args = _model_args(variant, model, loss, size, latent, width)
    source = data / category if category else data
    images = normal_images(source)
    channels = read_image(images[0]).shape[2]
    model_cfg = ModelConfig(channels=channels, **model_args)
    if model_cfg.architecture:  # built and checked before any folder or work: a model that fails is one line
        _check_user_model(model_cfg)
    output_dir(out)
    name = category or source.name
    cfg = TrainConfig(
        steps=steps, batch=batch, lr=lr, device=device, seed=seed, workers=workers, checkpoint_every=checkpoint_every,
        holdout=holdout, precision=precision, until=until, max_minutes=max_minutes,
    )  # fmt: skip
    overrides = {"patch": model_cfg.size} if model_cfg.architecture else {}
    choice = choose_for_paths(images, name, channels, mode=mode, resize=resize, stride=stride, **overrides)
    pre = choice.preprocess
    variant = model_cfg.architecture or model_cfg.variant
    rank, _ = _dist_info()
    if rank == 0 and not json_out:
        err = console()
        for line in choice.lines():
            err.print(line, highlight=False)
    with progress(enabled=not (quiet or json_out) and rank == 0) as prog:
        task = prog.add_task(f"train {variant}", total=steps, info="")
        heldout_info = {"text": ""}

        def on_step(step: int, loss: float):
            prog.update(task, completed=step, info=f"loss {loss:.4g}{heldout_info['text']}")

        def on_eval(point: dict):
            if "heldout_rec_mean" in point:
                heldout_info["text"] = f", held-out L_r {point['heldout_rec_mean']:.4g}"

        result = train(
            images, out, model_cfg, pre, cfg, data_info={"source": str(source), "category": name}, on_step=on_step,
            progress=prog, on_eval=on_eval, preprocess_choice=choice.to_dict(),
        )  # fmt: skip
        # Stopped on the plateau or the time cap before the step cap: the bar ends where training did.
        prog.update(task, total=max(1, result.steps), completed=result.steps, info=f"stopped by the {result.stopped.get('by')}")
    if rank != 0:
        return
    summary = {
        "run": str(result.run),
        "variant": variant,
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "first_loss": result.first_loss,
        "last_loss": result.last_loss,
        "seconds": round(result.seconds, 2),
        "seconds_per_1000_steps": round(1000 * result.seconds / max(1, result.steps - result.resumed_from), 2),
        "samples_per_s": round(result.samples_per_s, 1),
        "rec_loss_stats": result.rec_loss_stats,
        "preprocess": pre.to_dict(),
        "preprocess_choice": choice.to_dict(),
        "heldout": {k: v for k, v in result.heldout.items() if k != "history"},
        "convergence": result.heldout.get("convergence", {}),
        "stopped": result.stopped,
    }
    if json_out:
        emit_json(summary)
    else:
        c = console()
        c.print(
            f"trained {variant} for {result.steps} steps in {result.seconds:.1f} s: loss {result.first_loss:.4g} -> {result.last_loss:.4g}"
        )
        st = result.stopped
        cap = f"cap {st.get('cap_steps')} steps" + (f", {st['max_minutes']:g} min" if st.get("max_minutes") else ", no time cap")
        c.print(f"stopped by the {st.get('by')}: {st.get('reason')} (budget used: {st.get('steps')} steps, "
                f"{st.get('samples')} samples; {cap})")  # fmt: skip
        c.print(f"{result.samples_per_s:.1f} samples/s; min L_r over training patches: "
                f"{result.rec_loss_stats.get('min', float('nan')):.4g}")  # fmt: skip
        stop = result.heldout.get("stop")
        if stop:
            c.print(
                f"held-out ({len(result.heldout['images'])} images, {stop['patches']} patches): median L_r {stop['median']:.4g} "
                f"= {stop['median_over_threshold']:.2f}x the stop threshold; {100 * stop['stop_at_x0_fraction']:.0f}% of "
                "held-out patches would stop at x0"
            )
        else:
            c.print(result.heldout.get("note", ""))
        conv = result.heldout.get("convergence", {})
        c.print(f"{conv.get('verdict', 'unknown')}: {conv.get('reason', '')}")
        if conv.get("verdict") in ("still improving", "unknown") and result.stopped.get("by") != "plateau":
            cat = f" --category {category}" if category else ""
            if result.stopped.get("by") == "step cap":
                more = f"--steps {max(2 * result.steps, steps)}"
            else:
                more = f"--max-minutes {max(1, round(2 * result.seconds / 60))}"
            more += " --until steps" if until == "steps" else ""
            c.print(
                f"continue with: edgeproj train {data}{cat} {_model_flags(model_cfg)} --out {out} {more} "
                f"(resumes from step {result.steps})"
            )
        c.print(f"run written to {out}")


def _model_args(variant, model, loss, size, latent, width) -> dict:
    """ModelConfig's arguments from the model options; a built-in's option given with --model is an error."""
    from edgeproj.errors import ConfigError
    from edgeproj.models.variants import loss_variant

    if model is None:
        given = [f for f, v in (("--loss", loss), ("--size", size)) if v is not None]
        if given:
            raise ConfigError(f"{' and '.join(given)} go with --model; a built-in variant has its own loss and 128x128 input")
        return {"variant": variant or "l2ae", "latent": latent or 100, "width": width or 32}
    given = [f for f, v in (("--variant", variant), ("--latent", latent), ("--width", width)) if v is not None]
    if given:
        raise ConfigError(f"{', '.join(given)} describe the built-in SSIM-AE; with --model choose the loss with --loss")
    return {"variant": loss_variant(loss or "l2"), "size": size or 128, "architecture": model}


def _check_user_model(cfg) -> None:
    """Build the user's model and check that it will export (its contract, every operation lowered) now,
    not after hours of training."""
    from edgeproj.export.traced_network import TracedNetwork
    from edgeproj.models.autoencoder import build_model

    TracedNetwork(build_model(cfg).eval(), cfg.channels, cfg.size, cfg.architecture)


def _model_flags(cfg) -> str:
    """The model options that resume this run."""
    if cfg.architecture:
        from edgeproj.models.variants import loss_of

        return f"--model {cfg.architecture} --loss {loss_of(cfg.variant)}" + (f" --size {cfg.size}" if cfg.size != 128 else "")
    return f"--variant {cfg.variant}"
