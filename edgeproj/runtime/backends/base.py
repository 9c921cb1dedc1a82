"""The interface every backend implements: a context-managed runner of the bundle's step graph.

A runner owns the projection state (x, m, v, step) of one batch, wherever it lives (host memory for
ort-cpu, device memory for the GPU backends), and advances it k steps per call, returning only the
per-step energy and L_r (N floats each): the small readback the loop's stop rule needs. Runners are
driven by `edgeproj.runtime.Projector` only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from edgeproj import contract
from edgeproj.runtime.manifest import Manifest, Projection


def settings_feed(settings: Projection) -> dict[str, np.ndarray]:
    """The step graph's [1]-shaped setting inputs (contract.SETTINGS) for these projection settings."""
    values = (float(settings.tuned), float(settings.tuned_on_step), settings.alpha, settings.lam)
    return {name: np.array([v], np.float32) for name, v in zip(contract.SETTINGS, values)}


class Runner(ABC):
    """Base class of backends; use as a context manager.

    Attributes declared for the projector and benchmarks:
        chunk: steps per readback on device backends; None on host backends (every step read back).
        fixed_batch: the runner keeps one batch size (device buffers, CUDA graphs): short batches
            are padded with samples that never move.
        device_ms: accumulated device time of `steps` where the backend measures it, else None.
        probes: the runner implements `probe` and `advance` (host runners): the loop then sees E and L_r
            at x before it decides to move x, so a sample stops exactly where the stop rule says.
    """

    name = "base"
    chunk: int | None = None
    fixed_batch: bool = False
    device_ms: float | None = None
    probes: bool = False

    def __init__(self, manifest: Manifest, options=None):
        self.manifest = manifest
        self.options = options

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc):
        self.deactivate()
        return False

    def activate(self) -> None:
        """Create sessions or engines (may take time: engine builds are cached)."""

    def deactivate(self) -> None:
        """Free sessions, engines and device memory."""

    @property
    def providers(self) -> list[str]:
        return [self.name]

    @abstractmethod
    def load(self, x0: np.ndarray, weight: np.ndarray, settings: Projection) -> None:
        """Start a batch at x = x0 with Adam state zero; weight is 1 or the known mask (eq. 7)."""

    @abstractmethod
    def evaluate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Energy, L_r and f(x) at the current x, without moving x."""

    @abstractmethod
    def steps(self, k: int, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance `k` masked-Adam steps for the active samples; energy and L_r before each step (k x N)."""

    def probe(self, active: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Energy, L_r and f(x) at the current x of the active samples (NaN / zeros elsewhere), keeping
        what `advance` needs; x does not move."""
        raise NotImplementedError(f"{self.name} does not probe; the loop steps it")

    def advance(self, moving: np.ndarray) -> None:
        """One masked-Adam step of the samples in `moving` (a subset of the last probe's active samples)."""
        raise NotImplementedError(f"{self.name} does not probe; the loop steps it")

    def end_batch(self) -> None:
        """Drop what the last probe kept (the loop calls it when a batch is done)."""

    def lane_runners(self) -> list[Runner]:
        """Independent runners over this runner's sessions, one per lane, for `LanePool` (none: one lane).

        Each projects its own tiles in its own thread; the parent stays usable for whole-batch calls.
        """
        return []

    @abstractmethod
    def fetch(self) -> np.ndarray:
        """The current projection x (N x C x H x W) on the host."""

    @abstractmethod
    def gradient(self, x: np.ndarray, x0: np.ndarray, lam: float) -> dict[str, np.ndarray]:
        """Run the gradient graph once: energy, rec_loss, grad, recon."""
