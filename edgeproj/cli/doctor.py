"""`edgeproj doctor`: which backends run on this machine, and exactly why the others do not."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def command(
    json_out: bool = typer.Option(False, "--json", help="Print the full report as JSON on stdout."),
    require: Optional[str] = typer.Option(
        None, help="Comma list of backends that must be available: exit 2 naming each one that is not."
    ),
    sessions: bool = typer.Option(True, help="Prove ONNX Runtime providers by running a one-node model on each."),
    bundle: Optional[Path] = typer.Option(
        None, "--bundle", help="Also open each available GPU backend on this bundle and report the device memory it takes."
    ),
):
    """Backends and their state, packages, loaded NVIDIA libraries, driver/CUDA/TensorRT versions, FP16."""
    from edgeproj.cli.output import emit_json
    from edgeproj.errors import BackendError, ConfigError
    from edgeproj.runtime.doctor import diagnose, missing

    required = [r.strip() for r in (require or "").split(",") if r.strip()]
    manifest = None
    if bundle is not None:
        from edgeproj.runtime import load_manifest

        manifest = load_manifest(bundle)  # a bad bundle: one line, before any GPU work
    report = diagnose(sessions=sessions, bundle=manifest)
    gaps = missing(report, required)
    unknown = [n for n, why in gaps.items() if why.startswith("unknown backend")]
    if unknown:
        raise ConfigError(f"--require names unknown backend(s) {', '.join(unknown)}; choose from {', '.join(report['backends'])}")
    report["required"] = {"backends": required, "missing": gaps}
    if json_out:
        emit_json(report)
    else:
        print_report(report)
    if gaps:
        raise BackendError("required backend(s) unavailable: " + "; ".join(f"{n}: {why}" for n, why in gaps.items()))


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    c = Console(width=140, soft_wrap=False)
    t = Table(title=f"edgeproj {report['edgeproj']} doctor", show_lines=True)
    for col in ("backend", "state", "providers activated", "FP16", "device MB", "reason"):
        t.add_column(col, overflow="fold")
    colour = {"available": "green", "unavailable": "yellow", "broken": "red"}
    for name, row in report["backends"].items():
        session = row.get("session") or {}
        t.add_row(
            name,
            f"[{colour.get(row['state'], 'white')}]{row['state']}",
            ", ".join(session.get("activated") or []) or ("-" if "session" not in row else "none"),
            "available" if row["fp16"] == "available" else "no",
            _memory_cell(row.get("device_memory")),
            escape(row["reason"] or ""),
        )
    c.print(t)
    ort = report.get("onnxruntime", {})
    build = ort.get("build", {})
    cuda = report.get("cuda", {})
    trt = report.get("tensorrt", {})
    lines = [
        ("python", f"{report['python']} ({report['machine']})"),
        ("packages", ", ".join(f"{k} {v}" for k, v in report["packages"].items()) or "none"),
        (
            "onnxruntime",
            f"{ort.get('version') or ort.get('problem')}; providers: {', '.join(ort.get('providers_available') or [])}",
        ),
        (
            "ORT GPU build",
            "none (CPU build of onnxruntime)"
            if not (build.get("tensorrt_major") or build.get("cuda_major"))
            else f"TensorRT provider links libnvinfer.so.{build.get('tensorrt_major') or '-'}, "
            f"CUDA provider links CUDA {build.get('cuda_major') or '-'}",
        ),
        ("driver", report.get("driver") or "nvidia-smi not found"),
        (
            "CUDA (cuda-python)",
            f"cuda-python {cuda.get('cuda_python') or 'not installed'}, runtime {cuda.get('runtime_cuda') or '-'}, "
            f"driver {cuda.get('driver_cuda') or '-'}, devices {cuda.get('devices', 0)}"
            + (f", {cuda['gpu']} (sm {cuda.get('compute_capability')})" if cuda.get("gpu") else ""),
        ),
        (
            "TensorRT",
            f"{trt.get('version') or 'not installed'}"
            + (
                f", FP16 builder flag: {'yes' if trt.get('fp16_builder_flag') else 'no (TensorRT 11)'}"
                if trt.get("importable")
                else ""
            ),
        ),
        (
            "TF32",
            f"NVIDIA_TF32_OVERRIDE={report['tf32'].get('NVIDIA_TF32_OVERRIDE')}"
            + (
                f" (set after {', '.join(report['tf32']['set_after_cuda_libraries_loaded'])} loaded: may not apply)"
                if report["tf32"]["set_after_cuda_libraries_loaded"]
                else ""
            ),
        ),
        ("libraries loaded", ", ".join(report["libraries_loaded"]) or "none"),
    ]
    preload = next(
        (r["session"]["preload"] for r in report["backends"].values() if (r.get("session") or {}).get("preload")), None
    )
    for what, rec in (preload or {}).items():
        lines.append(
            (f"preload ({what})", rec["summary"] + (f"; it printed: {' | '.join(rec['output'])}" if rec["output"] else ""))
        )
    if report.get("jetson"):
        lines.append(("Jetson", f"{report['jetson'].get('l4t_release')}; {report['jetson'].get('nvpmodel') or ''}"))
    for k, v in lines:
        c.print(f"[bold]{k}:[/bold] {escape(str(v))}", highlight=False)


def _memory_cell(mem: dict | None) -> str:
    if not mem:
        return "-"
    return f"{mem['device_memory_mb']:.0f}" if mem.get("device_memory_mb") is not None else "n/a"
