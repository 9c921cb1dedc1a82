"""FP16 against FP32 on a backend with an FP16 path: maps, energies and (with labels) pixel AUROC.

Which backends have one is their registry declaration (`Backend.fp16`). Where the backend runs but FP16
cannot (TensorRT 11 has no FP16 builder flag; ort-trt cannot keep the Adam tail in FP32), the verdict
recorded is the string "FP16 unavailable: <reason>", not a failure.
"""

from __future__ import annotations

import numpy as np

from edgeproj.calibration.calibrate import FP16_MAX_AUROC_DROP, statistics_free
from edgeproj.errors import BackendError
from edgeproj.metrics import roc_auc
from edgeproj.runtime import backends
from edgeproj.runtime.manifest import Manifest
from edgeproj.runtime.projector import Projector


def measure_fp16(manifest: Manifest, images: list[np.ndarray], backend: str, labelled=None) -> dict | str:
    """Run the same images in FP32 and FP16 on a backend with an FP16 path and compare what users see.

    Returns the verdict dict, or "FP16 unavailable: ..." where the backend runs here but FP16 cannot.
    Raises BackendError when the backend has no FP16 path or is unavailable (nothing could be measured).
    """
    name, entry = backend, backends.backend(backend)
    if not entry.fp16:
        with_fp16 = ", ".join(n for n, b in backends.REGISTRY.items() if b.fp16)
        raise BackendError(f"the FP16 check needs a backend with FP16 ({with_fp16}); {name} runs FP32 only")
    if (why := entry.unavailable_reason()) is not None:
        raise BackendError(f"the FP16 check needs {name}, which is unavailable here: {why}")
    if (why := entry.fp16_unavailable_reason()) is not None:
        return f"FP16 unavailable: {why}"
    runs = {}
    for prec, fp16 in (("fp32", False), ("fp16", True)):
        # Maps and energies only: the bundle's old statistics (about to be replaced) must not be needed.
        with Projector(
            statistics_free(manifest), backend=name, options=backends.backend_options(name, fp16=fp16), force_fp16=True
        ) as proj:
            res = proj.project(images)
            lab = proj.project(labelled.images) if labelled is not None else None
        runs[prec] = (res, lab)
    a, b = runs["fp32"][0], runs["fp16"][0]
    diffs = [float(np.abs(x.map - y.map).max()) for x, y in zip(a, b)]
    corr = [float(np.corrcoef(x.map.ravel(), y.map.ravel())[0, 1]) for x, y in zip(a, b)]
    traj = [
        abs(x.energy_traces[0][-1] - y.energy_traces[0][-1]) / abs(x.energy_traces[0][-1])
        for x, y in zip(a, b)
        if x.energy_traces[0] and y.energy_traces[0]
    ]
    out = {
        "backend": name,
        "images": len(images),
        "map_max_abs_diff": max(diffs),
        "map_correlation_min": min(corr),
        "final_energy_rel_diff_max": max(traj) if traj else None,
        "note": "the step engine exposes no gradient output; its effect shows in energies and maps",
    }
    if labelled is not None:
        labels = np.concatenate([m.ravel() for m in labelled.masks])
        auc = {p: roc_auc(labels, np.concatenate([r.map.ravel() for r in runs[p][1]])) for p in runs}
        drop = auc["fp32"] - auc["fp16"]
        out |= {"pixel_auroc": auc, "pixel_auroc_drop": drop, "allowed": bool(drop <= FP16_MAX_AUROC_DROP)}
    else:
        out["allowed"] = bool(min(corr) > 0.99)
        out["rule"] = "no labelled set: FP16 allowed when every map correlates > 0.99 with FP32"
    return out
