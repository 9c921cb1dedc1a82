"""Held-out normal images during training: the split, L_r on unseen parts, and a convergence verdict.

The training loss says how well the model fits the patches it trains on; what decides the projection is
L_r on normal parts it has never seen (the stop rule compares L_r with a threshold calibrated on normal
images). A few normal images are therefore kept out of training, their L_r is measured as training
goes, and the end of the run says whether it has converged or is still improving.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

# Fewer normal images than this: nothing is held out (every image is needed for training).
MIN_IMAGES_FOR_HOLDOUT = 10
MIN_HELDOUT = 2
MAX_PATCHES = 256  # held-out (and training reference) patches measured at each evaluation
# Relative change of held-out L_r over the last quarter of the run under which training has converged.
CONVERGED_CHANGE = 0.02


def split_holdout(paths: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """(training, held-out) images: a seeded choice by file name, stable when the folder's order changes."""
    if fraction <= 0 or len(paths) < MIN_IMAGES_FOR_HOLDOUT:
        return list(paths), []
    n = max(MIN_HELDOUT, round(fraction * len(paths)))

    def key(p: Path) -> str:
        return hashlib.sha256(f"{seed}\0{Path(p).name}".encode()).hexdigest()

    held = set(sorted(paths, key=key)[:n])
    return [p for p in paths if p not in held], [p for p in paths if p in held]


def subsample(patches: np.ndarray, limit: int = MAX_PATCHES) -> np.ndarray:
    """At most `limit` patches, evenly spread over the set (deterministic)."""
    if len(patches) <= limit:
        return patches
    return patches[np.linspace(0, len(patches) - 1, limit).round().astype(int)]


def stop_statistics(heldout_rec: np.ndarray, stop_threshold: float) -> dict:
    """How the paper's stop rule (L_r below the training minimum) would treat held-out normal patches."""
    v = np.asarray(heldout_rec, np.float64)
    return {
        "patches": int(v.size),
        "median": float(np.median(v)),
        "min": float(v.min()),
        "max": float(v.max()),
        "stop_threshold": float(stop_threshold),
        "median_over_threshold": float(np.median(v) / stop_threshold) if stop_threshold > 0 else float("nan"),
        "stop_at_x0_fraction": float(np.mean(v < stop_threshold)),
    }


def convergence_verdict(history: list[dict], key: str = "heldout_rec_mean") -> dict:
    """'converged', 'still improving', 'over-fitting' or 'unknown' from the L_r history of the run.

    The change is measured between the last evaluation and the one nearest to three quarters of the run.
    """
    points = [(h["step"], h[key]) for h in history if np.isfinite(h.get(key, float("nan")))]
    if len(points) < 3:
        return {"verdict": "unknown", "reason": f"only {len(points)} measurement(s) of {key}; train longer"}
    last_step, last = points[-1]
    target = 0.75 * last_step
    then_step, then = min(points[:-1], key=lambda p: abs(p[0] - target))
    change = (then - last) / then if then > 0 else float("nan")
    span = last_step - then_step
    what = "held-out L_r" if key.startswith("heldout") else "training loss"
    if not np.isfinite(change):
        return {"verdict": "unknown", "reason": f"{what} is not a positive finite number", "change": change}
    if change >= CONVERGED_CHANGE:
        verdict = "still improving"
        reason = f"{what} fell {100 * change:.1f}% over the last {span} steps: continue training (resume with more --steps)"
    elif change <= -CONVERGED_CHANGE:
        verdict = "over-fitting"
        reason = f"{what} rose {-100 * change:.1f}% over the last {span} steps: fewer steps or more normal images"
    else:
        verdict = "converged"
        reason = f"{what} changed {100 * change:+.1f}% over the last {span} steps (under {100 * CONVERGED_CHANGE:.0f}%)"
    return {"verdict": verdict, "reason": reason, "change": float(change), "over_steps": int(span), "measure": key}
