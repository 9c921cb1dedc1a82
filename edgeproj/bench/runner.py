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

Every figure comes from interleaved rounds (edgeproj.bench.rounds): at each batch size all configurations
are opened and warmed up, then each round times one projection of each, the torch loop included, so a
disturbance hits them alike; a ratio is taken within each round, then its median. A figure whose rounds
disagree by more than NOISY_FACTOR is marked noisy, with what else used the CPU, and the summary leaves it out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeproj.bench.eager import EagerLoop, torch_available, torch_cuda_available
from edgeproj.bench.line import run_line
from edgeproj.bench.report import BenchReport
from edgeproj.bench.rounds import CpuLoad, cpu_sample, spread_of
from edgeproj.bench.rows import COMPARED, BenchRow
from edgeproj.bench.workload import TimedLoop, bench_inputs
from edgeproj.runtime import device_memory
from edgeproj.runtime.backends import ON_GPU, REGISTRY, backend_options, probe_all
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
    # Another bundle of the same model (e.g. its graphs from the other emitter): each configuration is also
    # timed on it, in the same interleaved rounds, and every row gets its per-round ratio to that twin.
    against: Path | None = None


COMPARED_TAG = " [compared]"  # the suffix of the compared bundle's rows


@dataclass
class Variant:
    """One measured configuration: a backend and its options object."""

    name: str
    backend: str
    options: object = None


GPU_BACKENDS = ON_GPU  # the registry's GPU backends (a name here when a test stands in for one)


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


class RuntimeLoop(TimedLoop):
    """Whole projections of `iterations` steps (stop rules off) on one backend configuration: opened and
    warmed up on entry, then one timed projection per `once()`."""

    def __init__(self, manifest: Manifest, variant: Variant, batch: int, iterations: int, warmup: int, name: str = ""):
        self.manifest, self.variant, self.batch, self.iterations, self.warmup = manifest, variant, batch, iterations, warmup
        self.name = name or variant.name
        self.device_latencies: list[float] = []
        super().__init__()

    def __enter__(self) -> RuntimeLoop:
        v = self.variant
        self.x0 = bench_inputs(self.manifest, self.batch)
        fixed = self.manifest.projection.without_stop_rules()
        self.on_gpu = v.backend in GPU_BACKENDS
        mem_before = device_memory.baseline() if self.on_gpu else None
        t_setup = time.perf_counter()
        with ExitStack() as stack:
            proj = stack.enter_context(
                Projector(self.manifest, backend=v.backend, options=v.options, batch=self.batch, force_fp16=True)
            )
            self.setup_s = time.perf_counter() - t_setup
            chunk = proj.runner.chunk or 1
            # Warm-up covers both ping-pong parities of every chunk slot, so CUDA-graph captures
            # (one per binding) happen before timing starts.
            proj.project_patches(self.x0, settings=replace(fixed, max_iterations=max(self.warmup, 2 * chunk + 1)))
            mem_after = device_memory.device_memory_in_use() if self.on_gpu else None
            # What this configuration takes on the device (driver's count, after warm-up and graph captures).
            self.device_memory_mb = device_memory.memory_taken(mem_before, mem_after) if self.on_gpu else None
            self.timed = replace(fixed, max_iterations=self.iterations)
            self.proj, self.providers = proj, proj.providers
            self._close = stack.pop_all()
        return self

    def once(self) -> float:
        """One timed projection; its latency in ms (and the CUDA-event time of its steps where there is one)."""
        before = self.proj.device_ms
        ms = self._timed(lambda: self.proj.project_patches(self.x0, settings=self.timed))
        if before is not None:
            self.device_latencies.append(self.proj.device_ms - before)
        return ms

    def row(self) -> BenchRow:
        return BenchRow(
            backend=self.name,
            batch=self.batch,
            iterations=self.iterations,
            latency_rounds_ms=list(self.latencies),
            device_rounds_ms=list(self.device_latencies),
            error=self.error,
            providers=self.providers,
            setup_s=round(self.setup_s, 3),
            on_gpu=self.on_gpu,
            device_memory_mb=self.device_memory_mb,
        )


def bench_runtime(manifest: Manifest, variant: Variant, batch: int, iterations: int, warmup: int, repeats: int) -> dict:
    """One backend configuration alone: `repeats` timed projections of `iterations` steps (stop rules off)."""
    with RuntimeLoop(manifest, variant, batch, iterations, warmup) as loop:
        for _ in range(repeats):
            loop.once()
        row = loop.row()
    return row.as_json()


def conv_reference_gflops(threads: int = 0, seconds: float = 1.0, rounds: int = 1) -> list[float] | float | None:
    """GFLOP/s of ONNX Runtime's own kernel on a large 3x3 Conv here: what the hardware gives ORT.

    rounds > 1 splits the `seconds` into that many timed slices and returns each slice's figure."""
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
    out = []
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / rounds:
            s.run(None, {"x": x})
            n += 1
        out.append(flops * n / (time.perf_counter() - t0) / 1e9)
    return out if rounds > 1 else out[0]


def _measure_batch(manifest: Manifest, configs: list[Variant], batch: int, iterations: int, opts: BenchOptions,
                   same_gpu: bool, tick: Callable[[str], None],
                   twin: Manifest | None = None) -> tuple[list[BenchRow], CpuLoad]:  # fmt: skip
    """Every configuration at one batch size, in interleaved rounds: all are opened and warmed up, then each
    round times one projection of each, so a disturbance during a round hits them all alike."""
    slots: list = []  # an open loop, or the error row of one that could not open (kept in place)
    with ExitStack() as stack:

        def open_loop(name: str, make: Callable) -> None:
            tick(f"{name} b{batch}")
            try:
                slots.append(stack.enter_context(make()))
            except Exception as exc:  # one failing configuration must not lose the others' numbers
                slots.append(BenchRow(name, batch, error=f"{type(exc).__name__}: {exc}"))

        if opts.torch and torch_available():
            open_loop("torch-eager", lambda: EagerLoop(manifest, batch, iterations, opts.warmup))
        if same_gpu:
            open_loop("torch-cuda", lambda: EagerLoop(manifest, batch, iterations, opts.warmup, device="cuda"))
        for v in configs:
            open_loop(v.name, lambda v=v: RuntimeLoop(manifest, v, batch, iterations, opts.warmup))
            if twin is not None:
                name = v.name + COMPARED_TAG
                open_loop(name, lambda v=v, name=name: RuntimeLoop(twin, v, batch, iterations, opts.warmup, name=name))
        loops = [s for s in slots if not isinstance(s, BenchRow)]
        before = cpu_sample()
        for r in range(opts.repeats):
            tick(f"round {r + 1}/{opts.repeats} b{batch}")
            # Every other round in reverse order: a loop timed right after another (caches, a lane's threads
            # waking) does not always sit in the same place. Measured without it: two bundles compared
            # both ways gave 0.91x and 0.92x (ort-cpu, batch 4), each slower when timed first.
            for loop in loops if r % 2 == 0 else loops[::-1]:
                if loop.error is None:
                    try:
                        loop.once()
                    except Exception as exc:  # noqa: BLE001 - reported as a failed row, like any backend
                        loop.error = f"{type(exc).__name__}: {exc}"
        load = CpuLoad.between(before, cpu_sample())
        rows = [s if isinstance(s, BenchRow) else s.row() for s in slots]
    for row in rows:
        row.load = load
    return rows, load


def _ratios(rows: list[BenchRow]) -> None:
    """Per-round ratios of each row against the torch loop of the same batch, in the same round (and against
    its compared twin's)."""
    ref = {(r.backend, r.batch): r.latency_rounds_ms for r in rows if r.measured and r.backend.startswith("torch-")}
    twins = {(r.backend.removesuffix(COMPARED_TAG), r.batch): r.latency_rounds_ms
             for r in rows if r.measured and r.backend.endswith(COMPARED_TAG)}  # fmt: skip
    for r in rows:
        t = twins.get((r.backend, r.batch)) if r.measured and not r.backend.endswith(COMPARED_TAG) else None
        if t:
            # Per pair of rounds (one in each order), so neither bundle is always timed first.
            mine = r.latency_rounds_ms
            pairs = [(sum(t[i : i + 2]), sum(mine[i : i + 2])) for i in range(0, len(mine) - 1, 2)] or [(t[0], mine[0])]
            r.ratio_rounds[COMPARED] = [tt / ms for tt, ms in pairs]
    for r in rows:
        if not r.measured:
            continue
        # The same loop in torch on the same device: the GPU torch for GPU rows, the CPU torch for CPU rows.
        on_gpu = r.on_gpu or r.backend == "torch-cuda"  # a runtime row knows its device from the registry
        for name, torch_name in (
            ("ratio_vs_torch", "torch-eager"),
            ("ratio_vs_torch_same_device", "torch-cuda" if on_gpu else "torch-eager"),
        ):
            t = ref.get((torch_name, r.batch))
            # iterations/ms over the torch loop's in the same round: the same work, so torch's time over ours.
            r.ratio_rounds[name] = [tt / ms for tt, ms in zip(t, r.latency_rounds_ms, strict=True)] if t else None


def measure(bundle: Path, opts: BenchOptions, tick: Callable[[str], None] | None = None) -> BenchReport:
    """Measure every configuration at every batch size in interleaved rounds; returns the typed report."""
    from edgeproj.bench.system import system_facts

    tick = tick or (lambda what: None)
    manifest = load_manifest(bundle)
    iterations = opts.iterations or manifest.projection.max_iterations
    flops = manifest.cost.get("step_flops_per_sample")
    configs = configurations(opts)
    same_gpu = opts.torch and any(v.backend in GPU_BACKENDS for v in configs) and torch_cuda_available()
    twin = load_manifest(opts.against) if opts.against else None
    rows: list[BenchRow] = []
    loads: dict[str, CpuLoad] = {}
    for batch in opts.batches:
        batch_rows, loads[f"b{batch}"] = _measure_batch(manifest, configs, batch, iterations, opts, same_gpu, tick, twin)
        rows += batch_rows
    _ratios(rows)
    for r in rows:
        r.flops_per_iteration = flops
    conv = conv_reference_gflops(opts.threads, rounds=max(2, opts.repeats))
    report = BenchReport(
        bundle=str(bundle),
        variant=manifest.variant,
        iterations=iterations,
        warmup=opts.warmup,
        repeats=opts.repeats,
        flops=flops,
        conv_gflops=spread_of(conv) if conv else None,
        system=system_facts(),
        rows=rows,
        unavailable=unavailable_configurations(opts),
        loads=loads,
    )
    if opts.line and configs:
        tick("line frames")
        v = configs[0]
        report.line = run_line(manifest, v.backend, v.options, opts.frame_sizes, opts.line_frames, torch=opts.torch,
                               memory=opts.memory, rounds=opts.repeats)  # fmt: skip
    return report


def run_bench(bundle: Path, opts: BenchOptions, tick: Callable[[str], None] | None = None) -> dict:
    """Measure every configuration at every batch size; returns the full report as JSON."""
    return measure(bundle, opts, tick).as_json()


def compare_bundle(report: dict) -> list[dict]:
    """Each configuration's ratio to the same configuration on the compared bundle (`--compare BUNDLE`): the
    median of per-round ratios from the same interleaved rounds, with its spread (None when noisy)."""
    out = []
    for r in report["results"]:
        if COMPARED in r:
            spread = r["spread"].get(COMPARED)
            noisy = COMPARED in r.get("noisy", {})
            out.append({"backend": r["backend"], "batch": r["batch"], COMPARED: None if noisy else r[COMPARED],
                        "spread": spread, "noisy": r.get("noisy", {}).get(COMPARED)})  # fmt: skip
    return out


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
