"""Stand-ins for GPU libraries that cannot load here, shared by the GPU readiness tests."""

from __future__ import annotations

from types import SimpleNamespace


def insufficient_driver_cudart(driver: int, runtime: int) -> SimpleNamespace:
    """cuda-python's runtime bindings on a driver older than their CUDA: versions as CUDA reports them
    (12060 = 12.6), every device call failing with cudaErrorInsufficientDriver (35)."""
    return SimpleNamespace(
        cudaError_t=SimpleNamespace(cudaSuccess=0),
        cudaDriverGetVersion=lambda: (0, driver),
        cudaRuntimeGetVersion=lambda: (0, runtime),
        cudaGetDeviceCount=lambda: (35, 0),
        cudaGetErrorName=lambda err: (0, b"cudaErrorInsufficientDriver"),
    )
