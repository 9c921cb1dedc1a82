"""The method studies (issue 16): the choice rules, appendix B's measure, image scores, inpainting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeproj.evaluation.studies import (
    RULES,
    _ranks,
    choose_image_score,
    choose_update_rule,
    iterations_to_fraction,
    rule_study,
)
from edgeproj.evaluation.testset import load_testset
from edgeproj.runtime import Projector, load_manifest
from edgeproj.runtime.manifest import MANIFEST
from edgeproj.runtime.scoring import image_score


def _row(rule, alpha, p, a, i, it):
    return {"rule": rule, "alpha": alpha, "pixel_auroc": p, "au_pro": a, "image_auroc": i, "iterations_mean": it}


def test_ranks_share_ties():
    assert _ranks(np.array([3.0, 1.0, 2.0, 1.0])).tolist() == [4.0, 1.5, 3.0, 1.5]


def test_update_rule_choice_follows_the_written_rule():
    pair1 = [
        _row("standard", 0.05, 0.80, 0.5, 0.7, 10),
        _row("tuned_step", 0.05, 0.90, 0.7, 0.8, 4),
        _row("tuned_step", 0.5, 0.88, 0.6, 0.9, 2),
    ]
    pair2 = [
        _row("standard", 0.05, 0.70, 0.4, 0.6, 10),
        _row("tuned_step", 0.05, 0.95, 0.8, 0.9, 4),
        _row("tuned_step", 0.5, 0.60, 0.3, 0.5, 2),
    ]
    out = choose_update_rule([pair1, pair2])
    assert (out["choice"]["rule"], out["choice"]["alpha"]) == ("tuned_step", 0.05)
    assert out["pairs"] == 2 and "fixed before" not in out["rule_text"]  # the rule text itself, quoted in reports
    # Within 0.25 of the best mean rank, fewer iterations wins.
    tie = [_row("a", 0.1, 0.9, 0.7, 0.8, 9), _row("b", 0.1, 0.9, 0.7, 0.8, 3)]
    assert choose_update_rule([tie])["choice"]["rule"] == "b"


def test_image_score_changes_only_for_a_clear_gain():
    base = {"map_max": 0.80, "map_max_smoothed": 0.81, "map_q999": 0.70, "baseline_map_max": 0.9}
    assert choose_image_score([base])["choice"] == "map_max"
    clear = dict(base, map_max_smoothed=0.85)
    assert choose_image_score([clear])["choice"] == "map_max_smoothed"
    assert choose_image_score([base])["best"] == "map_max_smoothed"
    # Only a score a bundle can deploy wins: not the texture check alone, nor a summary like map_q999.
    undeployable = dict(clear, texture_only=0.99, map_q999=0.98)
    assert choose_image_score([undeployable])["choice"] == "map_max_smoothed"


def test_iterations_to_95_percent_of_the_gain():
    assert iterations_to_fraction([0, 2, 4, 6], [0.5, 0.8, 0.89, 0.9]) == 4
    assert iterations_to_fraction([0, 2], [0.5, 0.5]) is None


def test_image_scores():
    m = np.zeros((64, 64), np.float32)
    m[10, 10] = 1.0  # one hot pixel: the max follows it, the smoothed max hardly
    assert image_score(m) == 1.0 and image_score(m, "map_max_smoothed") < 0.05
    blob = np.zeros((64, 64), np.float32)
    blob[20:36, 20:36] = 0.5
    assert image_score(blob, "map_max_smoothed") > 0.4
    m[0, 0] = np.nan
    assert np.isnan(image_score(m, "map_max_smoothed"))
    with pytest.raises(ValueError):
        image_score(m, "mean")


def test_a_manifest_without_an_image_score_keeps_the_map_maximum(bundle_copy):
    doc = json.loads((bundle_copy / MANIFEST).read_text())
    doc["projection"].pop("image_score", None)
    (bundle_copy / MANIFEST).write_text(json.dumps(doc))
    assert load_manifest(bundle_copy).projection.image_score == "map_max"


def test_rule_study_runs_every_rule_on_the_deployed_projection(bundles, demo_root):
    m = load_manifest(bundles["l2ae"])
    ts = load_testset(demo_root, "grid", m.preprocess)
    with Projector(m) as proj:
        rows = rule_study(proj, ts, alphas=(0.05,))
    assert [r["rule"] for r in rows] == list(RULES)
    for r in rows:
        assert 0 <= r["pixel_auroc"] <= 1 and 0 <= r["au_pro"] <= 1 and r["iterations_mean"] <= m.projection.max_iterations


def test_inpainting_fills_the_known_mask_and_leaves_the_rest(bundles, demo_root):
    from edgeproj.data.images import read_image
    from edgeproj.workstation.inpainting import inpainting_study

    m = load_manifest(bundles["l2ae"])
    clean = [read_image(sorted((demo_root / "grid" / "test" / "good").glob("*.png"))[0], m.channels)]
    with Projector(m) as proj:
        rows, panels = inpainting_study(proj, clean, side=24, iterations=30)
    clean_img, bad, recon, eq7, eq8 = panels[0]
    changed = np.any(eq7 != bad, axis=2)
    painted = np.any(bad != clean_img, axis=2)
    assert not (changed & ~painted).any()  # eq. 7 moves only pixels inside Omega
    r = rows[0]
    assert r["eq7_known_mask"]["psnr_region"] > r["corrupted"]["psnr_region"]


def test_kl_gradient_column_for_the_vaes(runs, bundles, demo_root):
    """Table 2's KL-gradient score: finite maps from the training run, a pixel AUROC in [0, 1]."""
    from edgeproj.evaluation.evaluate import method_metrics
    from edgeproj.workstation.kl_gradient import kl_gradient_maps

    m = load_manifest(bundles["vae"])
    ts = load_testset(demo_root, "grid", m.preprocess)
    maps = kl_gradient_maps(runs["vae"], ts.tiles)
    assert maps.shape == (len(ts.tiles), 128, 128) and np.isfinite(maps).all() and maps.max() > 0
    full = ts.stitch(maps)
    assert 0.0 <= method_metrics(ts, full)["pixel_auroc"] <= 1.0
