"""`edgeproj demo`: the whole pipeline on the embedded demo data, in about ten minutes on two CPU cores."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeproj.cli.common import float_option
from edgeproj.models.variants import variant_names


def command(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Folder for data, runs, bundles and the report."),
    variants: str = typer.Option("l2ae,dsae", help=f"'all' or a comma list of {', '.join(variant_names())}."),
    categories: str = typer.Option("grid,stone", help="Demo categories to run (grid, stone)."),
    steps: int = typer.Option(600, min=1, max=1_000_000, help="Training steps per model."),
    lr: float = float_option(
        5e-4, 1e-8, 1.0, "Training learning rate (above the paper's 1e-4 so the demo trains in about a minute)."
    ),
    study_iterations: int = typer.Option(20, min=1, max=10_000, help="Iterations of the convergence study (paper figure 5)."),
    study_every: int = typer.Option(2, min=1, max=10_000, help="Iterations between points of the convergence curves."),
    seed: int = typer.Option(0, min=0, help="Seed of the data generator and training."),
    studies: bool = typer.Option(
        False, "--studies", help="Also run the method studies: step size x update rule, appendix B, image scores, inpainting."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress output (bars on a terminal, timestamped lines otherwise)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report document as JSON on stdout."),
):
    """Generate demo data, train, export, calibrate, evaluate baseline vs gradient, benchmark; print the table."""
    from edgeproj.cli.common import output_dir
    from edgeproj.cli.output import console, emit_json, progress
    from edgeproj.data.demo import CATEGORIES
    from edgeproj.errors import ConfigError
    from edgeproj.models.variants import get_variant
    from edgeproj.workstation.bundles import parse_variants
    from edgeproj.workstation.demo import DemoOptions, run_demo

    cats = [c.strip() for c in categories.split(",") if c.strip()]
    if not cats or any(c not in CATEGORIES for c in cats):
        raise ConfigError(f"--categories must be a comma list of {', '.join(CATEGORIES)}, got '{categories}'")
    output_dir(out)
    opts = DemoOptions(
        out=out,
        variants=parse_variants(variants),
        categories=cats,
        steps=steps,
        lr=lr,
        study_iterations=study_iterations,
        study_every=study_every,
        seed=seed,
        studies=studies,
    )
    with progress(enabled=not (quiet or json_out)) as prog:
        doc = run_demo(opts, prog)
    if json_out:
        emit_json(doc)
        return
    c = console()
    report = out / "report"
    for r in doc["results"]:
        c.print(
            f"{r['category']} {get_variant(r['variant']).label}: pixel AUROC {r['baseline']['pixel_auroc']:.3f} -> "
            f"{r['grad']['pixel_auroc']:.3f} ({100 * r['improvement_rate']['pixel_auroc']:+.1f}%), AU-PRO "
            f"{r['baseline']['au_pro']:.3f} -> {r['grad']['au_pro']:.3f}"
        )
    c.print((report / "table.md").read_text())
    for tag, r in doc.get("synthetic_ranking", {}).items():
        c.print(f"synthetic check {tag}: {r['verdict']}")
    if doc.get("bench"):
        bench = dict(doc["bench"])
        for frame, r in bench.pop("line", {}).items():
            ratio = r.get("fps_ratio_vs_torch")
            c.print(
                f"line: {frame} frames at {r['fps']:.2f} frames/s with the stop rules on "
                f"({r['iterations_per_tile']:.2f} iterations per tile)" + (f", {ratio:.2f}x PyTorch eager" if ratio else "")
            )
        c.print(f"benchmark: {bench}")
    c.print(f"demo finished in {doc['timings_s']['total']:.0f} s; report: {report} (table.md, results.json, PNG figures)")
