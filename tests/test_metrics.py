"""Metrics against independent references: AU-PRO against a slow per-threshold loop, ROC AUC against sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from edgeproj.metrics import au_pro, roc_auc

EIGHT = np.ones((3, 3), bool)  # 8-connectivity, the MVTec AU-PRO convention
FOUR = ndimage.generate_binary_structure(2, 1)


def au_pro_reference(masks, maps, fpr_limit: float = 0.3, structure=EIGHT) -> float:
    """The definition, one threshold at a time: every distinct score is a threshold (and +-inf).

    At threshold t: FPR = fraction of defect-free pixels (all images) scoring > t; PRO = mean over the
    connected ground-truth regions of every image of the fraction of the region scoring > t. The curve
    (FPR, PRO) is integrated with the trapezoid rule up to fpr_limit (the last segment cut at the limit
    by linear interpolation) and divided by fpr_limit.
    """
    regions = []
    normal = []
    for i, (mask, amap) in enumerate(zip(masks, maps)):
        labels, n = ndimage.label(mask > 0, structure=structure)
        for k in range(1, n + 1):
            regions.append((i, labels == k))
        normal.append(amap[mask == 0])
    normal = np.concatenate(normal)
    scores = np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]
    thresholds = np.concatenate(([np.inf], scores, [-np.inf]))
    curve = []
    for t in thresholds:
        fpr = np.mean(normal > t)
        pro = np.mean([np.mean(maps[i][region] > t) for i, region in regions])
        curve.append((fpr, pro))
    area = 0.0
    for (f0, p0), (f1, p1) in zip(curve[:-1], curve[1:]):
        if f0 >= fpr_limit:
            break
        if f1 > fpr_limit:
            p1 = p0 + (p1 - p0) * (fpr_limit - f0) / (f1 - f0)
            f1 = fpr_limit
        area += (f1 - f0) * (p0 + p1) / 2.0
    return area / fpr_limit


def _case(seed: int, n_images: int = 3, size: int = 40, quantize: bool = False):
    """Random blob masks (some regions touching only diagonally) and maps that partly follow them."""
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for i in range(n_images):
        mask = np.zeros((size, size), bool)
        if i > 0:  # one defect-free image
            for _ in range(rng.integers(1, 4)):
                r, c = rng.integers(2, size - 8, 2)
                h, w = rng.integers(2, 7, 2)
                mask[r : r + h, c : c + w] = True
            # Two pixels touching at a corner: one region under 8-connectivity, two under 4.
            r, c = rng.integers(1, size - 2, 2)
            mask[r, c] = mask[r + 1, c + 1] = True
            mask[r + 1, c] = mask[r, c + 1] = False
        signal = rng.uniform(0.2, 1.2)
        amap = rng.normal(0, 1, (size, size)) + signal * mask * rng.uniform(0.5, 1.5, (size, size))
        amap = ndimage.gaussian_filter(amap, 0.7)
        if quantize:  # ties: thresholds must treat equal scores the same way
            amap = np.round(amap * 8) / 8
        masks.append(mask)
        maps.append(amap)
    return masks, maps


# With tied scores the curve's first vertex past the FPR limit can lie far beyond it (a tie level holding
# many normal pixels); au_pro's extra threshold is the largest distinct normal score whose FPR exceeds the
# limit, so np.interp follows the segment to that vertex as the MVTec reference code does. Quantized maps
# below make such ties (before the fix: 0.1954 instead of 0.2026).


@pytest.mark.parametrize(
    "seed,quantize",
    [*((s, False) for s in range(5)), *((s, True) for s in range(5))],
)
def test_au_pro_matches_slow_reference(seed, quantize):
    masks, maps = _case(seed, quantize=quantize)
    limit, steps = 0.3, 200
    got = au_pro(masks, maps, limit, steps)
    want = au_pro_reference(masks, maps, limit)
    # au_pro evaluates the curve at `steps` + 2 thresholds taken at normal-pixel quantiles; each point
    # (FPR, PRO) it uses is an exact point of the reference curve, and both curves are monotone, so
    # between two of its points the reference lies inside the box they span. The trapezoid over the box
    # differs from any monotone path through it by at most dF * dP / 2, and sum(dP) <= 1, so the
    # difference is at most max(dF) / 2 / limit, with dF <= limit / steps + 2 / n_normal (its FPR grid
    # step plus the quantization of FPR by the normal-pixel count). Here: about 2.6e-3.
    n_normal = sum(int((m == 0).sum()) for m in masks)
    tol = (limit / steps + 2.0 / n_normal) / 2.0 / limit
    assert 0.05 < want < 0.95  # a case in the middle of the range, where mistakes show
    assert got == pytest.approx(want, abs=tol)


def test_au_pro_reference_separates_the_conventions():
    """The comparison above can fail: 4-connectivity or another FPR limit moves the figure past its tolerance."""
    masks, maps = _case(1)
    n_normal = sum(int((m == 0).sum()) for m in masks)
    tol = (0.3 / 200 + 2.0 / n_normal) / 2.0 / 0.3
    got = au_pro(masks, maps, 0.3)
    assert abs(au_pro_reference(masks, maps, 0.3, structure=FOUR) - got) > tol
    assert abs(au_pro_reference(masks, maps, 0.2) - got) > tol


def test_au_pro_perfect_and_inverted_maps():
    masks, _ = _case(2)
    perfect = [m.astype(float) for m in masks]
    assert au_pro(masks, perfect) == pytest.approx(1.0)
    assert au_pro_reference(masks, perfect) == pytest.approx(1.0)
    inverted = [1.0 - m.astype(float) + 1e-3 * np.arange(m.size).reshape(m.shape) / m.size for m in masks]
    assert au_pro(masks, inverted) == pytest.approx(au_pro_reference(masks, inverted), abs=3e-3)
    assert au_pro(masks, inverted) < 0.01


@pytest.mark.parametrize("seed", range(4))
def test_roc_auc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(3000) < 0.1
    scores = rng.normal(0, 1, 3000) + labels * rng.uniform(0, 2)
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    # Many ties: average ranks, as sklearn counts a tied pair as half.
    tied = np.round(scores * 2) / 2
    assert roc_auc(labels, tied) == pytest.approx(roc_auc_score(labels, tied), abs=1e-12)
    assert np.isnan(roc_auc(np.zeros(10, bool), scores[:10]))
