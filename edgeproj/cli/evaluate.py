"""`edgeproj evaluate`: baseline vs gradient projection through the runtime, like the paper."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edgeproj.cli.common import BackendOpt


def command(
    targets: List[Path] = typer.Argument(..., help="BUNDLE DATA, or DATA alone with --variants."),
    category: str = typer.Option(..., "--category", "-c", help="Category under the MVTec-layout DATA root."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default: report-CATEGORY)."),
    variants: Optional[str] = typer.Option(None, help="'all' or a comma list: train (or reuse) and evaluate these variants."),
    work: Optional[Path] = typer.Option(None, help="Where --variants keeps runs and bundles (default: OUT/work)."),
    steps: int = typer.Option(5000, help="Training steps for variants without a run."),
    lr: float = typer.Option(1e-4, help="Training learning rate for variants without a run."),
    resize: Optional[int] = typer.Option(None, help="Texture resize for training new runs (paper: 512)."),
    backend: str = BackendOpt,
    batch: int = typer.Option(8, help="Patches per projection batch."),
    study: bool = typer.Option(True, help="Run the convergence study (paper figure 5) and the placement comparison."),
    study_every: int = typer.Option(5, help="Iterations between points of the convergence curves."),
    limit: Optional[int] = typer.Option(None, help="Evaluate only the first N test images."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON on stdout."),
):
    """Pixel AUROC, AU-PRO and image AUROC of baseline and gradient projection; report folder with PNGs."""
    from edgeproj.cli.output import console, emit_json, progress
    from edgeproj.errors import ConfigError
    from edgeproj.evaluation.evaluate import EvalOptions, evaluate_bundle
    from edgeproj.evaluation.report import VARIANT_LABEL, figure3, plot_roc, write_report
    from edgeproj.evaluation.testset import load_testset
    from edgeproj.runtime import Projector, load_manifest

    if variants:
        if len(targets) != 1:
            raise ConfigError("with --variants give only DATA (the bundles are trained and exported under --work)")
        data = targets[0]
    else:
        if len(targets) != 2:
            raise ConfigError("give BUNDLE DATA (or DATA with --variants)")
        bundle, data = targets
    out = out or Path(f"report-{category}")
    results, figures = [], {}
    with progress(enabled=not json_out) as prog:
        bundles = []
        if variants:
            from edgeproj.evaluation.workflow import TrainSettings, ensure_bundle, parse_variants

            settings = TrainSettings(steps=steps, lr=lr, resize=resize)
            for v in parse_variants(variants):
                task = prog.add_task(f"train/export {v}", total=steps, info="")
                b, _ = ensure_bundle(data, category, v, work or out / "work", settings,
                                     on_step=lambda s, loss, t=task: prog.update(t, completed=s, info=f"loss {loss:.4g}"))
                prog.update(task, completed=steps)
                bundles.append(b)
        else:
            bundles = [bundle]
        for b in bundles:
            m = load_manifest(b)
            ts = load_testset(data, category, m.preprocess, limit)
            opts = EvalOptions(study=study, study_every=study_every)
            total = len(ts.tiles) * (1 + (3 if study else 0))
            task = prog.add_task(f"evaluate {m.variant}", total=total, info=f"{len(ts.images)} images")
            with Projector(m, backend=backend, batch=batch) as proj:
                res, maps = evaluate_bundle(proj, ts, opts, tick=lambda n, t=task: prog.update(t, advance=n))
            out.mkdir(parents=True, exist_ok=True)
            tag = f"{category}_{m.variant}"
            figures[tag] = figure3(ts, maps, out, tag)
            roc = plot_roc(ts, {k: maps[k] for k in ("baseline", "grad", "grad_norm")}, res, out / f"roc_{tag}.png")
            if roc:
                figures[tag].append(roc)
            res["bundle"] = str(b)
            results.append(res)
    doc = write_report(out, results, figures)
    if json_out:
        emit_json(results[0] if len(results) == 1 else {"results": results, "placement": doc["placement"]})
        return
    c = console()
    for r in results:
        c.print(f"{r['category']} {VARIANT_LABEL[r['variant']]}: pixel AUROC {r['baseline']['pixel_auroc']:.3f} -> "
                f"{r['grad']['pixel_auroc']:.3f}, AU-PRO {r['baseline']['au_pro']:.3f} -> {r['grad']['au_pro']:.3f}, "
                f"image AUROC {r['baseline']['image_auroc']:.3f} -> {r['grad']['image_auroc']:.3f}")
    c.print((out / "table.md").read_text())
    c.print(f"report written to {out}")
