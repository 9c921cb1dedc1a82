"""CUDA memory, streams and errors through cuda-python (`cuda.bindings.runtime`), for the native TensorRT runner."""

from __future__ import annotations

import numpy as np

from edgeproj.errors import BackendError, DependencyError


def cudart():
    """The CUDA runtime bindings (DependencyError naming the extra when missing)."""
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # older cuda-python (removed in 13.x)
        except ImportError:
            raise DependencyError("cuda-python is not installed; install it with: pip install 'edgeproj[tensorrt]'") from None
    return runtime


def check(result):
    """Unwrap a cuda-python (err, *values) tuple, raising BackendError on a CUDA error."""
    rt = cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != int(rt.cudaError_t.cudaSuccess):
        name = rt.cudaGetErrorName(err)[1]
        raise BackendError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_count() -> int:
    return int(check(cudart().cudaGetDeviceCount()))


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def cuda_status() -> dict:
    """cuda-python's version, the CUDA runtime and driver versions and the device count, or why not.

    Never raises. cuda-python 13.x needs a driver for CUDA 13 (R580 or newer); on an older driver it
    imports fine and every call fails with cudaErrorInsufficientDriver: that case is named here so the
    `trt` backend does not just vanish from the available ones.
    """
    from edgeproj.runtime.backends.nvlibs import dist_version

    out: dict = {"cuda_python": dist_version("cuda-python", "cuda-bindings"), "devices": 0, "problem": None}
    try:
        rt = cudart()
    except DependencyError as exc:
        out["problem"] = str(exc)
        return out
    try:
        err, drv = rt.cudaDriverGetVersion()
        out["driver_cuda"] = _cuda_version(int(drv)) if int(err) == 0 and int(drv) > 0 else None
        err, run = rt.cudaRuntimeGetVersion()
        out["runtime_cuda"] = _cuda_version(int(run)) if int(err) == 0 else None
        err, n = rt.cudaGetDeviceCount()
        if int(err) != int(rt.cudaError_t.cudaSuccess):
            name = rt.cudaGetErrorName(err)[1]
            name = name.decode() if isinstance(name, bytes) else str(name)
            out["problem"] = f"CUDA error {name}"
            if "InsufficientDriver" in name:
                out["problem"] = insufficient_driver_problem(out)
            elif "NoDevice" in name:
                out["problem"] = (
                    "no CUDA device visible (check the driver, CUDA_VISIBLE_DEVICES, or docker --gpus/--runtime nvidia)"
                )
            return out
        out["devices"] = int(n)
        if n:
            out["gpu"] = gpu_name(0)
            cc = check(rt.cudaDeviceGetAttribute(rt.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor, 0))
            cm = check(rt.cudaDeviceGetAttribute(rt.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor, 0))
            out["compute_capability"] = f"{cc}.{cm}"
        else:
            out["problem"] = "no CUDA device"
    except Exception as exc:  # noqa: BLE001 - a status report must not raise
        out["problem"] = f"{type(exc).__name__}: {exc}"
    return out


def _on_jetson() -> bool:
    from pathlib import Path

    return Path("/etc/nv_tegra_release").exists()


def insufficient_driver_problem(status: dict, jetson: bool | None = None) -> str:
    """What to do when cuda-python's CUDA runtime is newer than the driver (cudaErrorInsufficientDriver).

    cuda-python carries its CUDA runtime statically (cuda-bindings 12.9.x is CUDA 12.9 whatever the
    machine has), so the fix is a cuda-python whose CUDA is the driver's, which is the only fix on a
    Jetson: its driver comes with JetPack and cannot be updated on its own.
    """
    from edgeproj.runtime.backends.nvlibs import major

    built, drv = status.get("runtime_cuda"), status.get("driver_cuda")
    jetson = _on_jetson() if jetson is None else jetson
    built_for = f"CUDA {built}" if built else f"CUDA {major(status.get('cuda_python')) or '?'}.x"
    head = f"this cuda-python ({status.get('cuda_python') or 'unknown version'}) was built for {built_for}, the driver supports "
    if not drv:
        return head + "an unknown CUDA version (cudaDriverGetVersion failed): check the driver with nvidia-smi"
    dmaj, dmin = (int(v) for v in drv.split(".")[:2])
    pin = f"pip install 'cuda-python>={dmaj}.{dmin},<{dmaj}.{dmin + 1}'"
    if jetson:
        return (
            head + f"CUDA {drv}: {pin} (a Jetson's driver comes with JetPack and is not updated on its own; the "
            "edgeproj Jetson image pins it)"
        )
    trt = f" (with TensorRT: pip install 'tensorrt-cu{dmaj}>=10.3,<11' and this pin after it)" if dmaj >= 12 else ""
    return head + f"CUDA {drv}: {pin}{trt}, or install an NVIDIA driver for {built_for}"


def device_memory_in_use(device: int = 0) -> int | None:
    """Bytes of device memory in use on `device` as the driver counts them (every process and library:
    ONNX Runtime's arena and TensorRT's contexts alike), or None without cuda-python or a device.
    Measure a backend as the difference around its work, in a process that runs nothing else."""
    try:
        rt = cudart()
        check(rt.cudaSetDevice(device))
        free, total = check(rt.cudaMemGetInfo())
    except Exception:  # noqa: BLE001 - no cuda-python, no driver, no device: not measurable here
        return None
    return int(total) - int(free)


def gpu_name(device: int = 0) -> str:
    props = check(cudart().cudaGetDeviceProperties(device))
    name = props.name
    return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).rstrip("\x00")


class DeviceBuffer:
    """A cudaMalloc'd block (256-byte aligned by CUDA) with host copies on a stream."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.ptr = int(check(cudart().cudaMalloc(max(nbytes, 4))))

    def upload(self, arr: np.ndarray, stream) -> None:
        a = np.ascontiguousarray(arr, np.float32)
        if a.nbytes > self.nbytes:
            raise BackendError(f"upload of {a.nbytes} bytes into a {self.nbytes}-byte device buffer")
        rt = cudart()
        check(rt.cudaMemcpyAsync(self.ptr, a.ctypes.data, a.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))
        check(rt.cudaStreamSynchronize(stream))  # `a` may be a temporary: finish before it goes

    def download(self, shape, stream) -> np.ndarray:
        out = np.empty(shape, np.float32)
        rt = cudart()
        check(rt.cudaMemcpyAsync(out.ctypes.data, self.ptr, out.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))
        check(rt.cudaStreamSynchronize(stream))
        return out

    def free(self) -> None:
        if self.ptr:
            cudart().cudaFree(self.ptr)
            self.ptr = 0


class CudaDeviceArrays:
    """`DeviceArrays` (pingpong) on cudaMalloc'd buffers, copies on one stream."""

    def __init__(self, stream):
        self.stream = stream

    def new(self, host: np.ndarray) -> DeviceBuffer:
        buf = DeviceBuffer(np.asarray(host, np.float32).nbytes)
        buf.upload(host, self.stream)
        return buf

    def write(self, buf: DeviceBuffer, host: np.ndarray) -> None:
        buf.upload(host, self.stream)

    def read(self, buf: DeviceBuffer, shape) -> np.ndarray:
        return buf.download(shape, self.stream)

    def free(self, buf: DeviceBuffer) -> None:
        buf.free()
