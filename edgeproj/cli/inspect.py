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
from edgeproj.cli.groups import Flag, OptionGroup, flag, takes
from edgeproj.line.options import FrameOutputs, InspectOptions, LiveOptions, MqttOptions, SourceOptions, StorageOptions

if TYPE_CHECKING:
    from edgeproj.line.store import FrameRow
    from edgeproj.line.summary import Summary
    from edgeproj.runtime.projector import BackendChoice


def _source(source, csi, max_pixels, queue_size, max_reconnects) -> SourceOptions:
    return SourceOptions(source, csi, max_pixels, queue_size, max_reconnects)


def _judgement(image_threshold, pixel_threshold, roi, resize, alarm_after, in_flight, max_frames) -> InspectOptions:
    from edgeproj.cli.common import parse_resize, parse_roi

    return InspectOptions(image_threshold=image_threshold, pixel_threshold=pixel_threshold, roi=parse_roi(roi),
                          resize=parse_resize(resize), max_frames=max_frames, in_flight=in_flight, alarm_after=alarm_after)  # fmt: skip


def _storage(out, db, durability, db_max_rows) -> StorageOptions:
    return StorageOptions(out, db, durability, db_max_rows)


def _outputs(save_all, keep_frames, video, show) -> FrameOutputs:
    from edgeproj.line.outputs import Window

    if show:
        Window.check()
    return FrameOutputs(save_all=save_all, keep_frames=keep_frames, video=video, show=show)


def _live(serve, serve_token) -> LiveOptions | None:
    return LiveOptions(serve, serve_token) if serve else None


def _mqtt(mqtt, mqtt_user, mqtt_password_env, mqtt_ca, mqtt_cert, mqtt_key, mqtt_insecure, mqtt_spool) -> MqttOptions | None:
    if not mqtt:
        return None
    return MqttOptions(mqtt, mqtt_user, mqtt_password_env, mqtt_ca, mqtt_cert, mqtt_key, mqtt_insecure, mqtt_spool)


SOURCE = OptionGroup("source_opts", "Source", (
    flag("source", Optional[str], None, "--source", "-s",
         help="Camera index, /dev/videoN, GStreamer pipeline, rtsp/http URL, video file, folder or glob."),
    flag("csi", Optional[int], None, "--csi", min=0, max=15, help="Jetson CSI camera sensor id (nvarguscamerasrc preset)."),
    flag("max_pixels", int, 64_000_000, min=1, max=1_000_000_000, help="FAULT for frames with more pixels than this."),
    flag("queue_size", int, 4, min=1, max=1024, help="Capture queue length (live sources drop the oldest beyond it)."),
    flag("max_reconnects", int, 10, min=0, max=1_000_000,
         help="A live source that cannot be (re)opened after this many attempts in a row ends the run."),
), _source)  # fmt: skip

JUDGEMENT = OptionGroup("judgement", "Judgement", (
    # Negative values are allowed: the *_tex scores and their pixel map are in normal standard deviations, and
    # a lower threshold only rejects more.
    Flag("image_threshold", Optional[float], float_option(None, -1e6, 1e6,
         "NG above this image score (default: calibration; *_tex scores are in normal standard deviations).")),
    Flag("pixel_threshold", Optional[float], float_option(None, -1e6, 1e6, "Defect contour threshold (default: calibration).")),
    flag("roi", Optional[str], None, help="Region of interest x,y,w,h in frame pixels (must lie inside the frame)."),
    flag("resize", Optional[str], None,
         help="Resize every frame (after --roi) to WxH before the frame gate: states a camera geometry that differs from calibration's."),
    flag("alarm_after", int, 5, min=1, max=1_000_000,
         help="Frames in a row failing the frame gate (camera, lighting, no part) before one ALARM."),
    flag("in_flight", int, 2, min=1, max=8, help="Frames projected at once (2: the next frame starts while this one ends)."),
    flag("max_frames", Optional[int], None, min=1, help="Stop after this many processed frames."),
), _judgement)  # fmt: skip

STORAGE = OptionGroup("storage", "Storage", (
    flag("out", Path, Path("inspect-out"), "--out", "-o", help="Folder for the database and saved maps."),
    flag("db", Optional[Path], None, help="SQLite results database (default: OUT/results.sqlite)."),
    flag("durability", Literal["normal", "full"], "normal",
         help="Database durability: normal survives a process kill; full (synchronous=FULL) also a power loss."),
    flag("db_max_rows", int, 1_000_000, min=1000, max=1_000_000_000, help="Rows kept in the database (oldest deleted)."),
), _storage)  # fmt: skip

OUTPUTS = OptionGroup("outputs", "Saved frames, video, window", (
    flag("save_all", bool, False, help="Save map and overlay PNGs for every frame, not only NG and FAULT."),
    flag("keep_frames", int, 2000, min=0, max=10_000_000, help="Saved PNG pairs kept under OUT/frames (oldest deleted)."),
    flag("video", Optional[Path], None, help="Write an annotated overlay video (.avi or .mp4)."),
    flag("show", bool, False, help="Show a window (needs an OpenCV build with GUI support)."),
), _outputs)  # fmt: skip

LIVE = OptionGroup("live_page", "Live page", (
    flag("serve", Optional[str], None, "--serve",
         help="Serve the live operator page on [HOST:]PORT (127.0.0.1 unless a host is given)."),
    flag("serve_token", Optional[str], None, "--serve-token", envvar="EDGEPROJ_SERVE_TOKEN",
         help="Token the page requires (mandatory off loopback)."),
), _live)  # fmt: skip

MQTT = OptionGroup("broker", "MQTT", (
    flag("mqtt", Optional[str], None, "--mqtt", help="Publish verdicts to mqtt[s]://[USER@]HOST[:PORT]/TOPIC (QoS 1)."),
    flag("mqtt_user", Optional[str], None, "--mqtt-user", help="MQTT user name."),
    flag("mqtt_password_env", Optional[str], None, "--mqtt-password-env",
         help="Name of the environment variable holding the MQTT password."),
    flag("mqtt_ca", Optional[Path], None, "--mqtt-ca", help="CA certificate (PEM) for mqtts://."),
    flag("mqtt_cert", Optional[Path], None, "--mqtt-cert", help="Client certificate (PEM) for mqtts://."),
    flag("mqtt_key", Optional[Path], None, "--mqtt-key", help="Client key (PEM) for mqtts://."),
    flag("mqtt_insecure", bool, False, "--mqtt-insecure", help="Do not verify the broker's certificate name."),
    flag("mqtt_spool", int, 100_000, "--mqtt-spool", min=1, max=100_000_000,
         help="Messages kept on disk while the broker is down (overflow counted)."),
), _mqtt)  # fmt: skip


@takes(SOURCE, JUDGEMENT, STORAGE, OUTPUTS, LIVE, MQTT)
@takes(backend_flags(batch=16))
def command(
    bundle: Path = typer.Argument(..., help="Calibrated bundle directory."),
    choice: BackendChoice = None,
    source_opts: SourceOptions = None,
    judgement: InspectOptions = None,
    storage: StorageOptions = None,
    outputs: FrameOutputs = None,
    live_page: Optional[LiveOptions] = None,
    broker: Optional[MqttOptions] = None,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No periodic progress lines."),
    accept_stop_check: bool = AcceptStopCheckOpt,
    json_out: bool = typer.Option(False, "--json", help="JSON lines on stdout: one per frame, then the summary."),
):
    """Inspect frames: projection, anomaly map, verdict OK / NG / FAULT; one SQLite row per frame.

    FAULT means the part could not be judged: the frame failed the frame gate (it does not look like the
    good parts calibration saw: blank, blurred, badly exposed, another product, wrong size) or could not
    be read, or the judgement failed (a non-finite score, a diverged projection, a processing error). The
    line must reject it like an NG; frames failing the gate in a row raise one camera ALARM. Exit codes:
    0 when the run ended normally, 1 when the reader of its stdout went away (the run stopped early),
    2 for a setup error (bad option, unopenable source, ROI outside the frame) or a run in which no frame
    could be read.
    """
    import logging
    from dataclasses import replace

    from edgeproj.cli.common import output_dir, output_file, stop_check_fit
    from edgeproj.cli.output import console
    from edgeproj.line.capture import Capture
    from edgeproj.line.options import SinkOptions
    from edgeproj.line.pipeline import StopFlag, inspect, resolve_thresholds
    from edgeproj.line.sinks import open_sinks
    from edgeproj.runtime import load_manifest
    from edgeproj.runtime.gate import FrameGate

    logging.basicConfig(level=logging.WARNING, format="edgeproj: %(message)s")
    opts = replace(judgement, queue_size=source_opts.queue_size)
    manifest = load_manifest(bundle)
    thresholds = resolve_thresholds(manifest.calibration, opts)  # an uncalibrated bundle is refused before anything opens
    gate = FrameGate.of(manifest)  # so is a malformed gate
    projector = choice.projector(manifest)
    advisory = stop_check_fit(manifest, projector, accept_stop_check)  # and thresholds that fit another stop check
    src = source_opts.open(manifest.channels)  # a bad source: nothing written yet
    out = output_dir(storage.out)
    if outputs.video is not None:
        output_file(outputs.video, "--video")
    store = storage.open(out)
    sinks = open_sinks(SinkOptions(outputs, live_page, broker), out, f"edgeproj inspect - {manifest.variant}", *thresholds)
    for url in sinks.urls:
        console().print(f"live page: {url}", soft_wrap=True)
    stop = StopFlag()
    stop.install()
    report = _Report(console(), json_out, quiet)
    capture = Capture(src, maxsize=source_opts.queue_size, max_reconnects=source_opts.max_reconnects)
    try:
        with projector as proj:
            # Said once the setup holds, so a setup error stays one line; calibration's weak-separation warning too.
            report.warnings(advisory, gate.advisory, manifest.calibration.image_score_choice.get("warning"))
            summary = inspect(proj, src, store, out, opts, on_result=report.frame, stop=stop, capture=capture, sinks=sinks,
                              every=report.progress, outputs=outputs)  # fmt: skip
    finally:
        store.close()
        sinks.close()
    report.end(summary)


class _Report:
    """What `inspect` says while it runs and at the end: JSON lines with --json, else NG/FAULT lines and a summary."""

    def __init__(self, c, json_out: bool, quiet: bool):
        self.c, self.json_out = c, json_out
        self.progress = None if quiet or json_out else self._progress

    def warnings(self, *warnings: str | None) -> None:
        for w in warnings:
            if w:
                self.c.print(f"warning: {w}", soft_wrap=True)

    def frame(self, row: FrameRow) -> None:
        from edgeproj.cli.output import dumps

        if self.json_out:
            print(dumps(row.as_json(), indent=None), flush=True)
        elif row.verdict != "OK":
            score = "n/a" if row.score is None else f"{row.score:.4f}"
            why = f" - {row.fault}" if row.fault else ""
            self.c.print(f"[red]{row.verdict}[/red] frame {row.seq} {row.name} score {score} ({row.latency_ms:.0f} ms){why}")

    @staticmethod
    def _progress(s: Summary) -> None:
        from edgeproj.cli.output import progress_line

        progress_line(f"inspect: {s.processed} judged (OK {s.ok}, NG {s.ng}, FAULT {s.fault}), {s.dropped} dropped, "
                      f"{s.fps:.2f} frames/s, p99 {s.latency_ms_p99:.0f} ms")  # fmt: skip

    def end(self, s: Summary) -> None:
        """The summary; EdgeprojError (exit 2) for a run in which no frame could be judged or the source failed."""
        from edgeproj.cli.output import dumps
        from edgeproj.errors import EdgeprojError

        if s.processed == 0 and s.source_error:
            raise EdgeprojError(f"source {s.source} failed before any frame was judged: {s.source_error}")
        if s.unreadable and s.processed == s.unreadable:
            raise EdgeprojError(f"no frame could be judged: {s.frames_read} read, {s.corrupt} corrupt (each recorded as FAULT)")
        if self.json_out:
            print(dumps(s.as_json() | {"summary": True}, indent=None), flush=True)
        else:
            self._summary(s)
        if s.source_error:
            raise EdgeprojError(f"the run ended because the source failed: {s.source_error} ({s.processed} frames judged)")

    def _summary(self, s: Summary) -> None:
        c = self.c
        c.print(
            f"{s.frames_read} frames read, {s.processed} processed, {s.dropped} dropped, {s.corrupt} corrupt; "
            f"OK {s.ok}, NG {s.ng}, FAULT {s.fault}; {s.fps:.2f} frames/s, latency p50 {s.latency_ms_p50:.0f} ms, "
            f"p99 {s.latency_ms_p99:.0f} ms ({s.stopped_by})"
        )
        g = s.gate
        if g.failed:
            checks = ", ".join(f"{k} {n}" for k, n in g.by_check.items())
            c.print(f"frame gate: {g.failed} frame(s) stopped, FAULT ({checks}); camera alarms {g.alarms}")
        if g.alarm_active:
            c.print("[red]ALARM still active at the end of the run: the last frames failed the frame gate in a row")
        if s.storage_alarms or s.rows_unstored:
            c.print(
                f"[red]storage alarms {s.storage_alarms}: {s.rows_unstored} row(s) not in the database, "
                f"{s.rows_lost_from_store} dropped from its buffer (all were reported above)"
            )
        c.print(f"results: {s.database}")
