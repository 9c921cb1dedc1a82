"""The inspection loop: capture -> ROI/resize -> frame gate -> projection -> map -> verdict -> database row."""

from __future__ import annotations

import logging
import math
import queue
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeproj import overlays
from edgeproj.errors import ConfigError, EdgeprojError
from edgeproj.line.alarm import UNREADABLE, GateMonitor
from edgeproj.line.capture import END, Capture
from edgeproj.line.sinks import Sinks
from edgeproj.line.sources import FrameSource
from edgeproj.line.store import FrameRow, GuardedStore, ResultStore
from edgeproj.runtime.framing import check_resize, check_roi, crop_roi, frame_as_stated
from edgeproj.runtime.gate import FrameGate, GateFailure, GateResult
from edgeproj.runtime.manifest import Calibration
from edgeproj.runtime.projector import Projector
from edgeproj.runtime.verdict import FAULT, NG, OK, judge

log = logging.getLogger("edgeproj.line")


@dataclass
class InspectOptions:
    """How frames are judged and what is kept."""

    image_threshold: float | None = None  # default: the bundle's calibration
    pixel_threshold: float | None = None
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h in frame pixels
    resize: tuple[int, int] | None = None  # width, height the frame (after the ROI) is resized to, as stated
    queue_size: int = 4
    save_all: bool = False  # PNG map and overlay for every frame, not only NG/FAULT
    video: Path | None = None  # annotated overlay video
    show: bool = False
    max_frames: int | None = None
    keep_frames: int = 2000  # saved frame PNG pairs kept under OUT/frames (the oldest are deleted)
    store_buffer: int = 10_000  # rows held in memory while the database is unavailable
    # Frames projected at once: the next frame's tiles start while this one's last tiles finish (lanes).
    in_flight: int = 2
    alarm_after: int = 5  # frames in a row that fail the frame gate before the camera ALARM

    def __post_init__(self):
        check_resize(self.resize)
        if not 1 <= self.alarm_after <= 1_000_000:
            raise ConfigError(f"--alarm-after {self.alarm_after}: give 1..1000000 frames in a row")
        if not 1 <= self.in_flight <= 8:
            raise ConfigError(f"--in-flight {self.in_flight}: frames in flight must be 1..8 (2 keeps every CPU lane busy)")
        if self.queue_size < 1:
            raise ConfigError("the capture queue needs at least 1 slot (a live source drops the oldest frame beyond it)")
        check_roi(self.roi)


@dataclass
class Summary:
    run_id: str
    source: str
    frames_read: int = 0
    processed: int = 0
    unreadable: int = 0  # frames judged FAULT because they could not be read (never projected)
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    ok: int = 0
    ng: int = 0
    fault: int = 0
    storage_alarms: int = 0
    rows_unstored: int = 0
    rows_lost_from_store: int = 0
    image_write_errors: int = 0
    seconds: float = 0.0
    latencies_ms: list = field(default_factory=list)
    stopped_by: str = "end of source"
    source_error: str = ""
    gate: dict = field(default_factory=dict)  # frames the frame gate stopped, by check; camera alarms

    def to_dict(self) -> dict:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        d = {k: v for k, v in self.__dict__.items() if k != "latencies_ms"}
        return d | {
            "seconds": round(self.seconds, 3),
            "fps": self.processed / self.seconds if self.seconds > 0 else 0.0,
            "latency_ms_p50": float(np.nanpercentile(lat, 50)),
            "latency_ms_p99": float(np.nanpercentile(lat, 99)),
        }


def resolve_thresholds(calibration: Calibration, opts: InspectOptions) -> tuple[float, float | None]:
    """Image and pixel thresholds: given ones win; an uncalibrated bundle without them is refused."""
    image = opts.image_threshold if opts.image_threshold is not None else calibration.image_threshold
    pixel = opts.pixel_threshold if opts.pixel_threshold is not None else calibration.pixel_threshold
    if image is None:
        raise ConfigError(
            "the bundle is not calibrated: run `edgeproj calibrate BUNDLE NORMAL_IMAGES` first, "
            "or give --image-threshold (and --pixel-threshold) explicitly"
        )
    for name, v in (("image threshold", image), ("pixel threshold", pixel)):
        if v is not None and not math.isfinite(v):
            raise ConfigError(f"the {name} is {v}: a verdict needs a finite threshold; recalibrate the bundle")
    return float(image), (None if pixel is None else float(pixel))


class StopFlag:
    """Set by SIGINT/SIGTERM: the frames in flight finish and get verdicts, rows are flushed, the process exits 0."""

    def __init__(self):
        self.event = threading.Event()
        self.reason = ""

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        self.reason = signal.Signals(signum).name
        self.event.set()


class FrameFiles:
    """Saved map/overlay PNGs under OUT/frames, at most `keep` pairs (the oldest deleted, earlier runs included)."""

    def __init__(self, folder: Path, keep: int):
        self.folder = folder
        self.keep = keep
        existing = sorted(folder.glob("*_overlay.png"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
        self.saved: deque[Path] = deque(p.with_name(p.name.replace("_overlay.png", "")) for p in existing)
        self.errors = 0

    def save(self, stem: str, amap: np.ndarray, over: np.ndarray, vmax: float | None) -> tuple[str | None, str | None]:
        """Write one pair; on a storage error count it, raise one alarm, and return no paths."""
        if self.keep == 0:
            return None, None
        base = self.folder / stem
        try:
            overlays.write(base.with_name(f"{stem}_map.png"), overlays.heatmap(amap, vmax))
            overlays.write(base.with_name(f"{stem}_overlay.png"), over)
        except (OSError, EdgeprojError) as exc:
            if self.errors == 0:
                log.error("ALARM: cannot save frame images under %s (%s); verdicts go on", self.folder, exc)
            self.errors += 1
            return None, None
        self.saved.append(base)
        while len(self.saved) > self.keep:
            old = self.saved.popleft()
            for suffix in ("_map.png", "_overlay.png"):
                old.with_name(old.name + suffix).unlink(missing_ok=True)
        return str(base.with_name(f"{stem}_map.png")), str(base.with_name(f"{stem}_overlay.png"))


def inspect(
    projector: Projector,
    source: FrameSource,
    store: ResultStore | Path,
    out_dir: Path,
    opts: InspectOptions,
    on_result: Callable[[dict], None] | None = None,
    stop: StopFlag | None = None,
    capture: Capture | None = None,
    sinks: Sinks | None = None,
    every: Callable[[dict], None] | None = None,
    every_s: float = 30.0,
) -> dict:
    """Run until the source ends, `max_frames`, or a stop signal; returns the summary dict.

    Every frame gets a verdict (OK, NG or FAULT, see edgeproj.runtime.verdict) that is reported through
    `on_result` whether or not the database could take its row; a frame that could not be read, or that
    fails the frame gate (edgeproj.runtime.gate), is FAULT without being projected, and frames that fail
    it in a row raise the camera ALARM (edgeproj.line.alarm). `store` is a ResultStore, or a path
    to open one at (then closed at the end). `sinks` (the live page, MQTT) get every row with its image
    and map without the line waiting on them; `every(summary)` is called every `every_s` seconds with
    the running summary (periodic progress in logs).
    """
    image_thr, pixel_thr = resolve_thresholds(projector.manifest.calibration, opts)
    gate = FrameGate.of(projector.manifest)
    stop = stop or StopFlag()
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = Summary(run_id, source.name)
    own_store = not isinstance(store, ResultStore)
    store = ResultStore(Path(store)) if own_store else store
    rows = GuardedStore(store, opts.store_buffer)
    files = FrameFiles(out_dir / "frames", opts.keep_frames)
    cap = capture or Capture(source, maxsize=opts.queue_size)
    writer = None
    vmax = 2 * pixel_thr if pixel_thr else None
    sinks = sinks or Sinks()
    monitor = GateMonitor(opts.alarm_after, sinks)
    sinks.status(
        run_id=run_id, source=source.name, image_threshold=image_thr, pixel_threshold=pixel_thr,
        bundle=str(projector.manifest.root), bundle_sha256=projector.manifest.graphs["step"].sha256, variant=projector.manifest.variant,
    )  # fmt: skip
    projector.open()
    t0 = time.monotonic()
    next_report = t0 + every_s
    cap.start()
    first = True
    # Frames being projected, oldest first: (frame, image, wait for its result, error before projecting,
    # the gate's findings before projecting).
    # Only lanes project while the loop reads on; elsewhere a second frame in flight would only wait.
    in_flight: deque = deque()
    depth = opts.in_flight if projector.pipelined else 1

    def finish() -> None:
        nonlocal next_report, writer
        frame, img, wait, error, checked = in_flight[0]  # popped once counted: a frame is processed or dropped, never lost
        res = None
        if not error and wait is not None:
            try:
                res = wait()
                checked = checked.merged(gate.check_model(res.rec_loss0))
            except Exception as exc:  # noqa: BLE001 - any failure judging a part makes it a FAULT, the line goes on
                error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, EdgeprojError) else str(exc)
        if error:
            log.error("frame %s: FAULT (%s)", frame.name or frame.seq, error)
        v = judge(None if res is None else res.score, image_thr, 0 if res is None else res.diverged, error, gate=checked)
        map_path = overlay_path = None
        over = None
        if res is not None and (v.rejected or opts.save_all or opts.video or opts.show):
            over = overlays.overlay(img, np.nan_to_num(res.map, nan=0.0), pixel_thr, vmax=vmax)
        if over is not None and (v.rejected or opts.save_all):
            map_path, overlay_path = files.save(f"{run_id}_{frame.seq:06d}", np.nan_to_num(res.map, nan=0.0), over, vmax)
        if opts.video and over is not None:
            writer = writer or _video_writer(opts.video, over.shape[1], over.shape[0])
            writer.write(_annotate(over, v.verdict, res.score))
        if opts.show and over is not None:
            import cv2

            cv2.imshow("edgeproj inspect", _annotate(over, v.verdict, res.score))
            if cv2.waitKey(1) & 0xFF == ord("q"):
                stop.reason = "window closed"
                stop.event.set()
        latency = (time.monotonic() - frame.mono_ts) * 1000
        reasons = res.stop_reasons if res is not None else (["gate"] if v.gate else ["error"])
        score = None if res is None or not math.isfinite(res.score) else float(res.score)
        row = FrameRow(
            frame.seq, run_id, source.name, frame.name, frame.wall_ts, latency, score, v.verdict,
            None if res is None else float(np.mean(res.iterations)), max(set(reasons), key=reasons.count),
            map_path, overlay_path, v.reason, v.gate,
        )  # fmt: skip
        rows.add(row)
        if v.gate or not error:  # a processing error says nothing about the camera: it neither raises nor clears
            monitor.update(frame.seq, v.gate, v.reason)
        summary.processed += 1
        summary.unreadable += frame.image is None
        summary.ok += v.verdict == OK
        summary.ng += v.verdict == NG
        summary.fault += v.verdict == FAULT
        summary.latencies_ms.append(latency)
        in_flight.popleft()
        if on_result:
            on_result(row.__dict__)
        if sinks:
            sinks.publish(row.__dict__, img, None if res is None else res.map)
        if every is not None and time.monotonic() >= next_report:
            next_report = time.monotonic() + every_s
            summary.seconds = time.monotonic() - t0
            summary.gate = monitor.summary()
            every(summary.to_dict())

    try:
        while True:
            if stop.event.is_set():
                summary.stopped_by = stop.reason or "stop"
                break
            if opts.max_frames is not None and summary.processed + len(in_flight) >= opts.max_frames:
                summary.stopped_by = "max frames"
                break
            try:
                # With a frame in flight, judge it now rather than wait for the next one (a slow camera).
                frame = cap.get(timeout=0 if in_flight else 0.2)
            except queue.Empty:
                if in_flight:
                    finish()
                continue
            if frame is END:
                break
            if first and frame.image is not None:  # a ROI outside the camera's frame is a setup error: stop now
                crop_roi(frame.image, opts.roi)
                first = False
            img, wait, checked, error = None, None, GateResult(), ""
            if frame.image is None:  # reading never repairs a pixel: an unreadable frame is the gate's FAULT
                checked = GateResult((GateFailure(UNREADABLE, f"the frame could not be read: {frame.error or 'no image'}"),))
            else:
                try:
                    img = frame_as_stated(frame.image, opts.roi, opts.resize)
                    checked = gate.check_frame(img)
                    if checked.passed:  # a frame that shows no judgeable part is not worth a projection
                        wait = projector.submit(img, lean=True)
                except Exception as exc:  # noqa: BLE001 - as in finish()
                    error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, EdgeprojError) else str(exc)
            in_flight.append((frame, img, wait, error, checked))
            if len(in_flight) >= depth:
                finish()
        # Frames already being projected were read: they get their verdicts.
        while in_flight:
            finish()
    finally:
        cap.stop()
        cap.join(timeout=5)
        summary.seconds = time.monotonic() - t0
        st = cap.stats
        summary.frames_read, summary.dropped, summary.corrupt, summary.reconnects = st.read, st.dropped, st.corrupt, st.reconnects
        summary.source_error = st.failed
        # Frames still queued when a stop came were read but never judged: count them as dropped.
        while True:
            try:
                item = cap.queue.get_nowait()
            except queue.Empty:
                break
            if item is not END:
                summary.dropped += 1
        if writer is not None:
            writer.release()
        rows.flush()
        summary.storage_alarms, summary.rows_unstored, summary.rows_lost_from_store = rows.alarms, len(rows.pending), rows.lost
        summary.image_write_errors = files.errors
        summary.gate = monitor.summary()
        monitor.flush()
        if own_store:
            store.close()
        if opts.show:
            import cv2

            cv2.destroyAllWindows()
    out = summary.to_dict() | {"database": str(store.path), "image_threshold": image_thr, "pixel_threshold": pixel_thr}
    return out | ({"sinks": sinks.stats()} if sinks else {})


def _video_writer(path: Path, w: int, h: int):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix.lower() == ".mp4" else "MJPG"))
    vw = cv2.VideoWriter(str(path), fourcc, 10.0, (w, h))
    if not vw.isOpened():
        raise ConfigError(f"cannot write video '{path}': use .avi (MJPG) or .mp4")
    return vw


def _annotate(bgr: np.ndarray, verdict: str, score: float) -> np.ndarray:
    import cv2

    out = bgr.copy()
    color = (0, 200, 0) if verdict == OK else ((0, 0, 255) if verdict == NG else (0, 165, 255))
    cv2.putText(out, f"{verdict} {score:.3f}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, color, 2)
    return out
