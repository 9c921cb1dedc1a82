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
# The plateau rule (plateau_verdict): held-out L_r is compared over a window of PLATEAU_FRACTION of the
# run, at least MIN_PLATEAU_STEPS. A shorter window says nothing: a freshly initialised model sits on a
# plateau for a few hundred steps (it outputs the mean image), and on a brick photograph held-out L_r
# stayed within 3% per 500 steps from step 1000 to 2500 (61.8 -> 57.4) before it fell to 22.7 by 5000.
MIN_PLATEAU_STEPS = 2000
PLATEAU_FRACTION = 0.25
# Relative change of held-out L_r over that window under which training has stopped improving.
CONVERGED_CHANGE = 0.02
# A plateau with held-out median L_r more than this many times the stop threshold (the training minimum)
# is not "converged": the projection's stop rule will rarely fire on unseen good parts.
FAR_ABOVE_STOP = 2.0


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


def _smoothed(points: list[tuple[int, float]], at: float) -> tuple[int, float]:
    """The measurement nearest to step `at` averaged with the one after it (one evaluation is noisy, and
    the two compare like the last two), and its step."""
    i = min(range(len(points)), key=lambda k: abs(points[k][0] - at))
    return points[i][0], float(np.mean([v for _, v in points[i : i + 2]]))


def convergence_verdict(history: list[dict], key: str = "heldout_rec_mean", median_over_threshold: float | None = None) -> dict:
    """'converged', 'plateau far above the stop threshold', 'still improving', 'over-fitting' or 'unknown'.

    Held-out L_r (mean of the last two measurements) is compared with its value a window back: a quarter
    of the run, at least MIN_PLATEAU_STEPS. A run shorter than that is 'unknown', never 'converged'; a
    plateau whose held-out median is more than FAR_ABOVE_STOP x the stop threshold is not converged either.
    """
    points = [(int(h["step"]), float(h[key])) for h in history if np.isfinite(h.get(key, float("nan")))]
    what = "held-out L_r" if key.startswith("heldout") else "training loss"
    if len(points) < 4 or points[-1][0] < MIN_PLATEAU_STEPS:
        last = points[-1][0] if points else 0
        return {
            "verdict": "unknown",
            "reason": f"{len(points)} measurement(s) of {what} over {last} steps: the plateau rule needs at least "
            f"{MIN_PLATEAU_STEPS} steps and 4 measurements; train longer",
        }
    last_step = points[-1][0]
    window = max(MIN_PLATEAU_STEPS, PLATEAU_FRACTION * last_step)
    now = float(np.mean([v for _, v in points[-2:]]))
    then_step, then = _smoothed(points[:-2] or points[:1], last_step - window)
    change = (then - now) / then if then > 0 else float("nan")
    span = last_step - then_step
    if span < MIN_PLATEAU_STEPS:  # a history that starts late (a resume, a missing point) gives no window
        return {"verdict": "unknown", "reason": f"{what} spans only {span} steps of the last window; train longer"}
    if not np.isfinite(change):
        return {"verdict": "unknown", "reason": f"{what} is not a positive finite number", "change": change}
    if change >= CONVERGED_CHANGE:
        verdict = "still improving"
        reason = f"{what} fell {100 * change:.1f}% over the last {span} steps"
    elif change <= -CONVERGED_CHANGE:
        verdict = "over-fitting"
        reason = f"{what} rose {-100 * change:.1f}% over the last {span} steps: more normal images, or stop earlier"
    else:
        verdict = "converged"
        reason = f"{what} changed {100 * change:+.1f}% over the last {span} steps (under {100 * CONVERGED_CHANGE:.0f}%)"
        if median_over_threshold is not None and not median_over_threshold <= FAR_ABOVE_STOP:
            verdict = "plateau far above the stop threshold"
            reason += (
                f", but held-out median L_r is {median_over_threshold:.2f}x the stop threshold (over {FAR_ABOVE_STOP:g}x): "
                "the model reconstructs unseen parts much worse than training ones; more normal images, or a "
                "wider model (--width, --latent; or a wider --model of your own)"
            )
    return {"verdict": verdict, "reason": reason, "change": float(change), "over_steps": int(span), "measure": key}


def plateau_reached(history: list[dict], key: str = "heldout_rec_mean") -> dict | None:
    """The verdict when training should stop on the plateau rule (held-out L_r no longer falls), else None.

    A rise stops training only when the measurement before said the same: held-out L_r of a few images
    is noisy, and one bad evaluation must not end a run that is still learning."""
    v = convergence_verdict(history, key)
    if v["verdict"] == "converged":
        return v
    if v["verdict"] == "over-fitting" and convergence_verdict(history[:-1], key)["verdict"] == "over-fitting":
        return v
    return None
