"""ort-trt: ONNX Runtime's TensorRT provider (the CUDA runner's device state), engine caches on disk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgeproj import contract
from edgeproj.errors import ConfigError
from edgeproj.runtime.backends.ort_cuda import OrtCudaOptions, OrtCudaRunner
from edgeproj.runtime.backends.ort_session import available_providers


@dataclass(frozen=True)
class OrtTrtOptions(OrtCudaOptions):
    """TensorRT provider settings (plus the CUDA runner's)."""

    fp16: bool = False
    cache_dir: Path | None = None
    max_batch: int = 16

    def __post_init__(self):
        if self.cuda_graph:
            raise ConfigError("ort-trt does not capture CUDA graphs; use --backend ort-cuda or trt with --cuda-graph")


def probe() -> str | None:
    """None when usable here, else why not."""
    try:
        prov = available_providers()
    except Exception as exc:  # noqa: BLE001
        return str(exc)
    if "TensorrtExecutionProvider" not in prov:
        return f"this onnxruntime build has no TensorrtExecutionProvider (providers: {', '.join(prov)}); install onnxruntime-gpu with TensorRT"
    return None


class OrtTensorRTRunner(OrtCudaRunner):
    """ONNX Runtime's TensorRT provider, with the engine and timing caches on disk."""

    name = "ort-trt"

    def __init__(self, manifest, options: OrtTrtOptions | None = None):
        options = options or OrtTrtOptions()
        super().__init__(manifest, options)
        # ONNX Runtime keys cached engines by graph structure and names, not weights: every export of a
        # variant looks the same to it. One folder per graph checksum keeps bundles from sharing engines.
        base = Path(options.cache_dir or Path.home() / ".cache" / "edgeproj" / "ort-trt")
        self.cache_dir = base / manifest.graphs["step"].sha256[:16]

    def _step_providers(self) -> list:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        c, s = self.manifest.channels, self.manifest.size

        def shapes(n):
            img = ",".join(f"{k}:{n}x{c}x{s}x{s}" for k in contract.IMAGE_INPUTS)
            return img + "," + ",".join(f"{k}:{n}" for k in contract.VECTOR_INPUTS)

        o = self.options
        opts = {
            "device_id": o.device_id,
            "trt_fp16_enable": bool(o.fp16),
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(self.cache_dir),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(self.cache_dir),
            "trt_profile_min_shapes": shapes(1),
            "trt_profile_opt_shapes": shapes(min(8, o.max_batch)),
            "trt_profile_max_shapes": shapes(o.max_batch),
        }
        return [("TensorrtExecutionProvider", opts), ("CUDAExecutionProvider", {"device_id": o.device_id, "use_tf32": 0})]

    def _gradient_providers(self) -> list:
        return [("CUDAExecutionProvider", {"device_id": self.options.device_id, "use_tf32": 0})]

    def activate(self) -> None:
        # TF32 rounding grows over 100 steps; the TensorRT provider reads this at engine build.
        os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
        super().activate()
