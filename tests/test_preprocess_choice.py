"""The preprocessing rule for data the tool does not know, and the held-out split and verdict of training."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeproj.cli.app import app
from edgeproj.data.images import write_png
from edgeproj.data.preprocess_choice import STATIONARY_LIMIT, choose_preprocess, stationarity, texture_resize
from edgeproj.errors import ConfigError
from edgeproj.training.holdout import convergence_verdict, split_holdout, stop_statistics


def _texture(side: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Stationary band-pass noise (a stand-in for a texture photograph)."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((side, side, channels)).astype(np.float32)
    img = np.stack([cv2.GaussianBlur(noise[..., c], (0, 0), 1.5) for c in range(channels)], axis=2)
    return np.clip(0.5 + 0.5 * img / img.std(), 0, 1).astype(np.float32)


def _object(side: int, seed: int = 0) -> np.ndarray:
    """A textured part in the middle of a plain background."""
    img = np.full((side, side, 1), 0.1, np.float32)
    mask = np.zeros((side, side), np.uint8)
    cv2.ellipse(mask, (side // 2, side // 2), (side // 4, side // 6), 15 * seed, 0, 360, 1, -1)
    img[mask > 0] = _texture(side, seed)[mask > 0]
    return img


def test_stationarity_separates_textures_from_objects():
    tex = [stationarity(_texture(256, s)) for s in range(3)]
    obj = [stationarity(_object(256, s)) for s in range(3)]
    assert max(tex) < STATIONARY_LIMIT < min(obj), (tex, obj)


@pytest.mark.parametrize("side,expected", [(1024, 512), (700, 350), (384, 256), (256, 256), (200, 200), (100, 128)])
def test_texture_scale_is_relative_to_the_source_and_never_upsamples(side, expected):
    size, why = texture_resize(side, 128)
    assert size == expected
    assert size <= max(side, 128)
    assert ("upsampled to" in why) == (side < 128)


def test_unknown_texture_is_measured_and_kept_at_source_scale():
    choice = choose_preprocess([_texture(256, s) for s in range(4)], "brickwall-line3", 1)
    assert choice.preprocess.mode == "texture" and choice.preprocess.resize == 256
    assert "measured on 4 images" in choice.reasons["mode"] and choice.stationarity is not None
    assert "never upsampled" in choice.reasons["resize"]
    text = "\n".join(choice.lines())
    assert "texture mode" in text and "working size 256" in text
    json.dumps(choice.to_dict())  # recorded in config.json and the manifest


def test_unknown_object_is_measured():
    choice = choose_preprocess([_object(300, s) for s in range(3)], "widget-a", 1)
    assert choice.preprocess.mode == "object" and choice.preprocess.resize == 128
    assert "at or above" in choice.reasons["mode"]


def test_mvtec_names_keep_the_paper_setting_and_the_user_wins():
    tex = [_texture(1024)]
    assert choose_preprocess(tex, "carpet", 1).preprocess.resize == 512
    assert "MVTec" in choose_preprocess(tex, "carpet", 1).reasons["mode"]
    assert choose_preprocess(tex, "screw", 1).preprocess.mode == "object"
    forced = choose_preprocess(tex, "screw", 1, mode="texture", resize=300, stride=32)
    assert (forced.preprocess.mode, forced.preprocess.resize, forced.preprocess.stride) == ("texture", 300, 32)
    assert all("given by the user" in forced.reasons[k] for k in ("mode", "resize", "stride"))
    with pytest.raises(ConfigError, match="texture mode"):
        choose_preprocess(tex, None, 1, mode="object", resize=256)


def test_cli_train_prints_and_records_the_choice(tmp_path):
    folder = tmp_path / "brickwall"
    for i in range(10):
        write_png(folder / f"{i:03d}.png", _texture(256, i))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(folder), "--out", str(out), "--steps", "4", "--batch", "2", "--width", "4"])
    assert result.exit_code == 0, result.output
    assert "preprocessing: texture mode" in result.stderr and "measured on 10 images" in result.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["preprocess"]["mode"] == "texture" and cfg["preprocess"]["resize"] == 256
    assert cfg["preprocess_choice"]["reasons"]["mode"].startswith("measured")
    # Ten images: two held out, named in the run, watched during training and judged at the end.
    assert len(cfg["data"]["held_out"]) == 2 and cfg["data"]["train_images"] == 8
    held = json.loads((out / "heldout.json").read_text())
    assert held["stop"]["patches"] == 2 * 9 and 0 <= held["stop"]["stop_at_x0_fraction"] <= 1
    # Four steps say nothing about a plateau: never "converged" on a window that short.
    assert held["convergence"]["verdict"] == "unknown" and "needs at least 2000 steps" in held["convergence"]["reason"]
    text = " ".join(result.stderr.split())  # the console wraps long lines
    assert held["stopped"]["by"] == "step cap" and "budget used: 4 steps, 8 samples" in text and "cap 4 steps" in text
    assert held["convergence"]["verdict"] in result.stderr
    assert "samples/s" in result.stderr


def test_holdout_split_is_seeded_by_name():
    paths = [Path(f"img{i:03d}.png") for i in range(30)]
    train, held = split_holdout(paths, 0.1, seed=0)
    assert len(held) == 3 and not set(train) & set(held) and len(train) + len(held) == 30
    assert split_holdout(list(reversed(paths)), 0.1, seed=0)[1] == list(reversed(held))  # order of the folder
    assert split_holdout(paths, 0.1, seed=1)[1] != held
    assert split_holdout(paths[:9], 0.1, seed=0)[1] == []  # too few images to spare any
    assert split_holdout(paths, 0.0, seed=0)[1] == []


@pytest.mark.parametrize(
    "values,verdict",
    [
        ([10, 8, 6, 5, 4.5, 4.0, 3.6, 3.3], "still improving"),
        ([10, 8, 6, 5, 4.0, 4.0, 4.0, 4.0, 4.0, 4.01], "converged"),
        ([10, 8, 6, 5, 4.0, 4.3, 4.6, 5.0], "over-fitting"),
        ([10, 8], "unknown"),
        ([10, 8, float("nan"), 5, 4, 3], "still improving"),
        # The brick photograph's first 2500 steps: a plateau after the mean image, then learning resumed.
        ([287.5, 68.7, 61.8, 59.3, 57.9, 57.4], "still improving"),
        ([287.5, 68.7, 61.8, 59.3, 57.9, 57.4, 53.5, 46.8, 33.2, 26.1, 22.7], "still improving"),
    ],
)
def test_convergence_verdict(values, verdict):
    history = [{"step": 500 * i, "heldout_rec_mean": v} for i, v in enumerate(values)]
    assert convergence_verdict(history)["verdict"] == verdict


def test_convergence_verdict_never_on_a_short_window_or_far_above_the_stop_threshold():
    """The issue's case: 20 steps, +1.2% over the last 6, called converged. Under 2000 steps: unknown."""
    flat = [{"step": 2 * i, "heldout_rec_mean": 100.0 + 0.01 * i} for i in range(11)]
    assert convergence_verdict(flat)["verdict"] == "unknown"
    long_flat = [{"step": 500 * i, "heldout_rec_mean": 100.0} for i in range(11)]
    assert convergence_verdict(long_flat)["verdict"] == "converged"
    assert convergence_verdict(long_flat, median_over_threshold=1.5)["verdict"] == "converged"
    far = convergence_verdict(long_flat, median_over_threshold=2.4)
    assert far["verdict"] == "plateau far above the stop threshold" and "2.40x the stop threshold" in far["reason"]
    # NaN is not under any bound.
    assert convergence_verdict(long_flat, median_over_threshold=float("nan"))["verdict"] != "converged"


def test_stop_statistics():
    s = stop_statistics(np.array([1.0, 2.0, 3.0, 4.0]), 2.5)
    assert s["stop_at_x0_fraction"] == 0.5 and s["median_over_threshold"] == pytest.approx(1.0)


def test_one_noisy_rise_does_not_stop_training_two_do():
    from edgeproj.training.holdout import plateau_reached

    falling = [{"step": 500 * i, "heldout_rec_mean": 100.0 - 5 * i} for i in range(10)]
    assert plateau_reached(falling) is None
    one = falling + [{"step": 5000, "heldout_rec_mean": 90.0}]
    assert convergence_verdict(one)["verdict"] == "over-fitting" and plateau_reached(one) is None  # one rise: go on
    risen = falling + [{"step": 5000 + 500 * i, "heldout_rec_mean": 75.0 + i} for i in range(3)]
    assert plateau_reached(risen[:-1]) is None and plateau_reached(risen)["verdict"] == "over-fitting"  # seen twice in a row
