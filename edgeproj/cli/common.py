"""Options shared by the verbs that run the projection, turned into one backend choice."""

from __future__ import annotations

import typer

from edgeproj.runtime.backends import BACKENDS

BACKEND_HELP = " | ".join(BACKENDS)


def runtime_choice(
    backend: str,
    batch: int,
    threads: int = 0,
    cuda_graph: bool = False,
    fp16: bool = False,
    force_fp16: bool = False,
    allow_fallback: bool = False,
):
    """One BackendChoice from the CLI flags; a flag the backend does not take is refused (ConfigError)."""
    from edgeproj.runtime.backends import backend_options
    from edgeproj.runtime.projector import BackendChoice

    options = backend_options(backend, threads=threads, cuda_graph=cuda_graph, fp16=fp16, allow_fallback=allow_fallback)
    return BackendChoice(backend, options, batch, force_fp16)


BackendOpt = typer.Option("ort-cpu", "--backend", "-b", help=BACKEND_HELP)
ThreadsOpt = typer.Option(
    0, help="ort-cpu threads: 0 runs one single-threaded lane per CPU core; N uses one session with N threads."
)
CudaGraphOpt = typer.Option(False, "--cuda-graph", help="Capture the step as a CUDA graph (GPU backends).")
Fp16Opt = typer.Option(False, "--fp16", help="TensorRT FP16 (refused by a calibration that measured a loss, unless forced).")
ForceFp16Opt = typer.Option(False, "--force-fp16", help="Use FP16 even where calibration measured an accuracy loss.")
FallbackOpt = typer.Option(False, "--allow-fallback", help="Allow ONNX Runtime to fall back to the CPU silently.")
