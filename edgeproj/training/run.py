"""A training run directory: config.json, model.safetensors, checkpoint.pt, train_log.jsonl, rec_loss_stats.json,
heldout.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgeproj.errors import CheckpointError, ConfigError
from edgeproj.models.config import ModelConfig
from edgeproj.preprocess import Preprocess

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint.pt"
LOG = "train_log.jsonl"
STATS = "rec_loss_stats.json"
HELDOUT = "heldout.json"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON through a temporary file and a rename, so a kill never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_config(run: Path) -> dict:
    """The run's config.json, checked for the parts export needs."""
    run = Path(run)
    if not run.is_dir():
        raise CheckpointError(f"training run '{run}' does not exist; train one with `edgeproj train`")
    path = run / CONFIG
    if not path.is_file():
        raise CheckpointError(f"'{path}' is missing: '{run}' is not an edgeproj training run")
    try:
        cfg = json.loads(path.read_text())
        cfg["model"], cfg["preprocess"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"'{path}' is corrupt ({exc}); retrain or restore it") from None
    return cfg


def load_run(run: Path, device: str = "cpu"):
    """The trained model (eval mode), its config dict and the L_r statistics of a run directory."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from edgeproj.models.autoencoder import build_model

    run = Path(run)
    cfg = read_config(run)
    try:
        mcfg = ModelConfig.from_dict(cfg["model"])
        Preprocess.from_dict(cfg["preprocess"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"run '{run}': {exc}") from None
    weights = run / WEIGHTS
    if not weights.is_file():
        hint = (
            " (training was interrupted: rerun `edgeproj train` with the same --out to resume)"
            if (run / CHECKPOINT).exists()
            else ""
        )
        raise CheckpointError(f"'{weights}' is missing{hint}")
    try:
        state = load_file(str(weights), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"'{weights}' is corrupt or unreadable ({exc}); retrain the run") from None
    model = build_model(mcfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"'{weights}' does not match the {mcfg.variant} architecture in config.json: {first}") from None
    stats = json.loads((run / STATS).read_text()) if (run / STATS).is_file() else None
    return model.to(device).eval(), cfg, stats
