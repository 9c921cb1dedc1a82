"""The projection loop (paper section 3) over any runner: per-sample stop rules, NaN guard, energy traces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeproj.runtime.backends.base import Runner, StepParams
from edgeproj.runtime.manifest import StopRule

@dataclass
class BatchResult:
    """Per-sample outcome of one batch."""

    x0: np.ndarray
    projection: np.ndarray
    recon0: np.ndarray  # f(x0): the baseline reconstruction
    recon: np.ndarray  # f(x_T)
    rec_loss0: np.ndarray
    rec_loss: np.ndarray
    energy: np.ndarray
    iterations: np.ndarray
    stop_reasons: list[str]
    traces: list[list[float]]

    @property
    def diverged(self) -> np.ndarray:
        return np.array([r == "diverged" for r in self.stop_reasons])


def _check(trace: list[float], rec: float, stop: StopRule) -> str | None:
    e = trace[-1]
    if not (np.isfinite(e) and np.isfinite(rec)):
        return "diverged"
    if stop.rec_loss_threshold is not None and rec < stop.rec_loss_threshold:
        return "rec_loss_threshold"
    w = stop.window
    if stop.energy_rtol > 0 and len(trace) > w:
        ref = trace[-1 - w]
        if abs(e - ref) <= stop.energy_rtol * abs(ref):
            return "converged"
    return None


def run_projection(runner: Runner, x0: np.ndarray, params: StepParams, max_iterations: int, stop: StopRule,
                   weight: np.ndarray | None = None, chunk: int = 1, active: np.ndarray | None = None) -> BatchResult:
    """Project a batch from x0; finished samples stop changing while the others go on.

    The stop rule is checked on every step's energy and L_r, read back every `chunk` steps (a small
    readback; a sample found finished inside a chunk has still taken the chunk's remaining steps, which
    `iterations` counts). A sample already below the L_r threshold at x0 takes no step. A sample whose
    energy or pixels turn NaN/Inf is marked diverged and its projection reset to x0. `active` = 0 marks
    padding samples that never move (GPU backends keep one batch size).
    """
    n = x0.shape[0]
    runner.load(x0, np.ones_like(x0) if weight is None else weight, params)
    e0, r0, recon0 = runner.evaluate()
    active = np.ones(n, np.float32) if active is None else np.asarray(active, np.float32).copy()
    padding = active == 0
    iterations = np.zeros(n, np.int64)
    reasons: list[str | None] = [None] * n
    traces: list[list[float]] = [[] for _ in range(n)]
    for i in np.flatnonzero(active):
        if not (np.isfinite(e0[i]) and np.isfinite(r0[i])):
            reasons[i], active[i] = "diverged", 0.0
        elif stop.rec_loss_threshold is not None and r0[i] < stop.rec_loss_threshold:
            reasons[i], active[i] = "rec_loss_threshold", 0.0
    done = 0
    while done < max_iterations and active.any():
        k = min(chunk, max_iterations - done)
        energies, recs = runner.steps(k, active)
        done += k
        for i in np.flatnonzero(active):
            iterations[i] += k
            for j in range(k):
                traces[i].append(float(energies[j, i]))
                reason = _check(traces[i], float(recs[j, i]), stop)
                if reason:
                    reasons[i], active[i] = reason, 0.0
                    traces[i].extend(float(v) for v in energies[j + 1 :, i])
                    break
    x = np.array(runner.fetch(), copy=True)
    energy, rec, recon = runner.evaluate()
    recon = recon.copy()
    for i in range(n):
        if reasons[i] is None:
            reasons[i] = "padding" if padding[i] else "max_iterations"
        if not (np.isfinite(x[i]).all() and np.isfinite(energy[i])):
            reasons[i] = "diverged"
        if reasons[i] == "diverged":
            x[i] = x0[i]
            recon[i] = recon0[i] if np.isfinite(recon0[i]).all() else x0[i]
    return BatchResult(x0, x, recon0, recon, r0, rec, energy, iterations, reasons, traces)  # type: ignore[arg-type]
