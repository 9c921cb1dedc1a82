"""TensorRT engines for the native backend: build from the step graph, FP32 pinning, on-device cache.

Works on TensorRT 10.3 (JetPack 6) and 11.x: features are detected, not versions compared (11 removed
the FP16/INT8 builder flags; its networks are strongly typed, so reduced precision must come from the
graph). Engines are cached on the device (`cache.cache_root()/trt`, mode 0700), keyed by graph sha256,
TensorRT version, GPU name, precision, TF32 setting and shape profile, and loaded only after their
recorded sha256 matches; they are never shipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from edgeproj import contract
from edgeproj.errors import BackendError, DependencyError
from edgeproj.runtime.backends.cache import cache_root, private_dir, read_verified, sha256_bytes, write_private
from edgeproj.runtime.backends.cuda_mem import cuda_status, gpu_name
from edgeproj.runtime.backends.nvlibs import tf32_tag

FLOAT_TYPES = frozenset({"FLOAT", "HALF", "BF16"})


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


def default_cache_dir() -> Path:
    return cache_root() / "trt"


def unavailable_reason() -> str | None:
    """None when TensorRT, cuda-python and a CUDA device are all present, else why not."""
    try:
        tensorrt()
    except Exception as exc:  # noqa: BLE001 - the reason is what the user needs
        return str(exc)
    return cuda_status()["problem"]


def has_fp16_flag() -> bool:
    """TensorRT 10.x has BuilderFlag.FP16; TensorRT 11 is strongly typed and has none."""
    return hasattr(tensorrt().BuilderFlag, "FP16")


def fp16_unavailable_reason() -> str | None:
    """None when this TensorRT can build the FP16 step engine (FP32 Adam tail), else why not."""
    try:
        trt = tensorrt()
    except DependencyError as exc:
        return str(exc)
    if not has_fp16_flag():
        return (
            f"FP16 unavailable on this TensorRT ({trt.__version__}): TensorRT 11 removed BuilderFlag.FP16 (networks are "
            "strongly typed, FP16 must be written into the ONNX graph) and edgeproj exports FP32 graphs only; "
            "run FP32, or use TensorRT 10.x (JetPack 6, or pip install 'edgeproj[tensorrt]')"
        )
    return None


def fp32_pin_selection(layers: Sequence[tuple[str, Sequence[str]]], scope: str = contract.ADAM_SCOPE) -> list[str]:
    """Names of the layers to pin to FP32 inside an FP16 engine: the optimizer tail's float layers.

    `layers` is (name, output data type names) per layer of the parsed network, e.g.
    ("adam/Greater_1", ["BOOL"]). A layer is pinned when its name is under `scope` and every output is
    a float type: TensorRT 10.3 rejects a float precision constraint on a layer producing BOOL or
    integer (shape) tensors under OBEY_PRECISION_CONSTRAINTS.
    """
    return [name for name, dtypes in layers if scope in name and dtypes and all(d.upper() in FLOAT_TYPES for d in dtypes)]


def _dtype_name(dtype) -> str:
    return str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1].upper()


def build_engine(
    onnx_path: Path, sha256: str, cache_dir: Path, max_batch: int, opt_batch: int, fp16: bool, shapes: dict
) -> bytes:
    """Serialized engine for the step graph, from the cache or freshly built (and cached, with a timing cache)."""
    trt = tensorrt()
    if fp16 and (reason := fp16_unavailable_reason()):
        raise BackendError(reason)
    key = {
        "graph": sha256,
        "trt": trt.__version__,
        "gpu": gpu_name(),
        "precision": "fp16" if fp16 else "fp32",
        "tf32": tf32_tag(),
        "profile": [1, opt_batch, max_batch],
    }
    cached = load_cached_engine(cache_dir, key)
    if cached is not None:
        return cached
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
        config.set_flag(trt.BuilderFlag.FP16)
        pin_fp32(network, config)
    timing_path = cache_dir / "timing.cache"
    cache = config.create_timing_cache(_timing_bytes(timing_path))
    config.set_timing_cache(cache, ignore_mismatch=True)
    profile = builder.create_optimization_profile()
    for name, per_n in shapes.items():
        profile.set_shape(name, per_n(1), per_n(opt_batch), per_n(max_batch))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError("TensorRT failed to build the engine; rerun with a smaller --batch or check the log above")
    timing = bytes(cache.serialize())
    write_private(timing_path, timing)
    write_private(timing_path.with_suffix(".sha256"), sha256_bytes(timing).encode())
    data = bytes(serialized)
    store_engine(cache_dir, key, data)
    return data


def _paths(cache_dir: Path, key: dict) -> tuple[Path, Path]:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir / f"step-{digest}.engine", cache_dir / f"step-{digest}.json"


def load_cached_engine(cache_dir: Path, key: dict) -> bytes | None:
    """The cached engine for `key` once its recorded sha256 matches; None when there is none.

    A file that changed since it was written is refused (BackendError); an engine without a recorded
    checksum (an older edgeproj, or a file dropped in) is deleted, never loaded, and rebuilt.
    """
    private_dir(cache_dir)
    engine_path, meta_path = _paths(cache_dir, key)
    if not engine_path.is_file():
        return None
    recorded = _recorded_sha(meta_path)
    if recorded:
        return read_verified(engine_path, recorded)
    engine_path.unlink()
    return None


def store_engine(cache_dir: Path, key: dict, data: bytes) -> Path:
    """Write an engine (0600) and its key with the engine's sha256 beside it; returns the engine path."""
    private_dir(cache_dir)
    engine_path, meta_path = _paths(cache_dir, key)
    write_private(engine_path, data)
    write_private(meta_path, json.dumps(key | {"engine_sha256": sha256_bytes(data)}, indent=2).encode())
    return engine_path


def _recorded_sha(meta_path: Path) -> str | None:
    try:
        return json.loads(meta_path.read_text()).get("engine_sha256")
    except (OSError, ValueError, AttributeError):
        return None


def _timing_bytes(path: Path) -> bytes:
    """The timing cache when its recorded checksum matches, else an empty one (it only saves build time)."""
    try:
        data = path.read_bytes()
        want = path.with_suffix(".sha256").read_text().strip()
    except OSError:
        return b""
    return data if sha256_bytes(data) == want else b""


def pin_fp32(network, config) -> int:
    """Keep the optimizer tail (float layers under the contract's Adam scope) in FP32 inside an FP16
    engine: eps = 1e-8 is zero in FP16 and (1 - beta2) g^2 underflows. Returns the layers pinned."""
    trt = tensorrt()
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    described = [(lay.name, [_dtype_name(lay.get_output(j).dtype) for j in range(lay.num_outputs)]) for lay in layers]
    chosen = set(fp32_pin_selection(described))
    for lay in layers:
        if lay.name in chosen:
            lay.precision = trt.float32
            for j in range(lay.num_outputs):
                lay.set_output_type(j, trt.float32)
    if hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS"):
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    return len(chosen)
