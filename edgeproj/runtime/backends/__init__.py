"""Backends by name: one registry entry each, declaring everything the other layers need to know.

An entry names its module, runner and options dataclass, and declares its device (CPU or GPU), whether
it has an FP16 path (its module's `fp16_probe` says whether FP16 runs here), where `calibrate
--precision-check` measures FP16 for it, the ONNX Runtime provider `doctor` proves with a one-node
session, and the configurations `bench` measures. Bench, doctor, device memory, the precision check and
the CLI's --backend read these declarations; none of them switches on a backend name, and an unknown name
is a BackendError listing the choices. A new backend is a new module and one entry here.

A backend module is imported only when chosen or probed, and imports its heavy library (onnxruntime,
tensorrt, cuda-python) only when a runner is activated, so a CPU box never touches TensorRT.

Loading a backend module (to probe it or create a runner) sets NVIDIA_TF32_OVERRIDE=0 (unless the user
set it) before its CUDA libraries load and read it: the runtime's parity with the CPU needs FP32, and
cached engines are keyed on the value. Importing this package does not, so `edgeproj train` on a GPU
keeps PyTorch's TF32 defaults.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from edgeproj.errors import BackendError, ConfigError
from edgeproj.runtime.backends.nvlibs import init_process_env

CPU, GPU = "cpu", "gpu"
DEVICES = (CPU, GPU)


@dataclass(frozen=True)
class Configuration:
    """One configuration `bench` measures on a backend: its row name and its options as generic flags.

    flags: `backend_options` keywords, or a function of the bench's --threads and the host's core count
    returning them (None: the configuration means nothing on this host, e.g. lanes against threads on one
    core). fp16: measured only where bench asks for FP16 and the backend's FP16 probe passes; otherwise it
    is listed under `unavailable` with the probe's reason.
    """

    name: str
    flags: Mapping[str, object] | Callable[[int, int], Mapping[str, object] | None] = field(default_factory=dict)
    fp16: bool = False

    def flags_here(self, threads: int, cores: int | None = None) -> dict | None:
        """The flags for a bench with `threads` on a host with `cores` (default: this host's)."""
        if callable(self.flags):
            got = self.flags(threads, cores or os.cpu_count() or 1)
            return None if got is None else dict(got)
        return dict(self.flags)


@dataclass(frozen=True)
class Backend:
    """One registry entry: where the backend lives and what it is.

    module: ".name" for a module of this package, or an absolute module path (a backend kept elsewhere).
    device: CPU or GPU; GPU backends get device-memory figures (doctor --bundle, bench) and a torch row on
        the same GPU in bench.
    fp16: the backend has an FP16 option; its module's `fp16_probe()` says whether FP16 runs here.
    fp16_check: the backend `calibrate --precision-check` measures FP16 on for a bundle calibrated on this
        one (itself where it has FP16); None: the check does not apply and is refused, never skipped.
    provider: the ONNX Runtime execution provider `doctor` proves by running a one-node model on it
        alone; None where the backend runs no ONNX Runtime session.
    bench: the configurations `bench` measures (at least one: a backend is never silently left out).
    checked: the FP32 configurations the GPU check (scripts/gpu_check.sh) holds to CPU parity; empty: the
        backend's bench configurations without FP16.
    """

    name: str
    module: str
    runner: str
    options: str
    summary: str
    device: str
    fp16: bool
    fp16_check: str | None
    provider: str | None
    bench: tuple[Configuration, ...]
    checked: tuple[Configuration, ...] = ()

    def __post_init__(self):
        # A declaration error is a bug in the entry, not the user's: TypeError / ValueError, not EdgeprojError.
        if self.device not in DEVICES:
            raise ValueError(f"backend {self.name}: device must be one of {DEVICES}, got {self.device!r}")
        if not self.bench:
            raise ValueError(f"backend {self.name}: declare at least one bench configuration")
        if self.fp16_check == self.name and not self.fp16:
            raise ValueError(f"backend {self.name}: its FP16 check cannot run on itself without an FP16 path")

    @property
    def on_gpu(self) -> bool:
        return self.device == GPU

    def checked_configurations(self) -> tuple[Configuration, ...]:
        """What the GPU check runs in FP32 on this backend."""
        return self.checked or tuple(c for c in self.bench if not c.fp16)

    def load(self):
        # A backend module may import onnxruntime, TensorRT or cuda-python (probes included): TF32 goes off
        # first, whichever verb gets here first (bench probes before it creates a runner).
        init_process_env()
        return importlib.import_module(self.module, __name__)

    def options_type(self) -> type:
        return getattr(self.load(), self.options)

    def unavailable_reason(self) -> str | None:
        """None when usable on this machine, else the reason (cheap: nothing is built)."""
        try:
            return self.load().probe()
        except Exception as exc:  # noqa: BLE001 - a probe must never take the caller down
            return f"{type(exc).__name__}: {exc}"

    def fp16_unavailable_reason(self) -> str | None:
        """None when this backend can run FP16 here, else why not."""
        if not self.fp16:
            return f"{self.name} runs FP32 only"
        try:
            return self.load().fp16_probe()
        except Exception as exc:  # noqa: BLE001
            return f"{type(exc).__name__}: {exc}"


def _cpu_threads(threads: int, cores: int) -> dict:
    return {"threads": threads}


def _cpu_threads_vs_lanes(threads: int, cores: int) -> dict | None:
    # Lanes (one single-threaded session per core) against one session with a thread per core: a batch
    # smaller than the lanes leaves cores idle on lanes, not on threads.
    return {"threads": cores} if threads == 0 and cores > 1 else None


REGISTRY: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("ort-cpu", ".ort_cpu", "OrtCpuRunner", "OrtCpuOptions", "ONNX Runtime, CPU provider; one lane per core",
                device=CPU, fp16=False, fp16_check="trt", provider="CPUExecutionProvider",
                bench=(Configuration("ort-cpu", _cpu_threads), Configuration("ort-cpu-threads", _cpu_threads_vs_lanes))),
        Backend("ort-cuda", ".ort_cuda", "OrtCudaRunner", "OrtCudaOptions", "ONNX Runtime, CUDA provider, state on the GPU",
                device=GPU, fp16=False, fp16_check="trt", provider="CUDAExecutionProvider",
                bench=(Configuration("ort-cuda"), Configuration("ort-cuda+graph", {"cuda_graph": True}))),
        Backend("ort-trt", ".ort_trt", "OrtTensorRTRunner", "OrtTrtOptions", "ONNX Runtime, TensorRT provider, state on the GPU",
                device=GPU, fp16=True, fp16_check="ort-trt", provider="TensorrtExecutionProvider",
                bench=(Configuration("ort-trt"),)),
        Backend("trt", ".trt", "TrtRunner", "TrtOptions", "native TensorRT with cuda-python, state on the GPU",
                device=GPU, fp16=True, fp16_check="trt", provider=None,
                bench=(Configuration("trt-fp32", {"cuda_graph": True}),
                       Configuration("trt-fp16", {"cuda_graph": True, "fp16": True}, fp16=True)),
                checked=(Configuration("trt"), Configuration("trt+graph", {"cuda_graph": True}))),
    )
}  # fmt: skip


def names() -> tuple[str, ...]:
    """The registered backends, in registry order (read at call time: a backend registered later counts)."""
    return tuple(REGISTRY)


def backend(name: str) -> Backend:
    """The registry entry for `name` (BackendError listing the choices when unknown)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise BackendError(f"unknown backend '{name}'; choose one of {', '.join(REGISTRY)}") from None


def backend_options(name: str, **flags):
    """The options dataclass of backend `name` from generic flags (CLI options).

    A flag the backend does not have is accepted only at its "off" value (False, 0, None): asking for
    --cuda-graph on ort-cpu is an error, not silently ignored.
    """
    cls = backend(name).options_type()
    known = {f.name for f in dataclasses.fields(cls)}
    unused = sorted(k for k, v in flags.items() if k not in known and v not in (None, False, 0))
    if unused:
        flag = lambda k: "--" + k.replace("_", "-")  # noqa: E731 - as the user typed it
        takes = sorted(k for k in flags if k in known)  # of the flags offered, those this backend has
        raise ConfigError(
            f"backend {name} has no option {', '.join(map(flag, unused))}"
            + (f" (of these flags it takes {', '.join(map(flag, takes))})" if takes else "")
        )
    return cls(**{k: v for k, v in flags.items() if k in known and v is not None})


def create_runner(name: str, manifest, options=None):
    """A runner for backend `name` (not yet activated: the Projector activates it)."""
    entry = backend(name)
    init_process_env()
    if options is not None and not isinstance(options, entry.options_type()):
        raise ConfigError(f"backend {name} takes {entry.options}, got {type(options).__name__}")
    return getattr(entry.load(), entry.runner)(manifest, options)


def fp16_check_backend(name: str) -> str:
    """The backend `calibrate --precision-check` measures FP16 on for backend `name`; ConfigError where the
    check does not apply (the backend runs FP32 only and names no backend to measure FP16 on)."""
    target = backend(name).fp16_check
    if target is None:
        with_fp16 = [n for n, b in REGISTRY.items() if b.fp16]
        raise ConfigError(
            f"the FP16 precision check does not apply to backend {name}: it runs FP32 only; drop --precision-check, "
            f"or calibrate with a backend that has FP16 ({', '.join(with_fp16) or 'none registered'})"
        )
    return backend(target).name


def gpu_backends() -> tuple[str, ...]:
    """The registered backends that run on the GPU."""
    return tuple(n for n, b in REGISTRY.items() if b.on_gpu)


class OnGpu:
    """`name in ON_GPU`: backend `name` is registered and runs on the GPU (the registry is read at each test,
    so a backend registered later counts)."""

    def __contains__(self, name: object) -> bool:
        entry = REGISTRY.get(name) if isinstance(name, str) else None
        return entry is not None and entry.on_gpu

    def __iter__(self):
        return iter(gpu_backends())

    def __repr__(self) -> str:
        return f"OnGpu{gpu_backends()}"


ON_GPU = OnGpu()


def probe_all() -> dict[str, str | None]:
    """Every backend with None (available) or the reason it is not."""
    return {name: b.unavailable_reason() for name, b in REGISTRY.items()}
