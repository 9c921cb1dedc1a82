"""`edgeproj demo`: the whole pipeline on the embedded demo data, in about ten minutes on two CPU cores."""

from __future__ import annotations

import time
from pathlib import Path

import typer


def command(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Folder for data, runs, bundles and the report."),
    variants: str = typer.Option("l2ae,dsae", help="'all' or a comma list of l2ae, dsae, vae, gvae."),
    categories: str = typer.Option("grid,stone", help="Demo categories to run."),
    steps: int = typer.Option(600, help="Training steps per model."),
    lr: float = typer.Option(5e-4, help="Training learning rate (above the paper's 1e-4 so the demo trains in about a minute)."),
    study_iterations: int = typer.Option(20, help="Iterations of the convergence study (paper figure 5)."),
    study_every: int = typer.Option(2, help="Iterations between points of the convergence curves."),
    seed: int = typer.Option(0, help="Seed of the data generator and training."),
    json_out: bool = typer.Option(False, "--json", help="Print the report document as JSON on stdout."),
):
    """Generate demo data, train, export, calibrate, evaluate baseline vs gradient, benchmark; print the table."""
    from edgeproj.cli.output import console, emit_json, progress
    from edgeproj.data.demo import make_demo
    from edgeproj.evaluation.evaluate import EvalOptions, evaluate_bundle
    from edgeproj.evaluation.report import VARIANT_LABEL, figure3, plot_roc, write_report
    from edgeproj.evaluation.testset import load_testset
    from edgeproj.evaluation.workflow import TrainSettings, ensure_bundle, parse_variants
    from edgeproj.runtime import Projector, load_manifest

    t0 = time.perf_counter()
    names = parse_variants(variants)
    cats = [c.strip() for c in categories.split(",") if c.strip()]
    c = console()
    data = out / "data"
    make_demo(data, seed=seed)
    report = out / "report"
    settings = TrainSettings(steps=steps, lr=lr, seed=seed, resize=256, mode="texture")
    results, figures, timings = [], {}, {}
    extras: dict = {}
    with progress(enabled=not json_out) as prog:
        for cat in cats:
            for v in names:
                tag = f"{cat}_{v}"
                task = prog.add_task(f"train {cat}/{v}", total=steps, info="")
                t = time.perf_counter()
                bundle, info = ensure_bundle(data, cat, v, out / "work", settings, export_parity_steps=10,
                                             on_step=lambda s, loss, k=task: prog.update(k, completed=s, info=f"loss {loss:.4g}"))
                prog.update(task, completed=steps, info="exported")
                timings[f"train_export_{tag}"] = round(time.perf_counter() - t, 1)
                extras.setdefault("calibration", {})[tag] = _calibrate(bundle, data / cat)
                m = load_manifest(bundle)
                ts = load_testset(data, cat, m.preprocess)
                etask = prog.add_task(f"evaluate {cat}/{v}", total=len(ts.tiles) * 4, info=f"{len(ts.images)} images")
                t = time.perf_counter()
                with Projector(m, batch=8) as proj:
                    res, maps = evaluate_bundle(proj, ts, EvalOptions(study_iterations=study_iterations, study_every=study_every),
                                                tick=lambda n, k=etask: prog.update(k, advance=n))
                timings[f"evaluate_{tag}"] = round(time.perf_counter() - t, 1)
                figures[tag] = figure3(ts, maps, report, tag, limit=4)
                roc = plot_roc(ts, {k: maps[k] for k in ("baseline", "grad", "grad_norm")}, res, report / f"roc_{tag}.png")
                if roc:
                    figures[tag].append(roc)
                res["bundle"] = str(bundle)
                results.append(res)
        extras["bench"] = _bench(Path(results[0]["bundle"]))
    doc = write_report(report, results, figures)
    timings["total"] = round(time.perf_counter() - t0, 1)
    doc |= {"timings_s": timings, **extras}
    import json

    (report / "results.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
    if json_out:
        emit_json(doc)
        return
    for r in results:
        c.print(f"{r['category']} {VARIANT_LABEL[r['variant']]}: pixel AUROC {r['baseline']['pixel_auroc']:.3f} -> "
                f"{r['grad']['pixel_auroc']:.3f} ({100 * r['improvement_rate']['pixel_auroc']:+.1f}%), AU-PRO "
                f"{r['baseline']['au_pro']:.3f} -> {r['grad']['au_pro']:.3f}")
    c.print((report / "table.md").read_text())
    if extras.get("bench"):
        c.print(f"benchmark: {extras['bench']}")
    c.print(f"demo finished in {timings['total']:.0f} s; report: {report} (table.md, results.json, PNG figures)")


def _calibrate(bundle: Path, category_dir: Path, limit: int = 16) -> dict:
    """Calibrate on a subset of the category's normal images (a quarter held out to measure the rates)."""
    from edgeproj.calibration.calibrate import CalibrationOptions, calibrate_bundle
    from edgeproj.data.mvtec import normal_images

    return calibrate_bundle(bundle, normal_images(category_dir)[:limit], CalibrationOptions())


def _bench(bundle: Path) -> dict:
    """A short benchmark of the deployed loop against the PyTorch eager loop."""
    from edgeproj.bench.runner import BenchOptions, run_bench

    return run_bench(bundle, BenchOptions(batches=(1, 8), iterations=20, warmup=3, repeats=3))["summary"]
