"""`edgeproj inspect`: judge frames from a camera, stream, video or folder at line speed."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeproj.cli.common import BackendOpt, CudaGraphOpt, FallbackOpt, ForceFp16Opt, Fp16Opt, ThreadsOpt


def command(
    bundle: Path = typer.Argument(..., help="Calibrated bundle directory."),
    source: Optional[str] = typer.Option(
        None, "--source", "-s", help="Camera index, /dev/videoN, GStreamer pipeline, rtsp/http URL, video file, folder or glob."
    ),
    csi: Optional[int] = typer.Option(None, "--csi", help="Jetson CSI camera sensor id (nvarguscamerasrc preset)."),
    out: Path = typer.Option(Path("inspect-out"), "--out", "-o", help="Folder for the database and saved maps."),
    db: Optional[Path] = typer.Option(None, help="SQLite results database (default: OUT/results.sqlite)."),
    backend: str = BackendOpt,
    batch: int = typer.Option(16, help="Tiles per projection batch."),
    image_threshold: Optional[float] = typer.Option(None, help="NG above this image score (default: calibration)."),
    pixel_threshold: Optional[float] = typer.Option(None, help="Defect contour threshold (default: calibration)."),
    roi: Optional[str] = typer.Option(None, help="Region of interest x,y,w,h in frame pixels."),
    queue_size: int = typer.Option(4, help="Capture queue length (live sources drop the oldest beyond it)."),
    save_all: bool = typer.Option(False, help="Save map and overlay PNGs for every frame, not only NG."),
    video: Optional[Path] = typer.Option(None, help="Write an annotated overlay video (.avi or .mp4)."),
    show: bool = typer.Option(False, help="Show a window (needs an OpenCV build with GUI support)."),
    max_frames: Optional[int] = typer.Option(None, help="Stop after this many processed frames."),
    threads: int = ThreadsOpt,
    cuda_graph: bool = CudaGraphOpt,
    fp16: bool = Fp16Opt,
    force_fp16: bool = ForceFp16Opt,
    allow_fallback: bool = FallbackOpt,
    json_out: bool = typer.Option(False, "--json", help="JSON lines on stdout: one per frame, then the summary."),
):
    """Inspect frames: projection, anomaly map, OK/NG verdict; one SQLite row per frame."""
    import logging

    from edgeproj.cli.common import runtime_choice
    from edgeproj.cli.output import console, dumps
    from edgeproj.errors import ConfigError
    from edgeproj.line.pipeline import InspectOptions, StopFlag, inspect
    from edgeproj.line.sources import open_source
    from edgeproj.runtime import load_manifest

    logging.basicConfig(level=logging.WARNING, format="edgeproj: %(message)s")
    roi_box = None
    if roi:
        try:
            roi_box = tuple(int(v) for v in roi.split(","))
            assert len(roi_box) == 4
        except (ValueError, AssertionError):
            raise ConfigError(f"--roi must be x,y,w,h, got '{roi}'") from None
    choice = runtime_choice(backend, batch, threads, cuda_graph, fp16, force_fp16, allow_fallback)
    manifest = load_manifest(bundle)
    src = open_source(source, manifest.channels, csi)
    opts = InspectOptions(
        image_threshold=image_threshold,
        pixel_threshold=pixel_threshold,
        roi=roi_box,
        queue_size=queue_size,
        save_all=save_all,
        video=video,
        show=show,
        max_frames=max_frames,
    )
    stop = StopFlag()
    stop.install()
    c = console()

    def on_result(row: dict) -> None:
        if json_out:
            print(dumps(row, indent=None), flush=True)
        elif row["verdict"] == "NG":
            c.print(f"[red]NG[/red] frame {row['seq']} {row['name']} score {row['score']:.4f} ({row['latency_ms']:.0f} ms)")

    with choice.projector(manifest) as proj:
        summary = inspect(proj, src, db or out / "results.sqlite", out, opts, on_result=on_result, stop=stop)
    if json_out:
        print(dumps(summary | {"summary": True}, indent=None), flush=True)
    else:
        c.print(
            f"{summary['frames_read']} frames read, {summary['processed']} processed, {summary['dropped']} dropped, "
            f"{summary['corrupt']} corrupt, {summary['ng']} NG; {summary['fps']:.2f} frames/s, latency p50 "
            f"{summary['latency_ms_p50']:.0f} ms, p99 {summary['latency_ms_p99']:.0f} ms ({summary['stopped_by']})"
        )
        c.print(f"results: {summary['database']}")
    if summary.get("source_error") and summary["processed"] == 0:
        raise typer.Exit(1)
