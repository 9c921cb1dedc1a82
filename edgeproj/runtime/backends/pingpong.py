"""Device-resident projection state shared by the GPU backends (ort-cuda, ort-trt, trt).

Two sets of state buffers (x, m, v, step) swap roles every step: step t reads set t % 2 and writes the
other, so no copy is ever made and every binding (and every captured CUDA graph) points at fixed
addresses. The per-step energy and L_r go to `chunk` small slots that are read back once per chunk.
The memory itself comes from a backend's `DeviceArrays` (ONNX Runtime OrtValues or cudaMalloc blocks).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edgeproj import contract
from edgeproj.runtime.backends.base import settings_feed


class DeviceArrays(Protocol):
    """How a backend allocates, writes and reads device buffers of float32."""

    def new(self, host: np.ndarray): ...

    def write(self, buf, host: np.ndarray) -> None: ...

    def read(self, buf, shape: tuple) -> np.ndarray: ...

    def free(self, buf) -> None: ...


class PingPongState:
    """The fixed device buffers of one batch of n samples."""

    def __init__(self, dev: DeviceArrays, x0: np.ndarray, weight: np.ndarray, settings, chunk: int):
        self.dev = dev
        self.n = x0.shape[0]
        self.image_shape = x0.shape
        zeros, vec0 = np.zeros_like(x0), np.zeros(self.n, np.float32)
        self.state = [
            {s: dev.new(vec0 if s == contract.STEP else (x0 if s == contract.X else zeros)) for s in contract.STATE}
            for _ in range(2)
        ]
        self.const = {contract.X0: dev.new(x0), contract.WEIGHT: dev.new(weight)}
        self.const |= {k: dev.new(v) for k, v in settings_feed(settings).items()}
        self.active = dev.new(np.ones(self.n, np.float32))
        self.frozen = dev.new(vec0)  # active = 0: a step that moves nothing (evaluation at x)
        self.energy = [dev.new(vec0) for _ in range(chunk)]
        self.rec_loss = [dev.new(vec0) for _ in range(chunk)]
        self.recon = dev.new(zeros)
        self.cur = 0

    def reset(self, x0: np.ndarray, weight: np.ndarray, settings) -> None:
        """Start a new batch of the same size in the same buffers (x = x0, Adam state zero)."""
        dev, zeros, vec0 = self.dev, np.zeros_like(x0), np.zeros(self.n, np.float32)
        dev.write(self.const[contract.X0], x0)
        dev.write(self.const[contract.WEIGHT], weight)
        for k, v in settings_feed(settings).items():
            dev.write(self.const[k], v)
        for s in contract.STATE:
            dev.write(self.state[0][s], vec0 if s == contract.STEP else (x0 if s == contract.X else zeros))
        dev.write(self.active, np.ones(self.n, np.float32))
        self.cur = 0

    def binding(self, parity: int, slot: int, frozen: bool) -> tuple[dict, dict]:
        """Input and output buffers by graph name for one step reading state set `parity`."""
        src, dst = self.state[parity], self.state[1 - parity]
        inputs = dict(src) | self.const | {contract.ACTIVE: self.frozen if frozen else self.active}
        outputs = {contract.NEXT[s]: dst[s] for s in contract.STATE}
        outputs |= {contract.ENERGY: self.energy[slot], contract.REC_LOSS: self.rec_loss[slot], contract.RECON: self.recon}
        return inputs, outputs

    def flip(self) -> None:
        self.cur = 1 - self.cur

    def set_active(self, active: np.ndarray) -> None:
        self.dev.write(self.active, np.asarray(active, np.float32))

    def readback(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Energy and L_r of the last k steps (k x n)."""
        read = self.dev.read
        return (
            np.stack([read(self.energy[i], (self.n,)) for i in range(k)]),
            np.stack([read(self.rec_loss[i], (self.n,)) for i in range(k)]),
        )

    def evaluation(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Energy, L_r and f(x) written by a frozen step into slot 0."""
        read = self.dev.read
        return read(self.energy[0], (self.n,)), read(self.rec_loss[0], (self.n,)), read(self.recon, self.image_shape)

    def x(self) -> np.ndarray:
        return self.dev.read(self.state[self.cur][contract.X], self.image_shape)

    def buffers(self) -> list:
        """Every device buffer of the batch."""
        bufs = [b for pair in self.state for b in pair.values()] + list(self.const.values())
        return bufs + [self.active, self.frozen, self.recon] + self.energy + self.rec_loss

    def free(self) -> None:
        for b in self.buffers():
            self.dev.free(b)
