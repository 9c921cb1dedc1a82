"""ONNX Runtime sessions for every ORT backend: GPU library loading, provider and node-placement checks,
the contract check, the gradient graph."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgeproj import contract
from edgeproj.errors import BackendError, require
from edgeproj.runtime.backends.captured import captured_stdout
from edgeproj.runtime.backends.nvlibs import (
    installed_tensorrt,
    installed_tensorrt_cuda_major,
    ort_gpu_build,
    preload_cuda_libraries,
    trt_pair_problem,
)

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
# Copies ONNX Runtime inserts between providers; they carry no model computation.
COPY_OPS = frozenset({"MemcpyFromHost", "MemcpyToHost"})
ASSIGNMENT_KEY = "session.record_ep_graph_assignment_info"


def ort():
    """The onnxruntime module (DependencyError naming the extra when missing)."""
    return require("onnxruntime", "cpu")


def available_providers() -> list[str]:
    """Execution providers this ONNX Runtime build offers."""
    return list(ort().get_available_providers())


def tensorrt_pair_problem() -> str | None:
    """None when ONNX Runtime's TensorRT provider and the installed TensorRT share a major version and a CUDA major."""
    build = ort_gpu_build()
    return trt_pair_problem(
        build["onnxruntime"],
        build.get("tensorrt_major"),
        installed_tensorrt(),
        build.get("cuda_major"),
        installed_tensorrt_cuda_major(),
    )


def original_error(exc: BaseException) -> BaseException:
    """The error behind `exc`: onnxruntime's session fallback raises its retry's error `from` the first one
    (a "Conflicting session configuration" message when the CPU fallback is disabled), hiding the cause."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


_MISSING_LIB = re.compile(r"(lib[\w+-]+\.so[.\d]*)[\"']?\s*(?:which is missing|: cannot open shared object)")


def gpu_failure_hint(text: str, cuda_major: int | None = None, not_loaded: list[str] | None = None) -> str:
    """What to do about a GPU session error, judged from the error's own words and, on Linux, from the
    preload record: there ONNX Runtime only logs the library it could not open and raises "nodes assigned
    to the default CPU EP" once the provider is gone, so the libraries still not loaded are the evidence."""
    t = text.lower()
    cu = f"CUDA {cuda_major}" if cuda_major else "its CUDA"
    if any(k in t for k in ("cuda failure 35", "insufficientdriver", "driver version is insufficient")):
        return (
            f"the NVIDIA driver is older than the {cu} runtime this onnxruntime-gpu was built for: install a driver for "
            f"{cu}, or the onnxruntime-gpu build for the driver's CUDA (pip install 'edgeproj[gpu-cu12]' on a CUDA 12 driver)"
        )
    if any(k in t for k in ("cuda failure 100", "no cuda-capable device", "cudaerrornodevice")):
        return "no CUDA device is visible: check nvidia-smi, CUDA_VISIBLE_DEVICES, or run the container with --gpus all / --runtime nvidia"
    if m := _MISSING_LIB.search(text):
        lib = m.group(1)
        if lib.startswith(("libnvinfer", "libnvonnxparser")):
            return f"{lib} is missing: install TensorRT of that major (pip install 'edgeproj[tensorrt]', on a Jetson JetPack's python3-libnvinfer)"
        return (
            f"{lib} is missing: install the CUDA/cuDNN libraries of this onnxruntime-gpu's {cu} build (pip install "
            "'edgeproj[gpu]' for CUDA 13, 'edgeproj[gpu-cu12]' for CUDA 12); `edgeproj doctor` lists what is loaded"
        )
    if not_loaded:
        return (
            f"{', '.join(not_loaded)} not loaded after preloading (the CUDA provider links them): install this "
            f"onnxruntime-gpu's {cu} libraries (pip install 'edgeproj[gpu]' for CUDA 13, 'edgeproj[gpu-cu12]' for "
            "CUDA 12) or put the system ones on the loader path; `edgeproj doctor` shows what was loaded"
        )
    if "default cpu ep" in t or "fallback" in t and "disabled" in t:
        return (
            "onnxruntime dropped the GPU provider while creating the session (it logs why on stderr: usually a CUDA "
            "or cuDNN library it could not open); `edgeproj doctor` shows the driver and the libraries loaded"
        )
    return "`edgeproj doctor` shows the driver, the GPU libraries loaded and what preloading printed"


def _name(provider) -> str:
    return provider[0] if isinstance(provider, tuple) else provider


def make_session(
    path: Path,
    graph: str,
    providers: list,
    threads: int = 0,
    allow_fallback: bool = False,
    log_level: int = 3,
    record_assignment: bool = False,
    memory_pattern: bool = True,
):
    """An InferenceSession of the bundle's `graph` on `providers`.

    GPU providers get pip's CUDA/cuDNN (and TensorRT) libraries loaded first. Raises BackendError when
    the first provider is not active (ONNX Runtime otherwise falls back to the CPU with only a log line),
    and BundleError when the graph's inputs/outputs break the contract. With `record_assignment`,
    ONNX Runtime records which provider took each node (see `node_assignment`). memory_pattern=False
    stops ONNX Runtime from planning (and keeping) memory for every input shape it meets.
    """
    rt = ort()
    wanted = _name(providers[0])
    if wanted not in rt.get_available_providers() and not allow_fallback:
        raise BackendError(
            f"{wanted} is not available in this onnxruntime build (available: {', '.join(rt.get_available_providers())}); "
            "install onnxruntime-gpu for CUDA/TensorRT (pip install 'edgeproj[gpu]'), pick another --backend, or allow fallback"
        )
    if any(_name(p) in (CUDA, TRT) for p in providers):
        preload_cuda_libraries(rt, tensorrt=any(_name(p) == TRT for p in providers))
    if wanted == TRT and (problem := tensorrt_pair_problem()):
        raise BackendError(problem)
    so = rt.SessionOptions()
    so.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.log_severity_level = log_level
    so.enable_mem_pattern = memory_pattern
    if not allow_fallback and wanted != CPU:
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if record_assignment:
        so.add_session_config_entry(ASSIGNMENT_KEY, "1")
    # onnxruntime prints its provider errors ("EP Error ... Falling back") on stdout: keep them off a verb's
    # JSON, and report them.
    with captured_stdout() as printed:
        try:
            sess = rt.InferenceSession(str(path), so, providers=providers)
            error = None
        except Exception as exc:  # ORT raises its own Fail/RuntimeException types
            error = exc
    if error is not None:
        cause = original_error(error)
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        hint = ""
        if wanted in (CUDA, TRT):
            pre = preload_cuda_libraries(rt, tensorrt=wanted == TRT).get("ort", {})
            said = printed.text + "\n" + "\n".join(pre.get("output", []))
            hint = gpu_failure_hint(str(cause) + "\n" + said, ort_gpu_build().get("cuda_major"), pre.get("needed_not_loaded"))
            hint = f" ({hint})"
        raise BackendError(f"onnxruntime could not create a {wanted} session for {Path(path).name}: {first}{hint}") from None
    if printed.lines:
        print(f"edgeproj: onnxruntime said while opening {Path(path).name}: {' | '.join(printed.lines)[:600]}", file=sys.stderr)
    if not allow_fallback and hasattr(sess, "disable_fallback"):
        sess.disable_fallback()  # a provider failing at run time must raise, not move the graph to the CPU
    contract.check_graph(graph, [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()], str(path))
    active = sess.get_providers()
    if active[0] != wanted and not allow_fallback:
        raise BackendError(f"{wanted} was requested but onnxruntime activated {active}; check the CUDA/TensorRT install")
    return sess


def node_assignment(sess) -> dict[str, list[tuple[str, str]]] | None:
    """Provider name -> [(node name, op type)] as ONNX Runtime placed the graph; None when this
    onnxruntime cannot say (the API arrived in 1.24; the session must record it, see `make_session`)."""
    getter = getattr(sess, "get_provider_graph_assignment_info", None)
    if getter is None:
        return None
    out: dict[str, list[tuple[str, str]]] = {}
    for sub in getter():
        nodes = out.setdefault(sub.ep_name, [])
        nodes += [(n.name, getattr(n, "op_type", "")) for n in sub.get_nodes()]
    return out or None


def profile_assignment(events: Iterable[dict]) -> dict[str, list[tuple[str, str]]]:
    """Provider name -> [(node, op)] from ONNX Runtime profiling events (the fallback on older ORT)."""
    out: dict[str, list[tuple[str, str]]] = {}
    seen = set()
    for ev in events:
        args = ev.get("args") or {}
        if ev.get("cat") != "Node" or "provider" not in args:
            continue
        name = str(ev.get("name", "")).removesuffix("_kernel_time")
        if (name, args["provider"]) in seen:
            continue
        seen.add((name, args["provider"]))
        out.setdefault(args["provider"], []).append((name, str(args.get("op_name", ""))))
    return out


def profiled_assignment(path: Path, providers: list, feed: dict) -> dict[str, list[tuple[str, str]]]:
    """Run `feed` once through a profiling session of `path` and read where each node ran.

    The profile goes to a private temporary folder, not the current one (which may be read-only on a device).
    """
    import tempfile

    rt = ort()
    with tempfile.TemporaryDirectory(prefix="edgeproj-placement-") as tmp:
        so = rt.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "placement")
        so.log_severity_level = 3
        sess = rt.InferenceSession(str(path), so, providers=providers)
        sess.disable_fallback()
        sess.run(None, feed)
        prof = Path(sess.end_profiling())
        if not prof.is_absolute():
            prof = Path(tmp) / prof.name if (Path(tmp) / prof.name).is_file() else prof
        return profile_assignment(json.loads(prof.read_text()))


def assignment_problem(assignment: dict[str, list[tuple[str, str]]], wanted: str) -> str | None:
    """None when `wanted` took every computing node, else which nodes ran elsewhere."""
    if not assignment:
        return f"onnxruntime reported no node placement, so {wanted} taking the graph cannot be confirmed"
    if wanted not in assignment:
        return f"{wanted} took no node of the graph (placement: {', '.join(sorted(assignment))})"
    elsewhere = [(ep, n, op) for ep, nodes in assignment.items() if ep != wanted for n, op in nodes if op not in COPY_OPS]
    if not elsewhere:
        return None
    shown = ", ".join(f"{n} ({op}) on {ep}" for ep, n, op in elsewhere[:6])
    more = f" and {len(elsewhere) - 6} more" if len(elsewhere) > 6 else ""
    return f"{wanted} did not take the whole graph: {len(elsewhere)} node(s) ran elsewhere: {shown}{more}"


def run_gradient(sess, x: np.ndarray, x0: np.ndarray, lam: float) -> dict[str, np.ndarray]:
    """One evaluation of the gradient graph on a session: energy, rec_loss, grad, recon."""
    x = np.ascontiguousarray(x, np.float32)
    feed = dict(zip(contract.GRADIENT_INPUTS, (x, np.ascontiguousarray(x0, np.float32), np.array([lam], np.float32))))
    return dict(zip(contract.GRADIENT_OUTPUTS, sess.run(list(contract.GRADIENT_OUTPUTS), feed)))
