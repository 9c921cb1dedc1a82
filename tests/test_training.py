"""Training: the `train` verb end to end, loss curves, determinism, resume, run-directory errors, DDP."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgeproj.cli.app import app
from edgeproj.data.images import read_image
from edgeproj.data.mvtec import normal_images
from edgeproj.errors import CheckpointError, ConfigError
from edgeproj.models.autoencoder import build_model
from edgeproj.models.config import ModelConfig
from edgeproj.models.variants import variant_names
from edgeproj.preprocess import Preprocess
from edgeproj.training import run as runfiles
from edgeproj.training.dataset import evaluation_patches, load_resized
from edgeproj.training.run import load_run
from edgeproj.training.trainer import TrainConfig, train

VARIANTS = variant_names()
RUN_FILES = ("config.json", "model.safetensors", "checkpoint.pt", "train_log.jsonl", "rec_loss_stats.json")


@pytest.fixture(scope="module")
def grid(demo_root) -> Path:
    return demo_root / "grid"


@pytest.fixture(scope="module")
def images(grid) -> list[Path]:
    return normal_images(grid)


@pytest.fixture(scope="module")
def pre(images) -> Preprocess:
    return Preprocess(mode="texture", resize=128, stride=64, channels=read_image(images[0]).shape[2])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / runfiles.WEIGHTS))


def _check_stats(stats: dict, count: int) -> None:
    q = stats["quantiles"]
    lo, hi = stats["min"], q["1"]  # the 1.0 quantile is the maximum
    assert stats["count"] == count
    assert q["0"] == pytest.approx(lo)
    assert lo <= stats["mean"] <= hi
    values = [q[k] for k in ("0", "0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99", "1")]
    assert all(lo - 1e-9 <= v <= hi + 1e-9 for v in values)
    assert values == sorted(values)
    assert all(math.isfinite(v) for v in values)


# ------------------------------------------------------------------------------------ CLI end to end


@pytest.fixture(scope="module")
def cli_run(grid, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    args = [
        "train",
        str(grid),
        "--out",
        str(out),
        "--steps",
        "10",
        "--batch",
        "2",
        "--mode",
        "texture",
        "--resize",
        "128",
        "--device",
        "cpu",
        "--checkpoint-every",
        "5",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    return out, result


def test_cli_train_end_to_end(cli_run, images, pre):
    out, result = cli_run
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["variant"] == "l2ae" and summary["steps"] == 10 and summary["resumed_from"] == 0
    assert Path(summary["run"]) == out
    assert math.isfinite(summary["first_loss"]) and math.isfinite(summary["last_loss"])
    assert summary["preprocess"] == pre.to_dict()
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp"))

    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == ModelConfig(variant="l2ae", channels=pre.channels).to_dict()
    assert cfg["preprocess"] == pre.to_dict()
    assert cfg["training"]["steps"] == 10 and cfg["training"]["batch"] == 2
    assert cfg["training"]["world_size"] == 1
    assert cfg["data"]["train_images"] == len(images) and cfg["data"]["category"] == "grid"

    # Weights: safetensors (no pickle), matching the architecture.
    weights = _weights(out)
    ref = build_model(ModelConfig(channels=pre.channels)).state_dict()
    assert set(weights) == set(ref)
    assert all(weights[k].shape == ref[k].shape for k in ref)

    # The resumable checkpoint loads without unpickling arbitrary objects.
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 10
    assert set(ckpt) >= {"model", "optimizer", "step", "rng"}
    assert all(torch.equal(ckpt["model"][k], weights[k]) for k in weights)

    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log and log[-1]["step"] == 10 and math.isfinite(log[-1]["loss"]) and "rec" in log[-1]

    stats = json.loads((out / "rec_loss_stats.json").read_text())
    _check_stats(stats, count=len(images))  # 128x128 images: one tile each
    assert summary["rec_loss_stats"] == stats


def test_cli_missing_data_folder(tmp_path):
    result = CliRunner().invoke(app, ["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--steps", "2"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeproj: error:"), result.output
    assert "nowhere" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_cli_unknown_variant(grid, tmp_path):
    result = CliRunner().invoke(app, ["train", str(grid), "--out", str(tmp_path / "run"), "--variant", "wae", "--steps", "2"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeproj: error:") and "wae" in lines[0], result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------------------------ loss curves


@pytest.fixture(scope="module")
def curves(images, pre, tmp_path_factory) -> dict:
    """60 steps at batch 4 per variant, every step's loss recorded."""
    base = tmp_path_factory.mktemp("curves")
    out = {}
    for v in VARIANTS:
        rec: list[tuple[int, float]] = []
        res = train(
            images,
            base / v,
            ModelConfig(variant=v, channels=pre.channels),
            pre,
            TrainConfig(steps=60, batch=4, seed=0, device="cpu"),
            on_step=lambda s, loss: rec.append((s, loss)),
        )
        out[v] = (res, rec)
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_falls(curves, variant):
    res, rec = curves[variant]
    steps = [s for s, _ in rec]
    losses = np.array([loss for _, loss in rec])
    assert steps == list(range(1, 61))
    assert np.isfinite(losses).all()
    assert res.steps == 60 and res.resumed_from == 0
    assert res.first_loss == losses[0] and res.last_loss == losses[-1]
    first, last = losses[:8].mean(), losses[-8:].mean()
    assert last < first, f"{variant}: mean loss {first:.4g} over the first 8 steps, {last:.4g} over the last 8"


@pytest.mark.parametrize("variant", VARIANTS)
def test_load_run_each_variant(curves, images, pre, variant):
    res, _ = curves[variant]
    model, cfg, stats = load_run(res.run)
    assert not model.training
    assert model.config == ModelConfig(variant=variant, channels=pre.channels)
    assert cfg["model"]["variant"] == variant and cfg["training"]["steps"] == 60
    _check_stats(stats, count=len(images))
    assert stats == res.rec_loss_stats
    # The statistics are L_r of the saved weights over the inference patches.
    patches = torch.from_numpy(evaluation_patches(load_resized(images, pre), pre))
    with torch.no_grad():
        lr = model.rec_loss(patches).double().numpy()
    assert stats["min"] == pytest.approx(lr.min(), rel=1e-4)
    assert stats["mean"] == pytest.approx(lr.mean(), rel=1e-4)


# ---------------------------------------------------------------------------------------- determinism


def _short(images, pre, out: Path, seed: int = 0, variant: str = "vae", steps: int = 3, **kw):
    return train(
        images,
        out,
        ModelConfig(variant=variant, channels=pre.channels),
        pre,
        TrainConfig(steps=steps, batch=2, seed=seed, device="cpu", **kw),
    )


def test_same_seed_same_weights(images, pre, tmp_path):
    # The VAE samples noise every step, so this also covers the torch RNG, not only patch sampling.
    _short(images, pre, tmp_path / "a")
    _short(images, pre, tmp_path / "b")
    _short(images, pre, tmp_path / "c", seed=1)
    a, b, c = (_weights(tmp_path / n) for n in "abc")
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# ------------------------------------------------------------------------------------ load_run errors


@pytest.fixture
def run_copy(cli_run, tmp_path) -> Path:
    """A private copy of the CLI's run, for tests that break it."""
    out, result = cli_run
    assert result.exit_code == 0, result.output
    dst = tmp_path / "run"
    shutil.copytree(out, dst)
    return dst


def test_load_run_ok(run_copy):
    model, cfg, stats = load_run(run_copy)
    assert model.config.variant == "l2ae" and stats is not None


def test_load_run_missing_dir(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run(tmp_path / "nope")


def test_load_run_missing_config(run_copy):
    (run_copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json.*missing.*not an edgeproj training run"):
        load_run(run_copy)


@pytest.mark.parametrize("text", ['{"model": {"variant": "l2ae"', "[1, 2, 3]", '{"model": {}}', ""])
def test_load_run_corrupt_config(run_copy, text):
    (run_copy / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_run(run_copy)


def test_load_run_missing_weights(run_copy):
    (run_copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing.*rerun `edgeproj train` with the same --out to resume"):
        load_run(run_copy)
    (run_copy / "checkpoint.pt").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors' is missing$"):
        load_run(run_copy)


@pytest.mark.parametrize("garbage", [b"\x13garbage bytes, not a safetensors file" * 4, b"\0\0\0", b""])
def test_load_run_corrupt_weights(run_copy, garbage):
    (run_copy / "model.safetensors").write_bytes(garbage)
    with pytest.raises(CheckpointError, match="corrupt or unreadable.*retrain"):
        load_run(run_copy)


def test_load_run_truncated_weights(run_copy):
    w = run_copy / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_run(run_copy)


def test_load_run_unknown_variant(run_copy):
    cfg = json.loads((run_copy / "config.json").read_text())
    cfg["model"]["variant"] = "wae"
    (run_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown variant 'wae'"):
        load_run(run_copy)


def test_load_run_unknown_config_key(run_copy):
    cfg = json.loads((run_copy / "config.json").read_text())
    cfg["model"]["dropout"] = 0.5
    (run_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="dropout"):
        load_run(run_copy)


def test_load_run_weights_of_another_variant(run_copy):
    cfg = json.loads((run_copy / "config.json").read_text())
    cfg["model"]["variant"] = "vae"  # the l2ae weights lack the VAE's 2x latent conv
    (run_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match the vae architecture"):
        load_run(run_copy)


# ------------------------------------------------------------------------------------------------ DDP


def test_ddp_two_processes_cpu(grid, tmp_path):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available")
    # edgeproj.cli.app has no __main__ guard: torchrun a two-line script that calls main().
    script = tmp_path / "edgeproj_main.py"
    script.write_text("from edgeproj.cli.app import main\n\nmain()\n")
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        "train",
        str(grid),
        "--out",
        str(out),
        "--steps",
        "6",
        "--batch",
        "2",
        "--device",
        "cpu",
        "--mode",
        "texture",
        "--resize",
        "128",
        "--json",
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # rank 0 alone prints the result
    assert summary["steps"] == 6
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["world_size"] == 2
    assert (out / "model.safetensors").is_file() and (out / "rec_loss_stats.json").is_file()
    model, _, _ = load_run(out)
    assert model.config.variant == "l2ae"
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 6


# --------------------------------------------------------------------------------------------- resume


def test_resume_of_finished_run_is_a_no_op(images, pre, tmp_path):
    _short(images, pre, tmp_path / "r", variant="l2ae", steps=4)
    before = _weights(tmp_path / "r")
    res = _short(images, pre, tmp_path / "r", variant="l2ae", steps=4)
    assert res.resumed_from == 4 and res.steps == 4
    after = _weights(tmp_path / "r")
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("variant", ["l2ae", "vae"])
def test_resume_equals_uninterrupted(images, pre, tmp_path, variant):
    part = _short(images, pre, tmp_path / "resumed", variant=variant, steps=20, checkpoint_every=10)
    assert part.steps == 20 and part.resumed_from == 0
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 20
    res = _short(images, pre, tmp_path / "resumed", variant=variant, steps=30, checkpoint_every=10)
    assert res.resumed_from == 20 and res.steps == 30
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 30
    log = [json.loads(line) for line in (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "samples_per_s" in r] == [20, 30]
    # L_r of the watched patches is logged every tenth of a run, from step 0, and kept across the resume.
    assert [r["step"] for r in log if "train_rec_mean" in r] == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 21, 24, 27, 30]
    cfg = json.loads((tmp_path / "resumed" / "config.json").read_text())
    assert cfg["training"]["steps"] == 30

    _short(images, pre, tmp_path / "straight", variant=variant, steps=30, checkpoint_every=10)
    a, b = _weights(tmp_path / "resumed"), _weights(tmp_path / "straight")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a), (
        f"{variant}: resumed weights differ from an uninterrupted run by up to {worst:.3g}"
    )


def test_bf16_autocast_trains_close_to_fp32(images, pre, tmp_path):
    a = _short(images, pre, tmp_path / "fp32", variant="l2ae", steps=4)
    b = _short(images, pre, tmp_path / "bf16", variant="l2ae", steps=4, precision="bf16")
    assert math.isfinite(b.last_loss) and b.first_loss == pytest.approx(a.first_loss, rel=2e-2)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")


# ------------------------------------------------------------------------------------- when to stop


def test_plateau_stops_training_and_a_resume_keeps_it_stopped(images, pre, tmp_path, monkeypatch):
    """A learning rate too small to move L_r: held-out L_r is flat, so the plateau rule stops the run as
    soon as its window is long enough (here shortened from 2000 steps to 8), far before the cap."""
    import edgeproj.training.holdout as holdout

    monkeypatch.setattr(holdout, "MIN_PLATEAU_STEPS", 8)
    out = tmp_path / "flat"
    res = _short(images, pre, out, variant="l2ae", steps=200, lr=1e-12, eval_every=2)
    assert res.stopped["by"] == "plateau" and res.steps == 8 and res.stopped["cap_steps"] == 200
    held = json.loads((out / "heldout.json").read_text())
    assert held["stopped"]["by"] == "plateau" and held["convergence"]["verdict"] in (
        "converged",
        "plateau far above the stop threshold",
    )
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 8
    again = _short(images, pre, out, variant="l2ae", steps=200, lr=1e-12, eval_every=2)
    assert again.resumed_from == 8 and again.steps == 8 and again.stopped["by"] == "plateau"
    # --until steps goes on past the plateau, to the cap.
    more = _short(images, pre, out, variant="l2ae", steps=12, lr=1e-12, eval_every=2, until="steps")
    assert more.resumed_from == 8 and more.steps == 12 and more.stopped["by"] == "step cap"


def test_time_cap_stops_training_with_a_checkpoint(images, pre, tmp_path):
    out = tmp_path / "timed"
    res = _short(images, pre, out, variant="l2ae", steps=40, max_minutes=1e-6)
    # Checked every min(log interval, evaluation interval) = 4 steps: stopped at the first check.
    assert res.stopped["by"] == "time cap" and res.steps == 4
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4 and "train_rec_mean" in log[-1]  # the last point is measured


@pytest.mark.parametrize("kw", [{"until": "forever"}, {"max_minutes": 0.0}, {"max_minutes": -1.0}])
def test_bad_stop_options_are_config_errors(kw):
    with pytest.raises(ConfigError):
        TrainConfig(**kw)
