"""Native TensorRT backend: engine built from the bundle's step graph, state in device memory.

Works on TensorRT 10.3 (JetPack 6) and 11.x: features are detected, not versions compared (11 removed the
FP16/INT8 builder flags; its networks are strongly typed, so reduced precision must come from the graph).
Device memory, streams, events and CUDA graphs come from cuda-python (`cuda.bindings.runtime`), not
pycuda or torch. Engines are cached on the device, keyed by graph sha256, TensorRT version, GPU name,
precision and shape profile; they are never shipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edgeproj.errors import BackendError, DependencyError
from edgeproj.runtime.backends.base import Runner, StepParams

STATE = ("x", "m", "v", "step")
NEXT = {"x": "x_next", "m": "m_next", "v": "v_next", "step": "step_next"}


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python (removed in 13.x)
        except ImportError:
            raise DependencyError("cuda-python is not installed; install it with: pip install 'edgeproj[tensorrt]'") from None
    return cudart


def _trt():
    try:
        import tensorrt as trt
    except ImportError:
        raise DependencyError("TensorRT's Python package is not installed (on a Jetson use the system package "
                              "through a venv with --system-site-packages; elsewhere pip install 'edgeproj[tensorrt]')") from None
    return trt


def check(result):
    """Unwrap a cuda-python (err, *values) tuple, raising BackendError on a CUDA error."""
    cudart = _cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != int(cudart.cudaError_t.cudaSuccess):
        name = cudart.cudaGetErrorName(err)[1]
        raise BackendError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def trt_available() -> bool:
    """TensorRT and cuda-python import and a CUDA device is present."""
    try:
        _trt()
        cudart = _cudart()
        n = check(cudart.cudaGetDeviceCount())
        return n > 0
    except Exception:
        return False


def gpu_name(device: int = 0) -> str:
    props = check(_cudart().cudaGetDeviceProperties(device))
    name = props.name
    return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).rstrip("\x00")


def has_fp16_flag() -> bool:
    """TensorRT 10.x has BuilderFlag.FP16; TensorRT 11 is strongly typed and has none."""
    return hasattr(_trt().BuilderFlag, "FP16")


class DeviceBuffer:
    """A cudaMalloc'd block (256-byte aligned by CUDA) with host copies on a stream."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.ptr = int(check(_cudart().cudaMalloc(max(nbytes, 4))))

    def upload(self, arr: np.ndarray, stream) -> None:
        a = np.ascontiguousarray(arr, np.float32)
        assert a.nbytes <= self.nbytes
        cudart = _cudart()
        check(cudart.cudaMemcpyAsync(self.ptr, a.ctypes.data, a.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))
        check(cudart.cudaStreamSynchronize(stream))  # `a` may be a temporary: finish before it goes

    def download(self, shape, stream) -> np.ndarray:
        out = np.empty(shape, np.float32)
        cudart = _cudart()
        check(cudart.cudaMemcpyAsync(out.ctypes.data, self.ptr, out.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))
        check(cudart.cudaStreamSynchronize(stream))
        return out

    def free(self) -> None:
        if self.ptr:
            _cudart().cudaFree(self.ptr)
            self.ptr = 0


def build_engine(onnx_path: Path, sha256: str, cache_dir: Path, max_batch: int, opt_batch: int, fp16: bool, shapes: dict) -> bytes:
    """Serialized engine for the step graph, from the cache or freshly built (and cached, with a timing cache)."""
    trt = _trt()
    gpu = gpu_name()
    key = {"graph": sha256, "trt": trt.__version__, "gpu": gpu, "precision": "fp16" if fp16 else "fp32", "tf32": False,
           "profile": [1, opt_batch, max_batch]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    cache_dir.mkdir(parents=True, exist_ok=True)
    engine_path = cache_dir / f"step-{digest}.engine"
    if engine_path.is_file():
        return engine_path.read_bytes()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt, "NetworkDefinitionCreationFlag") and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # needed on 8.x, a no-op later
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse {onnx_path.name}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 rounding grows over 100 steps: FP32 means FP32
    if fp16:
        if not has_fp16_flag():
            raise BackendError("this TensorRT has no FP16 builder flag (TensorRT 11 is strongly typed): "
                               "FP16 needs an FP16 graph, which edgeproj does not export yet; use FP32")
        config.set_flag(trt.BuilderFlag.FP16)
        pin_fp32(network, config)
    timing_path = cache_dir / "timing.cache"
    cache = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)
    profile = builder.create_optimization_profile()
    for name, per_n in shapes.items():
        profile.set_shape(name, per_n(1), per_n(opt_batch), per_n(max_batch))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError("TensorRT failed to build the engine; rerun with a smaller --batch or check the log above")
    _write_atomic(timing_path, bytes(cache.serialize()))
    data = bytes(serialized)
    _write_atomic(engine_path, data)
    _write_atomic(cache_dir / f"step-{digest}.json", json.dumps(key, indent=2).encode())
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def pin_fp32(network, config) -> int:
    """Keep the optimizer tail (layers named under the export's Adam scope) in FP32 inside an FP16
    engine: eps = 1e-8 is zero in FP16 and (1 - beta2) g^2 underflows. Returns the layers pinned."""
    from edgeproj.runtime.manifest import ADAM_SCOPE

    trt = _trt()
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if ADAM_SCOPE in layer.name:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned += 1
    if hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS"):
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    return pinned


class TrtRunner(Runner):
    """Native TensorRT runner: execute_async_v3 with fixed addresses, ping-pong state, optional CUDA graphs."""

    name = "trt"

    def __init__(self, manifest, fp16: bool = False, cuda_graph: bool = False, max_batch: int = 16,
                 cache_dir: Path | None = None, chunk: int | None = None):
        super().__init__(manifest)
        self.fp16 = fp16
        self.cuda_graph = cuda_graph
        self.max_batch = max_batch
        self.cache_dir = Path(cache_dir or Path.home() / ".cache" / "edgeproj" / "trt")
        self.chunk = chunk or manifest.projection.stop.check_every
        self._n = None
        self._ort_grad = None

    # -- lifecycle --------------------------------------------------------------------------
    def activate(self) -> None:
        trt = _trt()
        cudart = _cudart()
        c, s = self.manifest.channels, self.manifest.size
        img = lambda n: (n, c, s, s)  # noqa: E731
        vec = lambda n: (n,)  # noqa: E731
        shapes = {k: img for k in ("x", "x0", "m", "v", "weight")} | {"step": vec, "active": vec}
        g = self.manifest.graphs["step"]
        data = build_engine(self.manifest.graph_path("step"), g.sha256, self.cache_dir, self.max_batch,
                            min(8, self.max_batch), self.fp16, shapes)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise BackendError("TensorRT could not deserialize the cached engine; delete the cache folder and retry")
        self._stream = check(cudart.cudaStreamCreate())
        # Device time of the steps (CUDA events), beside the host wall time, for benchmarks.
        self._events = [check(cudart.cudaEventCreate()) for _ in range(2)]
        self.device_ms = 0.0
        self._contexts: dict = {}
        self._graphs: dict = {}
        self._shapes = shapes

    def deactivate(self) -> None:
        cudart = _cudart()
        for ge in self._graphs.values():
            cudart.cudaGraphExecDestroy(ge)
        self._graphs = {}
        self._contexts = {}
        for buf in self._all_buffers():
            buf.free()
        if getattr(self, "_stream", None) is not None:
            for ev in self._events:
                cudart.cudaEventDestroy(ev)
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self._ort_grad = None
        self._engine = None
        self._n = None

    def _all_buffers(self):
        if self._n is None:
            return []
        bufs = [b for pair in self._state for b in pair.values()] + list(self._const.values())
        return bufs + [self._active, self._zero_active, self._recon] + self._energy + self._rec

    # -- batch state --------------------------------------------------------------------------
    def load(self, x0, weight, params: StepParams) -> None:
        x0 = np.ascontiguousarray(x0, np.float32)
        n = x0.shape[0]
        if n > self.max_batch:
            raise BackendError(f"batch {n} exceeds the engine's profile maximum {self.max_batch}; pass a larger max_batch")
        if self._n != n:
            for buf in self._all_buffers():
                buf.free()
            for ge in self._graphs.values():
                _cudart().cudaGraphExecDestroy(ge)
            self._graphs, self._contexts = {}, {}
            img_bytes, vec_bytes = x0.nbytes, n * 4
            self._state = [{k: DeviceBuffer(vec_bytes if k == "step" else img_bytes) for k in STATE} for _ in range(2)]
            self._const = {k: DeviceBuffer(img_bytes) for k in ("x0", "weight")} | {k: DeviceBuffer(4) for k in ("tuned", "tuned_on_step", "alpha", "lam")}
            self._active, self._zero_active = DeviceBuffer(vec_bytes), DeviceBuffer(vec_bytes)
            self._energy = [DeviceBuffer(vec_bytes) for _ in range(self.chunk)]
            self._rec = [DeviceBuffer(vec_bytes) for _ in range(self.chunk)]
            self._recon = DeviceBuffer(img_bytes)
            self._n = n
        st = self._stream
        self._const["x0"].upload(x0, st)
        self._const["weight"].upload(np.broadcast_to(weight, x0.shape), st)
        for k, v in params.feed().items():
            self._const[k].upload(v, st)
        self._state[0]["x"].upload(x0, st)
        for k in ("m", "v"):
            self._state[0][k].upload(np.zeros_like(x0), st)
        self._state[0]["step"].upload(np.zeros(n, np.float32), st)
        self._active.upload(np.ones(n, np.float32), st)
        self._zero_active.upload(np.zeros(n, np.float32), st)
        self._cur = 0

    def _context(self, parity: int, slot: int, frozen: bool):
        """An execution context with all tensor addresses set for one (parity, slot) binding."""
        key = (parity, slot, frozen)
        share = (0, 0, False) if not self.cuda_graph else key  # CUDA graphs: one context per captured graph
        ctx = self._contexts.get(share)
        if ctx is None:
            ctx = self._engine.create_execution_context()
            for name, per_n in self._shapes.items():
                ctx.set_input_shape(name, per_n(self._n))
            self._contexts[share] = ctx
        src, dst = self._state[parity], self._state[1 - parity]
        addrs = {k: src[k].ptr for k in STATE} | {NEXT[k]: dst[k].ptr for k in STATE}
        addrs |= {k: b.ptr for k, b in self._const.items()}
        addrs |= {"active": (self._zero_active if frozen else self._active).ptr,
                  "energy": self._energy[slot].ptr, "rec_loss": self._rec[slot].ptr, "recon": self._recon.ptr}
        for name, ptr in addrs.items():
            ctx.set_tensor_address(name, ptr)
        return ctx

    def _execute(self, parity: int, slot: int, frozen: bool) -> None:
        cudart = _cudart()
        key = (parity, slot, frozen)
        if self.cuda_graph and key in self._graphs:
            check(cudart.cudaGraphLaunch(self._graphs[key], self._stream))
            return
        ctx = self._context(parity, slot, frozen)
        if not ctx.execute_async_v3(int(self._stream)):
            raise BackendError("TensorRT execute_async_v3 failed")
        if self.cuda_graph and not frozen:
            # Capture after one normal run (TensorRT allocates lazily on the first one). Stream capture
            # records the launches without executing them, so the step run above is not repeated.
            check(cudart.cudaStreamSynchronize(self._stream))
            check(cudart.cudaStreamBeginCapture(self._stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
            ctx.execute_async_v3(int(self._stream))
            graph = check(cudart.cudaStreamEndCapture(self._stream))
            self._graphs[key] = check(cudart.cudaGraphInstantiate(graph, 0))
            cudart.cudaGraphDestroy(graph)

    def evaluate(self):
        self._execute(self._cur, 0, True)
        st, n = self._stream, self._n
        shape = (n, self.manifest.channels, self.manifest.size, self.manifest.size)
        return self._energy[0].download((n,), st), self._rec[0].download((n,), st), self._recon.download(shape, st)

    def steps(self, k, active):
        if k > self.chunk:
            raise BackendError(f"trt reads back every {self.chunk} steps; asked for {k}")
        cudart = _cudart()
        self._active.upload(np.asarray(active, np.float32), self._stream)
        check(cudart.cudaEventRecord(self._events[0], self._stream))
        for slot in range(k):
            self._execute(self._cur, slot, False)
            self._cur = 1 - self._cur
        check(cudart.cudaEventRecord(self._events[1], self._stream))
        check(cudart.cudaEventSynchronize(self._events[1]))
        self.device_ms += check(cudart.cudaEventElapsedTime(self._events[0], self._events[1]))
        n = self._n
        return (np.stack([self._energy[i].download((n,), self._stream) for i in range(k)]),
                np.stack([self._rec[i].download((n,), self._stream) for i in range(k)]))

    def fetch(self):
        shape = (self._n, self.manifest.channels, self.manifest.size, self.manifest.size)
        return self._state[self._cur]["x"].download(shape, self._stream)

    def gradient(self, x, x0, lam):
        # One-off scores (evaluation baselines) do not need an engine of their own: ONNX Runtime runs them.
        if self._ort_grad is None:
            from edgeproj.runtime.backends.onnxrt import available_providers, make_session

            prov = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available_providers() else ["CPUExecutionProvider"]
            self._ort_grad = make_session(self.manifest.graph_path("gradient"), prov)
        from edgeproj.runtime.backends.onnxrt import run_gradient

        return run_gradient(self._ort_grad, x, x0, lam)
