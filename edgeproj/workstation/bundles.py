"""Train (or reuse) and export a bundle per (category, variant): the first half of a Table-1 row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeproj.errors import ConfigError
from edgeproj.models.variants import variant_names


@dataclass
class TrainSettings:
    """Training used when a variant has no run yet (paper defaults: Adam lr 1e-4, batch 16)."""

    steps: int = 5000
    batch: int = 16
    lr: float = 1e-4
    seed: int = 0
    device: str = "auto"
    resize: int | None = None
    mode: str | None = None


def parse_variants(text: str) -> list[str]:
    """'all' or a comma-separated list of variant names."""
    known = variant_names()
    names = list(known) if text == "all" else [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in known]
    if bad or not names:
        raise ConfigError(f"unknown variant(s) {bad or text!r}; use 'all' or a comma list of {', '.join(known)}")
    return names


def ensure_bundle(
    data: Path,
    category: str,
    variant: str,
    work: Path,
    settings: TrainSettings,
    on_step: Callable[[int, float], None] | None = None,
    export_parity_steps: int = 50,
    progress=None,
) -> tuple[Path, dict]:
    """Path of a bundle for (category, variant) under `work`, training and exporting only what is missing."""
    from edgeproj.data.images import read_image
    from edgeproj.data.mvtec import normal_images
    from edgeproj.data.preprocess_choice import choose_for_paths
    from edgeproj.export.bundle import ExportOptions, export_bundle
    from edgeproj.models.config import ModelConfig
    from edgeproj.training import run as runfiles
    from edgeproj.training.trainer import TrainConfig, train

    run = work / "runs" / f"{category}-{variant}"
    bundle = work / "bundles" / f"{category}-{variant}"
    info: dict = {"run": str(run), "bundle": str(bundle), "trained": False, "exported": False}
    if not (run / runfiles.WEIGHTS).is_file():
        images = normal_images(Path(data) / category)
        channels = read_image(images[0]).shape[2]
        choice = choose_for_paths(images, category, channels, mode=settings.mode, resize=settings.resize)
        res = train(
            images,
            run,
            ModelConfig(variant=variant, channels=channels),
            choice.preprocess,
            TrainConfig(steps=settings.steps, batch=settings.batch, lr=settings.lr, seed=settings.seed, device=settings.device),
            data_info={"source": str(Path(data) / category), "category": category},
            on_step=on_step,
            progress=progress,
            preprocess_choice=choice.to_dict(),
        )
        info.update(trained=True, train_seconds=res.seconds, first_loss=res.first_loss, last_loss=res.last_loss)
    if not (bundle / "manifest.json").is_file() or info["trained"]:
        export_bundle(run, bundle, ExportOptions(parity_steps=export_parity_steps), progress=progress)
        info["exported"] = True
    return bundle, info
