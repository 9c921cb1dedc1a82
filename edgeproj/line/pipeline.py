"""The inspection loop: capture -> ROI/resize -> frame gate -> projection -> map -> verdict -> database row."""

from __future__ import annotations

import math
import queue
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path

from edgeproj.errors import ConfigError
from edgeproj.line.alarm import GateMonitor
from edgeproj.line.capture import END, Capture
from edgeproj.line.judging import FrameJudge, InFlight
from edgeproj.line.options import FrameOutputs, InspectOptions
from edgeproj.line.outputs import OverlaySinks
from edgeproj.line.sinks import Sinks
from edgeproj.line.sources import FrameSource
from edgeproj.line.store import FrameRow, GuardedStore, ResultStore
from edgeproj.line.summary import Summary, Ticker
from edgeproj.runtime.gate import FrameGate
from edgeproj.runtime.manifest import Calibration
from edgeproj.runtime.projector import Projector


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


class _Line:
    """The loop's state: frames in flight, oldest first, and where each judged frame goes.

    Only lanes project while the loop reads on (`depth` > 1); elsewhere a second frame in flight would only wait.
    """

    def __init__(self, judge: FrameJudge, summary: Summary, rows: GuardedStore, outputs: OverlaySinks,
                 monitor: GateMonitor, sinks: Sinks, on_result, ticker: Ticker, depth: int):  # fmt: skip
        self.judge, self.summary, self.rows, self.outputs = judge, summary, rows, outputs
        self.monitor, self.sinks, self.on_result, self.ticker = monitor, sinks, on_result, ticker
        self.depth = depth
        self.in_flight: deque[InFlight] = deque()

    def run(self, cap: Capture, stop: StopFlag, max_frames: int | None) -> None:
        """Read and judge until the source ends, `max_frames` or a stop; frames already read all get verdicts."""
        while True:
            if stop.event.is_set():
                self.summary.stopped_by = stop.reason or "stop"
                break
            if max_frames is not None and self.summary.processed + len(self.in_flight) >= max_frames:
                self.summary.stopped_by = "max frames"
                break
            try:
                # With a frame in flight, judge it now rather than wait for the next one (a slow camera).
                frame = cap.get(timeout=0 if self.in_flight else 0.2)
            except queue.Empty:
                if self.in_flight:
                    self.finish()
                continue
            if frame is END:
                break
            self.in_flight.append(self.judge.submit(frame))
            if len(self.in_flight) >= self.depth:
                self.finish()
        while self.in_flight:
            self.finish()

    def finish(self) -> None:
        """Judge the oldest frame in flight and send its row everywhere (popped once counted: never lost)."""
        j = self.judge.settle(self.in_flight[0])
        frame, res, v, s = j.frame, j.result, j.verdict, self.summary
        saved = (None, None) if res is None else self.outputs.write(f"{s.run_id}_{frame.seq:06d}", j.image, res.map, res.score, v)
        latency = (time.monotonic() - frame.mono_ts) * 1000
        row = FrameRow(frame.seq, s.run_id, s.source, frame.name, frame.wall_ts, latency, j.score, v.verdict,
                       j.iterations, j.stop_reason, *saved, v.reason, v.gate)  # fmt: skip
        self.rows.add(row)
        if v.gate or not j.error:  # a processing error says nothing about the camera
            self.monitor.update(frame.seq, v.gate, v.reason)
        s.count(v.verdict, latency, unreadable=frame.image is None)
        self.in_flight.popleft()
        if self.on_result:
            self.on_result(row)
        if self.sinks:
            self.sinks.publish(row.as_json(), j.image, None if res is None else res.map)
        self.ticker.tick(s, self.monitor.summary)

    def close(self) -> None:
        """Release the outputs, flush the rows, and take their figures into the summary."""
        try:
            self.outputs.close()
        finally:  # the rows reach the database even when the video or the window fails to close
            self.rows.flush()
        self.summary.took_store(self.rows)
        self.summary.image_write_errors = self.outputs.image_write_errors
        self.summary.gate = self.monitor.summary()
        self.monitor.flush()


def inspect(
    projector: Projector,
    source: FrameSource,
    store: ResultStore | Path,
    out_dir: Path,
    opts: InspectOptions,
    on_result: Callable[[FrameRow], None] | None = None,
    stop: StopFlag | None = None,
    capture: Capture | None = None,
    sinks: Sinks | None = None,
    every: Callable[[Summary], None] | None = None,
    every_s: float = 30.0,
    outputs: FrameOutputs | None = None,
) -> Summary:
    """Run until the source ends, `max_frames`, or a stop signal; returns the run's Summary.

    Every frame gets a verdict (OK, NG or FAULT, edgeproj.runtime.verdict), reported through `on_result`
    whether or not the database (`store`, or a path to open one at) could take its row. A frame that
    could not be read or fails the frame gate is FAULT without being projected; frames failing it in a
    row raise the camera ALARM (edgeproj.line.alarm). `outputs` (saved frames, video, window) are fed on
    the line; `sinks` (live page, MQTT) get every row without the line waiting on them; `every(summary)`
    is called every `every_s` seconds (progress in logs).
    """
    image_thr, pixel_thr = resolve_thresholds(projector.manifest.calibration, opts)
    stop, sinks = stop or StopFlag(), sinks or Sinks()
    summary = Summary(new_run_id(), source.name, image_threshold=image_thr, pixel_threshold=pixel_thr)
    own_store = not isinstance(store, ResultStore)
    store = ResultStore(Path(store)) if own_store else store
    judge = FrameJudge(projector, FrameGate.of(projector.manifest), image_thr, opts.roi, opts.resize)
    out = (outputs or FrameOutputs()).open(out_dir, stop, pixel_thr)
    cap = capture or Capture(source, maxsize=opts.queue_size)
    monitor = GateMonitor(opts.alarm_after, sinks)
    sinks.status(**run_facts(summary, projector.manifest))
    projector.open()
    ticker = Ticker(every, every_s)
    line = _Line(judge, summary, GuardedStore(store, opts.store_buffer), out, monitor, sinks, on_result, ticker,
                 depth=opts.in_flight if projector.pipelined else 1)  # fmt: skip
    cap.start()
    try:
        line.run(cap, stop, opts.max_frames)
    finally:
        unjudged = _stop_capture(cap)
        summary.seconds = ticker.elapsed()
        summary.took_capture(cap.stats, dropped_at_stop=unjudged)
        line.close()
        if own_store:
            store.close()
    summary.database = str(store.path)
    summary.sinks = sinks.stats() if sinks else None
    return summary


def new_run_id() -> str:
    """A run id that sorts by start time: 20261204T115500-1a2b3c."""
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def run_facts(summary: Summary, manifest) -> dict:
    """What the sinks show about the run: its id, source, thresholds and bundle."""
    return dict(
        run_id=summary.run_id, source=summary.source, image_threshold=summary.image_threshold,
        pixel_threshold=summary.pixel_threshold, bundle=str(manifest.root), bundle_sha256=manifest.graphs["step"].sha256,
        variant=manifest.variant,
    )  # fmt: skip


def _stop_capture(cap: Capture) -> int:
    """Stop the capture thread; frames still queued were read but never judged: how many (counted as dropped)."""
    cap.stop()
    cap.join(timeout=5)
    n = 0
    while True:
        try:
            item = cap.queue.get_nowait()
        except queue.Empty:
            return n
        n += item is not END
