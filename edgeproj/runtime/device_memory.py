"""Device memory a GPU backend takes for a bundle: what `edgeproj doctor --bundle` and `edgeproj bench` report.

Measured as the driver sees it (memory in use before and after a runner opens, loads a batch and steps
it), so ONNX Runtime's arena, TensorRT's execution contexts and the projection state all count: the
figure that decides whether a configuration fits next to a camera pipeline on an 8 GB Orin Nano.
"""

from __future__ import annotations

import gc

import numpy as np

from edgeproj.runtime.backends.cuda_mem import device_memory_in_use

MB = 2**20


def memory_taken(before: int | None, after: int | None) -> float | None:
    """MB between two `device_memory_in_use` readings, None when either is missing."""
    if before is None or after is None:
        return None
    return round((after - before) / MB, 1)


def baseline() -> int | None:
    """Memory in use now, after dropping what earlier runners left for the garbage collector."""
    gc.collect()
    return device_memory_in_use()


def backend_device_memory(manifest, backend: str, options=None, batch: int = 8) -> dict:
    """Open `backend` on the bundle, project one batch for two readback chunks, and report the device
    memory it took (MB, the driver's count) or why it could not be measured; never raises."""
    from edgeproj.runtime.projector import Projector

    if device_memory_in_use() is None:
        return {"device_memory_mb": None, "why": "not measurable here: cuda-python or a CUDA device is missing"}
    before = baseline()
    try:
        with Projector(manifest, backend=backend, options=options, batch=batch, force_fp16=True) as proj:
            c, s = manifest.channels, manifest.size
            x0 = np.full((batch, c, s, s), 0.5, np.float32)
            chunk = proj.runner.chunk or 1
            settings = manifest.projection.without_stop_rules().with_overrides(max_iterations=2 * chunk + 1)
            proj.project_patches(x0, settings=settings)
            after = device_memory_in_use()
    except Exception as exc:  # noqa: BLE001 - the reason is the report
        return {"device_memory_mb": None, "why": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    return {"device_memory_mb": memory_taken(before, after), "batch": batch}
