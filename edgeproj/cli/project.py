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
    from edgeproj import overlays
    from edgeproj.cli.common import output_dir, parse_resize, parse_roi, stop_check_fit
    from edgeproj.cli.output import console, dumps, emit_json, progress
    from edgeproj.data.images import list_images, unique_stems
    from edgeproj.errors import DataError, EdgeprojError
    from edgeproj.runtime import load_manifest
    from edgeproj.runtime.framing import frame_as_stated
    from edgeproj.runtime.gate import FrameGate
    from edgeproj.runtime.verdict import FAULT, judge

    roi_box, resize_wh = parse_roi(roi), parse_resize(resize)
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
    stems = unique_stems(paths)
    cal = manifest.calibration
    thr = cal.pixel_threshold
    vmax = 2 * thr if thr else None
    summaries, failed = [], []
    with projector as proj:
        # Said once the setup holds, so a setup error stays one line.
        if advisory:
            console().print(f"warning: {advisory}", soft_wrap=True)
        if gate.advisory:
            console().print(f"warning: {gate.advisory}", soft_wrap=True)
        with progress(enabled=not (quiet or json_out)) as prog:
            task = prog.add_task("project", total=len(paths), info="")
            for path, stem in zip(paths, stems):
                try:
                    from edgeproj.data.images import read_image

                    image = frame_as_stated(read_image(path, manifest.channels, max_pixels=max_pixels), roi_box, resize_wh)
                    checked = gate.check_frame(image)
                    if not checked.passed:  # judged FAULT without a projection: the frame shows no judgeable part
                        v = judge(None, cal.image_threshold, gate=checked)
                        summaries.append({"source": str(path), "verdict": v.verdict, "fault": v.reason, "gate": v.gate})
                        prog.update(task, advance=1, info=f"{stem}: FAULT ({v.gate})")
                        continue
                    (res,) = proj.project([image], settings=settings)
                    checked = checked.merged(gate.check_model(res.rec_loss0))
                    res.source = str(path)
                    overlays.write(out / f"{stem}_map.png", overlays.heatmap(res.map, vmax=vmax))
                    overlays.write(out / f"{stem}_overlay.png", overlays.overlay(image, res.map, thr, vmax=vmax))
                except (DataError, EdgeprojError) as exc:
                    failed.append(f"{path}: {exc}")
                    summaries.append({"source": str(path), "verdict": FAULT, "fault": str(exc), "error": str(exc)}
                                     | ({"gate": "unreadable"} if isinstance(exc, DataError) else {}))  # fmt: skip
                    prog.update(task, advance=1, info=f"{stem}: FAULT")
                    continue
                v = judge(res.score, cal.image_threshold, res.diverged, gate=checked)
                s = res.summary() | {
                    "map_png": str(out / f"{stem}_map.png"),
                    "overlay_png": str(out / f"{stem}_overlay.png"),
                    "verdict": v.verdict,
                }
                if v.reason:
                    s["fault"] = v.reason
                if v.gate:
                    s["gate"] = v.gate
                summaries.append(s)
                prog.update(task, advance=1, info=f"{stem}: {v.verdict}")
        doc = {
            "bundle": str(bundle),
            "backend": choice.backend,
            "providers": proj.providers,
            "image_threshold": cal.image_threshold,
            "counts": {k: sum(s["verdict"] == k for s in summaries) for k in ("OK", "NG", "FAULT")},
            "gate": {
                "calibrated": gate.calibrated,
                "by_check": {
                    c: sum(s.get("gate") == c for s in summaries) for c in sorted({s["gate"] for s in summaries if s.get("gate")})
                },
            },
            "images": summaries,
            "failed": failed,
        }
    (out / "summary.json").write_text(dumps(doc) + "\n")
    if json_out:
        emit_json(doc)
    else:
        c = console()
        for s in summaries:
            if "score" in s:
                c.print(
                    f"{Path(s['source']).name}: {s['verdict']} score {s['score']:.4f} (baseline {s['baseline_score']:.4f}), "
                    f"{s['iterations_mean']:.0f} iterations, stops {s['stop_reasons']}"
                    + (f"; {s['fault']}" if s.get("fault") else "")
                )
            else:
                c.print(f"{Path(s['source']).name}: FAULT {s['fault']}")
        c.print(f"maps, overlays and summary.json written to {out}")
    if failed:
        raise EdgeprojError(
            f"{len(failed)} of {len(paths)} images failed (FAULT, see {out / 'summary.json'}); first: {failed[0]}"
        )
