"""Benchmark of the projection loop, reported like trtexec: warm-up excluded, percentiles, ratios.

One "iteration" is one masked-Adam step of one 128x128 sample (forward + input gradient + update);
iterations per millisecond = batch / step time. The PyTorch eager autograd loop does the same work
(edgeproj.models.torch_reference) in the same run, so `ratio_vs_torch` compares like with like. A timed
runtime projection is the deployed one (`Projector.project_patches`, stop rules off): it includes the
evaluation at x_T, a forward pass that the torch loop does not make (under 1% at 100 steps). On the CPU a
step of a bundle with the forward/update split is two graph runs (forward, then update), as on the line.

GPU backends are also compared with the same torch loop on the same GPU (`torch-cuda` rows,
`ratio_vs_torch_same_device`) when torch has CUDA. Configurations that cannot run here (a backend not
available, FP16 on a TensorRT without it) are listed under `unavailable` with the reason, never measured
as failures and never silently dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeproj.runtime import device_memory
from edgeproj.runtime.backends import REGISTRY, backend_options, probe_all
from edgeproj.runtime.manifest import Manifest, load_manifest
from edgeproj.runtime.projector import Projector


@dataclass
class BenchOptions:
    """What to measure."""

    backends: tuple[str, ...] | None = None  # default: every available backend
    batches: tuple[int, ...] = (1, 4, 16)
    iterations: int | None = None  # iterations per projection (default: the manifest's max)
    warmup: int = 5
    repeats: int = 5
    threads: int = 0
    torch: bool = True
    fp16: bool = True  # also TensorRT FP16 where available
    line: bool = True  # the line figure: whole frames with the stop rules on (edgeproj.bench.line)
    frame_sizes: tuple[int, ...] = (256, 1024)
    line_frames: int = 20
    memory: bool = True  # peak resident memory of the runtime vs torch (child processes)


@dataclass
class Variant:
    """One measured configuration: a backend and its options object."""

    name: str
    backend: str
    options: object = None


GPU_BACKENDS = device_memory.GPU_BACKENDS


def unavailable_configurations(opts: BenchOptions) -> dict[str, str]:
    """Configurations asked for (or the defaults) that cannot run here, with the reason."""
    reasons = probe_all()
    out = {}
    for b in opts.backends or tuple(REGISTRY):
        if b not in reasons:
            out[b] = f"unknown backend; choose from {', '.join(REGISTRY)}"
        elif reasons[b] is not None:
            out[b] = reasons[b]
        elif opts.fp16 and (fp16 := [c.name for c in REGISTRY[b].bench if c.fp16]):
            if why := REGISTRY[b].fp16_unavailable_reason():  # e.g. TensorRT 11 has no FP16 flag
                out |= dict.fromkeys(fp16, why)
    return out


def configurations(opts: BenchOptions) -> list[Variant]:
    """The configurations every available backend declares for bench (its registry entry's `bench`)."""
    reasons = probe_all()
    out = []
    for b in opts.backends or tuple(REGISTRY):
        if reasons.get(b, "unknown") is not None:
            continue
        entry = REGISTRY[b]
        fp16 = opts.fp16 and any(c.fp16 for c in entry.bench) and entry.fp16_unavailable_reason() is None
        for c in entry.bench:
            flags = c.flags_here(opts.threads)
            if flags is not None and (fp16 or not c.fp16):
                out.append(Variant(c.name, b, backend_options(b, **flags)))
    return out


def latency_stats(ms: list[float]) -> dict:
    """min, mean and percentiles (p50, p90, p95, p99) of latencies in ms."""
    a = np.asarray(ms)
    return {
        "min": float(a.min()),
        "mean": float(a.mean()),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
    }


def _inputs(manifest: Manifest, batch: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c, s = manifest.channels, manifest.size
    # Smooth random images in the data range; the work per step does not depend on the content.
    return np.clip(0.5 + 0.15 * rng.standard_normal((batch, c, s, s)), 0, 1).astype(np.float32)


def bench_runtime(manifest: Manifest, variant: Variant, batch: int, iterations: int, warmup: int, repeats: int) -> dict:
    """Time whole projections of `iterations` steps (stop rules off) on one backend configuration."""
    x0 = _inputs(manifest, batch)
    fixed = manifest.projection.without_stop_rules()
    on_gpu = variant.backend in GPU_BACKENDS
    mem_before = device_memory.baseline() if on_gpu else None
    t_setup = time.perf_counter()
    with Projector(manifest, backend=variant.backend, options=variant.options, batch=batch, force_fp16=True) as proj:
        setup_s = time.perf_counter() - t_setup
        chunk = proj.runner.chunk or 1
        # Warm-up covers both ping-pong parities of every chunk slot, so CUDA-graph captures
        # (one per binding) happen before timing starts.
        proj.project_patches(x0, settings=replace(fixed, max_iterations=max(warmup, 2 * chunk + 1)))
        mem_after = device_memory.device_memory_in_use() if on_gpu else None
        timed = replace(fixed, max_iterations=iterations)
        lat, dev = [], []
        for _ in range(repeats):
            before = proj.device_ms
            t = time.perf_counter()
            proj.project_patches(x0, settings=timed)
            lat.append((time.perf_counter() - t) * 1000)
            if before is not None:
                dev.append(proj.device_ms - before)
        providers = proj.providers
    step_ms = float(np.median(lat)) / iterations
    row = {
        "backend": variant.name,
        "batch": batch,
        "providers": providers,
        "setup_s": round(setup_s, 3),
        "step_ms": step_ms,
        "iterations_per_ms": batch / step_ms,
        "images_per_s": 1000.0 * batch / (step_ms * iterations),
        "latency_ms": latency_stats(lat),
    }
    if dev:
        row["device_ms"] = latency_stats(dev)  # CUDA-event time of the steps alone, without host readbacks
    if on_gpu:
        # What this configuration takes on the device (driver's count, after warm-up and graph captures).
        row["device_memory_mb"] = device_memory.memory_taken(mem_before, mem_after)
    return row


def torch_cuda_available() -> bool:
    """torch is installed with CUDA and sees a GPU (then GPU backends get a same-device torch row)."""
    try:
        import torch
    except ImportError:
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA install means no same-device row, not a crash
        return False


def torch_model(manifest: Manifest):
    """The bundle's autoencoder in torch (eval mode), with the run's weights when the run is reachable."""
    from edgeproj.models.autoencoder import build_model
    from edgeproj.models.config import ModelConfig

    cfg = ModelConfig.from_dict(manifest.training.get("model") or {"variant": manifest.variant, "channels": manifest.channels})
    model = build_model(cfg).eval()
    weights = Path(manifest.training.get("run", "")) / "model.safetensors"
    if weights.is_file():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(weights)))
    return model


def bench_torch(manifest: Manifest, batch: int, iterations: int, warmup: int, repeats: int, device: str = "cpu") -> dict | None:
    """The PyTorch eager autograd loop on the same work, if torch is installed (never on the device).

    device="cuda" runs it on the GPU in FP32 (TF32 off, like the runtime's GPU paths), synchronized
    around every timed projection.
    """
    try:
        import torch
    except ImportError:
        return None
    from edgeproj.models.torch_reference import torch_project

    model = torch_model(manifest)
    x0 = torch.from_numpy(_inputs(manifest, batch))
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if cuda:
        model, x0 = model.to(device), x0.to(device)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    p = manifest.projection
    try:
        torch_project(model, x0, p.alpha, p.lam, warmup, p.tuned, p.tuned_on_step)
        sync()
        lat = []
        for _ in range(repeats):
            t = time.perf_counter()
            torch_project(model, x0, p.alpha, p.lam, iterations, p.tuned, p.tuned_on_step)
            sync()
            lat.append((time.perf_counter() - t) * 1000)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    step_ms = float(np.median(lat)) / iterations
    row = {
        "backend": "torch-cuda" if cuda else "torch-eager",
        "batch": batch,
        "threads": torch.get_num_threads(),
        "step_ms": step_ms,
        "iterations_per_ms": batch / step_ms,
        "images_per_s": 1000.0 * batch / (step_ms * iterations),
        "latency_ms": latency_stats(lat),
        "torch": torch.__version__,
    }
    if cuda:
        row["device"] = torch.cuda.get_device_name(torch.device(device))
    return row


def conv_reference_gflops(threads: int = 0, seconds: float = 1.0) -> float | None:
    """GFLOP/s of ONNX Runtime's own kernel on a large 3x3 Conv here: what the hardware gives ORT."""
    try:
        import onnxruntime as ort
        from onnxruntime import OrtValue  # noqa: F401
    except ImportError:
        return None
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    c, hw = 64, 64
    w = np.random.default_rng(0).standard_normal((c, c, 3, 3)).astype(np.float32) * 0.05
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, c, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, c, hw, hw])],
        [numpy_helper.from_array(w, "w")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((8, c, hw, hw)).astype(np.float32)
    s.run(None, {"x": x})
    flops = 2 * 8 * c * hw * hw * c * 9
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s.run(None, {"x": x})
        n += 1
    return flops * n / (time.perf_counter() - t0) / 1e9


def run_bench(bundle: Path, opts: BenchOptions, tick: Callable[[str], None] | None = None) -> dict:
    """Measure every configuration at every batch size; returns the full report."""
    from edgeproj.bench.system import system_facts

    manifest = load_manifest(bundle)
    iterations = opts.iterations or manifest.projection.max_iterations
    flops = manifest.cost.get("step_flops_per_sample")
    rows = []
    torch_rows: dict[int, dict] = {}
    torch_gpu_rows: dict[int, dict] = {}
    configs = configurations(opts)
    same_gpu = opts.torch and any(v.backend in GPU_BACKENDS for v in configs) and torch_cuda_available()
    for batch in opts.batches:
        if opts.torch:
            if tick:
                tick(f"torch-eager b{batch}")
            t = bench_torch(manifest, batch, iterations, opts.warmup, opts.repeats)
            if t:
                torch_rows[batch] = t
                rows.append(t)
        if same_gpu:
            if tick:
                tick(f"torch-cuda b{batch}")
            try:
                t = bench_torch(manifest, batch, iterations, opts.warmup, opts.repeats, device="cuda")
                torch_gpu_rows[batch] = t
            except Exception as exc:  # noqa: BLE001 - reported as a failed row, like any backend
                t = {"backend": "torch-cuda", "batch": batch, "error": f"{type(exc).__name__}: {exc}"}
            rows.append(t)
        for v in configs:
            if tick:
                tick(f"{v.name} b{batch}")
            try:
                r = bench_runtime(manifest, v, batch, iterations, opts.warmup, opts.repeats)
            except Exception as exc:  # one failing backend must not lose the others' numbers
                r = {"backend": v.name, "batch": batch, "error": f"{type(exc).__name__}: {exc}"}
            rows.append(r)
    for r in rows:
        if "iterations_per_ms" not in r:
            continue
        ref = torch_rows.get(r["batch"])
        r["ratio_vs_torch"] = r["iterations_per_ms"] / ref["iterations_per_ms"] if ref else None
        # The same loop in torch on the same device: the GPU torch for GPU rows, the CPU torch for CPU rows.
        on_gpu = r["backend"] == "torch-cuda" or any(v.name == r["backend"] and v.backend in GPU_BACKENDS for v in configs)
        same = (torch_gpu_rows if on_gpu else torch_rows).get(r["batch"])
        r["ratio_vs_torch_same_device"] = r["iterations_per_ms"] / same["iterations_per_ms"] if same else None
        if flops:
            r["gflops"] = flops * r["iterations_per_ms"] / 1e6
    conv_ref = conv_reference_gflops(opts.threads)
    report = {
        "bundle": str(bundle),
        "variant": manifest.variant,
        "iterations_per_projection": iterations,
        "warmup_iterations": opts.warmup,
        "repeats": opts.repeats,
        "flops_per_iteration": flops,
        "reference_conv_gflops": conv_ref,
        "system": system_facts(),
        "results": rows,
        "unavailable": unavailable_configurations(opts),
    }
    best = {}
    for r in rows:
        if not r.get("backend", "").startswith("torch-") and "iterations_per_ms" in r:
            key = f"{r['backend']}_b{r['batch']}"
            best[key] = {
                "iterations_per_ms": round(r["iterations_per_ms"], 4),
                "ratio_vs_torch": r.get("ratio_vs_torch"),
                "ratio_vs_torch_same_device": r.get("ratio_vs_torch_same_device"),
            }
    report["summary"] = best
    if opts.line and configs:
        from edgeproj.bench.line import run_line

        if tick:
            tick("line frames")
        v = configs[0]
        report["line"] = run_line(manifest, v.backend, v.options, opts.frame_sizes, opts.line_frames, torch=opts.torch,
                                  memory=opts.memory)  # fmt: skip
        report["summary"]["line"] = {
            k: {"fps": round(r["runtime"]["fps"], 2), "fps_ratio_vs_torch": r.get("fps_ratio_vs_torch"),
                "iterations_per_tile": round(r["runtime"]["iterations_per_tile"], 2)}
            for k, r in report["line"]["frames"].items()
        }  # fmt: skip
    return report


def compare(report: dict, old: dict) -> list[dict]:
    """Ratio of this report's iterations/ms over an earlier report's, per (backend, batch)."""
    prev = {(r["backend"], r["batch"]): r for r in old.get("results", []) if "iterations_per_ms" in r}
    out = []
    for r in report["results"]:
        o = prev.get((r.get("backend"), r.get("batch")))
        if o and "iterations_per_ms" in r:
            out.append(
                {"backend": r["backend"], "batch": r["batch"], "ratio_vs_old": r["iterations_per_ms"] / o["iterations_per_ms"]}
            )
    return out
