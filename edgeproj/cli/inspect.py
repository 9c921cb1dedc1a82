"""`edgeproj inspect`: judge frames from a camera, stream, video or folder at line speed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

import typer

from edgeproj.cli.common import (
    AcceptStopCheckOpt,
    backend_flags,
    float_option,
)
from edgeproj.cli.groups import takes

if TYPE_CHECKING:
    from edgeproj.runtime.projector import BackendChoice


@takes(backend_flags(batch=16))
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
    choice: BackendChoice = None,
    image_threshold: Optional[float] = float_option(None, 0.0, 1e6, "NG above this image score (default: calibration)."),
    pixel_threshold: Optional[float] = float_option(None, 0.0, 1e6, "Defect contour threshold (default: calibration)."),
    roi: Optional[str] = typer.Option(None, help="Region of interest x,y,w,h in frame pixels (must lie inside the frame)."),
    resize: Optional[str] = typer.Option(
        None,
        help="Resize every frame (after --roi) to WxH before the frame gate: states a camera geometry that differs from calibration's.",
    ),
    alarm_after: int = typer.Option(
        5, min=1, max=1_000_000, help="Frames in a row failing the frame gate (camera, lighting, no part) before one ALARM."
    ),
    queue_size: int = typer.Option(4, min=1, max=1024, help="Capture queue length (live sources drop the oldest beyond it)."),
    max_reconnects: int = typer.Option(
        10, min=0, max=1_000_000, help="A live source that cannot be (re)opened after this many attempts in a row ends the run."
    ),
    save_all: bool = typer.Option(False, help="Save map and overlay PNGs for every frame, not only NG and FAULT."),
    keep_frames: int = typer.Option(2000, min=0, max=10_000_000, help="Saved PNG pairs kept under OUT/frames (oldest deleted)."),
    in_flight: int = typer.Option(
        2, min=1, max=8, help="Frames projected at once (2: the next frame starts while this one ends)."
    ),
    max_pixels: int = typer.Option(64_000_000, min=1, max=1_000_000_000, help="FAULT for frames with more pixels than this."),
    durability: Literal["normal", "full"] = typer.Option(
        "normal", help="Database durability: normal survives a process kill; full (synchronous=FULL) also a power loss."
    ),
    db_max_rows: int = typer.Option(1_000_000, min=1000, max=1_000_000_000, help="Rows kept in the database (oldest deleted)."),
    video: Optional[Path] = typer.Option(None, help="Write an annotated overlay video (.avi or .mp4)."),
    show: bool = typer.Option(False, help="Show a window (needs an OpenCV build with GUI support)."),
    max_frames: Optional[int] = typer.Option(None, min=1, help="Stop after this many processed frames."),
    serve: Optional[str] = typer.Option(
        None, "--serve", help="Serve the live operator page on [HOST:]PORT (127.0.0.1 unless a host is given)."
    ),
    serve_token: Optional[str] = typer.Option(
        None, "--serve-token", envvar="EDGEPROJ_SERVE_TOKEN", help="Token the page requires (mandatory off loopback)."
    ),
    mqtt: Optional[str] = typer.Option(None, "--mqtt", help="Publish verdicts to mqtt[s]://[USER@]HOST[:PORT]/TOPIC (QoS 1)."),
    mqtt_user: Optional[str] = typer.Option(None, "--mqtt-user", help="MQTT user name."),
    mqtt_password_env: Optional[str] = typer.Option(
        None, "--mqtt-password-env", help="Name of the environment variable holding the MQTT password."
    ),
    mqtt_ca: Optional[Path] = typer.Option(None, "--mqtt-ca", help="CA certificate (PEM) for mqtts://."),
    mqtt_cert: Optional[Path] = typer.Option(None, "--mqtt-cert", help="Client certificate (PEM) for mqtts://."),
    mqtt_key: Optional[Path] = typer.Option(None, "--mqtt-key", help="Client key (PEM) for mqtts://."),
    mqtt_insecure: bool = typer.Option(False, "--mqtt-insecure", help="Do not verify the broker's certificate name."),
    mqtt_spool: int = typer.Option(
        100_000, "--mqtt-spool", min=1, max=100_000_000, help="Messages kept on disk while the broker is down (overflow counted)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No periodic progress lines."),
    accept_stop_check: bool = AcceptStopCheckOpt,
    json_out: bool = typer.Option(False, "--json", help="JSON lines on stdout: one per frame, then the summary."),
):
    """Inspect frames: projection, anomaly map, verdict OK / NG / FAULT; one SQLite row per frame.

    FAULT means the part could not be judged: the frame failed the frame gate (it does not look like the
    good parts calibration saw: blank, blurred, badly exposed, another product, wrong size) or could not
    be read, or the judgement failed (a non-finite score, a diverged projection, a processing error). The
    line must reject it like an NG; frames failing the gate in a row raise one camera ALARM. Exit codes:
    0 when the run ended normally, 2 for a setup error (bad option, unopenable source, ROI outside the
    frame) or a run in which no frame could be read.
    """
    import logging

    from edgeproj.cli.common import output_dir, output_file, parse_resize, parse_roi, stop_check_fit
    from edgeproj.cli.output import console, dumps
    from edgeproj.errors import ConfigError, EdgeprojError
    from edgeproj.line.capture import Capture
    from edgeproj.line.pipeline import InspectOptions, StopFlag, inspect, resolve_thresholds
    from edgeproj.line.sources import open_source
    from edgeproj.line.store import ResultStore
    from edgeproj.runtime import load_manifest
    from edgeproj.runtime.gate import FrameGate

    logging.basicConfig(level=logging.WARNING, format="edgeproj: %(message)s")
    roi_box = parse_roi(roi)
    resize_wh = parse_resize(resize)
    if show:
        import cv2

        if "GUI:                           NONE" in cv2.getBuildInformation() or not hasattr(cv2, "imshow"):
            raise ConfigError("--show needs an OpenCV build with GUI support; this one is headless (opencv-python-headless)")
    opts = InspectOptions(
        image_threshold=image_threshold, pixel_threshold=pixel_threshold, roi=roi_box, resize=resize_wh, queue_size=queue_size,
        save_all=save_all, video=video, show=show, max_frames=max_frames, keep_frames=keep_frames, in_flight=in_flight,
        alarm_after=alarm_after,
    )  # fmt: skip
    manifest = load_manifest(bundle)
    resolve_thresholds(manifest.calibration, opts)  # an uncalibrated bundle is refused before anything opens
    gate = FrameGate.of(manifest)  # so is a malformed gate
    projector = choice.projector(manifest)
    advisory = stop_check_fit(manifest, projector, accept_stop_check)  # and thresholds that fit another stop check
    src = open_source(source, manifest.channels, csi, max_pixels=max_pixels)  # a bad source: nothing written yet
    out = output_dir(out)
    if video is not None:
        output_file(video, "--video")
    store = ResultStore(db or out / "results.sqlite", durability=durability, max_rows=db_max_rows)
    sinks = _sinks(out, manifest, opts, serve, serve_token, mqtt, mqtt_user, mqtt_password_env, mqtt_ca, mqtt_cert, mqtt_key,
                   mqtt_insecure, mqtt_spool)  # fmt: skip
    if sinks:
        for s in sinks.sinks:
            if hasattr(s, "url"):
                c_err = console()
                c_err.print(f"live page: {s.url}", soft_wrap=True)
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

    from edgeproj.cli.output import progress_line

    capture = Capture(src, maxsize=queue_size, max_reconnects=max_reconnects)
    every = None if quiet or json_out else (lambda s: progress_line(
        f"inspect: {s['processed']} judged (OK {s['ok']}, NG {s['ng']}, FAULT {s['fault']}), {s['dropped']} dropped, "
        f"{s['fps']:.2f} frames/s, p99 {s['latency_ms_p99']:.0f} ms"))  # fmt: skip
    try:
        with projector as proj:
            # Said once the setup holds, so a setup error stays one line.
            if advisory:
                c.print(f"warning: {advisory}", soft_wrap=True)
            if gate.advisory:
                c.print(f"warning: {gate.advisory}", soft_wrap=True)
            summary = inspect(
                proj, src, store, out, opts, on_result=on_result, stop=stop, capture=capture, sinks=sinks, every=every
            )
    finally:
        store.close()
        if sinks:
            sinks.close()
    if summary["processed"] == 0 and summary["source_error"]:
        raise EdgeprojError(f"source {src.name} failed before any frame was judged: {summary['source_error']}")
    if summary["unreadable"] and summary["processed"] == summary["unreadable"]:
        raise EdgeprojError(
            f"no frame could be judged: {summary['frames_read']} read, {summary['corrupt']} corrupt (each recorded as FAULT)"
        )
    if json_out:
        print(dumps(summary | {"summary": True}, indent=None), flush=True)
    else:
        c.print(
            f"{summary['frames_read']} frames read, {summary['processed']} processed, {summary['dropped']} dropped, "
            f"{summary['corrupt']} corrupt; OK {summary['ok']}, NG {summary['ng']}, FAULT {summary['fault']}; "
            f"{summary['fps']:.2f} frames/s, latency p50 {summary['latency_ms_p50']:.0f} ms, "
            f"p99 {summary['latency_ms_p99']:.0f} ms ({summary['stopped_by']})"
        )
        g = summary["gate"]
        if g["failed"]:
            checks = ", ".join(f"{k} {n}" for k, n in g["by_check"].items())
            c.print(f"frame gate: {g['failed']} frame(s) stopped, FAULT ({checks}); camera alarms {g['alarms']}")
        if g["alarm_active"]:
            c.print("[red]ALARM still active at the end of the run: the last frames failed the frame gate in a row")
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


def _sinks(out, manifest, opts, serve, serve_token, mqtt, user, password_env, ca, cert, key, insecure, spool):
    """The live page and the MQTT publisher the options ask for, started (ConfigError on a bad option)."""
    import os

    from edgeproj.errors import ConfigError
    from edgeproj.line.sinks import Sinks

    sinks = Sinks()
    try:
        if mqtt:
            from edgeproj.line.mqtt import MqttPublisher, parse_mqtt_url

            password = None
            if password_env:
                if password_env not in os.environ:
                    raise ConfigError(f"--mqtt-password-env: the variable {password_env} is not set")
                password = os.environ[password_env]
            cfg = parse_mqtt_url(
                mqtt, username=user, password=password, ca_file=ca, cert_file=cert, key_file=key, insecure=insecure
            )
            sinks.add(MqttPublisher(cfg, out / "mqtt-spool.sqlite", spool_max=spool).start())
        if serve:
            from edgeproj.line.live import LivePage, parse_listen

            host, port = parse_listen(serve)
            cal = manifest.calibration
            image_thr = opts.image_threshold if opts.image_threshold is not None else cal.image_threshold
            pixel_thr = opts.pixel_threshold if opts.pixel_threshold is not None else cal.pixel_threshold
            page = LivePage(host, port, token=serve_token, image_threshold=image_thr, pixel_threshold=pixel_thr,
                            title=f"edgeproj inspect - {manifest.variant}")  # fmt: skip
            sinks.add(page.start())
    except ImportError as exc:
        sinks.close()
        raise ConfigError(
            f"--serve and --mqtt need the line extra ({exc.name} is missing): pip install 'edgeproj[line]'"
        ) from None
    except BaseException:
        sinks.close()
        raise
    return sinks
