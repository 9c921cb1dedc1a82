"""The training loop: Adam (paper: lr 1e-4), checkpoints and resume, DDP under torchrun."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgeproj import __version__
from edgeproj.errors import CheckpointError, ConfigError
from edgeproj.models.autoencoder import build_model
from edgeproj.models.config import ModelConfig
from edgeproj.preprocess import Preprocess
from edgeproj.training import run as runfiles
from edgeproj.training.dataset import PatchDataset, evaluation_patches, load_resized

STAT_QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


@dataclass
class TrainConfig:
    """Options of `edgeproj train` (paper defaults: Adam, lr 1e-4, latent 100, batch 16)."""

    steps: int = 5000
    batch: int = 16
    lr: float = 1e-4
    device: str = "auto"
    seed: int = 0
    workers: int = 0
    checkpoint_every: int = 500
    log_every: int = 50

    def __post_init__(self):
        if self.steps < 1 or self.batch < 1 or self.lr <= 0 or self.workers < 0 or self.checkpoint_every < 1:
            raise ConfigError("steps, batch and checkpoint interval must be positive, lr > 0, workers >= 0")


@dataclass
class TrainResult:
    run: Path
    steps: int
    first_loss: float
    last_loss: float
    seconds: float
    resumed_from: int
    rec_loss_stats: dict = field(default_factory=dict)


DEVICE_PATTERN = r"auto|cpu|cuda|cuda:\d+"


def resolve_device(name: str) -> torch.device:
    """The torch device for auto | cpu | cuda | cuda:N (ConfigError for anything else or a missing GPU)."""
    import re

    if not re.fullmatch(DEVICE_PATTERN, name):
        raise ConfigError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"device '{name}' requested but torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return torch.device(name)


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _image_list_hash(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p.name).encode() + b"\0")
    return h.hexdigest()[:16]


@torch.no_grad()
def rec_loss_stats(model, patches: np.ndarray, device, batch: int = 32, tick: Callable[[int], None] | None = None) -> dict:
    """Distribution of L_r over the patches inference sees (the paper's stop threshold is the minimum)."""
    vals = []
    for i in range(0, len(patches), batch):
        x = torch.from_numpy(patches[i : i + batch]).to(device)
        vals.append(model.rec_loss(x).double().cpu().numpy())
        if tick:
            tick(len(x))
    v = np.concatenate(vals)
    return {
        "count": int(v.size),
        "min": float(v.min()),
        "max": float(v.max()),
        "mean": float(v.mean()),
        "quantiles": {f"{q:g}": float(np.quantile(v, q)) for q in STAT_QUANTILES},
    }


def train(
    images: list[Path],
    out: Path,
    model_cfg: ModelConfig,
    pre: Preprocess,
    cfg: TrainConfig,
    data_info: dict | None = None,
    on_step: Callable[[int, float], None] | None = None,
    progress=None,
) -> TrainResult:
    """Train one autoencoder on normal images into run directory `out`, resuming if it holds a checkpoint.

    `progress` (edgeproj.progress.Progress) also shows the L_r statistics pass after the last step.
    """
    from safetensors.torch import save_file

    rank, world = _dist_info()
    distributed = world > 1
    device = resolve_device(cfg.device)
    if distributed:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start = 0
    ckpt_path = out / runfiles.CHECKPOINT
    if ckpt_path.is_file():
        try:
            ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            start = int(ckpt["step"])
            torch.set_rng_state(ckpt["rng"])
        except Exception as exc:  # a truncated checkpoint must not stop a fresh start silently
            raise CheckpointError(f"cannot resume from '{ckpt_path}' ({exc}); delete it to start over") from None
    resized = load_resized(images, pre)
    dataset = PatchDataset(resized, pre, length=cfg.steps * cfg.batch * world, seed=cfg.seed)
    batches = [[((s * world + rank) * cfg.batch) + j for j in range(cfg.batch)] for s in range(start, cfg.steps)]
    # The loader gets its own generator: drawing its base seed from the global RNG would shift the
    # VAE's reparameterization noise after a resume (the checkpointed RNG state already holds that draw).
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, num_workers=cfg.workers, generator=torch.Generator().manual_seed(cfg.seed)
    )
    net = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    config_doc = {
        "edgeproj_version": __version__,
        "torch_version": torch.__version__,
        "model": model_cfg.to_dict(),
        "preprocess": pre.to_dict(),
        "training": asdict(cfg) | {"world_size": world},
        "data": (data_info or {}) | {"train_images": len(images), "image_list_sha256_16": _image_list_hash(images)},
    }
    if rank == 0:
        runfiles.write_json_atomic(out / runfiles.CONFIG, config_doc)
    log = open(out / runfiles.LOG, "a") if rank == 0 else None
    first = last = float("nan")
    t0 = time.perf_counter()
    step = start
    model.train()
    for step, batch in enumerate(loader, start=start + 1):
        x = batch.to(device, non_blocking=True)
        loss, parts = net(x, loss=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last = float(loss.detach())
        if first != first:
            first = last
        if on_step and rank == 0:
            on_step(step, last)
        if log and (step % cfg.log_every == 0 or step == cfg.steps):
            log.write(json.dumps({"step": step, "loss": last, **parts, "seconds": round(time.perf_counter() - t0, 3)}) + "\n")
            log.flush()
        if rank == 0 and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            tmp = ckpt_path.with_suffix(".pt.tmp")
            torch.save(
                {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "rng": torch.get_rng_state()}, tmp
            )
            os.replace(tmp, ckpt_path)
    seconds = time.perf_counter() - t0
    if log:
        log.close()
    stats = {}
    if rank == 0:
        model.eval()
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(out / runfiles.WEIGHTS))
        patches = evaluation_patches(resized, pre)
        tick = None
        if progress is not None:
            task = progress.add_task("L_r statistics over the training patches", total=len(patches), info="")
            tick = lambda n: progress.update(task, advance=n)  # noqa: E731
        stats = rec_loss_stats(model, patches, device, tick=tick)
        runfiles.write_json_atomic(out / runfiles.STATS, stats)
    if distributed:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(out, step, first, last, seconds, start, stats)
