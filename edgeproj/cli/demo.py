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
    c.print((report / "table.md").read_text())
    for tag, r in doc.get("synthetic_ranking", {}).items():
        c.print(f"synthetic check {tag}: {r['verdict']}")
    print_summary(doc, c)
    c.print(f"demo finished in {doc['timings_s']['total']:.0f} s; report: {report} (table.md, results.json, PNG figures)")


def print_summary(doc: dict, c) -> None:
    """The demo's last words: one short table of the evaluation, one of the benchmark (figures with their
    spread over interleaved rounds, or "noisy" and why); every figure stays in results.json."""
    from rich import box
    from rich.table import Table

    from edgeproj.cli.bench import figure, noisy_note
    from edgeproj.models.variants import get_variant

    t = Table(title="demo summary: f(x) against the gradient projection", box=box.SIMPLE_HEAD)
    for col in ("category", "variant", "metric", "f(x)", "gradient", "change"):
        t.add_column(col, justify="left" if col in ("category", "variant", "metric") else "right", no_wrap=True)
    for r in doc["results"]:
        b, g, rate = r["baseline"], r["grad"], r.get("improvement_rate", {})
        first = True
        for key, label in (("pixel_auroc", "pixel AUROC"), ("au_pro", "AU-PRO"), ("image_auroc", "image AUROC")):
            if key not in b or key not in g:
                continue
            head = (r["category"], get_variant(r["variant"]).label) if first else ("", "")
            change = f"{100 * rate[key]:+.1f}%" if key in rate else ""
            t.add_row(*head, label, f"{b[key]:.3f}", f"{g[key]:.3f}", change)
            first = False
    c.print(t)
    bench = dict(doc.get("bench") or {})
    if not bench:
        return
    full = doc.get("bench_report") or {}
    line = bench.pop("line", {})
    title = "benchmark"
    if full:  # short enough for the table's width: rich would wrap it
        title += f": {full['iterations_per_projection']} iterations, median of {full['repeats']} interleaved rounds"
    t = Table(title=title, box=box.SIMPLE_HEAD)
    for col in ("configuration", "batch", "iter/ms", "x torch"):
        t.add_column(col, justify="left" if col == "configuration" else "right", no_wrap=True)
    notes = []
    for key, e in bench.items():
        name, _, batch = key.rpartition("_b")
        spread, noisy = e.get("spread", {}), e.get("noisy", {})
        it = spread.get("iterations_per_ms", {}).get("median", e.get("iterations_per_ms"))
        t.add_row(name, batch, figure(it, spread.get("iterations_per_ms"), "iterations_per_ms" in noisy, ".3f"),
                  figure(e.get("ratio_vs_torch") or spread.get("ratio_vs_torch", {}).get("median"), spread.get("ratio_vs_torch"),
                         "ratio_vs_torch" in noisy))  # fmt: skip
        if noisy:
            notes.append(noisy_note(f"{name} b{batch}", noisy, spread))
    for frame, e in line.items():
        spread, noisy = e.get("spread", {}), e.get("noisy", {})
        fps = figure(spread.get("fps", {}).get("median", e.get("fps")), spread.get("fps"), "runtime.fps" in noisy)
        ratio = spread.get("fps_ratio_vs_torch", {}).get("median", e.get("fps_ratio_vs_torch"))
        t.add_row(f"line {frame}, stop rules on", "", fps if "runtime.fps" in noisy or not fps else f"{fps} frames/s",
                  figure(ratio, spread.get("fps_ratio_vs_torch"), "fps_ratio_vs_torch" in noisy))  # fmt: skip
        if noisy:
            notes.append(noisy_note(f"line {frame}", noisy, {"runtime.fps": spread.get("fps", {})} | spread))
    c.print(t)
    for note in notes:
        c.print(note, soft_wrap=True)
