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
from edgeproj.training.holdout import (
    MIN_IMAGES_FOR_HOLDOUT,
    convergence_verdict,
    plateau_reached,
    split_holdout,
    stop_statistics,
    subsample,
)

STAT_QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


@dataclass
class TrainConfig:
    """Options of `edgeproj train` (paper defaults: Adam, lr 1e-4, latent 100, batch 16).

    `until` "plateau" (the default) trains until held-out L_r stops falling (training.holdout.plateau_reached),
    at most `steps` steps and `max_minutes`; "steps" trains exactly `steps` steps (or until `max_minutes`).
    """

    # The step cap. The paper trained 300 epochs of 10000 images (about 190000 steps of 16); on real
    # texture photographs held-out L_r still fell 3-26% per 2000 steps at 5000 steps (brick, slab,
    # tissue, weave), so the plateau rule, not the cap, should end a run.
    steps: int = 30000
    until: str = "plateau"
    max_minutes: float | None = None
    batch: int = 16
    lr: float = 1e-4
    device: str = "auto"
    seed: int = 0
    workers: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    holdout: float = 0.1  # fraction of the normal images kept out of training to watch L_r on unseen parts
    # fp32, or bf16 autocast (CPUs with AVX512-BF16/AMX and recent GPUs): about 1.3-1.5x on the CPU
    # measured (benchmarks/train-speed.json), at bf16 rounding of the activations.
    precision: str = "fp32"
    eval_every: int | None = None  # steps between held-out L_r measurements (default: a tenth of the run)

    def __post_init__(self):
        if self.steps < 1 or self.batch < 1 or self.lr <= 0 or self.workers < 0 or self.checkpoint_every < 1:
            raise ConfigError("steps, batch and checkpoint interval must be positive, lr > 0, workers >= 0")
        if not 0.0 <= self.holdout <= 0.5:
            raise ConfigError(f"hold-out fraction must be in [0, 0.5], got {self.holdout}")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be fp32 or bf16, got '{self.precision}'")
        if self.eval_every is not None and self.eval_every < 1:
            raise ConfigError("the held-out evaluation interval must be a positive number of steps")
        if self.until not in UNTIL:
            raise ConfigError(f"unknown stop rule '{self.until}'; use one of {', '.join(UNTIL)}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"the time cap must be a positive number of minutes, got {self.max_minutes}")

    @property
    def eval_interval(self) -> int:
        # Every 500 steps at most: the plateau rule compares windows of 2000 steps or more.
        return self.eval_every or max(1, min(500, self.steps // 10))


UNTIL = ("plateau", "steps")


@dataclass
class TrainResult:
    run: Path
    steps: int
    first_loss: float
    last_loss: float
    seconds: float
    resumed_from: int
    rec_loss_stats: dict = field(default_factory=dict)
    heldout: dict = field(default_factory=dict)  # held-out L_r history, stop statistics and the convergence verdict
    samples_per_s: float = float("nan")
    stopped: dict = field(default_factory=dict)  # why training ended (plateau, step cap, time cap) and the budget used


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
def _rec_losses(model, patches: np.ndarray, device, batch: int = 32, tick: Callable[[int], None] | None = None) -> np.ndarray:
    vals = []
    for i in range(0, len(patches), batch):
        x = torch.from_numpy(patches[i : i + batch]).to(device)
        vals.append(model.rec_loss(x).double().cpu().numpy())
        if tick:
            tick(len(x))
    return np.concatenate(vals)


def _watch_losses(model, watch: dict[str, np.ndarray], device) -> dict:
    """Mean and median L_r of the watched patch sets, in eval mode, leaving the RNG state untouched."""
    model.eval()
    out = {}
    with torch.random.fork_rng(devices=[]):
        for name, patches in watch.items():
            v = _rec_losses(model, patches, device)
            out[f"{name}_mean"], out[f"{name}_median"] = float(v.mean()), float(np.median(v))
    return out


def _previous_evaluations(log: Path) -> list[dict]:
    """Held-out points logged before a resume, so the verdict covers the whole run."""
    if not log.is_file():
        return []
    points = []
    for line in log.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if isinstance(row, dict) and "train_rec_mean" in row:
            points.append(row)
    # Rows logged after the last checkpoint of a killed run come again after the resume: the last wins.
    return sorted({int(p["step"]): p for p in points}.values(), key=lambda p: p["step"])


def rec_loss_stats(model, patches: np.ndarray, device, batch: int = 32, tick: Callable[[int], None] | None = None) -> dict:
    """Distribution of L_r over the patches inference sees (the paper's stop threshold is the minimum)."""
    v = _rec_losses(model, patches, device, batch, tick)
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
    on_eval: Callable[[dict], None] | None = None,
    preprocess_choice: dict | None = None,
) -> TrainResult:
    """Train one autoencoder on normal images into run directory `out`, resuming if it holds a checkpoint.

    A seeded tenth of the images (`cfg.holdout`) is held out: its L_r is measured every `cfg.eval_interval`
    steps (`on_eval` receives each point) and decides the convergence verdict. `progress`
    (edgeproj.progress.Progress) also shows the L_r statistics pass after the last step.
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
    # Channels-last: oneDNN's convolutions run 1.2-1.4x faster in NHWC on the CPU (same fp32 arithmetic).
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model = build_model(model_cfg).to(device, memory_format=layout)
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
    train_paths, held_paths = split_holdout(images, cfg.holdout, cfg.seed)
    resized = load_resized(train_paths, pre)
    held_patches = evaluation_patches(load_resized(held_paths, pre), pre) if held_paths else None
    watch = {"train_rec": subsample(evaluation_patches(resized, pre))}
    if held_patches is not None:
        watch["heldout_rec"] = subsample(held_patches)
    dataset = PatchDataset(resized, pre, length=cfg.steps * cfg.batch * world, seed=cfg.seed)
    history = [p for p in _previous_evaluations(out / runfiles.LOG) if p["step"] <= start] if start else []
    key = "heldout_rec_mean" if held_patches is not None else "train_rec_mean"
    stopped: dict = {}
    if start and cfg.until == "plateau" and (done := plateau_reached(history, key)):
        # A run that already stopped on its plateau stays stopped: resuming it adds no steps.
        stopped = {"by": "plateau", "reason": done["reason"]}
    last_step = start if stopped else cfg.steps
    batches = [[((s * world + rank) * cfg.batch) + j for j in range(cfg.batch)] for s in range(start, last_step)]
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
        "data": (data_info or {})
        | {
            "train_images": len(train_paths),
            "image_list_sha256_16": _image_list_hash(train_paths),
            "held_out": [p.name for p in held_paths],
        },
    }
    if preprocess_choice is not None:
        config_doc["preprocess_choice"] = preprocess_choice
    if rank == 0:
        runfiles.write_json_atomic(out / runfiles.CONFIG, config_doc)
    log = open(out / runfiles.LOG, "a") if rank == 0 else None

    def evaluate(step: int) -> dict:
        point = {"step": step} | _watch_losses(model, watch, device)
        history.append(point)
        if on_eval:
            on_eval(point)
        return point

    first = last = float("nan")
    t0 = t_log = time.perf_counter()
    step = step_log = start
    if start == 0:  # every rank measures step 0, so every rank's plateau window sees the same history
        point = evaluate(0)
        if log:
            log.write(json.dumps(point) + "\n")
    model.train()
    for step, batch in enumerate(loader, start=start + 1):
        x = batch.to(device, non_blocking=True).contiguous(memory_format=layout)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            loss, parts = net(x, loss=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last = float(loss.detach())
        if first != first:
            first = last
        if on_step and rank == 0:
            on_step(step, last)
        out_of_time = (
            cfg.max_minutes is not None
            and step % min(cfg.log_every, cfg.eval_interval) == 0
            and _agree(time.perf_counter() - t0 >= 60 * cfg.max_minutes, distributed, device)
        )
        is_log = step % cfg.log_every == 0 or step == cfg.steps or out_of_time
        is_eval = step % cfg.eval_interval == 0 or step == cfg.steps or out_of_time
        plateau = None
        if log and (is_log or is_eval):
            # Held-out L_r goes on the same line as the training loss of that step.
            row = {"step": step, "loss": last, **parts, "seconds": round(time.perf_counter() - t0, 3)}
            if is_log:
                now = time.perf_counter()
                row["samples_per_s"] = round((step - step_log) * cfg.batch * world / max(now - t_log, 1e-9), 2)
            if is_eval:
                row |= evaluate(step)
                model.train()
            log.write(json.dumps(row) + "\n")
            log.flush()
            if is_log:
                t_log, step_log = time.perf_counter(), step
        elif is_eval:  # ranks other than 0 measure too, so that every rank takes the same plateau decision
            evaluate(step)
            model.train()
        if is_eval and cfg.until == "plateau":
            plateau = plateau_reached(history, key)
            # One decision for all ranks: a rank that stopped alone would leave the others in an all-reduce.
            if distributed and _agree(plateau is not None, distributed, device) and plateau is None:
                plateau = {"reason": "another rank found held-out L_r on its plateau"}
        if plateau:
            stopped = {"by": "plateau", "reason": plateau["reason"]}
        elif out_of_time:
            stopped = {"by": "time cap", "reason": f"the time cap of {cfg.max_minutes:g} min was reached"}
        if rank == 0 and (step % cfg.checkpoint_every == 0 or step == cfg.steps or stopped):
            tmp = ckpt_path.with_suffix(".pt.tmp")
            torch.save(
                {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "rng": torch.get_rng_state()}, tmp
            )
            os.replace(tmp, ckpt_path)
        if stopped:
            break
    seconds = time.perf_counter() - t0
    if not stopped:
        stopped = {"by": "step cap", "reason": f"the step cap of {cfg.steps} steps was reached"}
    stopped |= {"steps": step, "cap_steps": cfg.steps, "max_minutes": cfg.max_minutes, "until": cfg.until,
                "seconds_this_session": round(seconds, 1), "samples": step * cfg.batch * world}  # fmt: skip
    samples_per_s = (step - start) * cfg.batch * world / seconds if step > start and seconds > 0 else float("nan")
    if log:
        log.close()
    stats: dict = {}
    heldout: dict = {}
    if rank == 0:
        model.eval()
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(out / runfiles.WEIGHTS))
        patches = evaluation_patches(resized, pre)
        n_held = len(held_patches) if held_patches is not None else 0
        tick = None
        if progress is not None:
            task = progress.add_task("L_r statistics over the training patches", total=len(patches) + n_held, info="")
            tick = lambda n: progress.update(task, advance=n)  # noqa: E731
        stats = rec_loss_stats(model, patches, device, tick=tick)
        heldout = {"images": [p.name for p in held_paths], "history": history, "stopped": stopped}
        if held_patches is not None:
            rec = _rec_losses(model, held_patches, device, tick=tick)
            heldout["stop"] = stop_statistics(rec, stats["min"])
        else:
            heldout["note"] = (
                f"no images held out ({len(images)} normal images; at least {MIN_IMAGES_FOR_HOLDOUT} are needed): "
                "the verdict follows the L_r of training patches"
            )
        ratio = (heldout.get("stop") or {}).get("median_over_threshold")
        heldout["convergence"] = convergence_verdict(history, key, ratio)
        stats["heldout"] = heldout.get("stop")
        runfiles.write_json_atomic(out / runfiles.STATS, stats)
        rate = samples_per_s if np.isfinite(samples_per_s) else None  # a resume with no step left: no rate
        runfiles.write_json_atomic(out / runfiles.HELDOUT, heldout | {"samples_per_s": rate})
    if distributed:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(out, step, first, last, seconds, start, stats, heldout, samples_per_s, stopped)


def _agree(flag: bool, distributed: bool, device) -> bool:
    """True on every rank when it is true on any (a time cap read from each rank's own clock)."""
    if not distributed:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
