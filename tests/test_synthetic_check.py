"""The quality check without labels: evaluate --synthetic, calibration for a synthetic miss rate, rankings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from edgeproj.calibration.calibrate import CalibrationOptions, calibrate_bundle
from edgeproj.calibration.thresholds import miss_rate_threshold
from edgeproj.cli.app import app
from edgeproj.data.mvtec import normal_images
from edgeproj.errors import ConfigError
from edgeproj.evaluation.testset import load_testset
from edgeproj.runtime import Projector, load_manifest
from edgeproj.workstation.synthetic_check import CATEGORY, build_synthetic_set, kendall, ranking_check, spearman


@pytest.mark.parametrize("seed", range(4))
def test_rank_correlations_match_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.random(6).round(1)  # rounding makes ties
    b = a + rng.normal(0, 0.3, 6)
    assert spearman(list(a), list(b)) == pytest.approx(stats.spearmanr(a, b).statistic)
    # tau-a equals scipy's tau-b when there are no ties
    c, d = rng.random(6), rng.random(6)
    assert kendall(list(c), list(d)) == pytest.approx(stats.kendalltau(c, d).statistic)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_miss_rate_threshold():
    scores = np.arange(1.0, 11.0)  # ten defects scoring 1..10; OK means score <= t
    t = miss_rate_threshold(scores, 0.0)
    assert t < 1.0 and np.mean(scores <= t) == 0.0
    t = miss_rate_threshold(scores, 0.2)
    assert np.mean(scores <= t) == pytest.approx(0.2) and t < 3.0
    assert np.mean(np.array([5.0, 5.0, 5.0]) <= miss_rate_threshold(np.array([5.0, 5.0, 5.0]), 0.4)) == 0.0  # ties
    with pytest.raises(ConfigError):
        miss_rate_threshold(scores, 1.0)
    with pytest.raises(ConfigError):
        miss_rate_threshold(np.array([]), 0.1)


def _evaluate(args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def test_evaluate_synthetic_end_to_end(bundle_copy, demo_root, tmp_path):
    out = tmp_path / "report"
    good = demo_root / "grid" / "train" / "good"
    r = _evaluate([bundle_copy, good, "--synthetic", "--per-image", "2", "--no-study", "--out", out, "--json", "-q"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    syn = doc["synthetic"]
    n = len(normal_images(good))
    assert syn["images"] == n and syn["defects"] == 2 * n and sum(syn["per_kind"].values()) == 2 * n
    assert "optimistic" in syn["normal_images"]  # the fixture's run held nothing out
    for method in ("baseline", "grad"):
        assert all(0.0 <= doc[method][k] <= 1.0 for k in ("pixel_auroc", "au_pro", "image_auroc"))
    assert (out / "table.md").is_file() and (out / "synthetic.json").is_file()
    assert list(out.glob("fig3_synthetic_*.png"))
    assert (out / "synthetic-data" / CATEGORY / "ground_truth").is_dir()


def test_synthetic_set_prefers_the_images_training_held_out(bundle_copy, demo_root, tmp_path):
    good = demo_root / "grid" / "train" / "good"
    names = [p.name for p in normal_images(good)[:3]]
    raw = json.loads((bundle_copy / "manifest.json").read_text())
    raw["training"].setdefault("data", {})["held_out"] = names
    (bundle_copy / "manifest.json").write_text(json.dumps(raw))
    info = build_synthetic_set(load_manifest(bundle_copy), good, tmp_path / "syn", per_image=1)
    assert info["images"] == 3 and "held out" in info["normal_images"]
    written = sorted(p.name for p in (tmp_path / "syn" / CATEGORY / "test" / "good").glob("*.png"))
    assert written == sorted(names)


@pytest.mark.parametrize(
    "extra,needle",
    [(["--category", "grid"], "--synthetic takes"), ([], "give --category")],
)
def test_evaluate_synthetic_bad_options_exit_2(bundle_copy, demo_root, tmp_path, extra, needle):
    args = [bundle_copy, demo_root / "grid" / "train" / "good", *extra, "--out", tmp_path / "r"]
    if "--category" in extra:
        args.append("--synthetic")
    r = _evaluate(args)
    assert r.exit_code == 2 and needle in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "r").exists()


def test_evaluate_synthetic_missing_folder_exit_2(bundle_copy, tmp_path):
    r = _evaluate([bundle_copy, tmp_path / "nowhere", "--synthetic", "--out", tmp_path / "r"])
    assert r.exit_code == 2 and "nowhere" in r.stderr
    assert not (tmp_path / "r").exists()


def test_calibrate_for_a_synthetic_miss_rate(bundle_copy, demo_root):
    good = normal_images(demo_root / "grid" / "train" / "good")
    cal = calibrate_bundle(bundle_copy, good, CalibrationOptions(holdout=0.25, synthetic_miss_rate=0.0, synthetic_per_image=2))
    syn = cal.measured["synthetic"]
    assert syn["defects"] == 2 * len(good) and syn["miss_rate"] == 0.0
    assert cal.method["image"].startswith("synthetic defects: miss rate <= 0")
    assert cal.targets["synthetic_miss_rate"] == 0.0
    # The false-reject rate of normal images at that threshold is recorded beside it.
    assert 0.0 <= cal.measured["calibration_image_frr"] <= 1.0 and "holdout_image_frr" in cal.measured
    assert math.isfinite(syn["threshold_at_normal_frr_target"])
    written = load_manifest(bundle_copy).calibration
    assert written.image_threshold == cal.image_threshold and written.measured["synthetic"] == syn


def test_calibrate_cli_synthetic_miss_rate(bundle_copy, demo_root):
    r = CliRunner().invoke(
        app, ["calibrate", str(bundle_copy), str(demo_root / "grid" / "train" / "good"), "--synthetic-miss-rate", "0.1"]
    )
    assert r.exit_code == 0, r.output
    assert "image threshold set by synthetic defects" in r.stderr
    bad = CliRunner().invoke(
        app, ["calibrate", str(bundle_copy), str(demo_root / "grid" / "train" / "good"), "--synthetic-miss-rate", "0.9"]
    )
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_ranking_check_reports_both_rankings(bundles, demo_root, tmp_path):
    m = load_manifest(bundles["l2ae"])
    build_synthetic_set(m, demo_root / "grid" / "train" / "good", tmp_path / "syn", per_image=2)
    real = load_testset(demo_root, "grid", m.preprocess)
    synth = load_testset(tmp_path / "syn", CATEGORY, m.preprocess)
    settings = (
        ("baseline", None, None),
        ("standard, alpha 0.05", "standard", 0.05),
        ("tuned_step, alpha 0.2", "tuned_step", 0.2),
    )
    with Projector(m) as proj:
        doc = ranking_check(proj, real, synth, settings_list=settings)
    assert doc["settings"] == [s[0] for s in settings]
    assert sorted(doc["rank_real"]) == sorted(doc["rank_synthetic"]) and len(doc["rank_real"]) == 3
    a = [r["pixel_auroc"] for r in doc["real"]]
    assert doc["best_real"] == settings[int(np.argmax(a))][0]
    assert doc["agree"] == (doc["spearman"] >= 0.5)
    assert ("DISAGREES" in doc["verdict"]) == (not doc["agree"])


def test_the_miss_rate_defects_are_the_choices_draw(monkeypatch):
    """--synthetic-miss-rate draws its defects as the image-score choice does: the kinds in turn, and where
    an image cannot show a kind the next one; with fewer than MIN_PAIRS drawable it refuses, naming the option."""
    import edgeproj.data.synthetic as synthetic
    from edgeproj.calibration.calibrate import _synthetic_defects
    from edgeproj.data.synthetic import KINDS
    from edgeproj.errors import DataError

    rng = np.random.default_rng(2)
    imgs = [rng.uniform(0.2, 0.8, (64, 64, 1)).astype(np.float32) for _ in range(5)]
    drawn = _synthetic_defects(imgs, CalibrationOptions(synthetic_miss_rate=0.1, synthetic_per_image=2, seed=4))
    assert [d.kind for d in drawn] == [KINDS[n % len(KINDS)] for n in range(10)]
    real = synthetic.inject

    def inject(img, kind, rng, donors=()):
        if kind == "blur":
            raise DataError("nothing changed")
        return real(img, kind, rng, donors=donors)

    monkeypatch.setattr(synthetic, "inject", inject)
    kinds = [d.kind for d in _synthetic_defects(imgs, CalibrationOptions(synthetic_miss_rate=0.1, synthetic_per_image=2))]
    assert len(kinds) == 10 and "blur" not in kinds

    # Too few drawable defects to set a threshold (3 images x 2, stains only): refused, naming the option.
    def only_stains(img, kind, rng, donors=()):
        if kind != "stain":
            raise DataError("nothing changed")
        return real(img, kind, rng, donors=donors)

    monkeypatch.setattr(synthetic, "inject", only_stains)
    with pytest.raises(DataError, match="--synthetic-miss-rate: synthetic defects could be drawn 6 times"):
        _synthetic_defects(imgs[:3], CalibrationOptions(synthetic_miss_rate=0.1, synthetic_per_image=2))
