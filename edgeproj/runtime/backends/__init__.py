"""Backends by name: options dataclass, availability probe and factory, one module each.

A backend module is imported only when chosen or probed, and imports its heavy library (onnxruntime,
tensorrt, cuda-python) only when a runner is activated, so a CPU box never touches TensorRT. A new
backend is a new module and one line here.

Loading a backend module (to probe it or create a runner) sets NVIDIA_TF32_OVERRIDE=0 (unless the user
set it) before its CUDA libraries load and read it: the runtime's parity with the CPU needs FP32, and
cached engines are keyed on the value. Importing this package does not, so `edgeproj train` on a GPU
keeps PyTorch's TF32 defaults.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass

from edgeproj.errors import BackendError, ConfigError
from edgeproj.runtime.backends.nvlibs import init_process_env


@dataclass(frozen=True)
class Backend:
    """One registry entry: where the backend lives and what it is."""

    name: str
    module: str
    runner: str
    options: str
    summary: str

    def load(self):
        # A backend module may import onnxruntime, TensorRT or cuda-python (probes included): TF32 goes off
        # first, whichever verb gets here first (bench probes before it creates a runner).
        init_process_env()
        return importlib.import_module(f"edgeproj.runtime.backends.{self.module}")

    def options_type(self) -> type:
        return getattr(self.load(), self.options)

    def unavailable_reason(self) -> str | None:
        """None when usable on this machine, else the reason (cheap: nothing is built)."""
        try:
            return self.load().probe()
        except Exception as exc:  # noqa: BLE001 - a probe must never take the caller down
            return f"{type(exc).__name__}: {exc}"

    def fp16_unavailable_reason(self) -> str | None:
        """None when this backend can run TensorRT FP16 here, else why not."""
        try:
            fp16_probe = getattr(self.load(), "fp16_probe", None)
            return fp16_probe() if fp16_probe else f"{self.name} runs FP32 only"
        except Exception as exc:  # noqa: BLE001
            return f"{type(exc).__name__}: {exc}"


REGISTRY = {
    b.name: b
    for b in (
        Backend("ort-cpu", "ort_cpu", "OrtCpuRunner", "OrtCpuOptions", "ONNX Runtime, CPU provider; one lane per core"),
        Backend("ort-cuda", "ort_cuda", "OrtCudaRunner", "OrtCudaOptions", "ONNX Runtime, CUDA provider, state on the GPU"),
        Backend("ort-trt", "ort_trt", "OrtTensorRTRunner", "OrtTrtOptions", "ONNX Runtime, TensorRT provider, state on the GPU"),
        Backend("trt", "trt", "TrtRunner", "TrtOptions", "native TensorRT with cuda-python, state on the GPU"),
    )
}
BACKENDS = tuple(REGISTRY)


def backend(name: str) -> Backend:
    """The registry entry for `name` (BackendError listing the choices when unknown)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise BackendError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}") from None


def backend_options(name: str, **flags):
    """The options dataclass of backend `name` from generic flags (CLI options).

    A flag the backend does not have is accepted only at its "off" value (False, 0, None): asking for
    --cuda-graph on ort-cpu is an error, not silently ignored.
    """
    cls = backend(name).options_type()
    known = {f.name for f in dataclasses.fields(cls)}
    unused = sorted(k for k, v in flags.items() if k not in known and v not in (None, False, 0))
    if unused:
        raise ConfigError(f"backend {name} has no option {', '.join(unused)} (it takes: {', '.join(sorted(known))})")
    return cls(**{k: v for k, v in flags.items() if k in known and v is not None})


def create_runner(name: str, manifest, options=None):
    """A runner for backend `name` (not yet activated: the Projector activates it)."""
    entry = backend(name)
    init_process_env()
    if options is not None and not isinstance(options, entry.options_type()):
        raise ConfigError(f"backend {name} takes {entry.options}, got {type(options).__name__}")
    return getattr(entry.load(), entry.runner)(manifest, options)


def probe_all() -> dict[str, str | None]:
    """Every backend with None (available) or the reason it is not."""
    return {name: b.unavailable_reason() for name, b in REGISTRY.items()}


def available_backends() -> list[str]:
    """Backends whose libraries and hardware are present here (cheap checks, nothing is built)."""
    return [name for name, reason in probe_all().items() if reason is None]
