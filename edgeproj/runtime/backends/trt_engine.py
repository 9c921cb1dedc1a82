"""TensorRT engines for the native backend: build from the step graph, FP32 pinning, on-device cache.

Works on TensorRT 10.3 (JetPack 6) and 11.x: features are detected, not versions compared (11 removed
the FP16/INT8 builder flags; its networks are strongly typed, so reduced precision must come from the
graph). Engines are cached on the device, keyed by graph sha256, TensorRT version, GPU name, precision
and shape profile; they are never shipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from edgeproj import contract
from edgeproj.errors import BackendError, DependencyError
from edgeproj.runtime.backends.cuda_mem import device_count, gpu_name


def tensorrt():
    """The tensorrt module (DependencyError saying how to install it when missing)."""
    try:
        import tensorrt as trt
    except ImportError:
        raise DependencyError(
            "TensorRT's Python package is not installed (on a Jetson use the system package "
            "through a venv with --system-site-packages; elsewhere pip install 'edgeproj[tensorrt]')"
        ) from None
    return trt


def unavailable_reason() -> str | None:
    """None when TensorRT, cuda-python and a CUDA device are all present, else why not."""
    try:
        tensorrt()
        if device_count() < 1:
            return "no CUDA device"
    except Exception as exc:  # noqa: BLE001 - the reason is what the user needs
        return str(exc)
    return None


def has_fp16_flag() -> bool:
    """TensorRT 10.x has BuilderFlag.FP16; TensorRT 11 is strongly typed and has none."""
    return hasattr(tensorrt().BuilderFlag, "FP16")


def build_engine(
    onnx_path: Path, sha256: str, cache_dir: Path, max_batch: int, opt_batch: int, fp16: bool, shapes: dict
) -> bytes:
    """Serialized engine for the step graph, from the cache or freshly built (and cached, with a timing cache)."""
    trt = tensorrt()
    key = {
        "graph": sha256,
        "trt": trt.__version__,
        "gpu": gpu_name(),
        "precision": "fp16" if fp16 else "fp32",
        "tf32": False,
        "profile": [1, opt_batch, max_batch],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    cache_dir.mkdir(parents=True, exist_ok=True)
    engine_path = cache_dir / f"step-{digest}.engine"
    if engine_path.is_file():
        return engine_path.read_bytes()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt, "NetworkDefinitionCreationFlag") and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # needed on 8.x, a no-op later
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse {onnx_path.name}: {errs}")
    contract.check_graph(
        "step",
        [network.get_input(i).name for i in range(network.num_inputs)],
        [network.get_output(i).name for i in range(network.num_outputs)],
        str(onnx_path),
    )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 rounding grows over 100 steps: FP32 means FP32
    if fp16:
        if not has_fp16_flag():
            raise BackendError(
                "this TensorRT has no FP16 builder flag (TensorRT 11 is strongly typed): "
                "FP16 needs an FP16 graph, which edgeproj does not export yet; use FP32"
            )
        config.set_flag(trt.BuilderFlag.FP16)
        pin_fp32(network, config)
    timing_path = cache_dir / "timing.cache"
    cache = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)
    profile = builder.create_optimization_profile()
    for name, per_n in shapes.items():
        profile.set_shape(name, per_n(1), per_n(opt_batch), per_n(max_batch))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError("TensorRT failed to build the engine; rerun with a smaller --batch or check the log above")
    _write_atomic(timing_path, bytes(cache.serialize()))
    data = bytes(serialized)
    _write_atomic(engine_path, data)
    _write_atomic(cache_dir / f"step-{digest}.json", json.dumps(key, indent=2).encode())
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def pin_fp32(network, config) -> int:
    """Keep the optimizer tail (layers named under the contract's Adam scope) in FP32 inside an FP16
    engine: eps = 1e-8 is zero in FP16 and (1 - beta2) g^2 underflows. Returns the layers pinned."""
    trt = tensorrt()
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if contract.ADAM_SCOPE in layer.name:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned += 1
    if hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS"):
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    return pinned
