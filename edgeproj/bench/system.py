"""System facts for benchmark reports: CPU, GPU, driver, library versions, Jetson power state."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path


def _run(cmd: list[str]) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") or line.startswith("Model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
        return getattr(mod, "__version__", "unknown")
    except Exception:
        return None


def system_facts() -> dict:
    """What a reader needs to trust a number: hardware, versions and (on a Jetson) the power state."""
    facts = {
        "cpu": cpu_model(),
        "cpu_threads": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "onnxruntime": _version("onnxruntime"),
        "tensorrt": _version("tensorrt"),
        "opencv": _version("cv2"),
        "gpu": _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]),
        "cuda_runtime": None,
    }
    try:
        from edgeproj.runtime.backends.cuda_mem import cuda_status
        from edgeproj.runtime.backends.nvlibs import TF32_ENV

        cuda = cuda_status()  # cuda-python's view; None values where it is not installed
        facts["cuda_runtime"] = cuda.get("runtime_cuda")
        facts["cuda_driver"] = cuda.get("driver_cuda")
        facts["cuda_python"] = cuda.get("cuda_python")
        facts["tf32_override"] = os.environ.get(TF32_ENV)
    except Exception:  # noqa: BLE001 - facts are best effort
        pass
    tegra = Path("/etc/nv_tegra_release")
    if tegra.exists():
        facts["jetson"] = {
            "l4t_release": tegra.read_text().splitlines()[0].strip(),
            "model": (
                Path("/proc/device-tree/model").read_text().strip("\x00\n") if Path("/proc/device-tree/model").exists() else None
            ),
            "nvpmodel": _run(["nvpmodel", "-q"]),
            "jetson_clocks": _run(["jetson_clocks", "--show"]),
        }
    return facts
