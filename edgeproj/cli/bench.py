"""`edgeproj bench`: iterations per millisecond of every available backend, with the PyTorch ratio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def command(
    bundle: Path = typer.Argument(..., help="Bundle directory."),
    backends: Optional[str] = typer.Option(None, help="Comma list (default: every available backend)."),
    batches: str = typer.Option("1,4,16", help="Comma list of batch sizes."),
    iterations: Optional[int] = typer.Option(
        None, min=1, max=10_000, help="Iterations per projection (default: the manifest's max)."
    ),
    warmup: int = typer.Option(5, min=0, max=10_000, help="Warm-up iterations, excluded."),
    repeats: int = typer.Option(5, min=1, max=1000, help="Timed projections per configuration."),
    threads: int = typer.Option(
        0, min=0, max=64, help="ort-cpu threads: 0 runs one single-threaded lane per CPU core; N uses one N-thread session."
    ),
    torch: bool = typer.Option(True, help="Also time the PyTorch eager autograd loop (if torch is installed)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the full report JSON here."),
    compare: Optional[Path] = typer.Option(None, help="An earlier report JSON: print the ratio against it."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress output (bars on a terminal, timestamped lines otherwise)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the full report as JSON on stdout."),
):
    """Benchmark the projection loop; report like trtexec (warm-up excluded, percentiles, versions)."""
    from edgeproj.bench.runner import BenchOptions, run_bench
    from edgeproj.bench.runner import compare as compare_reports
    from edgeproj.cli.common import MAX_BATCH, output_file
    from edgeproj.cli.output import console, dumps, emit_json, progress
    from edgeproj.errors import ConfigError
    from edgeproj.runtime import load_manifest
    from edgeproj.runtime.backends import BACKENDS

    try:
        batch_list = tuple(int(b) for b in batches.split(",") if b.strip())
    except ValueError:
        raise ConfigError(f"--batches must be a comma list of integers, got '{batches}'") from None
    if not batch_list or not all(1 <= b <= MAX_BATCH for b in batch_list):
        raise ConfigError(f"--batches must list batch sizes in 1..{MAX_BATCH}, got '{batches}'")
    names = tuple(b.strip() for b in backends.split(",") if b.strip()) if backends else None
    unknown = [b for b in names or () if b not in BACKENDS]
    if unknown or names == ():
        raise ConfigError(f"--backends: unknown backend(s) {unknown or backends!r}; choose from {', '.join(BACKENDS)}")
    old = None
    if compare:
        try:
            old = json.loads(compare.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read --compare report '{compare}': {exc}") from None
        if not isinstance(old, dict) or not isinstance(old.get("results"), list):
            raise ConfigError(f"--compare '{compare}' is not a bench report (a JSON object with a 'results' list)")
    if out:
        output_file(out)
    load_manifest(bundle)
    opts = BenchOptions(
        backends=names,
        batches=batch_list,
        iterations=iterations,
        warmup=warmup,
        repeats=repeats,
        threads=threads,
        torch=torch,
    )
    c = console()
    with progress(enabled=not (quiet or json_out)) as prog:
        task = prog.add_task("bench", total=None, info="")
        report = run_bench(bundle, opts, tick=lambda what: prog.update(task, advance=1, info=what))
    if old is not None:
        report["compare"] = {"old": str(compare), "rows": compare_reports(report, old)}
    if out:
        out.write_text(dumps(report) + "\n")
    if json_out:
        emit_json(report)
        return
    print_table(report, c)


def print_table(report: dict, c) -> None:
    from rich.table import Table

    t = Table(
        title=f"{report['variant']}: {report['iterations_per_projection']} iterations per projection, "
        f"{(report['flops_per_iteration'] or 0) / 1e9:.3f} GFLOP per iteration"
    )
    cols = (
        "backend",
        "batch",
        "step ms",
        "iter/ms",
        "img/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "GFLOP/s",
        "x torch",
        "x torch same device",
    )
    for col in cols:
        t.add_column(col, justify="right")
    for r in report["results"]:
        if "error" in r:
            t.add_row(r["backend"], str(r["batch"]), f"[red]{r['error'][:60]}", *[""] * (len(cols) - 3))
            continue
        lat = r["latency_ms"]
        ratio = r.get("ratio_vs_torch")
        same = r.get("ratio_vs_torch_same_device")
        t.add_row(
            r["backend"],
            str(r["batch"]),
            f"{r['step_ms']:.2f}",
            f"{r['iterations_per_ms']:.3f}",
            f"{r['images_per_s']:.2f}",
            f"{lat['p50']:.0f}",
            f"{lat['p90']:.0f}",
            f"{lat['p99']:.0f}",
            f"{r.get('gflops', 0):.0f}",
            f"{ratio:.2f}" if ratio else "",
            f"{same:.2f}" if same else "",
        )
    c.width = max(c.width, 120)  # a log file or pipe reports 80 columns: keep the headers readable
    c.print(t)
    if report.get("reference_conv_gflops"):
        c.print(f"reference: ONNX Runtime's own 3x3 Conv reaches {report['reference_conv_gflops']:.0f} GFLOP/s on this machine")
    s = report["system"]
    c.print(
        f"system: {s['cpu']} ({s['cpu_threads']} threads), GPU {s.get('gpu') or 'none'}, onnxruntime {s['onnxruntime']}, "
        f"tensorrt {s.get('tensorrt') or 'n/a'}"
    )
    for name, why in report.get("unavailable", {}).items():
        c.print(f"not measured: {name}: {why}", soft_wrap=True)
    for row in report.get("compare", {}).get("rows", []):
        c.print(f"{row['backend']} b{row['batch']}: {row['ratio_vs_old']:.2f}x the old report")
