"""Maps and metrics against references: scikit-image SSIM, scikit-learn ROC AUC, a hand-worked PRO."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.metrics import structural_similarity
from sklearn.metrics import roc_auc_score

from edgeproj.errors import ConfigError
from edgeproj.metrics import au_pro, roc_auc, roc_curve
from edgeproj.runtime.manifest import IMAGE_SCORES
from edgeproj.runtime.scoring import (
    MapNorm,
    Scorer,
    anomaly_map,
    border_bins,
    dssim_map,
    image_score,
    local_contrast,
    raw_counterpart,
    ssim_map,
)


def test_ssim_map_matches_scikit_image():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (64, 80)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    _, ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, full=True)
    ours = ssim_map(a, b)
    assert np.abs(ours - ref).max() < 1e-4
    assert np.allclose(dssim_map(a, b), (1 - ref) / 2, atol=1e-4)
    assert np.abs(dssim_map(a, a)).max() < 1e-6


def test_anomaly_map_kinds():
    rng = np.random.default_rng(1)
    x0, proj, rec = (rng.uniform(0, 1, (1, 32, 32)).astype(np.float32) for _ in range(3))
    assert np.allclose(anomaly_map("squared_error", x0, proj, rec), (x0 - proj)[0] ** 2)
    assert np.allclose(anomaly_map("dssim_recon", x0, proj, rec), dssim_map(x0[0], rec[0]))
    assert image_score(anomaly_map("dssim_projection", x0, proj, rec)) == pytest.approx(dssim_map(x0[0], proj[0]).max())
    with pytest.raises(ValueError):
        anomaly_map("l1", x0, proj, rec)


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.uniform(size=2000) < 0.2
    s = np.round(rng.normal(size=2000) + y, 1)  # rounding makes ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_roc_curve_endpoints_and_area():
    rng = np.random.default_rng(3)
    y = rng.uniform(size=500) < 0.3
    s = rng.normal(size=500) + y
    fpr, tpr, _ = roc_curve(y, s)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(y, s), abs=1e-9)


def test_roc_auc_degenerate():
    assert np.isnan(roc_auc(np.zeros(5), np.arange(5)))


def test_au_pro_hand_worked():
    """Two regions: one fully above every threshold, one never; PRO = 0.5 at every FPR -> AU-PRO 0.5."""
    mask = np.zeros((10, 10), np.uint8)
    mask[1:3, 1:3] = 1  # region A (4 px), scores 1.0
    mask[6:9, 6:9] = 1  # region B (9 px), scores 0.0 (below every normal pixel)
    amap = np.full((10, 10), 0.5)
    amap[1:3, 1:3] = 1.0
    amap[6:9, 6:9] = -1.0
    # Normal pixels spread over (0, 1): FPR grows with the threshold falling.
    normal = mask == 0
    amap[normal] = np.linspace(0.01, 0.99, normal.sum())
    assert au_pro([mask], [amap], fpr_limit=0.3) == pytest.approx(0.5, abs=1e-6)


def test_au_pro_perfect_and_partial():
    mask = np.zeros((20, 20), np.uint8)
    mask[5:10, 5:10] = 1
    perfect = np.where(mask > 0, 2.0, 0.0) + np.linspace(0, 1, 400).reshape(20, 20) * (mask == 0)
    assert au_pro([mask], [perfect]) == pytest.approx(1.0, abs=1e-6)
    # 10 of the 25 region pixels score above every normal pixel, 15 below all: the overlap is 0.4 everywhere.
    half = perfect.copy()
    half[5:10, 5:7] = 2.0
    half[5:10, 7:10] = -1.0
    assert au_pro([mask], [half]) == pytest.approx(10 / 25, abs=1e-6)


# ------------------------------------------------------------------ image scores and the map normalization


def _texture(seed: int, size: int = 64) -> np.ndarray:
    """Half flat, half fine noise: two contrast regimes a normal map differs in."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 1), 0.5, np.float32)
    img[:, size // 2 :, 0] += rng.normal(0, 0.15, (size, size - size // 2)).astype(np.float32)
    return np.clip(img, 0, 1)


def _normal_map(img: np.ndarray, seed: int) -> np.ndarray:
    """A map that is large where the image is busy, as DSSIM is on a good part."""
    rng = np.random.default_rng(seed)
    return (0.2 * local_contrast(img, 1.5) + rng.uniform(0, 0.002, img.shape[:2])).astype(np.float32)


def test_map_norm_puts_busy_and_flat_areas_on_one_scale():
    imgs = [_texture(i) for i in range(6)]
    norm = MapNorm.fit([_normal_map(im, i) for i, im in enumerate(imgs)], imgs)
    assert len(norm.mean) == len(norm.border_edges) + 1 and all(len(r) == len(norm.edges) + 1 for r in norm.mean)
    assert all(v > 0 for r in norm.spread for v in r) and all(v > 0 for v in norm.border_spread)
    test = _texture(99)
    amap = _normal_map(test, 99)
    # A defect on the flat half, smaller than the normal map's values on the busy half.
    bump = amap.copy()
    bump[30:34, 8:12] += 0.01
    assert image_score(bump, "map_max") == image_score(amap, "map_max")  # hidden under the busy half's maximum
    assert image_score(bump, "norm_max", test, norm) > image_score(amap, "norm_max", test, norm) + 3
    # Round trip through the manifest's dict, and the smoothed kinds apply the same normalization.
    again = MapNorm.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again == norm
    assert image_score(bump, "norm_max_smoothed", test, again) == image_score(bump, "norm_max_smoothed", test, norm)


def _norm_dict(**change) -> dict:
    good = {
        "edges": [0.1],
        "mean": [[0, 0]] * 5,
        "spread": [[1, 1]] * 5,
        "border_edges": [2, 4, 8, 16],
        "border_mean": [0] * 5,
        "border_spread": [1] * 5,
    }
    return good | change


@pytest.mark.parametrize(
    "bad",
    [
        _norm_dict(edges=[0.1, 0.05], mean=[[0, 0, 0]] * 5, spread=[[1, 1, 1]] * 5),
        _norm_dict(mean=[[0, 0, 0]] * 5),
        _norm_dict(mean=[[0, float("nan")]] * 5),
        _norm_dict(spread=[[1, 0]] * 5),
        _norm_dict(border_spread=[1, 1, 1, 1, -1]),
        _norm_dict(border_edges=[2, 2, 8, 16]),
        _norm_dict(border_mean=[0] * 4),
        {k: v for k, v in _norm_dict().items() if k != "spread"},
        _norm_dict(mean="zeros"),
    ],
)
def test_map_norm_refuses_a_malformed_section(bad):
    with pytest.raises(ConfigError, match="map_norm"):
        MapNorm.from_dict(bad)


def test_border_normalization_weighs_a_border_maximum_against_the_borders_normal_level():
    """Good maps that run high along the image border (the autoencoder's padding): the plain maximum sits
    on the border for every good image; normalized by border distance, an interior defect of half that
    height wins, and a defect on the border that exceeds the border's own level still counts."""
    imgs = [np.full((64, 64, 1), 0.5, np.float32) for _ in range(6)]

    def good(seed):
        r = np.random.default_rng(seed)
        m = r.uniform(0.0, 0.01, (64, 64)).astype(np.float32)
        ring = border_bins((64, 64)) == 0  # the outermost 2 px, all round
        m[ring] += 0.05 + r.uniform(0, 0.005, int(ring.sum())).astype(np.float32)
        return m

    norm = MapNorm.fit([good(i) for i in range(6)], imgs)
    amap = good(50)
    inner = amap.copy()
    inner[30:33, 30:33] += 0.03
    edge = amap.copy()
    edge[0, 20:24] += 0.06
    for kind in ("edge_max", "norm_max"):
        base = image_score(amap, kind, imgs[0], norm)
        assert image_score(inner, kind, imgs[0], norm) > base + 3, kind
        assert image_score(edge, kind, imgs[0], norm) > base + 3, kind
    assert image_score(inner, "map_max") == image_score(amap, "map_max")  # hidden by the border
    with pytest.raises(ConfigError, match="differ in size"):
        image_score(amap, "edge_max", np.zeros((32, 32, 1), np.float32), norm)


def test_image_scores_need_their_statistics_and_nan_never_passes():
    amap = np.zeros((32, 32), np.float32)
    with pytest.raises(ConfigError, match="calibrate"):
        image_score(amap, "norm_max")
    with pytest.raises(ConfigError, match="lacks"):
        Scorer("norm_max_smoothed")
    amap[3, 3] = np.nan
    assert np.isnan(image_score(amap, "map_max_smoothed8"))
    assert raw_counterpart("norm_max_smoothed8") == "map_max_smoothed8" and raw_counterpart("map_max") == "map_max"
    assert raw_counterpart("edge_max_smoothed") == "map_max_smoothed"
    with pytest.raises(ValueError, match="unknown image score"):
        image_score(amap, "map_mean")


def test_score_choice_rule_prefers_the_best_then_the_simplest():
    from edgeproj.calibration.score_choice import TIE, choose

    figs = {k: 0.6 for k in IMAGE_SCORES} | {"norm_max_smoothed": 0.9, "norm_max_smoothed8": 0.9 + TIE / 2}
    assert choose(figs) == "norm_max_smoothed"  # within the tie of the best, listed first
    assert choose(figs | {"norm_max_smoothed8": 0.95}) == "norm_max_smoothed8"
    assert choose({"map_max": float("nan"), "map_max_smoothed": 0.7}) == "map_max_smoothed"
    with pytest.raises(ValueError):
        choose({"map_max": float("nan")})


def test_synthetic_defects_skip_an_image_that_shows_none(monkeypatch):
    """A kind that changes nothing on an image raises DataError in inject(): the next kind is tried, and
    an image that shows none is left out instead of failing the calibration."""
    import edgeproj.data.synthetic as synthetic
    from edgeproj.calibration.score_choice import synthetic_defects
    from edgeproj.errors import DataError

    real = synthetic.inject
    tried = []

    def inject(img, kind, rng, donors=()):
        tried.append(kind)
        if float(img.mean()) < 0.3 or kind == "blur":
            raise DataError("nothing changed")
        return real(img, kind, rng, donors=donors)

    monkeypatch.setattr(synthetic, "inject", inject)
    rng = np.random.default_rng(0)
    imgs = [np.zeros((64, 64, 1), np.float32)] + [rng.uniform(0.3, 0.9, (64, 64, 1)).astype(np.float32) for _ in range(4)]
    drawn = synthetic_defects(imgs, seed=0)
    assert [i for i, _ in drawn] == [1, 2, 3, 4]  # the dark image shows no kind and is left out
    assert all(d.kind != "blur" and d.mask.any() for _, d in drawn)
    assert tried[:5] == list(synthetic.KINDS)  # every kind was tried on the dark image


def test_synthetic_defects_per_image_take_the_kinds_in_turn():
    """Several defects per image (the choice's sample size): each image gets `per_image` of them, the kinds
    continuing from image to image, and one defect per image is the earlier draw exactly."""
    from edgeproj.calibration.score_choice import synthetic_defects
    from edgeproj.data.synthetic import KINDS

    rng = np.random.default_rng(3)
    imgs = [rng.uniform(0.2, 0.8, (64, 64, 1)).astype(np.float32) for _ in range(4)]
    drawn = synthetic_defects(imgs, seed=0, per_image=3)
    assert [i for i, _ in drawn] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [d.kind for _, d in drawn] == [KINDS[n % len(KINDS)] for n in range(12)]
    assert all(d.mask.any() and not np.array_equal(d.image, imgs[i]) for i, d in drawn)
    # One per image is the draw calibration made before per_image existed (its loop, written out here).
    from edgeproj.data.synthetic import inject

    rng_old = np.random.default_rng(0)
    before = [
        inject(img, KINDS[i % len(KINDS)], rng_old, donors=[imgs[j] for j in range(4) if j != i][:4])
        for i, img in enumerate(imgs)
    ]
    one = synthetic_defects(imgs, seed=0)
    assert [d.kind for _, d in one] == list(KINDS[:4])
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) for (_, a), b in zip(one, before))
