"""What this machine can run, and exactly why not: the first thing to run on a new device.

Each backend gets a state and the reason when it is unavailable; the GPU providers of ONNX Runtime are
proven by opening a tiny session (one Add node, built in here: the runtime never imports onnx) and
checking which provider really took it. Also reported: packages and versions, NVIDIA libraries loaded
into the process, driver / CUDA / TensorRT versions, the ONNX Runtime / TensorRT pair, TF32 and FP16.
Nothing here raises: every failure becomes a reason string.
"""

from __future__ import annotations

import base64
import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np

from edgeproj import __version__
from edgeproj.runtime.backends import REGISTRY
from edgeproj.runtime.backends.captured import captured_stdout
from edgeproj.runtime.backends.cuda_mem import device_memory_in_use
from edgeproj.runtime.backends.nvlibs import (
    TF32_ENV,
    TF32_SET_LATE,
    dist_version,
    init_process_env,
    installed_tensorrt,
    loaded_libraries,
    ort_gpu_build,
    preload_cuda_libraries,
)
from edgeproj.runtime.backends.ort_session import gpu_failure_hint, original_error
from edgeproj.runtime.device_memory import backend_device_memory

AVAILABLE, UNAVAILABLE, BROKEN = "available", "unavailable", "broken"

# y = x + x on a 1 x 8 float tensor (ONNX opset 17, IR 8), serialized once with the onnx package.
_TINY_MODEL = base64.b64decode(
    "CAgSD2VkZ2Vwcm9qLWRvY3RvcjpOChoKAXgKAXgSAXkaCmRvY3Rvcl9hZGQiA0FkZBIGZG9jdG9yWhMKAXgSDgoMCAESCAoCCAEKAggIYhMKAXkSDgoMCAESCAoCCAEKAggIQgQKABAR"
)

PACKAGES = (
    "numpy",
    "onnxruntime",
    "onnxruntime-gpu",
    "tensorrt",
    "tensorrt-cu12",
    "tensorrt-cu13",
    "cuda-python",
    "cuda-bindings",
    "opencv-python-headless",
    "opencv-python",
    "torch",
    "nvidia-cudnn-cu12",
    "nvidia-cudnn-cu13",
    "nvidia-cublas",
    "nvidia-cublas-cu12",
)


def _run(cmd: list[str]) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def tiny_session(provider: str) -> dict:
    """Open and run the built-in one-node model on `provider` alone; which provider really ran it."""
    out: dict = {"requested": provider, "activated": None, "ok": False, "problem": None}
    try:
        import onnxruntime as rt
    except ImportError as exc:
        out["problem"] = f"onnxruntime is not importable: {exc}"
        return out
    printed = None
    try:
        if provider != "CPUExecutionProvider":
            out["preload"] = preload_cuda_libraries(rt, tensorrt=provider == "TensorrtExecutionProvider")
        so = rt.SessionOptions()
        so.log_severity_level = 3
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1" if provider != "CPUExecutionProvider" else "0")
        so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
        # What onnxruntime prints (provider errors, "Falling back") stays off stdout: `doctor --json` is JSON only.
        with captured_stdout() as printed:
            sess = rt.InferenceSession(_TINY_MODEL, so, providers=[provider])
            y = sess.run(None, {"x": np.arange(8, dtype=np.float32).reshape(1, 8)})[0]
        if printed.lines:
            out["printed"] = printed.lines
        out["activated"] = sess.get_providers()
        getter = getattr(sess, "get_provider_graph_assignment_info", None)
        if getter is not None:
            out["placement"] = {sub.ep_name: len(sub.get_nodes()) for sub in getter()}
        if not np.allclose(y, 2 * np.arange(8).reshape(1, 8)):
            out["problem"] = "the tiny model returned a wrong result"
        elif out["activated"][0] != provider:
            out["problem"] = f"{provider} was requested but onnxruntime activated {out['activated']}"
        elif out.get("placement") and set(out["placement"]) != {provider}:
            out["problem"] = f"the tiny model's node ran on {sorted(out['placement'])}, not {provider}"
        else:
            out["ok"] = True
    except Exception as exc:  # noqa: BLE001 - the message is the diagnosis
        cause = original_error(exc)  # not onnxruntime's "Conflicting session configuration" wrapper
        out["problem"] = " ".join(str(cause).split())[:400] or type(cause).__name__
        if printed is not None and printed.lines:
            out["printed"] = printed.lines
        if provider != "CPUExecutionProvider":
            text = str(cause) + "\n" + (printed.text if printed is not None else "")
            not_loaded = ((out.get("preload") or {}).get("ort") or {}).get("needed_not_loaded")
            out["hint"] = gpu_failure_hint(text, ort_gpu_build().get("cuda_major"), not_loaded)
            out["problem"] += f" ({out['hint']})"
    return out


def _tensorrt_facts() -> dict:
    facts: dict = {"version": installed_tensorrt(), "importable": False}
    try:
        import tensorrt as trt

        facts |= {"importable": True, "version": trt.__version__, "fp16_builder_flag": hasattr(trt.BuilderFlag, "FP16")}
    except Exception as exc:  # noqa: BLE001
        facts["problem"] = f"{type(exc).__name__}: {exc}"
    return facts


def _jetson() -> dict | None:
    tegra = Path("/etc/nv_tegra_release")
    if not tegra.exists():
        return None
    try:
        release = tegra.read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        release = None
    return {"l4t_release": release, "nvpmodel": _run(["nvpmodel", "-q"])}


def diagnose(sessions: bool = True, bundle=None) -> dict:
    """The whole report (JSON-ready). sessions=False skips the tiny ONNX Runtime sessions; with a bundle
    (a Manifest), each available GPU backend is opened on it and the device memory it takes is reported."""
    from edgeproj.runtime.backends.cuda_mem import cuda_status

    init_process_env()  # as a runner would, before the tiny sessions load any CUDA library
    report: dict = {
        "edgeproj": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "packages": {p: v for p in PACKAGES if (v := dist_version(p))},
        "driver": _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]),
        "jetson": _jetson(),
        "tf32": {
            TF32_ENV: os.environ.get(TF32_ENV),
            "set_after_cuda_libraries_loaded": list(TF32_SET_LATE),
        },
    }
    try:
        import onnxruntime as rt

        report["onnxruntime"] = {"version": rt.__version__, "providers_available": list(rt.get_available_providers())}
    except Exception as exc:  # noqa: BLE001
        report["onnxruntime"] = {"problem": f"{type(exc).__name__}: {exc}"}
    report["onnxruntime"]["build"] = ort_gpu_build()
    report["cuda"] = cuda_status()
    report["tensorrt"] = _tensorrt_facts()
    backends = {}
    for name, entry in REGISTRY.items():
        reason = entry.unavailable_reason()
        row: dict = {"state": AVAILABLE if reason is None else UNAVAILABLE, "reason": reason, "summary": entry.summary}
        if reason is None and sessions and entry.provider:
            check = tiny_session(entry.provider)
            row["session"] = check
            if not check["ok"]:
                row["state"], row["reason"] = BROKEN, check["problem"]
        fp16 = entry.fp16_unavailable_reason()
        row["fp16"] = "available" if fp16 is None else fp16
        if bundle is not None and entry.on_gpu and row["state"] == AVAILABLE:
            row["device_memory"] = backend_device_memory(bundle, name)
        backends[name] = row
    report["backends"] = backends
    if cuda := report.get("cuda"):
        if (used := device_memory_in_use()) is not None:
            cuda["memory_in_use_mb"] = round(used / 2**20, 1)
    report["libraries_loaded"] = loaded_libraries()
    return report


def missing(report: dict, required: list[str]) -> dict[str, str]:
    """Required backends that are not available, with the reason."""
    rows = report["backends"]
    out = {}
    for name in required:
        row = rows.get(name)
        if row is None:
            out[name] = f"unknown backend (choose from {', '.join(rows)})"
        elif row["state"] != AVAILABLE:
            out[name] = f"{row['state']}: {row['reason']}"
    return out
