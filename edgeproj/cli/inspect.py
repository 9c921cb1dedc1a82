"""`edgeproj inspect`: judge frames from a camera, stream, video or folder at line speed."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from edgeproj.cli.common import (
    MAX_BATCH,
    BackendName,
    BackendOpt,
    CudaGraphOpt,
    FallbackOpt,
    ForceFp16Opt,
    Fp16Opt,
    ThreadsOpt,
    float_option,
)


def command(
    bundle: Path = typer.Argument(..., help="Calibrated bundle directory."),
    source: Optional[str] = typer.Option(
        None, "--source", "-s", help="Camera index, /dev/videoN, GStreamer pipeline, rtsp/http URL, video file, folder or glob."
    ),
    csi: Optional[int] = typer.Option(
        None, "--csi", min=0, max=15, help="Jetson CSI camera sensor id (nvarguscamerasrc preset)."
    ),
    out: Path = typer.Option(Path("inspect-out"), "--out", "-o", help="Folder for the database and saved maps."),
    db: Optional[Path] = typer.Option(None, help="SQLite results database (default: OUT/results.sqlite)."),
    backend: BackendName = BackendOpt,
    batch: int = typer.Option(16, min=1, max=MAX_BATCH, help="Tiles per projection batch."),
    image_threshold: Optional[float] = float_option(None, 0.0, 1e6, "NG above this image score (default: calibration)."),
    pixel_threshold: Optional[float] = float_option(None, 0.0, 1e6, "Defect contour threshold (default: calibration)."),
    roi: Optional[str] = typer.Option(None, help="Region of interest x,y,w,h in frame pixels (must lie inside the frame)."),
    queue_size: int = typer.Option(4, min=1, max=1024, help="Capture queue length (live sources drop the oldest beyond it)."),
    max_reconnects: int = typer.Option(
        10, min=0, max=1_000_000, help="A live source that cannot be (re)opened after this many attempts in a row ends the run."
    ),
    save_all: bool = typer.Option(False, help="Save map and overlay PNGs for every frame, not only NG and FAULT."),
    keep_frames: int = typer.Option(2000, min=0, max=10_000_000, help="Saved PNG pairs kept under OUT/frames (oldest deleted)."),
    max_pixels: int = typer.Option(64_000_000, min=1, max=1_000_000_000, help="FAULT for frames with more pixels than this."),
    durability: Literal["normal", "full"] = typer.Option(
        "normal", help="Database durability: normal survives a process kill; full (synchronous=FULL) also a power loss."
    ),
    db_max_rows: int = typer.Option(1_000_000, min=1000, max=1_000_000_000, help="Rows kept in the database (oldest deleted)."),
    video: Optional[Path] = typer.Option(None, help="Write an annotated overlay video (.avi or .mp4)."),
    show: bool = typer.Option(False, help="Show a window (needs an OpenCV build with GUI support)."),
    max_frames: Optional[int] = typer.Option(None, min=1, help="Stop after this many processed frames."),
    threads: int = ThreadsOpt,
    cuda_graph: bool = CudaGraphOpt,
    fp16: bool = Fp16Opt,
    force_fp16: bool = ForceFp16Opt,
    allow_fallback: bool = FallbackOpt,
    json_out: bool = typer.Option(False, "--json", help="JSON lines on stdout: one per frame, then the summary."),
):
    """Inspect frames: projection, anomaly map, verdict OK / NG / FAULT; one SQLite row per frame.

    FAULT means the judgement failed (a non-finite score, a diverged projection, a processing error):
    the line must reject the part like an NG. Exit codes: 0 when the run ended normally, 2 for a setup
    error (bad option, unopenable source, ROI outside the frame) or a run that judged no frame.
    """
    import logging

    from edgeproj.cli.common import output_dir, output_file, runtime_choice
    from edgeproj.cli.output import console, dumps
    from edgeproj.errors import ConfigError, EdgeprojError
    from edgeproj.line.capture import Capture
    from edgeproj.line.pipeline import InspectOptions, StopFlag, inspect
    from edgeproj.line.sources import open_source
    from edgeproj.line.store import ResultStore
    from edgeproj.runtime import load_manifest

    logging.basicConfig(level=logging.WARNING, format="edgeproj: %(message)s")
    roi_box = _parse_roi(roi)
    if show:
        import cv2

        if "GUI:                           NONE" in cv2.getBuildInformation() or not hasattr(cv2, "imshow"):
            raise ConfigError("--show needs an OpenCV build with GUI support; this one is headless (opencv-python-headless)")
    choice = runtime_choice(backend, batch, threads, cuda_graph, fp16, force_fp16, allow_fallback)
    opts = InspectOptions(
        image_threshold=image_threshold, pixel_threshold=pixel_threshold, roi=roi_box, queue_size=queue_size,
        save_all=save_all, video=video, show=show, max_frames=max_frames, keep_frames=keep_frames,
    )  # fmt: skip
    manifest = load_manifest(bundle)
    out = output_dir(out)
    if video is not None:
        output_file(video, "--video")
    store = ResultStore(db or out / "results.sqlite", durability=durability, max_rows=db_max_rows)
    src = open_source(source, manifest.channels, csi, max_pixels=max_pixels)
    stop = StopFlag()
    stop.install()
    c = console()

    def on_result(row: dict) -> None:
        if json_out:
            print(dumps(row, indent=None), flush=True)
        elif row["verdict"] != "OK":
            score = "n/a" if row["score"] is None else f"{row['score']:.4f}"
            why = f" - {row['fault']}" if row.get("fault") else ""
            c.print(
                f"[red]{row['verdict']}[/red] frame {row['seq']} {row['name']} score {score} ({row['latency_ms']:.0f} ms){why}"
            )

    capture = Capture(src, maxsize=queue_size, max_reconnects=max_reconnects)
    with choice.projector(manifest) as proj:
        try:
            summary = inspect(proj, src, store, out, opts, on_result=on_result, stop=stop, capture=capture)
        finally:
            store.close()
    if summary["processed"] == 0:
        if summary["source_error"]:
            raise EdgeprojError(f"source {src.name} failed before any frame was judged: {summary['source_error']}")
        if summary["corrupt"]:
            raise EdgeprojError(f"no frame could be judged: {summary['frames_read']} read, {summary['corrupt']} corrupt")
    if json_out:
        print(dumps(summary | {"summary": True}, indent=None), flush=True)
    else:
        c.print(
            f"{summary['frames_read']} frames read, {summary['processed']} processed, {summary['dropped']} dropped, "
            f"{summary['corrupt']} corrupt; OK {summary['ok']}, NG {summary['ng']}, FAULT {summary['fault']}; "
            f"{summary['fps']:.2f} frames/s, latency p50 {summary['latency_ms_p50']:.0f} ms, "
            f"p99 {summary['latency_ms_p99']:.0f} ms ({summary['stopped_by']})"
        )
        if summary["storage_alarms"] or summary["rows_unstored"]:
            c.print(
                f"[red]storage alarms {summary['storage_alarms']}: {summary['rows_unstored']} row(s) not in the database, "
                f"{summary['rows_lost_from_store']} dropped from its buffer (all were reported above)"
            )
        c.print(f"results: {summary['database']}")
    if summary["source_error"]:
        raise EdgeprojError(
            f"the run ended because the source failed: {summary['source_error']} ({summary['processed']} frames judged)"
        )


def _parse_roi(roi: str | None):
    from edgeproj.errors import ConfigError

    if not roi:
        return None
    try:
        box = tuple(int(v) for v in roi.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise ConfigError(f"--roi must be x,y,w,h (four integers), got '{roi}'")
    return box
