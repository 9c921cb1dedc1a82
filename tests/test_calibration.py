"""Calibration: threshold rules on known distributions, the manifest rewrite (atomic, lossless), bad input, CLI, FP16 refusal."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from cli_helpers import one_line_error, run_cli

from edgeproj.calibration.calibrate import CalibrationOptions, calibrate_bundle
from edgeproj.calibration.thresholds import best_f1, exceed_rate, quantile_threshold, stop_threshold
from edgeproj.data.images import read_image, write_png
from edgeproj.data.mvtec import normal_images
from edgeproj.errors import BackendError, ConfigError, DataError, EdgeprojError
from edgeproj.evaluation.testset import load_testset
from edgeproj.runtime import Projector, load_manifest
from edgeproj.runtime.backends import backend_options
from edgeproj.runtime.manifest import MANIFEST, Calibration, write_manifest


def _raw(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST).read_text())


# ------------------------------------------------------------------ threshold rules


@pytest.mark.parametrize("rate", [0.001, 0.01, 0.05, 0.1, 0.3])
def test_quantile_threshold_uniform(rate):
    s = np.random.default_rng(1).random(50_000)
    t = quantile_threshold(s, rate)
    achieved = exceed_rate(s, t)
    assert achieved <= rate  # exactly, on the sample itself
    assert achieved >= rate - 2.0 / s.size  # and not needlessly conservative
    assert abs(t - (1.0 - rate)) < 0.01  # the population quantile of U(0, 1)
    assert t in s  # a sample value (method 'higher')


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.1])
def test_quantile_threshold_normal(rate):
    s = np.random.default_rng(2).normal(3.0, 2.0, 100_000)
    t = quantile_threshold(s, rate)
    assert exceed_rate(s, t) <= rate
    assert abs(exceed_rate(s, t) - rate) <= 2.0 / s.size
    expected = NormalDist(3.0, 2.0).inv_cdf(1.0 - rate)
    assert abs(t - expected) < 0.05 * 2.0


def test_quantile_threshold_ties_and_zero_rate():
    s = np.array([0.0] * 90 + [1.0] * 10)
    assert exceed_rate(s, quantile_threshold(s, 0.05)) <= 0.05
    assert quantile_threshold(s, 0.0) == 1.0  # rate 0: nothing may exceed -> the maximum
    assert exceed_rate(s, quantile_threshold(s, 0.0)) == 0.0
    # Works on 2-D maps too (flattened).
    m = np.random.default_rng(3).random((64, 64))
    assert exceed_rate(m, quantile_threshold(m, 0.1)) <= 0.1


@pytest.mark.parametrize("rate", [-0.01, 1.0, 1.5, float("nan")])
def test_quantile_threshold_bad_rates(rate):
    with pytest.raises(ConfigError, match="false-positive rate"):
        quantile_threshold(np.arange(10.0), rate)


def test_quantile_threshold_empty():
    with pytest.raises(ConfigError, match="no normal scores"):
        quantile_threshold(np.array([]), 0.1)
    assert math.isnan(exceed_rate(np.array([]), 0.0))


def test_stop_threshold_min_and_quantile():
    v = np.random.default_rng(4).permutation(np.arange(101.0) + 500.0)
    assert stop_threshold(v) == 500.0
    assert stop_threshold(v, "min") == 500.0
    assert stop_threshold(v, "quantile", 0.1) == pytest.approx(510.0)
    assert stop_threshold(v, "quantile", 0.5) == pytest.approx(550.0)
    assert stop_threshold(v, "quantile", 1.0) == 600.0
    assert stop_threshold(v, "quantile", 0.0) == 500.0
    with pytest.raises(ConfigError, match="stop quantile"):
        stop_threshold(v, "quantile", 1.5)
    with pytest.raises(ConfigError, match="unknown stop rule"):
        stop_threshold(v, "median")
    with pytest.raises(ConfigError, match="no L_r values"):
        stop_threshold(np.array([]))


def test_best_f1_separable():
    rng = np.random.default_rng(5)
    neg, pos = rng.random(300), 2.0 + rng.random(40)
    scores = np.concatenate([neg, pos])
    labels = np.concatenate([np.zeros(300, bool), np.ones(40, bool)])
    order = rng.permutation(scores.size)
    r = best_f1(labels[order], scores[order])
    assert r["f1"] == 1.0 and r["precision"] == 1.0 and r["recall"] == 1.0
    assert neg.max() < r["threshold"] < pos.min()
    assert np.array_equal(scores > r["threshold"], labels)


def test_best_f1_hand_computed():
    # Ranked: + + - + - -  -> cuts give F1 1/2, 4/5, 2/3, 6/7, 3/4, 2/3: the best is the top four.
    labels = np.array([1, 1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    r = best_f1(labels, scores)
    assert r["f1"] == pytest.approx(6 / 7)
    assert r["precision"] == pytest.approx(3 / 4)
    assert r["recall"] == pytest.approx(1.0)
    assert r["threshold"] == pytest.approx(0.55)
    from sklearn.metrics import f1_score

    assert f1_score(labels, scores > r["threshold"]) == pytest.approx(r["f1"])


def test_best_f1_ties_cut_only_between_distinct_scores():
    # Tied 0.7 scores cannot be split: cuts give F1 2/3 (top 1), 4/5 (top 3), 2/3 (all).
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.7, 0.7, 0.3])
    r = best_f1(labels, scores)
    assert r["f1"] == pytest.approx(0.8)
    assert r["threshold"] == pytest.approx(0.5)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == 1.0


def test_best_f1_without_positives_is_nan():
    r = best_f1(np.zeros(5), np.arange(5.0))
    assert all(math.isnan(v) for v in r.values())


# ------------------------------------------------------------------ calibrate_bundle


@pytest.fixture(scope="module")
def grid_testset(demo_root, bundles):
    return load_testset(demo_root, "grid", load_manifest(bundles["l2ae"]).preprocess)


def test_calibrate_bundle_writes_section(bundle_copy, demo_root, grid_testset):
    raw = _raw(bundle_copy)
    raw["site"] = {"line": 3, "camera": "cam-7"}  # an unknown key another tool added
    (bundle_copy / MANIFEST).write_text(json.dumps(raw, indent=2))
    before = _raw(bundle_copy)
    assert {"input", "notes", "cost"} <= set(before), "fixture bundle should carry these top-level keys"

    paths = normal_images(demo_root / "grid")
    opts = CalibrationOptions(pixel_fpr=0.02, image_frr=0.1)
    section = calibrate_bundle(bundle_copy, paths, opts, labelled=grid_testset).to_dict()

    m = load_manifest(bundle_copy)  # checksums still verify
    after = _raw(bundle_copy)
    assert json.loads(json.dumps(section)) == after["calibration"] == m.calibration.to_dict()

    cal = after["calibration"]
    assert cal["method"]["stop"] == "min" and cal["method"]["backend"] == "ort-cpu"
    assert {"pixel", "image"} <= set(cal["method"])
    assert cal["targets"] == {"pixel_fpr": 0.02, "image_frr": 0.1}
    assert cal["images"]["calibration"] + cal["images"]["holdout"] == len(paths) == 8
    assert cal["images"]["holdout"] == 2
    assert re.fullmatch(r"[0-9a-f]{64}", cal["images"]["list_sha256"])
    date = dt.datetime.fromisoformat(cal["date"])
    assert date.tzinfo is not None
    assert abs((dt.datetime.now(dt.timezone.utc) - date).total_seconds()) < 3600
    for k in ("rec_loss_threshold", "pixel_threshold", "image_threshold"):
        assert isinstance(cal[k], float) and math.isfinite(cal[k]), k
    assert cal["rec_loss_threshold"] == cal["rec_loss_at_x0"]["min"]
    assert cal["rec_loss_at_x0"]["min"] <= cal["rec_loss_at_x0"]["median"] <= cal["rec_loss_at_x0"]["max"]
    assert cal["pixel_threshold"] > 0 and cal["image_threshold"] > 0
    # Too few held-out images to choose: the bundle's score (the smoothed map maximum, the default of new
    # exports) is kept, with the texture check on this texture line.
    assert "(map_max_smoothed_tex)" in cal["method"]["image"]

    meas = cal["measured"]
    assert meas["calibration_pixel_fpr"] <= 0.02 and meas["calibration_pixel_fpr"] > 0.015
    assert meas["calibration_image_frr"] <= 0.1
    assert 0.0 <= meas["holdout_pixel_fpr"] <= 1.0 and 0.0 <= meas["holdout_image_frr"] <= 1.0

    lab = cal["labelled"]
    assert lab["images"] == len(grid_testset.images) == 6
    assert 0.0 <= lab["pixel_auroc"] <= 1.0 and 0.0 <= lab["image_auroc"] <= 1.0
    for key in ("best_f1_pixel", "best_f1_image"):
        b = lab[key]
        assert set(b) == {"threshold", "f1", "precision", "recall"}
        assert 0.0 < b["f1"] <= 1.0
        assert b["f1"] == pytest.approx(2 * b["precision"] * b["recall"] / (b["precision"] + b["recall"]))
    assert set(lab["at_calibrated_thresholds"]) == {"pixel_precision", "pixel_recall", "image_recall", "image_false_reject"}
    assert "fp16" in cal["precision"] and "int8" in cal["precision"]

    # projection.stop follows the calibration, image_score the choice; everything else is unchanged,
    # unknown keys included.
    assert m.projection.stop.rec_loss_threshold == cal["rec_loss_threshold"]
    assert after["projection"]["stop"]["rec_loss_threshold"] == cal["rec_loss_threshold"]
    assert (before["projection"]["image_score"], after["projection"]["image_score"]) == (
        "map_max_smoothed",
        "map_max_smoothed_tex",
    )
    proj_before, proj_after = dict(before["projection"]), dict(after["projection"])
    proj_before.pop("image_score"), proj_after.pop("image_score")
    proj_before["stop"] = {k: v for k, v in proj_before["stop"].items() if k != "rec_loss_threshold"}
    proj_after["stop"] = {k: v for k, v in proj_after["stop"].items() if k != "rec_loss_threshold"}
    assert proj_before == proj_after
    # Calibrate chooses the image score, so its note says so; every other note is untouched.
    notes_before, notes_after = dict(before.get("notes", {})), dict(after.get("notes", {}))
    assert notes_after.pop("image_score").endswith("(chosen by calibrate)")
    notes_before.pop("image_score", None)
    assert notes_after == notes_before
    for key in set(before) | set(after):
        if key not in ("calibration", "projection", "notes"):
            assert after.get(key) == before.get(key), key
    assert after["site"] == {"line": 3, "camera": "cam-7"}
    assert not list(bundle_copy.glob(f".{MANIFEST}.*.tmp")), "temporary file left behind"


def test_calibrate_list_hash_and_determinism(bundle_copy, demo_root):
    paths = normal_images(demo_root / "grid")
    a = calibrate_bundle(bundle_copy, paths, CalibrationOptions()).to_dict()
    b = calibrate_bundle(bundle_copy, list(reversed(paths)), CalibrationOptions()).to_dict()
    assert a["images"]["list_sha256"] == b["images"]["list_sha256"]  # the set of images, not their order
    for k in ("rec_loss_threshold", "pixel_threshold", "image_threshold"):
        assert a[k] == b[k]
    c = calibrate_bundle(bundle_copy, paths[:3], CalibrationOptions()).to_dict()
    assert c["images"]["list_sha256"] != a["images"]["list_sha256"]
    # Too few images for a hold-out: everything calibrates, no hold-out figures are claimed.
    assert c["images"] == {
        "calibration": 3,
        "holdout": 0,
        "holdout_unseen_by_training": 0,
        "list_sha256": c["images"]["list_sha256"],
    }
    assert "holdout_pixel_fpr" not in c["measured"]
    assert load_manifest(bundle_copy).calibration.images["calibration"] == 3


def test_calibrate_stop_quantile(bundle_copy, demo_root):
    sec = calibrate_bundle(
        bundle_copy, normal_images(demo_root / "grid"), CalibrationOptions(stop_rule="quantile", stop_quantile=0.5, holdout=0.0)
    ).to_dict()
    assert sec["method"]["stop"] == "quantile 0.5"
    assert sec["rec_loss_threshold"] == pytest.approx(sec["rec_loss_at_x0"]["median"])
    assert sec["images"]["holdout"] == 0
    assert load_manifest(bundle_copy).projection.stop.rec_loss_threshold == sec["rec_loss_threshold"]


def test_calibrate_bad_rate_leaves_manifest_untouched(bundle_copy, demo_root):
    before = (bundle_copy / MANIFEST).read_bytes()
    with pytest.raises(ConfigError, match="false-positive rate"):
        calibrate_bundle(bundle_copy, normal_images(demo_root / "grid"), CalibrationOptions(pixel_fpr=1.5))
    with pytest.raises(ConfigError, match="stop rule"):
        calibrate_bundle(bundle_copy, normal_images(demo_root / "grid"), CalibrationOptions(stop_rule="median"))
    assert (bundle_copy / MANIFEST).read_bytes() == before


# ------------------------------------------------------------------ atomic rewrite under a kill


def test_manifest_rewrite_killed_before_rename_keeps_old_manifest(bundle_copy, demo_root):
    before = (bundle_copy / MANIFEST).read_bytes()
    code = textwrap.dedent(
        """
        import os, signal, sys
        from pathlib import Path
        from edgeproj.calibration.calibrate import CalibrationOptions, calibrate_bundle
        from edgeproj.data.mvtec import normal_images

        def killed(*args, **kwargs):  # the temporary file is written and fsynced; die before the rename
            os.kill(os.getpid(), signal.SIGKILL)

        os.replace = killed
        calibrate_bundle(Path(sys.argv[1]), normal_images(Path(sys.argv[2])), CalibrationOptions())
        print("not killed")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(bundle_copy), str(demo_root / "grid")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == -signal.SIGKILL, (out.returncode, out.stdout, out.stderr[-2000:])
    # The kill came after the new manifest was fully written to its temporary file...
    tmps = list(bundle_copy.glob(f".{MANIFEST}.*.tmp"))
    assert len(tmps) == 1
    assert "pixel_threshold" in json.loads(tmps[0].read_text())["calibration"]
    # ...and the manifest itself is the previous one, intact, parsing and verifying.
    assert (bundle_copy / MANIFEST).read_bytes() == before
    m = load_manifest(bundle_copy)
    assert not m.calibration.calibrated
    # A later calibration succeeds over the leftover temporary file.
    sec = calibrate_bundle(bundle_copy, normal_images(demo_root / "grid"), CalibrationOptions())
    assert load_manifest(bundle_copy).calibration.pixel_threshold == sec.pixel_threshold


def test_write_manifest_killed_during_fsync_keeps_old_manifest(bundle_copy):
    before = (bundle_copy / MANIFEST).read_bytes()
    code = textwrap.dedent(
        """
        import os, signal, sys
        from pathlib import Path
        from edgeproj.runtime.manifest import Calibration, load_manifest, write_manifest

        m = load_manifest(Path(sys.argv[1]))
        os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
        write_manifest(m.with_calibration(Calibration(pixel_threshold=0.5)))
        print("not killed")
        """
    )
    out = subprocess.run([sys.executable, "-c", code, str(bundle_copy)], capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGKILL, (out.returncode, out.stdout, out.stderr[-2000:])
    assert (bundle_copy / MANIFEST).read_bytes() == before
    assert not load_manifest(bundle_copy).calibration.calibrated


# ------------------------------------------------------------------ bad input


def _colour_images(folder: Path, n: int = 4, size: int = 128) -> list[Path]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        img = rng.random((size, size, 3)).astype(np.float32)
        img[:, :, 0] = 1.0  # strongly red: channels differ far beyond the gray tolerance
        img[:, :, 2] = 0.0
        out.append(write_png(folder / f"{i:03d}.png", img))
    return out


def _mixed_sizes(folder: Path, demo_root: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for p in normal_images(demo_root / "grid")[:3]:
        shutil.copy(p, folder / p.name)
    odd = np.random.default_rng(8).random((96, 128)).astype(np.float32)
    write_png(folder / "zzz_odd.png", odd)
    return sorted(folder.glob("*.png"))


def test_calibrate_bad_input_raises_clear_errors(bundle_copy, demo_root, tmp_path):
    before = (bundle_copy / MANIFEST).read_bytes()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        normal_images(tmp_path / "empty")
    with pytest.raises(DataError, match="no normal images"):
        calibrate_bundle(bundle_copy, [], CalibrationOptions())

    colour = _colour_images(tmp_path / "colour")
    with pytest.raises(DataError, match="RGB but 1 channel"):
        calibrate_bundle(bundle_copy, colour, CalibrationOptions())

    mixed = _mixed_sizes(tmp_path / "mixed", demo_root)
    with pytest.raises(DataError, match="128x96") as exc:
        calibrate_bundle(bundle_copy, mixed, CalibrationOptions())
    assert "zzz_odd.png" in str(exc.value) and "128x128" in str(exc.value)
    assert issubclass(DataError, EdgeprojError)
    assert (bundle_copy / MANIFEST).read_bytes() == before


def test_calibrate_cli_bad_input_exit_2(bundle_copy, demo_root, tmp_path):
    before = (bundle_copy / MANIFEST).read_bytes()
    (tmp_path / "empty").mkdir()
    one_line_error(run_cli("calibrate", bundle_copy, tmp_path / "empty"), "holds no images")
    _colour_images(tmp_path / "colour")
    one_line_error(run_cli("calibrate", bundle_copy, tmp_path / "colour"), "RGB but 1 channel")
    _mixed_sizes(tmp_path / "mixed", demo_root)
    one_line_error(run_cli("calibrate", bundle_copy, tmp_path / "mixed", "--json"), "zzz_odd.png", "one size")
    one_line_error(run_cli("calibrate", bundle_copy, tmp_path / "missing"), "does not exist")
    one_line_error(run_cli("calibrate", bundle_copy, demo_root / "grid", "--labelled", demo_root), "--category")
    assert (bundle_copy / MANIFEST).read_bytes() == before


# ------------------------------------------------------------------ CLI


def test_calibrate_cli_json_then_project_verdict(bundle_copy, demo_root, tmp_path):
    res = run_cli(
        "calibrate",
        bundle_copy,
        demo_root / "grid",
        "--json",
        "--image-frr",
        "0.2",
        "--labelled",
        demo_root,
        "--category",
        "grid",
    )
    assert res.exit_code == 0, (res.stderr, res.exception)
    sec = json.loads(res.stdout)
    assert isinstance(sec["pixel_threshold"], float)
    assert sec["targets"]["image_frr"] == 0.2
    assert "best_f1_pixel" in sec["labelled"]
    m = load_manifest(bundle_copy)
    assert m.calibration.pixel_threshold == sec["pixel_threshold"]
    assert m.projection.stop.rec_loss_threshold == sec["rec_loss_threshold"]

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for kind in ("good", "hole"):
        shutil.copy(demo_root / "grid" / "test" / kind / "000.png", imgs / f"{kind}.png")
    res = run_cli("project", bundle_copy, imgs, "--out", tmp_path / "out", "--json", "--max-iterations", "3")
    assert res.exit_code == 0, (res.stderr, res.exception)
    doc = json.loads(res.stdout)
    assert len(doc["images"]) == 2
    for s in doc["images"]:
        assert s["verdict"] == ("NG" if s["score"] > sec["image_threshold"] else "OK")


# ------------------------------------------------------------------ the image score chosen for the line


def test_calibration_chooses_the_image_score_on_synthetic_defects(trained_bundle):
    """40 normal images, a quarter held out: each held-out image gets CHOICE_PER_IMAGE synthetic defects, and
    the candidate separating the two sets best (score_choice.RULE) becomes the bundle's image score."""
    from edgeproj.calibration.score_choice import CHOICE_PER_IMAGE, TEXTURE_RULE, choose, eligible
    from edgeproj.runtime.manifest import IMAGE_SCORES
    from edgeproj.runtime.scoring import MapNorm

    m = load_manifest(trained_bundle)
    ch = m.calibration.image_score_choice
    assert set(ch["candidates_auroc"]) == set(IMAGE_SCORES) and ch["normal_images"] == 10
    assert ch["defects_per_image"] == CHOICE_PER_IMAGE > 1
    assert sum(ch["synthetic_defects"].values()) == 10 * CHOICE_PER_IMAGE and ch["before"] == "map_max_smoothed"
    assert all(0.0 <= v <= 1.0 for v in ch["candidates_auroc"].values())
    # The demo is a texture line: only the scores with the texture check are eligible, and the rule says so.
    assert m.preprocess.mode == "texture" and ch["eligible"] == list(eligible("texture"))
    assert all(k.endswith("_tex") for k in ch["eligible"]) and TEXTURE_RULE in ch["rule"]
    assert ch["chosen"] == choose(ch["candidates_auroc"], eligible("texture")) == m.projection.image_score
    assert f"({ch['chosen']})" in m.calibration.method["image"]
    norm = MapNorm.from_dict(m.calibration.map_norm)
    assert norm is not None and norm.texture is not None
    # The pixel threshold is set on the fused map (the score has the texture check), and both maps'
    # pixel AUROC on the synthetic defects is recorded.
    assert "fused with the texture check" in m.calibration.method["pixel"]
    assert set(ch["pixel_auroc"]) == {"projection", "fused"} and all(0 <= v <= 1 for v in ch["pixel_auroc"].values())


def test_the_line_draws_the_fused_map_and_scores_the_projection_map(trained_bundle, gate_demo_root):
    """A bundle whose image score has the texture check: each result's `map` (thresholded and drawn by the
    line) is the projection map fused pixel by pixel with the texture check, the score is taken from the
    projection map itself, and the calibrated pixel threshold sits on the fused map's scale (a typical
    normal image's pixels exceed it at about the 1% target). The same bundle without the pixel statistics (calibrated
    before them) draws the projection map, the map its pixel threshold was set on."""
    from edgeproj.runtime.projector import Projector
    from edgeproj.runtime.scoring import image_score, pixel_map

    m = load_manifest(trained_bundle)
    assert m.projection.image_score.endswith("_tex")
    images = [read_image(p, m.channels) for p in normal_images(gate_demo_root / "grid")[:10]]
    with Projector(m) as proj:
        res = proj.project(images)
    for r, img in zip(res, images):
        assert r.map is not r.projection_map
        assert np.array_equal(r.map, pixel_map(r.projection_map, m.projection.image_score, img, proj.map_norm))
        assert r.score == image_score(r.projection_map, m.projection.image_score, img, proj.map_norm)
        assert np.all(r.map >= proj.map_norm.apply(r.projection_map, img, contrast=False))
    # Per image, as the target allows; a median, since a few of these images are outliers that training
    # never saw (the projection map alone flags a quarter of one of them).
    assert np.median([np.mean(r.map > m.calibration.pixel_threshold) for r in res]) < 0.02
    older = json.loads(json.dumps(m.calibration.map_norm))
    del older["texture"]["pixel_z"]
    with Projector(replace(m, calibration=replace(m.calibration, map_norm=older))) as proj:
        (r,) = proj.project(images[:1])
    assert r.map is r.projection_map and r.score == res[0].score


def test_the_summary_lists_the_eligible_candidates_and_names_the_best_other(trained_bundle):
    """calibrate's printed choice ranks only what the line could pick, then names the best candidate that a
    texture line excludes, so a user sees what the texture check costs or gains on synthetic defects."""
    import io

    from rich.console import Console

    from edgeproj.calibration.summary import CalibrationSummary
    from edgeproj.cli.calibrate import _print_summary

    m = load_manifest(trained_bundle)
    s = CalibrationSummary.of(m.calibration, m.channels)
    assert s.score_choice.eligible and all(k.endswith("_tex") for k in s.score_choice.eligible)
    out = io.StringIO()
    _print_summary(Console(file=out, width=10_000), s, 0.01, 0.02, None)
    line = next(ln for ln in out.getvalue().splitlines() if ln.startswith("image score"))
    listed, other = line.split("; not eligible on a texture line (no texture check): best ")
    ranked = listed.split("held-out normal images: ")[1].split(", ")
    assert [r.split()[0] for r in ranked] == sorted(s.score_choice.eligible, key=lambda k: -s.score_choice.candidates_auroc[k])
    figs = s.score_choice.candidates_auroc
    best_other = max((k for k in figs if k not in s.score_choice.eligible), key=figs.get)
    assert other == f"{best_other} {figs[best_other]:.3f}"
    assert any(ln.startswith("warning:") for ln in out.getvalue().splitlines()) == bool(s.score_choice.warning)
    # What the pixel threshold is set on, and both maps' pixel AUROC on the synthetic defects.
    lines = out.getvalue().splitlines()
    assert any(ln.startswith("pixel threshold: ") and "fused with the texture check" in ln for ln in lines)
    px = s.score_choice.pixel_auroc
    assert f"pixel AUROC of the synthetic defects: projection map {px['projection']:.3f}, fused map {px['fused']:.3f}" in lines


class _MapProjector:
    """Stands in for a Projector in _choose_score: the map of an image is its distance from mid-gray."""

    def __init__(self, mode: str = "texture"):
        from types import SimpleNamespace

        self.manifest = SimpleNamespace(preprocess=SimpleNamespace(mode=mode))

    def settings(self, **overrides):
        return None

    def project(self, images, settings=None):
        from types import SimpleNamespace

        maps = [np.abs(img[..., 0] - 0.5) for img in images]
        return [SimpleNamespace(map=a, projection_map=a, score=0.0) for a in maps]


def _choice(images, per_image, mode="texture"):
    from edgeproj.calibration.calibrate import _choose_score
    from edgeproj.runtime.scoring import MapNorm

    maps = [np.abs(img[..., 0] - 0.5) for img in images]
    opts = CalibrationOptions(choice_per_image=per_image)
    return _choose_score(_MapProjector(mode), "map_max", opts, images, maps, 1.0, MapNorm.fit(maps, images))


def test_calibrate_prints_the_weak_separation_warning(trained_bundle):
    import io

    from rich.console import Console

    from edgeproj.calibration.score_choice import separation_warning
    from edgeproj.calibration.summary import CalibrationSummary
    from edgeproj.cli.calibrate import _print_summary

    m = load_manifest(trained_bundle)
    choice = m.calibration.image_score_choice | {"warning": separation_warning("map_max_tex", 0.55)}
    s = CalibrationSummary.of(replace(m.calibration, image_score_choice=choice), m.channels)
    out = io.StringIO()
    _print_summary(Console(file=out, width=10_000), s, 0.01, 0.02, None)
    assert f"warning: {choice['warning']}" in out.getvalue().splitlines()


def test_a_weak_separation_is_warned_and_recorded(monkeypatch):
    """When the chosen score hardly separates the synthetic defects from the held-out good parts (below
    WEAK_SEPARATION, or NaN), the choice records a warning that names the score and its AUROC; above, none."""
    import edgeproj.calibration.calibrate as calibrate_module
    from edgeproj.calibration.score_choice import MIN_PAIRS, WEAK_SEPARATION, separation_warning
    from edgeproj.runtime.manifest import IMAGE_SCORES

    assert separation_warning("norm_max_tex", WEAK_SEPARATION) is None and separation_warning("map_max", 0.9) is None
    w = separation_warning("norm_max_tex", 0.565)
    assert "norm_max_tex" in w and "AUROC 0.565" in w and "pass as OK" in w and "edgeproj evaluate" in w
    assert separation_warning("map_max", float("nan")) is not None
    rng = np.random.default_rng(3)
    textured = [rng.uniform(0.2, 0.8, (64, 64, 1)).astype(np.float32) for _ in range(MIN_PAIRS + 2)]
    for level, warned in ((0.55, True), (0.8, False)):
        figures = {k: level - 0.01 * i for i, k in enumerate(IMAGE_SCORES)}
        monkeypatch.setattr(calibrate_module, "candidate_figures", lambda *a, f=figures: dict(f))
        kind, ch = _choice(textured, 1)
        assert ("warning" in ch) == warned and (not warned or f"AUROC {figures[kind]:.3f}" in ch["warning"])


@pytest.mark.parametrize("mode", ["texture", "object"])
def test_a_texture_line_chooses_among_the_scores_with_the_texture_check(mode):
    """On a texture line the choice may only pick a *_tex score (the projection alone passed flat and
    blurred patches on a weave photograph); an object line may pick any, by the same rule."""
    from edgeproj.calibration.score_choice import TEXTURE_RULE, TIE
    from edgeproj.runtime.manifest import IMAGE_SCORES

    rng = np.random.default_rng(7)
    textured = [rng.uniform(0.2, 0.8, (64, 64, 1)).astype(np.float32) for _ in range(10)]
    kind, ch = _choice(textured, 2, mode)
    figs = ch["candidates_auroc"]
    assert set(figs) == set(IMAGE_SCORES) and kind == ch["chosen"]
    allowed = [k for k in IMAGE_SCORES if k.endswith("_tex")] if mode == "texture" else list(IMAGE_SCORES)
    assert ch["eligible"] == allowed and kind in allowed
    assert figs[kind] >= max(figs[k] for k in allowed) - TIE
    assert (TEXTURE_RULE in ch["rule"]) == (mode == "texture")


def test_the_choice_draws_defects_per_image_and_counts_images(monkeypatch):
    """--choice-defects N: N defects on every held-out image, recorded; MIN_PAIRS counts the images that
    show a defect, not the defects (3 each on 7 images are still 7 images, too few)."""
    import edgeproj.data.synthetic as synthetic
    from edgeproj.calibration.score_choice import MIN_PAIRS
    from edgeproj.errors import DataError

    rng = np.random.default_rng(5)
    textured = [rng.uniform(0.2, 0.8, (64, 64, 1)).astype(np.float32) for _ in range(MIN_PAIRS + 2)]
    kind, ch = _choice(textured, 2)
    assert ch["defects_per_image"] == 2 and sum(ch["synthetic_defects"].values()) == 2 * len(textured)
    assert kind == ch["chosen"] and ch["normal_images"] == len(textured)

    real = synthetic.inject

    def inject(img, kind, rng, donors=()):
        if float(img.mean()) < 0.1:
            raise DataError("nothing changed")
        return real(img, kind, rng, donors=donors)

    monkeypatch.setattr(synthetic, "inject", inject)
    few = textured[: MIN_PAIRS - 1] + [np.zeros((64, 64, 1), np.float32)] * 3
    kind, ch = _choice(few, 3)
    # The bundle's score kept, with the texture check (a texture line).
    assert kind == "map_max_tex" and ch["rule"].startswith(
        f"not chosen: synthetic defects could be drawn on {MIN_PAIRS - 1} of 10"
    )
    with pytest.raises(ConfigError):
        CalibrationOptions(choice_per_image=0)


def test_calibrate_cli_image_score_set_by_the_user(bundle_copy, demo_root, tmp_path):
    """A normalized score needs the statistics calibration measures; project then decides with it."""
    res = run_cli("calibrate", bundle_copy, demo_root / "grid", "--json", "--image-score", "norm_max_smoothed")
    assert res.exit_code == 0, (res.stderr, res.exception)
    sec = json.loads(res.stdout)
    assert sec["image_score_choice"]["rule"].startswith("set by the user")
    m = load_manifest(bundle_copy)
    assert m.projection.image_score == "norm_max_smoothed" and m.calibration.map_norm["edges"]
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    shutil.copy(demo_root / "grid" / "test" / "good" / "000.png", imgs / "good.png")
    res = run_cli("project", bundle_copy, imgs, "--out", tmp_path / "out", "--json", "--max-iterations", "3")
    assert res.exit_code == 0, (res.stderr, res.exception)
    (img,) = json.loads(res.stdout)["images"]
    assert np.isfinite(img["score"]) and img["verdict"] == ("NG" if img["score"] > sec["image_threshold"] else "OK")
    # Too few held-out images to choose (8 images, 2 held out): the bundle's score is kept, and it says why.
    res = run_cli("calibrate", bundle_copy, demo_root / "grid", "--json")
    ch = json.loads(res.stdout)["image_score_choice"]
    assert ch["rule"].startswith("not chosen: 2 held-out images")
    # On a texture line what is kept includes the texture check: a smooth patch must not pass unseen.
    assert ch["chosen"] == "norm_max_smoothed_tex" == load_manifest(bundle_copy).projection.image_score
    assert "with the texture check (norm_max_smoothed_tex)" in ch["rule"]


def test_calibrate_cli_unknown_image_score_exit_2(bundle_copy, demo_root):
    before = (bundle_copy / MANIFEST).read_bytes()
    one_line_error(
        run_cli("calibrate", bundle_copy, demo_root / "grid", "--image-score", "map_mean"), "unknown image score", "norm_max"
    )
    assert (bundle_copy / MANIFEST).read_bytes() == before


def test_normalized_score_without_statistics_is_refused_before_any_work(bundle_copy):
    raw = _raw(bundle_copy)
    raw["projection"]["image_score"] = "norm_max"
    (bundle_copy / MANIFEST).write_text(json.dumps(raw, indent=2))
    with pytest.raises(ConfigError, match="lacks"):
        Projector.from_bundle(bundle_copy)


# ------------------------------------------------------------------ FP16 refusal


def _refuse_fp16(bundle: Path) -> None:
    m = load_manifest(bundle)
    cal = Calibration(
        pixel_threshold=0.1,
        image_threshold=0.2,
        precision={"fp32": "reference", "fp16": {"allowed": False, "pixel_auroc_drop": 0.0123}},
    )
    write_manifest(m.with_calibration(cal))


def test_fp16_refused_before_touching_tensorrt(bundle_copy, monkeypatch):
    _refuse_fp16(bundle_copy)
    m = load_manifest(bundle_copy)

    def no_runner(*args, **kwargs):
        raise AssertionError("the FP16 refusal must come before any backend is created")

    monkeypatch.setattr("edgeproj.runtime.projector.create_runner", no_runner)
    with pytest.raises(BackendError, match="--force-fp16") as exc:
        Projector(m, backend="trt", options=backend_options("trt", fp16=True))
    assert "0.0123" in str(exc.value) and "FP32" in str(exc.value)
    with pytest.raises(BackendError, match="--force-fp16"):
        Projector.from_bundle(bundle_copy, backend="trt", options=backend_options("trt", fp16=True, cuda_graph=True))
    # FP16 that was never measured on this bundle is refused too: an unmeasured precision is not a pass.
    for precision in ({"fp16": "not measured: run `edgeproj calibrate --precision-check`"}, {}):
        unmeasured = replace(m, calibration=Calibration(pixel_threshold=0.1, image_threshold=0.2, precision=precision))
        with pytest.raises(BackendError, match="never measured") as exc:
            Projector(unmeasured, backend="trt", options=backend_options("trt", fp16=True))
        assert "--precision-check" in str(exc.value) and "--force-fp16" in str(exc.value)

    made = []
    monkeypatch.setattr("edgeproj.runtime.projector.create_runner", lambda name, man, o=None: made.append((name, o)) or object())
    Projector(m, backend="trt", options=backend_options("trt", fp16=True), force_fp16=True)  # forced: allowed through
    Projector(m, backend="trt", options=backend_options("trt"))  # FP32 is never refused
    allowed = replace(m, calibration=Calibration(precision={"fp16": {"allowed": True}}))
    Projector(allowed, backend="trt", options=backend_options("trt", fp16=True))
    assert [n for n, _ in made] == ["trt", "trt", "trt"]


def test_fp16_refusal_without_monkeypatch(bundle_copy):
    """Constructing the real backend: whatever this machine lacks, the FP16 refusal is what is reported."""
    _refuse_fp16(bundle_copy)
    with pytest.raises(BackendError) as exc:
        Projector(load_manifest(bundle_copy), backend="trt", options=backend_options("trt", fp16=True))
    assert "--force-fp16" in str(exc.value) and "FP16" in str(exc.value)


def test_fp16_refusal_via_project_cli(bundle_copy, demo_root, tmp_path):
    _refuse_fp16(bundle_copy)
    one_line_error(
        run_cli(
            "project", bundle_copy, demo_root / "grid" / "test" / "good", "--out", tmp_path / "o", "--backend", "trt", "--fp16"
        ),
        "FP16",
        "--force-fp16",
    )


def test_force_fp16_option_exists():
    res = run_cli("project", "--help")
    assert res.exit_code == 0
    assert "--force-fp16" in res.stdout


def test_recalibration_keeps_measured_fp16_verdict(bundle_copy, demo_root):
    _refuse_fp16(bundle_copy)
    calibrate_bundle(bundle_copy, normal_images(demo_root / "grid"), CalibrationOptions())
    fp16 = load_manifest(bundle_copy).calibration.fp16
    assert isinstance(fp16, dict) and fp16["allowed"] is False


def test_a_bundle_with_broken_statistics_can_be_recalibrated(bundle_copy, demo_root):
    """`recalibrate` is what the error says: calibrate must not need the statistics it replaces. A texture
    section from an older layout (no frame_hw) and a *_tex score: refused by project, mended by calibrate."""
    calibrate_bundle(bundle_copy, normal_images(demo_root / "grid"), CalibrationOptions(image_score="edge_max_tex"))
    doc = json.loads((bundle_copy / MANIFEST).read_text())
    del doc["calibration"]["map_norm"]["texture"]["frame_hw"]
    (bundle_copy / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="recalibrate"):
        Projector.from_bundle(bundle_copy)
    calibrate_bundle(bundle_copy, normal_images(demo_root / "grid"), CalibrationOptions(image_score="edge_max_tex"))
    m = load_manifest(bundle_copy)
    assert m.projection.image_score == "edge_max_tex" and m.calibration.map_norm["texture"]["frame_hw"]
    with Projector(m) as proj:
        assert proj.map_norm.texture is not None


def test_the_statistics_free_manifest_changes_only_the_statistics_and_the_score(bundle_copy, demo_root, monkeypatch):
    """What calibration and the FP16 check project with: the old statistics gone (they may be broken), the
    score projection-only; the stop threshold, the precision verdict and every other setting as they were.
    The FP16 check uses it too, so `calibrate --precision-check` also works on a bundle with broken ones."""
    from types import SimpleNamespace

    from edgeproj.calibration import precision
    from edgeproj.calibration.calibrate import statistics_free
    from edgeproj.runtime import backends

    calibrate_bundle(bundle_copy, normal_images(demo_root / "grid"), CalibrationOptions(image_score="norm_max_smoothed_tex"))
    doc = json.loads((bundle_copy / MANIFEST).read_text())
    doc["calibration"]["map_norm"]["texture"]["fusion"] = "broken"
    doc["calibration"]["precision"]["fp16"] = {"allowed": True, "pixel_auroc_drop": 0.001}
    (bundle_copy / MANIFEST).write_text(json.dumps(doc))
    m = load_manifest(bundle_copy)
    with pytest.raises(ConfigError, match="map_norm.texture is malformed"):
        Projector(m)
    free = statistics_free(m)
    assert free.calibration.map_norm == {} and free.projection.image_score == "map_max_smoothed"
    assert replace(free.projection, image_score=m.projection.image_score) == m.projection
    assert replace(free.calibration, map_norm=m.calibration.map_norm) == m.calibration
    with Projector(free) as proj:
        (res,) = proj.project([np.full((64, 64, 1), 0.5, np.float32)], lean=True)
        assert np.isfinite(res.score)

    seen = []

    class Recording:
        def __init__(self, manifest, **kw):
            seen.append(manifest)

        def __enter__(self):
            raise RuntimeError("stop here: the manifest was accepted")

        def __exit__(self, *exc):
            return False

    fake = SimpleNamespace(fp16=True, unavailable_reason=lambda: None, fp16_unavailable_reason=lambda: None)
    monkeypatch.setattr(backends, "backend", lambda name: fake)
    monkeypatch.setattr(backends, "backend_options", lambda name, fp16: None)
    monkeypatch.setattr(precision, "Projector", Recording)
    with pytest.raises(RuntimeError, match="stop here"):
        precision.measure_fp16(m, [], "ort-cpu")
    assert seen and seen[0].calibration.map_norm == {}
