"""The interface every backend implements: a context-managed runner of the bundle's step graph.

A runner owns the projection state (x, m, v, step) of one batch, wherever it lives (host memory for
ort-cpu, device memory for the GPU backends), and advances it k steps per call, returning only the
per-step energy and L_r (N floats each): the small readback the loop's stop rule needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from edgeproj.runtime.manifest import Manifest


@dataclass(frozen=True)
class StepParams:
    """Run-time inputs of the step graph."""

    alpha: float
    lam: float
    tuned: bool
    tuned_on_step: bool

    def feed(self) -> dict[str, np.ndarray]:
        f = np.float32
        return {
            "alpha": np.array([self.alpha], f),
            "lam": np.array([self.lam], f),
            "tuned": np.array([float(self.tuned)], f),
            "tuned_on_step": np.array([float(self.tuned_on_step)], f),
        }


class Runner(ABC):
    """Base class of backends; use as a context manager."""

    name = "base"

    def __init__(self, manifest: Manifest):
        self.manifest = manifest

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
    def load(self, x0: np.ndarray, weight: np.ndarray, params: StepParams) -> None:
        """Start a batch at x = x0 with Adam state zero; weight is 1 or the known mask (eq. 7)."""

    @abstractmethod
    def evaluate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Energy, L_r and f(x) at the current x, without moving (the step graph with active = 0)."""

    @abstractmethod
    def steps(self, k: int, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance `k` masked-Adam steps for the active samples; energy and L_r before each step (k x N)."""

    @abstractmethod
    def fetch(self) -> np.ndarray:
        """The current projection x (N x C x H x W) on the host."""

    @abstractmethod
    def gradient(self, x: np.ndarray, x0: np.ndarray, lam: float) -> dict[str, np.ndarray]:
        """Run the gradient graph once: energy, rec_loss, grad, recon."""
