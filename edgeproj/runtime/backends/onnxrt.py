"""ONNX Runtime backends: ort-cpu, ort-cuda (state on the GPU via IOBinding, optional CUDA graph), ort-trt.

A requested provider that ONNX Runtime did not activate is an error listing the available providers,
because ONNX Runtime otherwise falls back to the CPU with only a log line.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeproj.errors import BackendError, require
from edgeproj.runtime.backends.base import Runner, StepParams

STATE = ("x", "m", "v", "step")
PER_SAMPLE = ("x", "x0", "m", "v", "step", "weight", "active")
NEXT = {"x": "x_next", "m": "m_next", "v": "v_next", "step": "step_next"}


def _ort():
    return require("onnxruntime", "cpu")


def available_providers() -> list[str]:
    """Execution providers this ONNX Runtime build offers."""
    return list(_ort().get_available_providers())


def make_session(path: Path, providers: list, threads: int = 0, allow_fallback: bool = False, log_level: int = 3):
    """An InferenceSession on `providers`; raises BackendError when the first one is not active."""
    ort = _ort()
    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if wanted not in ort.get_available_providers() and not allow_fallback:
        raise BackendError(
            f"{wanted} is not available in this onnxruntime build (available: {', '.join(ort.get_available_providers())}); "
            "install onnxruntime-gpu for CUDA/TensorRT, pick another --backend, or allow fallback"
        )
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.log_severity_level = log_level
    if not allow_fallback and wanted != "CPUExecutionProvider":
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    try:
        sess = ort.InferenceSession(str(path), so, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/RuntimeException types
        raise BackendError(f"onnxruntime could not create a {wanted} session for {path.name}: {str(exc).splitlines()[0]}") from None
    active = sess.get_providers()
    if active[0] != wanted and not allow_fallback:
        raise BackendError(f"{wanted} was requested but onnxruntime activated {active}; check the CUDA/TensorRT install")
    return sess


def run_gradient(sess, x: np.ndarray, x0: np.ndarray, lam: float) -> dict[str, np.ndarray]:
    """One evaluation of the gradient graph on a session: energy, rec_loss, grad, recon."""
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"x": x, "x0": x0, "lam": np.array([lam], np.float32)})))


class OrtCpuRunner(Runner):
    """ONNX Runtime on the CPU; the state lives in host arrays.

    threads > 0: one session with that many intra-op threads. threads = 0 (default): one
    single-threaded session per core ("lanes"), each projecting its share of the batch in its own
    Python thread (ONNX Runtime releases the GIL). Samples are independent, so lanes never wait on each
    other within a step; on two cores this beats one two-threaded session (edge-facts.md: batch 1
    is faster on one thread, and small convolutions parallelize poorly inside one image).
    """

    name = "ort-cpu"

    def __init__(self, manifest, threads: int = 0, allow_fallback: bool = False, lanes: int | None = None):
        super().__init__(manifest)
        self.threads = threads
        self.allow_fallback = allow_fallback
        self.max_lanes = 1 if threads > 0 else max(1, lanes or os.cpu_count() or 1)
        self._sess: dict = {}
        self._lanes: list = []
        self._pool = None

    def _providers(self) -> list:
        return ["CPUExecutionProvider"]

    def activate(self) -> None:
        threads = self.threads if self.threads > 0 else (1 if self.max_lanes > 1 else 0)
        self._steps = [make_session(self.manifest.graph_path("step"), self._providers(), threads, self.allow_fallback)
                       for _ in range(self.max_lanes)]
        self._sess["step"] = self._steps[0]
        self._sess["gradient"] = make_session(self.manifest.graph_path("gradient"), self._providers(), self.threads, self.allow_fallback)
        if self.max_lanes > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=self.max_lanes, thread_name_prefix="edgeproj-lane")

    def deactivate(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._sess.clear()
        self._steps = []
        self._lanes = []

    @property
    def providers(self) -> list[str]:
        return self._sess["step"].get_providers() if self._sess else self._providers()

    def load(self, x0, weight, params: StepParams) -> None:
        x0 = np.ascontiguousarray(x0, np.float32)
        n = x0.shape[0]
        weight = np.ascontiguousarray(np.broadcast_to(weight, x0.shape), np.float32)
        self._out_names = [o.name for o in self._sess["step"].get_outputs()]
        bounds = np.linspace(0, n, min(n, self.max_lanes) + 1).astype(int)
        self._lanes = []
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            xs = np.ascontiguousarray(x0[a:b])
            feed = {"x": xs.copy(), "x0": xs, "m": np.zeros_like(xs), "v": np.zeros_like(xs),
                    "step": np.zeros(b - a, np.float32), "weight": np.ascontiguousarray(weight[a:b]),
                    "active": np.ones(b - a, np.float32), **params.feed()}
            self._lanes.append((self._steps[i], feed, slice(a, b)))

    def _lane_steps(self, lane, k: int, active: np.ndarray | None):
        sess, feed, sl = lane
        n = feed["x"].shape[0]
        if active is None:  # evaluate: every sample, nothing moves (feed["active"] is all zero)
            out = dict(zip(self._out_names, sess.run(None, feed)))
            return out["energy"][None], out["rec_loss"][None], out["recon"]
        # Finished samples cost nothing on the CPU: run the step graph on the active ones only (N is dynamic).
        idx = np.flatnonzero(active[sl] > 0)
        es = np.full((k, n), np.nan, np.float32)
        rs = np.full((k, n), np.nan, np.float32)
        if idx.size == 0:
            return es, rs, None
        full = idx.size == n
        sub = feed if full else {key: (val[idx] if key in PER_SAMPLE else val) for key, val in feed.items()}
        sub["active"] = np.ones(idx.size, np.float32)
        for j in range(k):
            out = dict(zip(self._out_names, sess.run(None, sub)))
            for s in STATE:
                sub[s] = out[NEXT[s]]
            es[j, idx] = out["energy"]
            rs[j, idx] = out["rec_loss"]
        if not full:
            for s in STATE:
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
        saved = [lane[1]["active"] for lane in self._lanes]
        for lane in self._lanes:
            lane[1]["active"] = np.zeros_like(lane[1]["active"])
        e, r, recon = self._map(1, None)
        for lane, a in zip(self._lanes, saved):
            lane[1]["active"] = a
        return e[0], r[0], recon

    def steps(self, k, active):
        e, r, _ = self._map(k, np.asarray(active, np.float32))
        return e, r

    def fetch(self):
        return np.concatenate([lane[1]["x"] for lane in self._lanes])

    def gradient(self, x, x0, lam):
        return run_gradient(self._sess["gradient"], x, x0, lam)


class OrtCudaRunner(OrtCpuRunner):
    """ONNX Runtime CUDA provider; x0, x, m, v and step stay on the GPU (IOBinding, ping-pong buffers).

    Each step binds the previous step's outputs as inputs; the per-step energy and L_r go to k small
    device buffers that are read back once per chunk. With cuda_graph=True, each (parity, slot)
    binding is captured once as its own CUDA graph (run option gpu_graph_id) and replayed.
    TF32 is off by default: its rounding grows over 100 steps.
    """

    name = "ort-cuda"

    def __init__(self, manifest, device_id: int = 0, cuda_graph: bool = False, use_tf32: bool = False, allow_fallback: bool = False, chunk: int | None = None):
        super().__init__(manifest, allow_fallback=allow_fallback)
        self.device_id = device_id
        self.cuda_graph = cuda_graph
        self.use_tf32 = use_tf32
        self.chunk = chunk or manifest.projection.stop.check_every

    def _providers(self) -> list:
        opts = {"device_id": self.device_id, "use_tf32": int(self.use_tf32)}
        if self.cuda_graph:
            opts["enable_cuda_graph"] = 1
        return [("CUDAExecutionProvider", opts)]

    def activate(self) -> None:
        self._sess["step"] = make_session(self.manifest.graph_path("step"), self._providers(), allow_fallback=self.allow_fallback)
        # The gradient graph serves one-off scores: a plain CUDA session without graph capture.
        plain = [("CUDAExecutionProvider", {"device_id": self.device_id, "use_tf32": int(self.use_tf32)})]
        self._sess["gradient"] = make_session(self.manifest.graph_path("gradient"), plain, allow_fallback=self.allow_fallback)

    def deactivate(self) -> None:
        # Bindings and device buffers belong to the sessions: drop them together.
        self._bindings = {}
        self._bufs = self._const = self._energy = self._rec = self._recon = None
        self._n = None
        super().deactivate()

    def _dev(self, arr: np.ndarray):
        return _ort().OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), "cuda", self.device_id)

    def load(self, x0, weight, params: StepParams) -> None:
        x0 = np.ascontiguousarray(x0, np.float32)
        n = x0.shape[0]
        zeros = np.zeros_like(x0)
        steps0 = np.zeros(n, np.float32)
        const = {"x0": x0, "weight": np.ascontiguousarray(np.broadcast_to(weight, x0.shape), np.float32), **params.feed()}
        if getattr(self, "_n", None) != n:
            if getattr(self, "_n", None) is not None and self.cuda_graph:
                raise BackendError("a CUDA-graph runner keeps one batch size: create a new runner for another size")
            # Fixed device buffers: every binding (and every captured CUDA graph) points at these.
            self._const = {k: self._dev(v) for k, v in const.items()}
            self._active = self._dev(np.ones(n, np.float32))
            self._zero_active = self._dev(steps0)
            self._bufs = [{s: self._dev(x0 if s == "x" else (steps0 if s == "step" else zeros)) for s in STATE} for _ in range(2)]
            self._energy = [self._dev(steps0) for _ in range(self.chunk)]
            self._rec = [self._dev(steps0) for _ in range(self.chunk)]
            self._recon = self._dev(zeros)
            self._bindings = {}
            self._n = n
        else:
            for k, v in const.items():
                self._const[k].update_inplace(v)
            for s in STATE:
                self._bufs[0][s].update_inplace(x0 if s == "x" else (steps0 if s == "step" else zeros))
        self._cur = 0

    def _binding(self, parity: int, slot: int, frozen: bool):
        key = (parity, slot, frozen)
        if key not in self._bindings:
            io = self._sess["step"].io_binding()
            src, dst = self._bufs[parity], self._bufs[1 - parity]
            for s in STATE:
                io.bind_ortvalue_input(s, src[s])
                io.bind_ortvalue_output(NEXT[s], dst[s])
            for k, v in self._const.items():
                io.bind_ortvalue_input(k, v)
            io.bind_ortvalue_input("active", self._zero_active if frozen else self._active)
            io.bind_ortvalue_output("energy", self._energy[slot])
            io.bind_ortvalue_output("rec_loss", self._rec[slot])
            io.bind_ortvalue_output("recon", self._recon)
            self._bindings[key] = (io, len(self._bindings) + 1)
        return self._bindings[key]

    def _run_binding(self, io, graph_id: int) -> None:
        ro = _ort().RunOptions()
        if self.cuda_graph:
            ro.add_run_config_entry("gpu_graph_id", str(graph_id))
        self._sess["step"].run_with_iobinding(io, ro)

    def evaluate(self):
        io, gid = self._binding(self._cur, 0, True)
        self._run_binding(io, gid)
        # With active = 0 the outputs equal the inputs: the other buffer set is now identical.
        return self._energy[0].numpy(), self._rec[0].numpy(), self._recon.numpy()

    def steps(self, k, active):
        if k > self.chunk:
            raise BackendError(f"ort-cuda reads back every {self.chunk} steps; asked for {k}")
        self._active.update_inplace(np.asarray(active, np.float32))
        for slot in range(k):
            io, gid = self._binding(self._cur, slot, False)
            self._run_binding(io, gid)
            self._cur = 1 - self._cur
        return np.stack([self._energy[i].numpy() for i in range(k)]), np.stack([self._rec[i].numpy() for i in range(k)])

    def fetch(self):
        return self._bufs[self._cur]["x"].numpy()


class OrtTensorRTRunner(OrtCudaRunner):
    """ONNX Runtime's TensorRT provider, with the engine and timing caches on disk."""

    name = "ort-trt"

    def __init__(self, manifest, device_id: int = 0, fp16: bool = False, cache_dir: Path | None = None, allow_fallback: bool = False, max_batch: int = 16):
        super().__init__(manifest, device_id=device_id, allow_fallback=allow_fallback)
        self.fp16 = fp16
        # ONNX Runtime keys cached engines by graph structure and names, not weights: every export of a
        # variant looks the same to it. One folder per graph checksum keeps bundles from sharing engines.
        base = Path(cache_dir or Path.home() / ".cache" / "edgeproj" / "ort-trt")
        self.cache_dir = base / manifest.graphs["step"].sha256[:16]
        self.max_batch = max_batch

    def _providers(self) -> list:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        c, s = self.manifest.channels, self.manifest.size
        names = ("x", "x0", "m", "v", "weight")

        def shapes(n):
            img = ",".join(f"{k}:{n}x{c}x{s}x{s}" for k in names)
            return img + f",step:{n},active:{n}"

        opts = {
            "device_id": self.device_id,
            "trt_fp16_enable": bool(self.fp16),
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(self.cache_dir),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(self.cache_dir),
            "trt_profile_min_shapes": shapes(1),
            "trt_profile_opt_shapes": shapes(min(8, self.max_batch)),
            "trt_profile_max_shapes": shapes(self.max_batch),
        }
        return [("TensorrtExecutionProvider", opts), ("CUDAExecutionProvider", {"device_id": self.device_id, "use_tf32": 0})]

    def activate(self) -> None:
        # TF32 rounding grows over 100 steps; the TensorRT provider reads this at engine build.
        os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
        self._sess["step"] = make_session(self.manifest.graph_path("step"), self._providers(), allow_fallback=self.allow_fallback)
        plain = [("CUDAExecutionProvider", {"device_id": self.device_id, "use_tf32": 0})]
        self._sess["gradient"] = make_session(self.manifest.graph_path("gradient"), plain, allow_fallback=self.allow_fallback)
