"""ort-trt: ONNX Runtime's TensorRT provider (the CUDA runner's device state), engine caches on disk.

The provider must take the whole step graph: nodes it rejects would run on the CUDA provider while the
session still lists TensorRT first, so activation checks the node placement and refuses a partial one
(unless --allow-fallback). FP16 is refused: the provider has no per-layer precision, so the Adam tail
would run in FP16, where eps = 1e-8 is zero. Its cache folder is private (0700) and every cached file
is checked against the sha256 recorded after the run that wrote it before the provider may read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeproj import contract
from edgeproj.errors import BackendError, ConfigError
from edgeproj.runtime.backends.cache import ChecksumLedger, cache_root, private_dir
from edgeproj.runtime.backends.nvlibs import dist_version, installed_tensorrt, tf32_tag
from edgeproj.runtime.backends.ort_cuda import OrtCudaOptions, OrtCudaRunner
from edgeproj.runtime.backends.ort_session import (
    CUDA,
    TRT,
    assignment_problem,
    available_providers,
    make_session,
    node_assignment,
    profiled_assignment,
    tensorrt_pair_problem,
)

FP16_REFUSED = (
    "ort-trt does not run FP16: ONNX Runtime's TensorRT provider cannot keep the Adam tail in FP32 "
    "(no per-layer precision), and eps = 1e-8 is zero in FP16; use --backend trt --fp16 (TensorRT 10.x) or FP32"
)


@dataclass(frozen=True)
class OrtTrtOptions(OrtCudaOptions):
    """TensorRT provider settings (plus the CUDA runner's). allow_fallback also accepts a partial placement."""

    fp16: bool = False
    cache_dir: Path | None = None  # default: $XDG_CACHE_HOME/edgeproj/ort-trt
    max_batch: int = 16

    def __post_init__(self):
        if self.cuda_graph:
            raise ConfigError("ort-trt does not capture CUDA graphs; use --backend ort-cuda or trt with --cuda-graph")
        if self.fp16:
            raise ConfigError(FP16_REFUSED)


def probe() -> str | None:
    """None when usable here, else why not."""
    try:
        prov = available_providers()
    except Exception as exc:  # noqa: BLE001
        return str(exc)
    if TRT not in prov:
        return f"this onnxruntime build has no {TRT} (providers: {', '.join(prov)}); install onnxruntime-gpu: pip install 'edgeproj[gpu]'"
    return tensorrt_pair_problem()


def fp16_probe() -> str | None:
    """ort-trt never runs FP16 (see FP16_REFUSED)."""
    return FP16_REFUSED


def default_cache_dir() -> Path:
    return cache_root() / "ort-trt"


class OrtTensorRTRunner(OrtCudaRunner):
    """ONNX Runtime's TensorRT provider, with the engine and timing caches on disk."""

    name = "ort-trt"

    def __init__(self, manifest, options: OrtTrtOptions | None = None):
        options = options or OrtTrtOptions()
        super().__init__(manifest, options)
        # ONNX Runtime keys cached engines by graph structure and names, not weights: every export of a
        # variant looks the same to it, and neither its key nor its file names carry the TensorRT version.
        # One folder per graph checksum, ONNX Runtime and TensorRT versions and TF32 setting keeps bundles,
        # builds and upgrades from sharing engines (a stale engine after a TensorRT upgrade fails to load).
        base = Path(options.cache_dir or default_cache_dir())
        ver = dist_version("onnxruntime-gpu", "onnxruntime") or "unknown"
        trt_ver = installed_tensorrt() or "none"
        self.cache_dir = base / f"{manifest.graphs['step'].sha256[:16]}-ort{ver}-trt{trt_ver}-{tf32_tag()}"
        self.placement: dict | None = None
        self.placement_note: str | None = None

    def _step_providers(self) -> list:
        c, s = self.manifest.channels, self.manifest.size

        def shapes(n):
            img = ",".join(f"{k}:{n}x{c}x{s}x{s}" for k in contract.IMAGE_INPUTS)
            return img + "," + ",".join(f"{k}:{n}" for k in contract.VECTOR_INPUTS)

        o = self.options
        opts = {
            "device_id": o.device_id,
            "trt_fp16_enable": False,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(self.cache_dir),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(self.cache_dir),
            "trt_profile_min_shapes": shapes(1),
            "trt_profile_opt_shapes": shapes(min(8, o.max_batch)),
            "trt_profile_max_shapes": shapes(o.max_batch),
        }
        return [(TRT, opts), (CUDA, {"device_id": o.device_id, "use_tf32": 0})]

    def _gradient_providers(self) -> list:
        return [(CUDA, {"device_id": self.options.device_id, "use_tf32": 0})]

    def _probe_feed(self) -> dict:
        c, s = self.manifest.channels, self.manifest.size
        feed = {k: np.zeros((1, c, s, s), np.float32) for k in contract.IMAGE_INPUTS}
        feed |= {k: np.zeros(1, np.float32) for k in contract.VECTOR_INPUTS}
        return feed | {k: np.zeros(1, np.float32) for k in contract.SETTINGS}

    def activate(self) -> None:
        private_dir(self.cache_dir)
        ledger = ChecksumLedger(self.cache_dir)
        ledger.verify()  # before ONNX Runtime may deserialize anything from the folder
        fallback = self.options.allow_fallback
        step_path = self.manifest.graph_path("step")
        self._step = make_session(step_path, "step", self._step_providers(), allow_fallback=fallback, record_assignment=True)
        placement = node_assignment(self._step)
        if placement is None:  # onnxruntime < 1.24: read the placement from a profiled run
            try:
                placement = profiled_assignment(step_path, self._step_providers(), self._probe_feed())
            except Exception as exc:  # noqa: BLE001 - an unconfirmed placement is refused below
                placement = {}
                self.placement_note = f"profiling failed: {' '.join(str(exc).split())[:200]}"
        self.placement = {ep: len(nodes) for ep, nodes in placement.items()}
        problem = assignment_problem(placement, TRT)
        if problem and self.placement_note:
            problem = f"{problem} ({self.placement_note})"
        ledger.record()
        if problem and not fallback:
            self._step = None
            raise BackendError(f"{problem}; use --backend ort-cuda or trt, or --allow-fallback to accept it")
        self.placement_note = problem
        self._gradient = make_session(
            self.manifest.graph_path("gradient"), "gradient", self._gradient_providers(), allow_fallback=fallback
        )

    def deactivate(self) -> None:
        super().deactivate()
        if self.cache_dir.is_dir():
            ChecksumLedger(self.cache_dir).record()  # engines the provider wrote lazily, at the first run
