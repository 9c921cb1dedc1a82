"""Threshold rules on score distributions (pure numpy, tested on known distributions)."""

from __future__ import annotations

from math import lgamma

import numpy as np

from edgeproj.errors import ConfigError


def quantile_threshold(normal_scores: np.ndarray, false_positive_rate: float) -> float:
    """Smallest sample value t with fraction(normal > t) <= rate (exactly rate when n * rate is whole, no ties)."""
    if not 0.0 <= false_positive_rate < 1.0:
        raise ConfigError(f"a false-positive rate must be in [0, 1), got {false_positive_rate}")
    s = np.asarray(normal_scores, np.float64).ravel()
    if s.size == 0:
        raise ConfigError("no normal scores to calibrate on")
    k = int(np.floor(s.size * false_positive_rate + 1e-9))  # how many normal scores may lie above t
    return float(np.sort(s)[s.size - k - 1])


def miss_rate_threshold(defect_scores: np.ndarray, miss_rate: float) -> float:
    """Largest threshold t with fraction(defect scores <= t) <= miss_rate (a part is OK when score <= t).

    With no miss allowed (n * rate < 1), t lies just below the lowest defect score.
    """
    if not 0.0 <= miss_rate < 1.0:
        raise ConfigError(f"a miss rate must be in [0, 1), got {miss_rate}")
    s = np.sort(np.asarray(defect_scores, np.float64).ravel())
    if s.size == 0:
        raise ConfigError("no defect scores to set a miss-rate threshold on")
    k = int(np.floor(s.size * miss_rate + 1e-9))  # how many defects may score at or below t
    # Just below the (k+1)-th lowest score, so ties with it are not missed.
    return float(np.nextafter(s[k], -np.inf))


def exceed_rate(scores: np.ndarray, threshold: float) -> float:
    """Fraction of scores strictly above the threshold (a false-positive rate on normal data)."""
    s = np.asarray(scores).ravel()
    return float(np.mean(s > threshold)) if s.size else float("nan")


def stop_threshold(rec_losses: np.ndarray, rule: str = "min", quantile: float = 0.0) -> float:
    """The L_r stop threshold: the minimum over normal data (paper) or a chosen quantile."""
    v = np.asarray(rec_losses, np.float64).ravel()
    if v.size == 0:
        raise ConfigError("no L_r values to calibrate the stop threshold on")
    if rule == "min":
        return float(v.min())
    if rule == "quantile":
        if not 0.0 <= quantile <= 1.0:
            raise ConfigError(f"stop quantile must be in [0, 1], got {quantile}")
        return float(np.quantile(v, quantile))
    raise ConfigError(f"unknown stop rule '{rule}'; use 'min' or 'quantile'")


def best_f1(labels: np.ndarray, scores: np.ndarray, max_points: int = 4096) -> dict:
    """Threshold maximizing F1 (score > t is positive) and the precision, recall and F1 it gives."""
    y = np.asarray(labels).ravel().astype(bool)
    s = np.asarray(scores, np.float64).ravel()
    if y.sum() == 0:
        return {"threshold": float("nan"), "f1": float("nan"), "precision": float("nan"), "recall": float("nan")}
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    k = np.arange(1, s.size + 1)
    # Only the last index of each run of equal scores is a valid cut.
    last = np.append(np.flatnonzero(np.diff(s_sorted)), s.size - 1)
    if last.size > max_points:
        last = last[np.linspace(0, last.size - 1, max_points).astype(int)]
    precision = tp[last] / k[last]
    recall = tp[last] / y.sum()
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    i = int(np.argmax(f1))
    cut = last[i]
    # Threshold halfway to the next lower score so that `score > t` selects exactly the top cut + 1.
    nxt = s_sorted[cut + 1] if cut + 1 < s.size else s_sorted[cut] - 1.0
    return {
        "threshold": float((s_sorted[cut] + nxt) / 2),
        "f1": float(f1[i]),
        "precision": float(precision[i]),
        "recall": float(recall[i]),
    }


def binomial_upper_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen k times in n trials: the largest rate p with
    P(X <= k | n, p) >= 1 - confidence. With 0 of 30 held-out good parts rejected it is 9.5%, not 0%:
    what a calibration may honestly promise about new parts. NaN when n is 0."""
    if n <= 0:
        return float("nan")
    if not 0 <= k <= n:
        raise ConfigError(f"binomial bound: need 0 <= k <= n, got k={k}, n={n}")
    if k == n:
        return 1.0
    alpha = 1.0 - confidence

    def cdf(p: float) -> float:
        if p <= 0.0:
            return 1.0
        if p >= 1.0:
            return 0.0
        lp, lq = np.log(p), np.log1p(-p)
        i = np.arange(k + 1)
        logc = np.array([lgamma(n + 1) - lgamma(j + 1) - lgamma(n - j + 1) for j in i])
        return float(np.exp(logc + i * lp + (n - i) * lq).sum())

    lo, hi = k / n, 1.0
    for _ in range(100):  # bisection: cdf falls as p grows
        mid = (lo + hi) / 2
        if cdf(mid) > alpha:
            lo = mid
        else:
            hi = mid
    return float(hi)
