"""ort-cpu: ONNX Runtime on the CPU; the projection state lives in host arrays."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from edgeproj import contract
from edgeproj.errors import BundleError, ConfigError
from edgeproj.runtime.backends.base import Runner, settings_feed
from edgeproj.runtime.backends.ort_session import available_providers, make_session, run_gradient

MAX_THREADS = 256


@dataclass(frozen=True)
class OrtCpuOptions:
    """threads > 0: one session (a pair with the split) with that many intra-op threads (more than one:
    the step graph alone). threads = 0: single-threaded sessions per core ("lanes"), each lane projecting
    its share of the batch in its own Python thread.
    whole_step: run the step graph even where the bundle has its forward/update split (A/B measurements).
    chunk: check the stop rule as the device runners do (after the step, read back every `chunk` steps)
    instead of before the step: the CPU reference of a GPU's production case (scripts/gpu_check.sh)."""

    threads: int = 0
    lanes: int | None = None
    allow_fallback: bool = False
    whole_step: bool = False
    chunk: int | None = None


def probe() -> str | None:
    """None when usable here, else why not."""
    try:
        available_providers()
    except Exception as exc:  # noqa: BLE001 - the reason is what the user needs
        return str(exc)
    return None


class _Lane:
    """One lane's sessions and its share of the batch: the state arrays and the last probe's values."""

    def __init__(self, sessions: dict, feed: dict, sl: slice):
        self.sessions, self.feed, self.sl = sessions, feed, sl
        self.pending: tuple | None = None  # (rows probed, their inputs, the graph's outputs by name)

    @property
    def size(self) -> int:
        return self.sl.stop - self.sl.start


def _rows(arrays: dict, idx: np.ndarray | None) -> dict:
    """The per-sample arrays of `arrays` at rows idx (None: all, no copy); settings pass through."""
    if idx is None:
        return dict(arrays)
    return {k: (v[idx] if k in contract.PER_SAMPLE else v) for k, v in arrays.items()}


def _writable(a: np.ndarray) -> np.ndarray:
    # Graph outputs may be read-only views: replace them before writing rows into them.
    return a if a.flags.writeable else np.array(a, copy=True)


def _check_pair(sessions: dict, root) -> None:
    """The forward graph's saved values are the update graph's, by name and type (else BundleError now,
    not an onnxruntime error at the first step)."""
    handed = {o.name: o.type for o in sessions["forward"].get_outputs() if o.name.startswith(contract.SAVED_PREFIX)}
    taken = {i.name: i.type for i in sessions["update"].get_inputs() if i.name.startswith(contract.SAVED_PREFIX)}
    if handed != taken:
        only_taken = sorted(set(taken.items()) - set(handed.items()))
        only_handed = sorted(set(handed.items()) - set(taken.items()))
        raise BundleError(
            f"bundle '{root}': update.onnx takes {only_taken} that forward.onnx does not hand over, and forward.onnx "
            f"hands over {only_handed} that update.onnx does not take; re-export the bundle"
        )


class OrtCpuRunner(Runner):
    """ONNX Runtime on the CPU.

    With lanes, samples are independent, so lanes never wait on each other within a step; on two cores
    this beats one two-threaded session (edge-facts.md: batch 1 is faster on one thread, and small
    convolutions parallelize poorly inside one image). ONNX Runtime releases the GIL while it runs.

    The runner probes and advances (`Runner.probes`): a probe runs the bundle's forward graph on the
    active samples, an advance runs its update graph on those the stop rule let go on, so a sample that
    stops at x pays for the forward pass only. Bundles exported before the split run the step graph in
    the probe and keep its result for the advance.
    """

    name = "ort-cpu"
    probes = True

    def __init__(self, manifest, options: OrtCpuOptions | None = None):
        options = options or OrtCpuOptions()
        super().__init__(manifest, options)
        self.threads = options.threads
        if options.chunk is not None:
            if options.chunk < 1:
                raise ConfigError(f"ort-cpu chunk must be at least 1, got {options.chunk}")
            # The loop then steps this runner like a device runner: whole steps, the rule read back per chunk.
            self.probes, self.chunk = False, options.chunk
        self.max_lanes = 1 if options.threads > 0 else max(1, options.lanes or os.cpu_count() or 1)
        # Two multi-threaded sessions take turns badly: the intra-op threads of one still spin while the
        # other runs (measured at batch 1 on 2 cores: 11.9 ms per tile-step as a pair, 4.7 as one step
        # session; 5.6 with spinning off). So a multi-threaded session runs the step graph alone.
        one_thread = self.threads == 1 or (self.threads == 0 and (self.max_lanes > 1 or os.cpu_count() == 1))
        self.split = manifest.has_split_step and not options.whole_step and one_thread
        self._sessions: list[dict] = []
        self._gradient = None
        self._lanes: list[_Lane] = []
        self._pool = None

    def activate(self) -> None:
        threads = self.threads if self.threads > 0 else (1 if self.max_lanes > 1 else 0)
        graphs = ("forward", "update") if self.split else ("step",)

        def session(graph: str):
            # No memory patterns: with the stop rules a lane meets every batch size from 1 up, and ONNX Runtime
            # keeps a plan per shape (same speed without, 18 MB less peak memory on the demo line).
            path = self.manifest.graph_path(graph)
            return make_session(path, graph, ["CPUExecutionProvider"], threads, self.options.allow_fallback, memory_pattern=False)

        self._sessions = [{g: session(g) for g in graphs} for _ in range(self.max_lanes)]
        if self.split:
            _check_pair(self._sessions[0], self.manifest.root)
        if self.max_lanes > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=self.max_lanes, thread_name_prefix="edgeproj-lane")

    def deactivate(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._sessions, self._gradient, self._lanes = [], None, []

    @property
    def providers(self) -> list[str]:
        return next(iter(self._sessions[0].values())).get_providers() if self._sessions else ["CPUExecutionProvider"]

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
                **scalars,
            }
            self._lanes.append(_Lane(self._sessions[i], feed, slice(a, b)))

    def _lane_probe(self, lane: _Lane, active: np.ndarray):
        n = lane.size
        idx = np.flatnonzero(active[lane.sl] > 0)
        energy, rec = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)
        recon = np.zeros_like(lane.feed[contract.X])
        lane.pending = None
        if idx.size == 0:
            return energy, rec, recon
        sub = _rows(lane.feed, None if idx.size == n else idx)
        sub[contract.ACTIVE] = np.ones(idx.size, np.float32)
        if self.split:
            sess = lane.sessions["forward"]
            names = [o.name for o in sess.get_outputs()]
            out = dict(zip(names, sess.run(names, {k: sub[k] for k in contract.FORWARD_INPUTS})))
        else:
            out = dict(zip(contract.STEP_OUTPUTS, lane.sessions["step"].run(list(contract.STEP_OUTPUTS), sub)))
        lane.pending = (idx, sub, out)
        energy[idx], rec[idx], recon[idx] = out[contract.ENERGY], out[contract.REC_LOSS], out[contract.RECON]
        return energy, rec, recon

    def _lane_advance(self, lane: _Lane, moving: np.ndarray) -> None:
        if lane.pending is None:
            return
        idx, sub, out = lane.pending
        lane.pending = None
        go = moving[lane.sl][idx] > 0
        if not go.any():
            return
        rows = None if go.all() else np.flatnonzero(go)
        take = (lambda a: a) if rows is None else (lambda a: a[rows])  # noqa: E731
        if self.split:
            feed = _rows(sub, rows)
            feed.update({k: take(v) for k, v in out.items() if k == contract.RECON or k.startswith(contract.SAVED_PREFIX)})
            nxt = dict(zip(contract.UPDATE_OUTPUTS, lane.sessions["update"].run(list(contract.UPDATE_OUTPUTS), feed)))
        else:  # the step graph already computed the update in the probe
            nxt = {contract.NEXT[s]: take(out[contract.NEXT[s]]) for s in contract.STATE}
        target = idx if rows is None else idx[rows]
        for s in contract.STATE:
            if target.size == lane.size:
                lane.feed[s] = nxt[contract.NEXT[s]]
            else:
                lane.feed[s] = _writable(lane.feed[s])
                lane.feed[s][target] = nxt[contract.NEXT[s]]

    def _each_lane(self, fn):
        if self._pool is None or len(self._lanes) == 1:
            return [fn(lane) for lane in self._lanes]
        return list(self._pool.map(fn, self._lanes))

    def probe(self, active):
        active = np.asarray(active, np.float32)
        parts = self._each_lane(lambda lane: self._lane_probe(lane, active))
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    def advance(self, moving) -> None:
        moving = np.asarray(moving, np.float32)
        self._each_lane(lambda lane: self._lane_advance(lane, moving))

    def end_batch(self) -> None:
        for lane in self._lanes:
            lane.pending = None

    def evaluate(self):
        energy, rec, recon = self.probe(np.ones(sum(lane.size for lane in self._lanes), np.float32))
        self.end_batch()
        return energy, rec, recon

    def steps(self, k, active):
        energies, recs = [], []
        for _ in range(k):
            e, r, _ = self.probe(active)
            self.advance(active)
            energies.append(e)
            recs.append(r)
        return np.stack(energies), np.stack(recs)

    def fetch(self):
        return np.concatenate([lane.feed[contract.X] for lane in self._lanes])

    def lane_runners(self) -> list[Runner]:
        return [_SessionLane(self, sessions) for sessions in self._sessions] if self.max_lanes > 1 else []

    def gradient(self, x, x0, lam):
        # Made on first use: the gradient graph serves one-off scores, never the line (saves its memory).
        if self._gradient is None:
            fallback = self.options.allow_fallback
            path = self.manifest.graph_path("gradient")
            self._gradient = make_session(path, "gradient", ["CPUExecutionProvider"], self.threads, fallback)
        return run_gradient(self._gradient, x, x0, lam)


class _SessionLane(OrtCpuRunner):
    """One lane's single-threaded sessions of a parent OrtCpuRunner, as a runner of its own."""

    def __init__(self, parent: OrtCpuRunner, sessions: dict):
        super().__init__(parent.manifest, replace(parent.options, threads=1))
        self._parent = parent
        self.split = parent.split
        self._sessions = [sessions]

    def activate(self) -> None:  # the parent owns the sessions
        pass

    def deactivate(self) -> None:
        self._lanes = []

    def gradient(self, x, x0, lam):
        return self._parent.gradient(x, x0, lam)
