"""Options shared by the verbs that run the projection."""

from __future__ import annotations

import typer

BACKEND_HELP = "ort-cpu | ort-cuda | ort-trt | trt"


def backend_options(backend: str, threads: int, cuda_graph: bool, fp16: bool, allow_fallback: bool) -> dict:
    """Keyword options for `create_runner` from CLI flags (only those the backend understands)."""
    if backend == "ort-cpu":
        return {"threads": threads, "allow_fallback": allow_fallback}
    if backend == "ort-cuda":
        return {"cuda_graph": cuda_graph, "allow_fallback": allow_fallback}
    if backend == "ort-trt":
        return {"fp16": fp16, "allow_fallback": allow_fallback}
    if backend == "trt":
        return {"fp16": fp16, "cuda_graph": cuda_graph}
    return {}


BackendOpt = typer.Option("ort-cpu", "--backend", "-b", help=BACKEND_HELP)
ThreadsOpt = typer.Option(0, help="ort-cpu threads: 0 runs one single-threaded lane per CPU core; N uses one session with N threads.")
CudaGraphOpt = typer.Option(False, "--cuda-graph", help="Capture the step as a CUDA graph (GPU backends).")
Fp16Opt = typer.Option(False, "--fp16", help="TensorRT FP16 (refused by a calibration that measured a loss, unless forced).")
ForceFp16Opt = typer.Option(False, "--force-fp16", help="Use FP16 even where calibration measured an accuracy loss.")
FallbackOpt = typer.Option(False, "--allow-fallback", help="Allow ONNX Runtime to fall back to the CPU silently.")
