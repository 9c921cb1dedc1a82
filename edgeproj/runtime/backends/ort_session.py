"""ONNX Runtime sessions for every ORT backend: provider check, contract check, the gradient graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeproj import contract
from edgeproj.errors import BackendError, require


def ort():
    """The onnxruntime module (DependencyError naming the extra when missing)."""
    return require("onnxruntime", "cpu")


def available_providers() -> list[str]:
    """Execution providers this ONNX Runtime build offers."""
    return list(ort().get_available_providers())


def make_session(path: Path, graph: str, providers: list, threads: int = 0, allow_fallback: bool = False, log_level: int = 3):
    """An InferenceSession of the bundle's `graph` on `providers`.

    Raises BackendError when the first provider is not active (ONNX Runtime otherwise falls back to the
    CPU with only a log line), and BundleError when the graph's inputs/outputs break the contract.
    """
    rt = ort()
    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if wanted not in rt.get_available_providers() and not allow_fallback:
        raise BackendError(
            f"{wanted} is not available in this onnxruntime build (available: {', '.join(rt.get_available_providers())}); "
            "install onnxruntime-gpu for CUDA/TensorRT, pick another --backend, or allow fallback"
        )
    so = rt.SessionOptions()
    so.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.log_severity_level = log_level
    if not allow_fallback and wanted != "CPUExecutionProvider":
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    try:
        sess = rt.InferenceSession(str(path), so, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/RuntimeException types
        raise BackendError(
            f"onnxruntime could not create a {wanted} session for {Path(path).name}: {str(exc).splitlines()[0]}"
        ) from None
    contract.check_graph(graph, [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()], str(path))
    active = sess.get_providers()
    if active[0] != wanted and not allow_fallback:
        raise BackendError(f"{wanted} was requested but onnxruntime activated {active}; check the CUDA/TensorRT install")
    return sess


def run_gradient(sess, x: np.ndarray, x0: np.ndarray, lam: float) -> dict[str, np.ndarray]:
    """One evaluation of the gradient graph on a session: energy, rec_loss, grad, recon."""
    x = np.ascontiguousarray(x, np.float32)
    feed = dict(zip(contract.GRADIENT_INPUTS, (x, np.ascontiguousarray(x0, np.float32), np.array([lam], np.float32))))
    return dict(zip(contract.GRADIENT_OUTPUTS, sess.run(list(contract.GRADIENT_OUTPUTS), feed)))
