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
    repeats: int = typer.Option(5, min=1, max=1000, help="Timed rounds; each round times one projection of every configuration."),
    threads: int = typer.Option(
        0, min=0, max=64, help="ort-cpu threads: 0 runs one single-threaded lane per CPU core; N uses one N-thread session."
    ),
    torch: bool = typer.Option(True, help="Also time the PyTorch eager autograd loop (if torch is installed)."),
    line: bool = typer.Option(True, help="Also measure whole frames, stop rules on: frames/s, latency p50/p99, memory."),
    frame_sizes: str = typer.Option("256,1024", help="Comma list of square frame sides for the line figure."),
    line_frames: int = typer.Option(20, min=1, max=10_000, help="Timed frames per frame size."),
    memory: bool = typer.Option(True, help="Line figure: peak resident memory of the runtime vs torch (child processes)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the full report JSON here."),
    compare: Optional[Path] = typer.Option(
        None,
        help="An earlier report JSON (ratio against it), or another bundle of the same model, timed in the same rounds.",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress output (bars on a terminal, timestamped lines otherwise)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the full report as JSON on stdout."),
):
    """Benchmark the projection loop; report like trtexec (warm-up excluded, percentiles, versions)."""
    from edgeproj.bench.runner import BenchOptions, compare_bundle, measure
    from edgeproj.bench.runner import compare as compare_reports
    from edgeproj.cli.common import MAX_BATCH, output_file
    from edgeproj.cli.output import console, dumps, emit_json, progress
    from edgeproj.errors import ConfigError
    from edgeproj.runtime import load_manifest
    from edgeproj.runtime.backends import REGISTRY

    try:
        batch_list = tuple(int(b) for b in batches.split(",") if b.strip())
    except ValueError:
        raise ConfigError(f"--batches must be a comma list of integers, got '{batches}'") from None
    if not batch_list or not all(1 <= b <= MAX_BATCH for b in batch_list):
        raise ConfigError(f"--batches must list batch sizes in 1..{MAX_BATCH}, got '{batches}'")
    try:
        sizes = tuple(int(v) for v in frame_sizes.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--frame-sizes must be a comma list of integers, got '{frame_sizes}'") from None
    if not sizes or not all(128 <= v <= 8192 for v in sizes):
        raise ConfigError(f"--frame-sizes must list sides in 128..8192, got '{frame_sizes}'")
    names = tuple(b.strip() for b in backends.split(",") if b.strip()) if backends else None
    unknown = [b for b in names or () if b not in REGISTRY]
    if unknown or names == ():
        raise ConfigError(f"--backends: unknown backend(s) {unknown or backends!r}; choose from {', '.join(REGISTRY)}")
    old = None
    twin = None
    if compare and compare.is_dir():
        twin = _twin(bundle, compare)
    elif compare:
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
        line=line,
        frame_sizes=sizes,
        line_frames=line_frames,
        memory=memory,
        against=twin,
    )
    c = console()
    with progress(enabled=not (quiet or json_out)) as prog:
        task = prog.add_task("bench", total=None, info="")
        report = measure(bundle, opts, tick=lambda what: prog.update(task, advance=1, info=what))
    doc = report.as_json()  # the report file, the --json output and the comparison all read this one document
    if old is not None:
        doc["compare"] = {"old": str(compare), "rows": compare_reports(doc, old)}
    if twin is not None:
        doc["compare"] = {"bundle": str(twin), "rows": compare_bundle(doc)}
    if out:
        out.write_text(dumps(doc) + "\n")
    if json_out:
        emit_json(doc)
        return
    print_table(report, c, doc.get("compare"))


def _twin(bundle: Path, other: Path) -> Path:
    """The --compare bundle, checked to take the same inputs as `bundle` (same model, other graphs)."""
    from edgeproj.errors import ConfigError
    from edgeproj.runtime import load_manifest

    a, b = load_manifest(bundle), load_manifest(other)
    if (a.channels, a.size) != (b.channels, b.size):
        raise ConfigError(
            f"--compare {other}: its model takes {b.channels}x{b.size}x{b.size}, this bundle's {a.channels}x{a.size}x{a.size}"
        )
    return other


def figure(value: float | None, spread: dict | None, noisy: bool, fmt: str = ".2f") -> str:
    """A figure as the tables print it: the median with "+-" half the range over rounds, or "noisy"."""
    if value is None:
        return ""
    if noisy:
        return "[yellow]noisy"
    if not spread or spread["rounds"] < 2:
        return f"{value:{fmt}}"
    return f"{value:{fmt}} ±{100 * spread['rel_half_range']:.0f}%"


# How the tables name a figure of the JSON (in notes on noisy figures).
FIGURE_LABELS = {
    "iterations_per_ms": "iter/ms",
    "ratio_vs_torch": "x torch",
    "ratio_vs_torch_same_device": "x torch same device",
    "runtime.fps": "frames/s",
    "torch_eager.fps": "torch frames/s",
    "fps_ratio_vs_torch": "x torch",
}


def noisy_note(what: str, noisy: dict[str, str], spreads: dict[str, dict]) -> str:
    """One line for a row's noisy figures: which, and the reason of the one whose rounds disagree most."""
    worst = max(noisy, key=lambda k: spreads.get(k, {}).get("max_over_min", 0))
    shown = [k for k in noisy if not (k == "ratio_vs_torch_same_device" and spreads.get(k) == spreads.get("ratio_vs_torch"))]
    labels = ", ".join(dict.fromkeys(FIGURE_LABELS.get(k, k) for k in shown))  # on the CPU both ratios are one
    return f"noisy: {what} ({labels}): {noisy[worst]}"


def print_table(report, c, compared: dict | None = None) -> None:
    """The rows of a BenchReport, then the system, what was not measured, noisy figures and the line figure."""
    from rich.markup import escape
    from rich.table import Table

    from edgeproj.bench.rounds import NOISY_FACTOR

    t = Table(
        title=f"{report.variant}: {report.iterations} iterations per projection, "
        f"{(report.flops or 0) / 1e9:.3f} GFLOP per iteration, median of {report.repeats} interleaved rounds"
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
        "device MB",
    )
    for col in cols:
        t.add_column(col, justify="right", no_wrap=col in ("backend", "iter/ms", "x torch"))
    notes = []
    for r in report.rows:
        if not r.measured:
            t.add_row(
                escape(r.backend), str(r.batch), f"[red]{escape((r.error or 'not measured')[:60])}", *[""] * (len(cols) - 3)
            )
            continue
        lat, spreads, noisy = r.as_json()["latency_ms"], {k: s.as_json() for k, s in r.spreads().items()}, r.noisy()
        speed_noisy = "iterations_per_ms" in noisy  # step ms, img/s and GFLOP/s are the same figure in other units
        t.add_row(
            escape(r.backend),  # a compared row's " [compared]" is text, not markup
            str(r.batch),
            "[yellow]noisy" if speed_noisy else f"{r.step_ms:.2f}",
            figure(r.iterations_per_ms, spreads["iterations_per_ms"], speed_noisy, ".3f"),
            "[yellow]noisy" if speed_noisy else f"{r.images_per_s:.2f}",
            f"{lat['p50']:.0f}",
            f"{lat['p90']:.0f}",
            f"{lat['p99']:.0f}",
            "[yellow]noisy" if speed_noisy else f"{r.gflops or 0:.0f}",
            *(figure(r.ratio(k), spreads.get(k), k in noisy) for k in ("ratio_vs_torch", "ratio_vs_torch_same_device")),
            "" if r.device_memory_mb is None else f"{r.device_memory_mb:.0f}",
        )
        if noisy:
            notes.append(noisy_note(f"{r.backend} b{r.batch}", noisy, spreads))
    c.width = max(c.width, 140)  # a log file or pipe reports 80 columns: keep the headers and spreads readable
    c.print(t)
    c.print(
        f"figures: the median over rounds, ± half their range; 'noisy': rounds disagree by more than {NOISY_FACTOR}x, "
        "no figure given",
        soft_wrap=True,
    )
    for note in notes:
        c.print(note, soft_wrap=True)
    conv = report.conv_gflops
    if conv:
        if conv.noisy:
            c.print(f"reference: ONNX Runtime's own 3x3 Conv: noisy (rounds disagree by {conv.max_over_min:.2f}x)")
        else:
            c.print(
                f"reference: ONNX Runtime's own 3x3 Conv reaches {conv.median:.0f} GFLOP/s "
                f"±{100 * conv.rel_half_range:.0f}% on this machine"
            )
    s = report.system
    c.print(
        f"system: {s['cpu']} ({s['cpu_threads']} threads), GPU {s.get('gpu') or 'none'}, onnxruntime {s['onnxruntime']}, "
        f"tensorrt {s.get('tensorrt') or 'n/a'}"
    )
    for name, why in report.unavailable.items():
        c.print(f"not measured: {name}: {escape(why)}", soft_wrap=True)
    print_line(report.line, c)
    compared = compared or {}
    for row in compared.get("rows", []):
        if "ratio_vs_old" in row:
            c.print(f"{row['backend']} b{row['batch']}: {row['ratio_vs_old']:.2f}x the old report")
        elif row["ratio_vs_compared"] is None:
            c.print(f"{row['backend']} b{row['batch']} vs {compared['bundle']}: noisy: {row['noisy']}", soft_wrap=True)
        else:
            spread = row["spread"]["rel_half_range"] * 100
            c.print(
                f"{row['backend']} b{row['batch']}: {row['ratio_vs_compared']:.2f}x ±{spread:.0f}% the iterations/ms of "
                f"{compared['bundle']} (median over pairs of rounds timed in both orders)",
                soft_wrap=True,
            )


def print_line(line: dict | None, c) -> None:
    """The line figure: one row per frame size, runtime and torch eager, stop rules on."""
    if not line:
        return
    from rich.table import Table

    t = Table(title=f"line: whole frames through {line['backend']}, calibrated stop rules on")
    for col in ("frame", "engine", "frames/s", "p50 ms", "p99 ms", "tiles", "iter/tile", "stop at x0", "x torch"):
        t.add_column(col, justify="right")
    notes = []
    for frame, r in line["frames"].items():
        noisy = r.get("noisy", {})
        for engine in ("runtime", "torch_eager"):
            row = r.get(engine)
            if not row:
                continue
            ratio = ""
            if engine == "runtime":
                ratio = figure(r.get("fps_ratio_vs_torch"), r.get("spread", {}).get("fps_ratio_vs_torch"),
                               "fps_ratio_vs_torch" in noisy)  # fmt: skip
            fps = figure(row["fps"], row.get("spread", {}).get("fps"), f"{engine}.fps" in noisy)
            label = f"runtime ({row['in_flight']} in flight)" if engine == "runtime" and row.get("in_flight", 1) > 1 else engine
            t.add_row(frame, label, fps, f"{row['latency_ms']['p50']:.0f}", f"{row['latency_ms']['p99']:.0f}",
                      str(row["tiles_per_frame"]), f"{row['iterations_per_tile']:.2f}", f"{100 * row['tiles_stopped_at_x0']:.0f}%",
                      ratio)  # fmt: skip
        if noisy:
            spreads = {f"{e}.fps": r[e]["spread"]["fps"] for e in ("runtime", "torch_eager") if r.get(e)}
            notes.append(noisy_note(f"line {frame}", noisy, spreads | r.get("spread", {})))
    c.print(t)
    for note in notes:
        c.print(note, soft_wrap=True)
    gate = [
        f"{frame} {r['runtime']['gate_ms']:.1f} ms"
        for frame, r in line["frames"].items()
        if "gate_ms" in (r.get("runtime") or {})
    ]
    if gate:
        c.print(f"frame gate per frame (statistics and L_r checks, inside the runtime's latency): {', '.join(gate)}")
    mem = line.get("memory") or {}
    if mem.get("runtime_over_torch"):
        c.print(
            f"peak memory: runtime {mem['runtime']['peak_rss_mb']:.0f} MB, torch {mem['torch']['peak_rss_mb']:.0f} MB "
            f"({mem['runtime_over_torch']:.2f}x)"
        )
