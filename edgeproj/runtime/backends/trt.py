"""trt: native TensorRT runner (execute_async_v3 at fixed addresses, ping-pong state, optional CUDA graphs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeproj import contract
from edgeproj.errors import BackendError
from edgeproj.runtime.backends.base import Runner
from edgeproj.runtime.backends.cuda_mem import CudaDeviceArrays, DeviceBuffer, check, cudart
from edgeproj.runtime.backends.pingpong import PingPongState
from edgeproj.runtime.backends.trt_engine import (
    build_engine,
    default_cache_dir,
    fp16_unavailable_reason,
    tensorrt,
    unavailable_reason,
)


@dataclass(frozen=True)
class TrtOptions:
    """Native TensorRT settings."""

    fp16: bool = False
    cuda_graph: bool = False
    max_batch: int = 16
    cache_dir: Path | None = None  # default: $XDG_CACHE_HOME/edgeproj/trt
    chunk: int | None = None  # steps per readback (default: the manifest's check_every)


def probe() -> str | None:
    """None when usable here, else why not."""
    return unavailable_reason()


def fp16_probe() -> str | None:
    """None when this backend can run FP16 here, else why not."""
    return unavailable_reason() or fp16_unavailable_reason()


def trt_available() -> bool:
    """TensorRT, cuda-python and a CUDA device are all present (the tests' `tensorrt` marker)."""
    return probe() is None


def shared_memory_context(trt, engine, block):
    """An execution context whose activation memory is `block(nbytes)` (a DeviceBuffer), shared with the
    runner's other contexts, where this TensorRT lets the user manage it; else one with its own memory.

    TensorRT 10.x: create_execution_context(ExecutionContextAllocationStrategy.USER_MANAGED), the size from
    device_memory_size_v2 (10.1+) or device_memory_size, bound with set_device_memory (10.1+) or the
    device_memory attribute. Older releases: create_execution_context_without_device_memory.
    """
    strategy = getattr(getattr(trt, "ExecutionContextAllocationStrategy", None), "USER_MANAGED", None)
    if strategy is not None:
        ctx = engine.create_execution_context(strategy)
    elif hasattr(engine, "create_execution_context_without_device_memory"):
        ctx = engine.create_execution_context_without_device_memory()
    else:
        return engine.create_execution_context()
    if ctx is None:
        raise BackendError("TensorRT could not create an execution context (out of device memory?)")
    size = getattr(engine, "device_memory_size_v2", None)
    size = int(engine.device_memory_size if size is None else size)
    buf = block(size)
    if hasattr(ctx, "set_device_memory"):
        ctx.set_device_memory(buf.ptr, buf.nbytes)
    else:
        ctx.device_memory = buf.ptr
    return ctx


class TrtRunner(Runner):
    """Native TensorRT runner; CUDA events time the steps on the device (`device_ms`)."""

    name = "trt"
    fixed_batch = True

    def __init__(self, manifest, options: TrtOptions | None = None):
        options = options or TrtOptions()
        super().__init__(manifest, options)
        self.cache_dir = Path(options.cache_dir or default_cache_dir())
        self.chunk = options.chunk or manifest.projection.stop.check_every
        self._state: PingPongState | None = None
        self._stream = None
        self._ort_grad = None
        self._scratch: DeviceBuffer | None = None
        self._contexts: dict = {}
        self._graphs: dict = {}

    # -- lifecycle --------------------------------------------------------------------------
    def activate(self) -> None:
        trt, rt = tensorrt(), cudart()
        if self.options.fp16 and (reason := fp16_unavailable_reason()):
            raise BackendError(reason)
        c, s = self.manifest.channels, self.manifest.size
        self._shapes = {k: (lambda n: (n, c, s, s)) for k in contract.IMAGE_INPUTS}
        self._shapes |= {k: (lambda n: (n,)) for k in contract.VECTOR_INPUTS}
        o = self.options
        data = build_engine(
            self.manifest.graph_path("step"),
            self.manifest.graphs["step"].sha256,
            self.cache_dir,
            o.max_batch,
            min(8, o.max_batch),
            o.fp16,
            self._shapes,
        )
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise BackendError("TensorRT could not deserialize the cached engine; delete the cache folder and retry")
        self._stream = check(rt.cudaStreamCreate())
        self._events = [check(rt.cudaEventCreate()) for _ in range(2)]
        self.device_ms = 0.0
        self._contexts: dict = {}
        self._graphs: dict = {}

    def _scratch_block(self, nbytes: int) -> DeviceBuffer:
        """The one activation block every execution context of this runner uses (grown when needed).

        With CUDA graphs there is one context per captured graph (12 at chunk 5); each would otherwise
        hold its own activation memory. They all run in turn on one stream, so one block serves them all.
        """
        if self._scratch is None or self._scratch.nbytes < nbytes:
            if self._contexts:
                raise BackendError("TensorRT asked for more activation memory after contexts were bound; recreate the runner")
            if self._scratch is not None:
                self._scratch.free()
            self._scratch = DeviceBuffer(nbytes)
        return self._scratch

    @property
    def device_memory_bytes(self) -> int:
        """Device memory this runner holds itself: the shared activation block and the batch state."""
        state = 0
        if self._state is not None:
            state = sum(getattr(b, "nbytes", 0) for b in self._state.buffers())
        return (self._scratch.nbytes if self._scratch is not None else 0) + state

    def _drop_batch(self) -> None:
        rt = cudart()
        for ge in self._graphs.values():
            rt.cudaGraphExecDestroy(ge)
        self._graphs, self._contexts = {}, {}
        if self._state is not None:
            self._state.free()
            self._state = None

    def deactivate(self) -> None:
        self._drop_batch()
        if self._scratch is not None:
            self._scratch.free()
            self._scratch = None
        if self._stream is not None:
            rt = cudart()
            for ev in self._events:
                rt.cudaEventDestroy(ev)
            rt.cudaStreamDestroy(self._stream)
            self._stream = None
        self._ort_grad = None
        self._engine = None

    # -- batch state --------------------------------------------------------------------------
    def load(self, x0, weight, settings) -> None:
        x0 = np.ascontiguousarray(x0, np.float32)
        weight = np.ascontiguousarray(np.broadcast_to(weight, x0.shape), np.float32)
        n = x0.shape[0]
        if n > self.options.max_batch:
            raise BackendError(
                f"batch {n} exceeds the engine's profile maximum {self.options.max_batch}; create the runner with "
                f"TrtOptions(max_batch={n}) or more (a Projector sizes the profile to its --batch)"
            )
        if self._state is not None and self._state.n == n:
            self._state.reset(x0, weight, settings)
            return
        self._drop_batch()
        self._state = PingPongState(CudaDeviceArrays(self._stream), x0, weight, settings, self.chunk)

    def _context(self, parity: int, slot: int, frozen: bool):
        """An execution context with all tensor addresses set for one (parity, slot) binding."""
        key = (parity, slot, frozen)
        share = key if self.options.cuda_graph else (0, 0, False)  # CUDA graphs: one context per captured graph
        ctx = self._contexts.get(share)
        if ctx is None:
            ctx = shared_memory_context(tensorrt(), self._engine, self._scratch_block)
            for name, per_n in self._shapes.items():
                ctx.set_input_shape(name, per_n(self._state.n))
            self._contexts[share] = ctx
        inputs, outputs = self._state.binding(parity, slot, frozen)
        for name, buf in (inputs | outputs).items():
            ctx.set_tensor_address(name, buf.ptr)
        return ctx

    def _execute(self, parity: int, slot: int, frozen: bool) -> None:
        rt = cudart()
        key = (parity, slot, frozen)
        if self.options.cuda_graph and key in self._graphs:
            check(rt.cudaGraphLaunch(self._graphs[key], self._stream))
            return
        ctx = self._context(parity, slot, frozen)
        if not ctx.execute_async_v3(int(self._stream)):
            raise BackendError("TensorRT execute_async_v3 failed")
        if self.options.cuda_graph and not frozen:
            # Capture after one normal run (TensorRT allocates lazily on the first one). Stream capture
            # records the launches without executing them, so the step run above is not repeated.
            check(rt.cudaStreamSynchronize(self._stream))
            check(rt.cudaStreamBeginCapture(self._stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
            ctx.execute_async_v3(int(self._stream))
            graph = check(rt.cudaStreamEndCapture(self._stream))
            self._graphs[key] = check(rt.cudaGraphInstantiate(graph, 0))
            rt.cudaGraphDestroy(graph)

    def evaluate(self):
        self._execute(self._state.cur, 0, True)
        return self._state.evaluation()

    def steps(self, k, active):
        if k > self.chunk:
            raise BackendError(f"trt reads back every {self.chunk} steps; asked for {k}")
        rt = cudart()
        self._state.set_active(active)
        check(rt.cudaEventRecord(self._events[0], self._stream))
        for slot in range(k):
            self._execute(self._state.cur, slot, False)
            self._state.flip()
        check(rt.cudaEventRecord(self._events[1], self._stream))
        check(rt.cudaEventSynchronize(self._events[1]))
        self.device_ms += check(rt.cudaEventElapsedTime(self._events[0], self._events[1]))
        return self._state.readback(k)

    def fetch(self):
        return self._state.x()

    def gradient(self, x, x0, lam):
        # One-off scores (evaluation baselines) do not need an engine of their own: ONNX Runtime runs them.
        from edgeproj.runtime.backends.ort_session import available_providers, make_session, run_gradient

        if self._ort_grad is None:
            prov = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available_providers() else ["CPUExecutionProvider"]
            self._ort_grad = make_session(self.manifest.graph_path("gradient"), "gradient", prov)
        return run_gradient(self._ort_grad, x, x0, lam)
