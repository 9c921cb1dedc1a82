"""`edgeproj demo`: the whole pipeline on the embedded demo data, in about ten minutes on two CPU cores."""

from __future__ import annotations

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
    from edgeproj.evaluation.report import VARIANT_LABEL
    from edgeproj.workstation.bundles import parse_variants
    from edgeproj.workstation.demo import DemoOptions, run_demo

    opts = DemoOptions(
        out=out,
        variants=parse_variants(variants),
        categories=[c.strip() for c in categories.split(",") if c.strip()],
        steps=steps,
        lr=lr,
        study_iterations=study_iterations,
        study_every=study_every,
        seed=seed,
    )
    with progress(enabled=not json_out) as prog:
        doc = run_demo(opts, prog)
    if json_out:
        emit_json(doc)
        return
    c = console()
    report = out / "report"
    for r in doc["results"]:
        c.print(
            f"{r['category']} {VARIANT_LABEL[r['variant']]}: pixel AUROC {r['baseline']['pixel_auroc']:.3f} -> "
            f"{r['grad']['pixel_auroc']:.3f} ({100 * r['improvement_rate']['pixel_auroc']:+.1f}%), AU-PRO "
            f"{r['baseline']['au_pro']:.3f} -> {r['grad']['au_pro']:.3f}"
        )
    c.print((report / "table.md").read_text())
    if doc.get("bench"):
        c.print(f"benchmark: {doc['bench']}")
    c.print(f"demo finished in {doc['timings_s']['total']:.0f} s; report: {report} (table.md, results.json, PNG figures)")
