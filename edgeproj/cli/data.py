"""`edgeproj data ...`: generate the demo data set, check a data folder."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeproj.cli.helpformat import MARKUP, Command

app = typer.Typer(
    help="Data helpers: generate the demo data set, check a data folder.",
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)


@app.command("make-demo", cls=Command, short_help="Write the procedural demo data set (MVTec AD layout).")
def make_demo(
    out: Path = typer.Argument(..., help="Output folder; categories are written as OUT/<category>."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed; the same seed gives byte-identical files."),
    size: int = typer.Option(256, "--size", min=32, max=4096, help="Image side in pixels."),
    n_train: int = typer.Option(48, "--n-train", min=1, max=100_000, help="Good training images per category."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
):
    """Write a small procedural MVTec-layout data set (grid and stone textures, four defect kinds)."""
    import time

    from edgeproj.cli.common import output_dir
    from edgeproj.cli.output import console, emit_json
    from edgeproj.data.demo import make_demo as _make_demo

    output_dir(out, "OUT")
    t0 = time.perf_counter()
    summary = _make_demo(out, seed=seed, size=size, n_train=n_train)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    if json_out:
        emit_json(summary)
        return
    con = console()
    for name, c in summary["categories"].items():
        tests = ", ".join(f"{k} {n}" for k, n in c["test"].items())
        con.print(f"{name}: train {c['train']}, test {tests}, masks {c['masks']}")
    con.print(
        f"wrote {summary['root']} ({summary['size']}px, seed {summary['seed']}, "
        f"noise sigma {summary['noise_sigma']}) in {summary['seconds']:.1f} s"
    )


@app.command("check", cls=Command, short_help="Read an MVTec-layout folder; report counts and skipped files.")
def check(
    data: Path = typer.Argument(..., help="An MVTec-layout root, or one category folder."),
    category: str = typer.Option(None, "--category", "-c", help="Check only this category."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
):
    """Load a category (or every category under DATA) and report counts and skipped files."""
    from edgeproj.cli.output import console, emit_json
    from edgeproj.data.mvtec import list_categories, load_category, looks_like_mvtec
    from edgeproj.errors import DataError

    if category is None and looks_like_mvtec(data):
        root, names = data.parent, [data.name]
    else:
        root = data
        names = [category] if category else list_categories(data)
        if not names:
            raise DataError(f"no MVTec category under {data} (expected {data}/<category>/train/good/*.png)")
    reports = [load_category(root, name).summary() for name in names]
    if json_out:
        emit_json({"root": str(root), "categories": reports})
        return
    con = console()
    for r in reports:
        tests = ", ".join(f"{k} {n}" for k, n in r["test"].items()) or "none"
        con.print(f"{r['category']}: train {r['train']}, test {tests}, skipped {len(r['skipped'])}")
        for s in r["skipped"]:
            con.print(f"  skipped {s['path']}: {s['reason']}", markup=False, highlight=False, soft_wrap=True)
