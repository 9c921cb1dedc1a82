"""`edgeproj project`: anomaly maps and overlays for images, through the deployable runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeproj.cli.common import BackendOpt, CudaGraphOpt, FallbackOpt, ForceFp16Opt, Fp16Opt, ThreadsOpt


def command(
    bundle: Path = typer.Argument(..., help="Bundle directory written by `edgeproj export`."),
    images: list[Path] = typer.Argument(..., help="Image files or folders."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for maps, overlays and summary.json."),
    backend: str = BackendOpt,
    batch: int = typer.Option(8, help="Patches per projection batch."),
    map_kind: Optional[str] = typer.Option(None, help="dssim_projection | dssim_recon | squared_error (default: manifest)."),
    alpha: Optional[float] = typer.Option(None, help="Override the manifest's Adam step size."),
    lam: Optional[float] = typer.Option(None, help="Override the manifest's lambda."),
    max_iterations: Optional[int] = typer.Option(None, help="Override the iteration limit."),
    standard: bool = typer.Option(False, "--standard", help="Unweighted update (paper eq. 5) instead of tuned (eq. 8)."),
    threads: int = ThreadsOpt,
    cuda_graph: bool = CudaGraphOpt,
    fp16: bool = Fp16Opt,
    force_fp16: bool = ForceFp16Opt,
    allow_fallback: bool = FallbackOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
):
    """Project images onto the normal manifold and write anomaly maps (PNG) and a JSON summary."""
    from edgeproj import overlays
    from edgeproj.cli.common import runtime_choice
    from edgeproj.cli.output import console, dumps, emit_json, progress
    from edgeproj.data.images import list_images, read_image
    from edgeproj.runtime import load_manifest

    choice = runtime_choice(backend, batch, threads, cuda_graph, fp16, force_fp16, allow_fallback)
    manifest = load_manifest(bundle)
    settings = manifest.projection.with_overrides(
        map_kind=map_kind, alpha=alpha, lam=lam, max_iterations=max_iterations, tuned=False if standard else None
    )
    paths: list[Path] = []
    for p in images:
        paths.extend(list_images(p) if p.is_dir() else [p])
    out.mkdir(parents=True, exist_ok=True)
    cal = manifest.calibration
    thr = cal.pixel_threshold
    vmax = 2 * thr if thr else None
    summaries = []
    with choice.projector(manifest) as proj:
        with progress(enabled=not json_out) as prog:
            task = prog.add_task("project", total=len(paths), info="")
            stems = [p.stem for p in paths]
            for path in paths:
                (res,) = proj.project([path], settings=settings)
                # MVTec folders repeat file names (test/good/000.png, test/hole/000.png): prefix the folder.
                stem = path.stem if stems.count(path.stem) == 1 else f"{path.parent.name}_{path.stem}"
                overlays.write(out / f"{stem}_map.png", overlays.heatmap(res.map, vmax=vmax))
                overlays.write(
                    out / f"{stem}_overlay.png", overlays.overlay(read_image(path, manifest.channels), res.map, thr, vmax=vmax)
                )
                s = res.summary() | {"map_png": str(out / f"{stem}_map.png"), "overlay_png": str(out / f"{stem}_overlay.png")}
                if cal.image_threshold is not None:
                    s["verdict"] = "NG" if res.score > cal.image_threshold else "OK"
                summaries.append(s)
                prog.update(task, advance=1, info=f"{stem}: score {res.score:.4f}")
        doc = {"bundle": str(bundle), "backend": backend, "providers": proj.providers, "images": summaries}
    (out / "summary.json").write_text(dumps(doc) + "\n")
    if json_out:
        emit_json(doc)
    else:
        c = console()
        for s in summaries:
            c.print(
                f"{Path(s['source']).name}: score {s['score']:.4f} (baseline {s['baseline_score']:.4f}), "
                f"{s['iterations_mean']:.0f} iterations, stops {s['stop_reasons']}"
            )
        c.print(f"maps, overlays and summary.json written to {out}")
