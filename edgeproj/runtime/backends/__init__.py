"""Backends by name. Each is imported only when chosen, so a CPU box never touches TensorRT."""

from __future__ import annotations

from edgeproj.errors import BackendError

BACKENDS = ("ort-cpu", "ort-cuda", "ort-trt", "trt")


def create_runner(name: str, manifest, **options):
    """A runner for backend `name` (not yet activated: use it as a context manager)."""
    if name == "ort-cpu":
        from edgeproj.runtime.backends.onnxrt import OrtCpuRunner

        return OrtCpuRunner(manifest, **options)
    if name == "ort-cuda":
        from edgeproj.runtime.backends.onnxrt import OrtCudaRunner

        return OrtCudaRunner(manifest, **options)
    if name == "ort-trt":
        from edgeproj.runtime.backends.onnxrt import OrtTensorRTRunner

        return OrtTensorRTRunner(manifest, **options)
    if name == "trt":
        from edgeproj.runtime.backends.trt import TrtRunner

        return TrtRunner(manifest, **options)
    raise BackendError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")


def available_backends() -> list[str]:
    """Backends whose libraries and hardware are present here (cheap checks, nothing is built)."""
    out = []
    try:
        from edgeproj.runtime.backends.onnxrt import available_providers

        prov = available_providers()
        out.append("ort-cpu")
        if "CUDAExecutionProvider" in prov:
            out.append("ort-cuda")
        if "TensorrtExecutionProvider" in prov:
            out.append("ort-trt")
    except Exception:
        pass
    try:
        from edgeproj.runtime.backends.trt import trt_available

        if trt_available():
            out.append("trt")
    except Exception:
        pass
    return out
