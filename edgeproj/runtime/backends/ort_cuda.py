"""ort-cuda: ONNX Runtime's CUDA provider with the projection state on the GPU (IOBinding, ping-pong).

Each step binds the previous step's outputs as inputs (`PingPongState`); the per-step energy and L_r
go to k small device buffers that are read back once per chunk. With cuda_graph, each (parity, slot)
binding is captured once as its own CUDA graph (run option gpu_graph_id) and replayed. TF32 is off by
default: its rounding grows over 100 steps. pip's CUDA/cuDNN libraries are loaded before the session
is made (`onnxruntime.preload_dlls`, see `ort_session.make_session`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeproj.errors import BackendError
from edgeproj.runtime.backends.base import Runner
from edgeproj.runtime.backends.ort_session import available_providers, make_session, ort, run_gradient
from edgeproj.runtime.backends.pingpong import PingPongState


@dataclass(frozen=True)
class OrtCudaOptions:
    """CUDA provider settings."""

    device_id: int = 0
    cuda_graph: bool = False
    use_tf32: bool = False
    allow_fallback: bool = False
    chunk: int | None = None  # steps per readback (default: the manifest's check_every)


def probe() -> str | None:
    """None when usable here, else why not."""
    try:
        prov = available_providers()
    except Exception as exc:  # noqa: BLE001
        return str(exc)
    if "CUDAExecutionProvider" not in prov:
        return (
            f"this onnxruntime build has no CUDAExecutionProvider (providers: {', '.join(prov)}); "
            "install onnxruntime-gpu: pip install 'edgeproj[gpu]' (never together with the cpu extra)"
        )
    return None


class OrtDeviceArrays:
    """`DeviceArrays` on ONNX Runtime OrtValues in CUDA memory."""

    def __init__(self, device_id: int):
        self.device_id = device_id

    def new(self, host):
        return ort().OrtValue.ortvalue_from_numpy(np.ascontiguousarray(host, np.float32), "cuda", self.device_id)

    def write(self, buf, host) -> None:
        buf.update_inplace(np.ascontiguousarray(host, np.float32))

    def read(self, buf, shape) -> np.ndarray:
        return buf.numpy().reshape(shape)

    def free(self, buf) -> None:
        pass  # OrtValues are freed with their last reference


class OrtCudaRunner(Runner):
    """ONNX Runtime CUDA provider; x0, x, m, v and step stay on the GPU."""

    name = "ort-cuda"
    fixed_batch = True

    def __init__(self, manifest, options: OrtCudaOptions | None = None):
        options = options or OrtCudaOptions()
        super().__init__(manifest, options)
        self.chunk = options.chunk or manifest.projection.stop.check_every
        self._step = self._gradient = None
        self._state: PingPongState | None = None
        self._bindings: dict = {}

    def _step_providers(self) -> list:
        opts = {"device_id": self.options.device_id, "use_tf32": int(self.options.use_tf32)}
        if self.options.cuda_graph:
            opts["enable_cuda_graph"] = 1
        return [("CUDAExecutionProvider", opts)]

    def _gradient_providers(self) -> list:
        # The gradient graph serves one-off scores: a plain CUDA session without graph capture.
        return [("CUDAExecutionProvider", {"device_id": self.options.device_id, "use_tf32": int(self.options.use_tf32)})]

    def activate(self) -> None:
        fallback = self.options.allow_fallback
        self._step = make_session(self.manifest.graph_path("step"), "step", self._step_providers(), allow_fallback=fallback)
        self._gradient = make_session(
            self.manifest.graph_path("gradient"), "gradient", self._gradient_providers(), allow_fallback=fallback
        )

    def deactivate(self) -> None:
        # Bindings and device buffers belong to the sessions: drop them together.
        self._bindings = {}
        self._state = None
        self._step = self._gradient = None

    @property
    def providers(self) -> list[str]:
        return self._step.get_providers() if self._step is not None else [p[0] for p in self._step_providers()]

    def load(self, x0, weight, settings) -> None:
        x0 = np.ascontiguousarray(x0, np.float32)
        weight = np.ascontiguousarray(np.broadcast_to(weight, x0.shape), np.float32)
        if self._state is not None and self._state.n == x0.shape[0]:
            self._state.reset(x0, weight, settings)
            return
        if self._state is not None and self.options.cuda_graph:
            raise BackendError("a CUDA-graph runner keeps one batch size: create a new runner for another size")
        self._state = PingPongState(OrtDeviceArrays(self.options.device_id), x0, weight, settings, self.chunk)
        self._bindings = {}

    def _run(self, parity: int, slot: int, frozen: bool) -> None:
        key = (parity, slot, frozen)
        if key not in self._bindings:
            io = self._step.io_binding()
            inputs, outputs = self._state.binding(parity, slot, frozen)
            for name, buf in inputs.items():
                io.bind_ortvalue_input(name, buf)
            for name, buf in outputs.items():
                io.bind_ortvalue_output(name, buf)
            self._bindings[key] = (io, len(self._bindings) + 1)
        io, graph_id = self._bindings[key]
        ro = ort().RunOptions()
        if self.options.cuda_graph:
            ro.add_run_config_entry("gpu_graph_id", str(graph_id))
        self._step.run_with_iobinding(io, ro)

    def evaluate(self):
        self._run(self._state.cur, 0, True)
        # With active = 0 the outputs equal the inputs: the other buffer set is now identical.
        return self._state.evaluation()

    def steps(self, k, active):
        if k > self.chunk:
            raise BackendError(f"{self.name} reads back every {self.chunk} steps; asked for {k}")
        self._state.set_active(active)
        for slot in range(k):
            self._run(self._state.cur, slot, False)
            self._state.flip()
        return self._state.readback(k)

    def fetch(self):
        return self._state.x()

    def gradient(self, x, x0, lam):
        return run_gradient(self._gradient, x, x0, lam)
