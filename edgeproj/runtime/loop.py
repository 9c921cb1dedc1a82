"""The projection loop (paper section 3) over any runner: per-sample stop rules, NaN guard, energy traces.

This is the only place that steps a runner; `Projector` calls it for every batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edgeproj.runtime.backends.base import Runner
from edgeproj.runtime.manifest import Projection, StopRule

# on_checkpoint(iteration, x) receives the batch's projection after `iteration` steps.
CheckpointFn = Callable[[int, np.ndarray], None]


@dataclass
class BatchResult:
    """Per-sample outcome of one batch."""

    x0: np.ndarray
    projection: np.ndarray
    recon0: np.ndarray  # f(x0): the baseline reconstruction
    recon: np.ndarray | None  # f(x_T); None when the loop ran with final=False
    rec_loss0: np.ndarray
    rec_loss: np.ndarray
    energy: np.ndarray
    iterations: np.ndarray
    stop_reasons: list[str]
    traces: list[list[float]]

    @property
    def diverged(self) -> np.ndarray:
        return np.array([r == "diverged" for r in self.stop_reasons], bool)

    def head(self, n: int) -> BatchResult:
        """The first n samples (drops padding)."""
        return BatchResult(
            self.x0[:n],
            self.projection[:n],
            self.recon0[:n],
            None if self.recon is None else self.recon[:n],
            self.rec_loss0[:n],
            self.rec_loss[:n],
            self.energy[:n],
            self.iterations[:n],
            self.stop_reasons[:n],
            self.traces[:n],
        )

    @staticmethod
    def concat(parts: list[BatchResult]) -> BatchResult:
        if len(parts) == 1:
            return parts[0]
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        return BatchResult(
            x0=cat("x0"),
            projection=cat("projection"),
            recon0=cat("recon0"),
            recon=None if any(p.recon is None for p in parts) else cat("recon"),
            rec_loss0=cat("rec_loss0"),
            rec_loss=cat("rec_loss"),
            energy=cat("energy"),
            iterations=cat("iterations"),
            stop_reasons=[r for p in parts for r in p.stop_reasons],
            traces=[t for p in parts for t in p.traces],
        )


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


def readback_chunk(runner: Runner, stop: StopRule) -> int:
    """Steps per runner call: 1 on host runners, else the device runner's chunk capped by check_every."""
    return 1 if runner.chunk is None else max(1, min(stop.check_every, runner.chunk))


def _start(e0, r0, active, stop, reasons) -> None:
    """The checks at x0: a non-finite sample is diverged, one already below the L_r threshold takes no step."""
    for i in np.flatnonzero(active):
        if not (np.isfinite(e0[i]) and np.isfinite(r0[i])):
            reasons[i], active[i] = "diverged", 0.0
        elif stop.rec_loss_threshold is not None and r0[i] < stop.rec_loss_threshold:
            reasons[i], active[i] = "rec_loss_threshold", 0.0


def run_projection(
    runner: Runner,
    x0: np.ndarray,
    settings: Projection,
    weight: np.ndarray | None = None,
    active: np.ndarray | None = None,
    checkpoints: Sequence[int] = (),
    on_checkpoint: CheckpointFn | None = None,
    final: bool = True,
) -> BatchResult:
    """Project a batch from x0; finished samples stop changing while the others go on.

    On a probing runner (the host backends) the stop rule sees E and L_r at x before x moves: a sample
    that meets it at x_t returns x_t and pays for that forward pass only, a sample below the L_r
    threshold at x0 takes no step. On a device runner, the stop rule is read back every chunk (a small
    readback): a sample found finished inside a chunk has still taken the step that found it and the
    chunk's remaining steps, which `iterations` counts. `iterations` counts the steps that moved x.
    A sample whose energy or pixels turn NaN/Inf is marked diverged and its projection reset to x0.
    `active` = 0 marks padding samples that never move. `on_checkpoint(t, x)` gets the projection after
    t steps for each t in `checkpoints` (a chunk never crosses one). `final=False` skips evaluating x_T:
    `recon` is None and `rec_loss` NaN (for maps that need only x0 and the projection).
    """
    n = x0.shape[0]
    stop = settings.stop
    runner.load(x0, np.ones_like(x0) if weight is None else weight, settings)
    active = np.ones(n, np.float32) if active is None else np.asarray(active, np.float32).copy()
    padding = active == 0
    iterations = np.zeros(n, np.int64)
    reasons: list[str | None] = [None] * n
    traces: list[list[float]] = [[] for _ in range(n)]
    pending = sorted(c for c in set(checkpoints) if 0 <= c <= settings.max_iterations)
    if pending and pending[0] == 0:
        on_checkpoint(pending.pop(0), runner.fetch())
    probing = runner.probes
    e0, r0, recon0 = runner.probe(np.ones(n, np.float32)) if probing else runner.evaluate()
    recon0 = np.array(recon0, copy=True)
    _start(e0, r0, active, stop, reasons)
    if probing:
        for i in np.flatnonzero(active):
            traces[i].append(float(e0[i]))
    chunk = 1 if probing else readback_chunk(runner, stop)
    done = 0
    while True:
        # Once every sample has stopped, x no longer changes: the remaining checkpoints all see it.
        while pending and (pending[0] == done or not active.any()):
            on_checkpoint(pending.pop(0), runner.fetch())
        if done >= settings.max_iterations or not active.any():
            break
        if probing:
            runner.advance(active)
            done += 1
            iterations[active > 0] += 1
            if done >= settings.max_iterations:
                continue  # x_T is evaluated below (or not at all): no probe; the checkpoints above see it
            energies, recs, _ = runner.probe(active)
            energies, recs = energies[None], recs[None]
        else:
            k = min(chunk, settings.max_iterations - done, (pending[0] - done) if pending else chunk)
            energies, recs = runner.steps(k, active)
            done += k
            iterations[active > 0] += k
        for i in np.flatnonzero(active):
            for j in range(energies.shape[0]):
                traces[i].append(float(energies[j, i]))
                reason = _check(traces[i], float(recs[j, i]), stop)
                if reason:
                    reasons[i], active[i] = reason, 0.0
                    traces[i].extend(float(v) for v in energies[j + 1 :, i])
                    break
    x = np.array(runner.fetch(), copy=True)
    if final:
        runner.end_batch()
        energy, rec, recon = runner.evaluate()
        recon = np.array(recon, copy=True)
    else:
        # No f(x_T) wanted (the DSSIM(x0, x_T) map): energy is the last one traced where that was measured at
        # the returned x (a probing runner's sample stopped by its rule, or one that never moved). A device
        # runner's trace ends at E(x_{T-1}), and so does a sample cut by max_iterations: those are evaluated.
        energy = np.array([t[-1] if t else e0[i] for i, t in enumerate(traces)], np.float32)
        stale = np.array([iterations[i] > 0 and (not probing or reasons[i] is None) for i in range(n)], bool)
        if stale.any():
            if probing:
                energy[stale] = runner.probe(stale.astype(np.float32))[0][stale]
            else:
                energy[stale] = runner.evaluate()[0][stale]
        runner.end_batch()
        rec, recon = np.full(n, np.nan, np.float32), None
    for i in range(n):
        if reasons[i] is None:
            reasons[i] = "padding" if padding[i] else "max_iterations"
        if not (np.isfinite(x[i]).all() and np.isfinite(energy[i])):
            reasons[i] = "diverged"
        if reasons[i] == "diverged":
            x[i] = x0[i]
            if recon is not None:
                recon[i] = recon0[i] if np.isfinite(recon0[i]).all() else x0[i]
    return BatchResult(x0, x, recon0, recon, r0, rec, energy, iterations, reasons, traces)  # type: ignore[arg-type]
