"""ort-cpu: ONNX Runtime on the CPU; the projection state lives in host arrays."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from edgeproj import contract
from edgeproj.runtime.backends.base import Runner, settings_feed
from edgeproj.runtime.backends.ort_session import available_providers, make_session, run_gradient

MAX_THREADS = 256


@dataclass(frozen=True)
class OrtCpuOptions:
    """threads > 0: one session with that many intra-op threads. threads = 0: one single-threaded
    session per core ("lanes"), each projecting its share of the batch in its own Python thread."""

    threads: int = 0
    lanes: int | None = None
    allow_fallback: bool = False


def probe() -> str | None:
    """None when usable here, else why not."""
    try:
        available_providers()
    except Exception as exc:  # noqa: BLE001 - the reason is what the user needs
        return str(exc)
    return None


class OrtCpuRunner(Runner):
    """ONNX Runtime on the CPU.

    With lanes, samples are independent, so lanes never wait on each other within a step; on two cores
    this beats one two-threaded session (edge-facts.md: batch 1 is faster on one thread, and small
    convolutions parallelize poorly inside one image). ONNX Runtime releases the GIL while it runs.
    """

    name = "ort-cpu"
    fuses_first_step = True

    def __init__(self, manifest, options: OrtCpuOptions | None = None):
        options = options or OrtCpuOptions()
        super().__init__(manifest, options)
        self.threads = options.threads
        self.max_lanes = 1 if options.threads > 0 else max(1, options.lanes or os.cpu_count() or 1)
        self._steps: list = []
        self._gradient = None
        self._lanes: list = []
        self._pool = None

    def activate(self) -> None:
        threads = self.threads if self.threads > 0 else (1 if self.max_lanes > 1 else 0)
        cpu = ["CPUExecutionProvider"]
        fallback = self.options.allow_fallback
        # No memory patterns: with the stop rules a lane meets every batch size from 1 up, and ONNX Runtime
        # keeps a plan per shape (same speed without, 18 MB less peak memory on the demo line).
        path = self.manifest.graph_path("step")
        self._steps = [make_session(path, "step", cpu, threads, fallback, memory_pattern=False) for _ in range(self.max_lanes)]
        if self.max_lanes > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=self.max_lanes, thread_name_prefix="edgeproj-lane")

    def deactivate(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._steps, self._gradient, self._lanes = [], None, []

    @property
    def providers(self) -> list[str]:
        return self._steps[0].get_providers() if self._steps else ["CPUExecutionProvider"]

    def load(self, x0, weight, settings) -> None:
        x0 = np.ascontiguousarray(x0, np.float32)
        n = x0.shape[0]
        weight = np.ascontiguousarray(np.broadcast_to(weight, x0.shape), np.float32)
        bounds = np.linspace(0, n, min(n, self.max_lanes) + 1).astype(int)
        scalars = settings_feed(settings)
        self._lanes = []
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            xs = np.ascontiguousarray(x0[a:b])
            feed = {
                contract.X: xs.copy(),
                contract.X0: xs,
                contract.M: np.zeros_like(xs),
                contract.V: np.zeros_like(xs),
                contract.STEP: np.zeros(b - a, np.float32),
                contract.WEIGHT: np.ascontiguousarray(weight[a:b]),
                contract.ACTIVE: np.ones(b - a, np.float32),
                **scalars,
            }
            self._lanes.append((self._steps[i], feed, slice(a, b)))

    def _run(self, sess, feed) -> dict:
        return dict(zip(contract.STEP_OUTPUTS, sess.run(list(contract.STEP_OUTPUTS), feed)))

    def _lane_steps(self, lane, k: int, active: np.ndarray | None):
        sess, feed, sl = lane
        n = feed[contract.X].shape[0]
        if active is None:  # evaluate: every sample, nothing moves
            out = self._run(sess, feed | {contract.ACTIVE: np.zeros(n, np.float32)})
            return out[contract.ENERGY][None], out[contract.REC_LOSS][None], out[contract.RECON]
        # Finished samples cost nothing on the CPU: run the step graph on the active ones only (N is dynamic).
        idx = np.flatnonzero(active[sl] > 0)
        es = np.full((k, n), np.nan, np.float32)
        rs = np.full((k, n), np.nan, np.float32)
        if idx.size == 0:
            return es, rs, None
        full = idx.size == n
        sub = feed if full else {key: (val[idx] if key in contract.PER_SAMPLE else val) for key, val in feed.items()}
        sub[contract.ACTIVE] = np.ones(idx.size, np.float32)
        for j in range(k):
            out = self._run(sess, sub)
            for s in contract.STATE:
                sub[s] = out[contract.NEXT[s]]
            es[j, idx] = out[contract.ENERGY]
            rs[j, idx] = out[contract.REC_LOSS]
        if not full:
            for s in contract.STATE:
                feed[s][idx] = sub[s]
        return es, rs, None

    def _map(self, k: int, active: np.ndarray | None):
        if self._pool is None or len(self._lanes) == 1:
            parts = [self._lane_steps(lane, k, active) for lane in self._lanes]
        else:
            parts = list(self._pool.map(lambda lane: self._lane_steps(lane, k, active), self._lanes))
        recon = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
        return np.concatenate([p[0] for p in parts], axis=1), np.concatenate([p[1] for p in parts], axis=1), recon

    def evaluate(self):
        e, r, recon = self._map(1, None)
        return e[0], r[0], recon

    def steps(self, k, active):
        e, r, _ = self._map(k, np.asarray(active, np.float32))
        return e, r

    def _lane_first_step(self, lane, active: np.ndarray):
        sess, feed, sl = lane
        out = self._run(sess, feed | {contract.ACTIVE: np.ascontiguousarray(active[sl])})
        for s in contract.STATE:
            feed[s] = out[contract.NEXT[s]]
        return out[contract.ENERGY], out[contract.REC_LOSS], out[contract.RECON]

    def evaluate_and_step(self, active):
        active = np.asarray(active, np.float32)
        if self._pool is None or len(self._lanes) == 1:
            parts = [self._lane_first_step(lane, active) for lane in self._lanes]
        else:
            parts = list(self._pool.map(lambda lane: self._lane_first_step(lane, active), self._lanes))
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    def revert(self, samples):
        for _, feed, sl in self._lanes:
            local = [i - sl.start for i in samples if sl.start <= i < sl.stop]
            if local:
                # Graph outputs may be read-only views: replace the state arrays before writing.
                for s in (contract.X, contract.M, contract.V, contract.STEP):
                    feed[s] = np.array(feed[s], copy=True)
                feed[contract.X][local] = feed[contract.X0][local]
                feed[contract.M][local] = 0.0
                feed[contract.V][local] = 0.0
                feed[contract.STEP][local] = 0.0

    def fetch(self):
        return np.concatenate([lane[1][contract.X] for lane in self._lanes])

    def lane_runners(self) -> list[Runner]:
        return [_SessionLane(self, sess) for sess in self._steps] if self.max_lanes > 1 else []

    def gradient(self, x, x0, lam):
        # Made on first use: the gradient graph serves one-off scores, never the line (saves its memory).
        if self._gradient is None:
            fallback = self.options.allow_fallback
            path = self.manifest.graph_path("gradient")
            self._gradient = make_session(path, "gradient", ["CPUExecutionProvider"], self.threads, fallback)
        return run_gradient(self._gradient, x, x0, lam)


class _SessionLane(OrtCpuRunner):
    """One single-threaded step session of a parent OrtCpuRunner, as a runner of its own (a lane)."""

    def __init__(self, parent: OrtCpuRunner, session):
        super().__init__(parent.manifest, OrtCpuOptions(threads=1, allow_fallback=parent.options.allow_fallback))
        self._parent = parent
        self._steps = [session]

    @property
    def fuses_first_step(self) -> bool:  # follows the parent (benchmarks switch it there)
        return self._parent.fuses_first_step

    def activate(self) -> None:  # the parent owns the sessions
        pass

    def deactivate(self) -> None:
        self._lanes = []

    def gradient(self, x, x0, lam):
        return self._parent.gradient(x, x0, lam)
