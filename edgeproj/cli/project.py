"""`edgeproj project`: anomaly maps, overlays and verdicts for images, through the deployable runtime."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from edgeproj.cli.common import (
    AcceptStopCheckOpt,
    AlphaOverride,
    LamOverride,
    MapKind,
    MaxIterationsOverride,
    backend_flags,
)
from edgeproj.cli.groups import takes

if TYPE_CHECKING:
    from edgeproj.runtime.projector import BackendChoice


@takes(backend_flags(batch=8))
def command(
    bundle: Path = typer.Argument(..., help="Bundle directory written by `edgeproj export`."),
    images: list[Path] = typer.Argument(..., help="Image files or folders."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for maps, overlays and summary.json."),
    choice: BackendChoice = None,
    map_kind: Optional[MapKind] = typer.Option(None, help="Anomaly map (default: the manifest's)."),
    alpha: Optional[float] = AlphaOverride,
    lam: Optional[float] = LamOverride,
    max_iterations: Optional[int] = MaxIterationsOverride,
    standard: bool = typer.Option(False, "--standard", help="Unweighted update (paper eq. 5) instead of tuned (eq. 8)."),
    max_pixels: int = typer.Option(
        64_000_000, min=1, max=1_000_000_000, help="Refuse images with more pixels than this (memory bound)."
    ),
    roi: Optional[str] = typer.Option(None, help="Region of interest x,y,w,h in image pixels (must lie inside every image)."),
    resize: Optional[str] = typer.Option(
        None,
        help="Resize every image (after --roi) to WxH before the frame gate: states a geometry that differs from calibration's.",
    ),
    accept_stop_check: bool = AcceptStopCheckOpt,
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress output (bars on a terminal, timestamped lines otherwise)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
):
    """Project images onto the normal manifold; write anomaly maps (PNG), verdicts and summary.json.

    Verdicts are OK, NG or FAULT (the image failed the frame gate: it does not look like the good parts
    calibration saw; or the judgement failed: a non-finite score, a diverged projection, no threshold);
    only OK passes. An image that cannot be read (missing, corrupt, NaN or infinite samples, a float image
    outside [0, 1]) is FAULT too and does not stop the others; the summary records it, and the verb then
    exits 2.
    """
    from edgeproj.cli.common import output_dir, parse_resize, parse_roi, stop_check_fit
    from edgeproj.cli.output import console, dumps, emit_json, progress
    from edgeproj.data.images import list_images, unique_stems
    from edgeproj.errors import EdgeprojError
    from edgeproj.line.image_files import Framing, ProjectReport, project_files
    from edgeproj.runtime import load_manifest
    from edgeproj.runtime.gate import FrameGate

    framing = Framing(parse_roi(roi), parse_resize(resize), max_pixels)
    manifest = load_manifest(bundle)
    gate = FrameGate.of(manifest)
    projector = choice.projector(manifest)
    advisory = stop_check_fit(manifest, projector, accept_stop_check)
    settings = manifest.projection.with_overrides(
        map_kind=map_kind, alpha=alpha, lam=lam, max_iterations=max_iterations, tuned=False if standard else None
    )
    paths: list[Path] = []
    for p in images:
        paths.extend(list_images(p) if p.is_dir() else [p])
    out = output_dir(out)
    with projector as proj:
        # Said once the setup holds, so a setup error stays one line.
        if advisory:
            console().print(f"warning: {advisory}", soft_wrap=True)
        if gate.advisory:
            console().print(f"warning: {gate.advisory}", soft_wrap=True)
        report = ProjectReport(str(bundle), choice.backend, proj.providers, manifest.calibration.image_threshold, gate.calibrated)
        with progress(enabled=not (quiet or json_out)) as prog:
            task = prog.add_task("project", total=len(paths), info="")
            project_files(proj, gate, manifest, paths, unique_stems(paths), out, settings, framing, report,
                          tick=lambda info: prog.update(task, advance=1, info=info))  # fmt: skip
    doc = report.as_json()
    (out / "summary.json").write_text(dumps(doc) + "\n")
    if json_out:
        emit_json(doc)
    else:
        c = console()
        for v in report.images:
            if v.projected:
                c.print(
                    f"{Path(v.source).name}: {v.verdict} score {v.score:.4f} (baseline {v.baseline_score:.4f}), "
                    f"{v.iterations_mean:.0f} iterations, stops {v.stop_reasons}" + (f"; {v.fault}" if v.fault else "")
                )
            else:
                c.print(f"{Path(v.source).name}: FAULT {v.fault}")
        c.print(f"maps, overlays and summary.json written to {out}")
    if report.failed:
        raise EdgeprojError(
            f"{len(report.failed)} of {len(paths)} images failed (FAULT, see {out / 'summary.json'}); first: {report.failed[0]}"
        )
