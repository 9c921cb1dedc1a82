"""Detection metrics in numpy: exact ROC AUC (ties averaged), ROC curve, AU-PRO (MVTec convention)."""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    y = np.asarray(labels).ravel().astype(bool)
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # Average rank over each run of equal scores.
    boundaries = np.flatnonzero(np.diff(s_sorted)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and thresholds (decreasing), one point per distinct score."""
    y = np.asarray(labels).ravel().astype(bool)
    s = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.flatnonzero(np.diff(s)) if s.size > 1 else np.array([], dtype=int)
    idx = np.concatenate((distinct, [s.size - 1]))
    tps = np.cumsum(y)[idx]
    fps = (idx + 1) - tps
    tpr = np.concatenate(([0.0], tps / max(1, y.sum())))
    fpr = np.concatenate(([0.0], fps / max(1, (~y).sum())))
    return fpr, tpr, np.concatenate(([np.inf], s[idx]))


def au_pro(masks: list[np.ndarray], maps: list[np.ndarray], fpr_limit: float = 0.3, steps: int = 200) -> float:
    """Area under the per-region-overlap curve up to `fpr_limit`, normalized by `fpr_limit`.

    For each threshold, PRO is the mean over connected ground-truth regions (8-connectivity, every test
    image) of the fraction of the region above the threshold; FPR is over all defect-free pixels.
    """
    import cv2

    regions: list[np.ndarray] = []  # flat indices into the concatenated maps
    offset = 0
    normal_scores = []
    for mask, amap in zip(masks, maps):
        m = (np.asarray(mask) > 0).astype(np.uint8)
        n, lab = cv2.connectedComponents(m, connectivity=8)
        for k in range(1, n):
            regions.append(np.flatnonzero(lab.ravel() == k) + offset)
        normal_scores.append(np.asarray(amap, np.float64).ravel()[m.ravel() == 0])
        offset += m.size
    if not regions:
        return float("nan")
    flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in maps])
    normal = np.sort(np.concatenate(normal_scores))
    # Thresholds from the normal-pixel quantiles give an even FPR grid. One more threshold, the largest
    # normal score whose FPR really lies past the limit, lets the curve be interpolated exactly at
    # fpr_limit: a quantile just past the limit can fall inside a run of tied scores (DSSIM maps are
    # exactly 0 over large areas) and land before it, which would hold the curve flat.
    grid = np.quantile(normal, 1.0 - np.linspace(0.0, fpr_limit, steps + 1))
    uniq = np.unique(normal)
    fpr_of = 1.0 - np.searchsorted(normal, uniq, side="right") / max(1, normal.size)
    past = uniq[fpr_of > fpr_limit].max() if (fpr_of > fpr_limit).any() else -np.inf
    thresholds = np.append(grid, past)
    actual_fpr = 1.0 - np.searchsorted(normal, thresholds, side="right") / max(1, normal.size)
    pros = np.array([np.mean([np.mean(flat[r] > t) for r in regions]) for t in thresholds])
    order = np.argsort(actual_fpr, kind="mergesort")
    f, p = actual_fpr[order], pros[order]
    end = float(np.interp(fpr_limit, f, p))
    keep = f < fpr_limit
    f = np.append(f[keep], fpr_limit)
    p = np.append(p[keep], end)
    area = float(np.sum((f[1:] - f[:-1]) * (p[1:] + p[:-1]) / 2.0))
    return area / fpr_limit
