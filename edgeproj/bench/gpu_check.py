"""The GPU check's parity and speed blocks on a bundle: every required GPU configuration against ort-cpu.

Run by `scripts/gpu_check.sh` (in the Jetson image: `edgeproj-gpu-check --bundle DIR`, no torch or
pytest needed) as `python -m edgeproj.bench.gpu_check BUNDLE DATA`:

- fixed trajectories: stop rules off, 30 iterations; energy trajectory, map correlation, pixel AUROC
  against ort-cpu;
- the production case: the bundle's stop rules on, so the `active` mask changes inside and between
  batches (padding included) on captured CUDA graphs, compared with ort-cpu checking the rule at the
  same point (after the step, every k steps: `OrtCpuOptions.chunk`): the same tiles must stop at the
  same step;
- trt-fp16 judged by FP16 limits (no diverged tile, map correlation, AUROC drop), never waved through;
- speed: iterations/ms at batch 1, 8, 16 and the device memory each configuration takes.

Every failure is collected; the check exits 1 naming them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

LIMITS = {
    "fp32": {"trajectory_rel_err": 1e-2, "map_corr_min": 0.99, "pixel_auroc_diff": 0.005},
    "fp16": {"trajectory_rel_err": 5e-2, "map_corr_min": 0.98, "pixel_auroc_diff": 0.01},
}
# Share of tiles that must stop at the same step as the CPU at the same check point: a tile whose L_r sits
# on the threshold may fall on the other side by float noise, a different stop rule moves many.
PRODUCTION_AGREEMENT = 0.95
FIXED_ITERATIONS = 30


@dataclass
class CheckReport:
    """Rows by configuration (fixed, production), speed rows, and what failed."""

    reference: dict
    fixed: dict = field(default_factory=dict)
    production: dict = field(default_factory=dict)
    bench: dict | None = None
    failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"reference": self.reference, "fixed": self.fixed, "production": self.production, "bench": self.bench,
                "failed": self.failed}  # fmt: skip


def configurations(required: list[str], fp16: bool) -> dict[str, tuple[str, dict]]:
    """The configurations of the required backends as their registry entries declare them (`checked`), plus,
    with fp16, the FP16 configurations of their bench (trt-fp16)."""
    from edgeproj.runtime.backends import backend

    out = {}
    for b in required:
        entry = backend(b)
        out |= {c.name: (b, c.flags_here(0)) for c in entry.checked_configurations()}
        if fp16:
            out |= {c.name: (b, c.flags_here(0)) for c in entry.bench if c.fp16}
    return out


def judge_fixed(row: dict, precision: str) -> dict:
    """Add `ok` and `why` to a fixed-trajectory row under its precision's limits."""
    lim = LIMITS[precision]
    why = []
    if row["diverged_tiles"]:
        why.append(f"{row['diverged_tiles']} tile(s) diverged")
    if not row["trajectory_rel_err"] < lim["trajectory_rel_err"]:
        why.append(f"trajectory error {row['trajectory_rel_err']:.2e} >= {lim['trajectory_rel_err']:.0e}")
    if not row["map_corr_min"] > lim["map_corr_min"]:
        why.append(f"map correlation {row['map_corr_min']:.5f} <= {lim['map_corr_min']}")
    if not abs(row["pixel_auroc_diff"]) < lim["pixel_auroc_diff"]:
        why.append(f"pixel AUROC difference {row['pixel_auroc_diff']:+.4f} beyond {lim['pixel_auroc_diff']}")
    return row | {"precision": precision, "ok": not why, "why": "; ".join(why)}


def judge_production(row: dict) -> dict:
    """Add `ok` and `why` to a production-case row (stop rules on, same check point as the CPU)."""
    why = []
    if row["diverged_tiles"]:
        why.append(f"{row['diverged_tiles']} tile(s) diverged")
    if not row["same_iterations"] >= PRODUCTION_AGREEMENT:
        why.append(f"only {row['same_iterations']:.1%} of tiles stopped at the CPU's step (< {PRODUCTION_AGREEMENT:.0%})")
    if not row["map_corr_min"] > LIMITS["fp32"]["map_corr_min"]:
        why.append(f"map correlation {row['map_corr_min']:.5f} <= {LIMITS['fp32']['map_corr_min']}")
    if not abs(row["pixel_auroc_diff"]) < LIMITS["fp32"]["pixel_auroc_diff"]:
        why.append(f"pixel AUROC difference {row['pixel_auroc_diff']:+.4f}")
    return row | {"ok": not why, "why": "; ".join(why)}


def _trajectory_err(a, b) -> float:
    errs = []
    for ra, rb in zip(a, b):
        for ta, tb in zip(ra.energy_traces, rb.energy_traces):
            n = min(len(ta), len(tb))
            if n:
                ta, tb = np.asarray(ta[:n]), np.asarray(tb[:n])
                errs.append(float(np.max(np.abs(ta - tb) / np.maximum(np.abs(ta), 1e-12))))
    return float(np.max(errs)) if errs else float("nan")  # np.max keeps a NaN (max() may drop it)


def _compare(ref, got, labels, auc_ref) -> dict:
    from edgeproj.metrics import roc_auc

    # np.min keeps a NaN (a constant map): it then fails every limit instead of vanishing from min().
    corr = float(np.min([np.corrcoef(a.projection_map.ravel(), b.projection_map.ravel())[0, 1] for a, b in zip(ref, got)]))
    dauc = roc_auc(labels, np.concatenate([r.projection_map.ravel() for r in got])) - auc_ref
    its_ref = np.concatenate([r.iterations for r in ref])
    its = np.concatenate([r.iterations for r in got])
    return {
        "map_corr_min": corr,
        "pixel_auroc_diff": float(dauc),
        "diverged_tiles": int(sum(r.diverged for r in got)),
        "same_iterations": float(np.mean(its == its_ref)),
        "iterations_mean": float(its.mean()),
        "iterations_mean_reference": float(its_ref.mean()),
    }


def _project(manifest, backend, opts, images, settings, batch=8):
    from edgeproj.runtime import Projector
    from edgeproj.runtime.backends import backend_options
    from edgeproj.runtime.loop import readback_chunk

    options = backend_options(backend, **opts)
    with Projector(manifest, backend=backend, options=options, batch=batch, force_fp16=True) as proj:
        chunk = None if proj.runner.probes else readback_chunk(proj.runner, settings.stop)
        return proj.project(images, settings=settings), proj.providers, chunk


def production_settings(manifest, images):
    """The bundle's stop rules; an uncalibrated bundle gets a threshold at the median L_r at x0 of the
    check's tiles, so that some tiles stop at once and others step (the active mask must change)."""
    from edgeproj.preprocess import to_patches
    from edgeproj.runtime import Projector

    settings = manifest.projection
    if settings.stop.rec_loss_threshold is not None:
        return settings
    with Projector(manifest, batch=8) as proj:
        rec = proj.rec_losses(np.concatenate([to_patches(img, manifest.preprocess)[0] for img in images]))
    return replace(settings, stop=replace(settings.stop, rec_loss_threshold=float(np.median(rec))))


def run_check(
    bundle: Path,
    data: Path,
    category: str,
    configs: dict[str, tuple[str, dict]],
    speed_backends: tuple[str, ...] = (),
    batches: tuple[int, ...] = (1, 8, 16),
    tick=print,
) -> CheckReport:
    """Parity of every configuration (fixed and production case) against ort-cpu, then speed."""
    from edgeproj.evaluation.testset import load_testset
    from edgeproj.metrics import roc_auc
    from edgeproj.runtime import load_manifest

    manifest = load_manifest(bundle)
    test = load_testset(data, category, manifest.preprocess)
    labels = np.concatenate([m.ravel() for m in test.masks])
    fixed = manifest.projection.with_overrides(max_iterations=FIXED_ITERATIONS).without_stop_rules()
    prod = production_settings(manifest, test.images)

    tick("reference: ort-cpu, stop rules off")
    ref_fixed, _, _ = _project(manifest, "ort-cpu", {}, test.images, fixed)
    auc_ref = roc_auc(labels, np.concatenate([r.projection_map.ravel() for r in ref_fixed]))
    report = CheckReport(reference={"pixel_auroc": auc_ref, "images": len(test.images), "iterations": FIXED_ITERATIONS,
                                    "production_stop_threshold": prod.stop.rec_loss_threshold})  # fmt: skip
    ref_prod: dict = {}
    for name, (backend, opts) in configs.items():
        precision = "fp16" if opts.get("fp16") else "fp32"
        tick(f"{name}: stop rules off")
        try:
            got, providers, _ = _project(manifest, backend, opts, test.images, fixed)
            row = _compare(ref_fixed, got, labels, auc_ref) | {"trajectory_rel_err": _trajectory_err(ref_fixed, got)}
            report.fixed[name] = judge_fixed(row | {"providers": providers}, precision)
        except Exception as exc:  # noqa: BLE001 - every failure is reported and fails the check
            report.fixed[name] = {"ok": False, "why": f"{type(exc).__name__}: {exc}"}
        if not report.fixed[name]["ok"]:
            report.failed.append(f"{name}: {report.fixed[name]['why']}")
        if precision == "fp16":
            continue  # the production case compares stop decisions, which FP16 moves by design
        tick(f"{name}: production case (stop rules on)")
        try:
            got, providers, chunk = _project(manifest, backend, opts, test.images, prod)
            if chunk not in ref_prod:  # the CPU checking the rule where this configuration does
                ref_prod[chunk] = _project(manifest, "ort-cpu", {"chunk": chunk}, test.images, prod)[0]
            auc = roc_auc(labels, np.concatenate([r.projection_map.ravel() for r in ref_prod[chunk]]))
            row = _compare(ref_prod[chunk], got, labels, auc) | {"chunk": chunk, "providers": providers}
            report.production[name] = judge_production(row)
        except Exception as exc:  # noqa: BLE001
            report.production[name] = {"ok": False, "why": f"{type(exc).__name__}: {exc}"}
        if not report.production[name]["ok"]:
            report.failed.append(f"{name} (production case): {report.production[name]['why']}")
    if speed_backends:
        report.bench = _speed(bundle, speed_backends, batches, report.failed, tick)
    return report


def _speed(bundle: Path, backends: tuple[str, ...], batches, failed: list[str], tick) -> dict:
    from edgeproj.bench.runner import BenchOptions, run_bench

    opts = BenchOptions(backends=("ort-cpu", *backends), batches=batches, iterations=30, warmup=5, repeats=3, line=False)
    bench = run_bench(bundle, opts, tick=tick)
    for r in bench["results"]:
        if "error" in r:
            failed.append(f"bench {r['backend']} b{r['batch']}: {r['error']}")
    for name, why in bench.get("unavailable", {}).items():
        if name in backends:
            failed.append(f"bench {name}: unavailable: {why}")
    return bench


def print_table(report: CheckReport, out=sys.stdout) -> None:
    ref = report.reference
    print(f"\nreference: ort-cpu, pixel AUROC {ref['pixel_auroc']:.4f} on {ref['images']} images, {ref['iterations']} "
          f"iterations; production case at L_r threshold {ref['production_stop_threshold']}", file=out)  # fmt: skip
    head = f"{'configuration':<16} {'traj err':>9} {'map corr':>9} {'dAUROC':>8}  {'production: same stop':>22} {'map corr':>9}  verdict"
    print(head, file=out)
    print("-" * len(head), file=out)
    for name, row in report.fixed.items():
        if "map_corr_min" in row:
            fx = f"{row['trajectory_rel_err']:9.1e} {row['map_corr_min']:9.5f} {row['pixel_auroc_diff']:+8.4f}"
        else:
            fx = f"{'error':>9} {'':>9} {'':>8}"
        p = report.production.get(name)
        if p is None:
            pr = f"{'n/a (fp16)':>22} {'':>9}"
        elif "map_corr_min" in p:
            pr = f"{p['same_iterations']:>21.1%} {p['map_corr_min']:9.5f}"
        else:
            pr = f"{'error':>22} {'':>9}"
        ok = row.get("ok") and (p is None or p.get("ok"))
        print(f"{name:<16} {fx}  {pr}  {'ok' if ok else 'FAILED'}", file=out)
    if report.bench:
        print("\nspeed (iterations/ms; device MB taken):", file=out)
        for r in report.bench["results"]:
            if "iterations_per_ms" in r:
                mem = r.get("device_memory_mb")
                print(f"  {r['backend']:<16} b{r['batch']:<3} {r['iterations_per_ms']:8.3f} it/ms"
                      f"{'' if mem is None else f'  {mem:.0f} MB'}", file=out)  # fmt: skip
            elif "error" in r:
                print(f"  {r['backend']:<16} b{r['batch']:<3} ERROR {r['error'][:100]}", file=out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="GPU parity (fixed and production case) and speed against ort-cpu.")
    ap.add_argument("bundle", type=Path)
    ap.add_argument("data", type=Path, help="MVTec-layout folder with test images and masks")
    ap.add_argument("--category", default="grid")
    ap.add_argument("--required", required=True, help="comma list of GPU backends to check")
    ap.add_argument("--out", type=Path, help="write the report here as JSON")
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args(argv)

    from edgeproj.runtime.backends import ON_GPU, REGISTRY, gpu_backends

    required = [b for b in args.required.split(",") if b]
    unknown = [b for b in required if b not in ON_GPU]
    if unknown:
        print(f"gpu_check: unknown GPU backend(s) {', '.join(unknown)}; choose from {', '.join(gpu_backends())}",
              file=sys.stderr)  # fmt: skip
        return 2
    # FP16 where a required backend declares an FP16 bench configuration and its probe passes here.
    fp16 = any(REGISTRY[b].fp16_unavailable_reason() is None for b in required if any(c.fp16 for c in REGISTRY[b].bench))
    configs = configurations(required, fp16)
    report = run_check(args.bundle, args.data, args.category, configs, () if args.no_speed else tuple(required))
    if args.out:
        args.out.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    print_table(report)
    if report.failed:
        print("FAILED: " + "; ".join(report.failed))
        return 1
    print(f"all required GPU configurations ({', '.join(configs)}) agree with ort-cpu, production case included")
    return 0


if __name__ == "__main__":
    sys.exit(main())
