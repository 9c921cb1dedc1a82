"""Maps and metrics against references: scikit-image SSIM, scikit-learn ROC AUC, a hand-worked PRO."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity
from sklearn.metrics import roc_auc_score

from edgeproj.metrics import au_pro, roc_auc, roc_curve
from edgeproj.runtime.scoring import anomaly_map, dssim_map, image_score, ssim_map


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
