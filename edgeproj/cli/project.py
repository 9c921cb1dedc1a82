"""`edgeproj project`: anomaly maps and overlays for images, through the deployable runtime."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edgeproj.cli.common import BackendOpt, CudaGraphOpt, FallbackOpt, Fp16Opt, ForceFp16Opt, ThreadsOpt


def command(
    bundle: Path = typer.Argument(..., help="Bundle directory written by `edgeproj export`."),
    images: List[Path] = typer.Argument(..., help="Image files or folders."),
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
    from edgeproj.cli.common import backend_options
    from edgeproj.cli.output import console, dumps, emit_json, progress
    from edgeproj.data.images import list_images
    from edgeproj.runtime import Projector
    from edgeproj.runtime import render

    paths: list[Path] = []
    for p in images:
        paths.extend(list_images(p) if p.is_dir() else [p])
    out.mkdir(parents=True, exist_ok=True)
    thr = None
    summaries = []
    with Projector.from_bundle(bundle, backend=backend, batch=batch, force_fp16=force_fp16,
                               **backend_options(backend, threads, cuda_graph, fp16, allow_fallback)) as proj:
        thr = proj.manifest.calibration.get("pixel_threshold")
        with progress(enabled=not json_out) as prog:
            task = prog.add_task("project", total=len(paths), info="")
            stems = [p.stem for p in paths]
            for path in paths:
                (res,) = proj.project([path], map_kind=map_kind, alpha=alpha, lam=lam, max_iterations=max_iterations,
                                      tuned=False if standard else None)
                # MVTec folders repeat file names (test/good/000.png, test/hole/000.png): prefix the folder.
                stem = path.stem if stems.count(path.stem) == 1 else f"{path.parent.name}_{path.stem}"
                render.write(out / f"{stem}_map.png", render.heatmap(res.map, vmax=2 * thr if thr else None))
                from edgeproj.data.images import read_image

                render.write(out / f"{stem}_overlay.png", render.overlay(read_image(path, proj.manifest.channels), res.map, thr,
                                                                          vmax=2 * thr if thr else None))
                s = res.summary() | {"map_png": str(out / f"{stem}_map.png"), "overlay_png": str(out / f"{stem}_overlay.png")}
                if proj.manifest.calibration.get("image_threshold") is not None:
                    s["verdict"] = "NG" if res.score > proj.manifest.calibration["image_threshold"] else "OK"
                summaries.append(s)
                prog.update(task, advance=1, info=f"{stem}: score {res.score:.4f}")
        doc = {"bundle": str(bundle), "backend": backend, "providers": proj.runner.providers, "images": summaries}
    (out / "summary.json").write_text(dumps(doc) + "\n")
    if json_out:
        emit_json(doc)
    else:
        c = console()
        for s in summaries:
            c.print(f"{Path(s['source']).name}: score {s['score']:.4f} (baseline {s['baseline_score']:.4f}), "
                    f"{s['iterations_mean']:.0f} iterations, stops {s['stop_reasons']}")
        c.print(f"maps, overlays and summary.json written to {out}")
