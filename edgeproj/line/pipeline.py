"""The inspection loop: capture -> preprocessing (ROI) -> projection -> map -> verdict -> database row."""

from __future__ import annotations

import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeproj import overlays
from edgeproj.errors import ConfigError
from edgeproj.line.capture import END, Capture
from edgeproj.line.sources import FrameSource
from edgeproj.line.store import FrameRow, ResultStore
from edgeproj.runtime.manifest import Calibration
from edgeproj.runtime.projector import Projector


@dataclass
class InspectOptions:
    """How frames are judged and what is kept."""

    image_threshold: float | None = None  # default: the bundle's calibration
    pixel_threshold: float | None = None
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h in frame pixels
    queue_size: int = 4
    save_all: bool = False  # PNG map and overlay for every frame, not only NG
    video: Path | None = None  # annotated overlay video
    show: bool = False
    max_frames: int | None = None


@dataclass
class Summary:
    run_id: str
    source: str
    frames_read: int = 0
    processed: int = 0
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    ng: int = 0
    seconds: float = 0.0
    latencies_ms: list = field(default_factory=list)
    stopped_by: str = "end of source"
    source_error: str = ""

    def to_dict(self) -> dict:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        return {
            "run_id": self.run_id,
            "source": self.source,
            "frames_read": self.frames_read,
            "processed": self.processed,
            "dropped": self.dropped,
            "corrupt": self.corrupt,
            "reconnects": self.reconnects,
            "ng": self.ng,
            "seconds": round(self.seconds, 3),
            "fps": self.processed / self.seconds if self.seconds > 0 else 0.0,
            "latency_ms_p50": float(np.nanpercentile(lat, 50)),
            "latency_ms_p99": float(np.nanpercentile(lat, 99)),
            "stopped_by": self.stopped_by,
            "source_error": self.source_error,
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
    return float(image), (None if pixel is None else float(pixel))


class StopFlag:
    """Set by SIGINT/SIGTERM: the current frame finishes, rows are flushed, the process exits 0."""

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


def inspect(
    projector: Projector,
    source: FrameSource,
    db_path: Path,
    out_dir: Path,
    opts: InspectOptions,
    on_result: Callable[[dict], None] | None = None,
    stop: StopFlag | None = None,
    capture: Capture | None = None,
) -> dict:
    """Run until the source ends, `max_frames`, or a stop signal; returns the summary dict."""
    image_thr, pixel_thr = resolve_thresholds(projector.manifest.calibration, opts)
    stop = stop or StopFlag()
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = Summary(run_id, source.name)
    store = ResultStore(db_path)
    cap = capture or Capture(source, maxsize=opts.queue_size)
    writer = None
    vmax = 2 * pixel_thr if pixel_thr else None
    projector.open()
    t0 = time.monotonic()
    cap.start()
    try:
        while True:
            if stop.event.is_set():
                summary.stopped_by = stop.reason or "stop"
                break
            if opts.max_frames is not None and summary.processed >= opts.max_frames:
                summary.stopped_by = "max frames"
                break
            try:
                frame = cap.get(timeout=0.2)
            except queue.Empty:
                continue
            if frame is END:
                break
            img = frame.image
            if opts.roi:
                x, y, w, h = opts.roi
                img = img[y : y + h, x : x + w]
                if img.size == 0:
                    raise ConfigError(f"--roi {opts.roi} lies outside the {frame.image.shape[1]}x{frame.image.shape[0]} frame")
            (res,) = projector.project([img])
            verdict = "NG" if res.score > image_thr else "OK"
            map_path = overlay_path = None
            over = None
            if verdict == "NG" or opts.save_all or opts.video or opts.show:
                over = overlays.overlay(img, res.map, pixel_thr, vmax=vmax)
            if verdict == "NG" or opts.save_all:
                stem = f"{run_id}_{frame.seq:06d}"
                map_path = out_dir / "frames" / f"{stem}_map.png"
                overlay_path = out_dir / "frames" / f"{stem}_overlay.png"
                overlays.write(map_path, overlays.heatmap(res.map, vmax))
                overlays.write(overlay_path, over)
            if opts.video:
                writer = writer or _video_writer(opts.video, over.shape[1], over.shape[0])
                writer.write(_annotate(over, verdict, res.score))
            if opts.show:
                import cv2

                cv2.imshow("edgeproj inspect", _annotate(over, verdict, res.score))
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    stop.reason = "window closed"
                    stop.event.set()
            latency = (time.monotonic() - frame.mono_ts) * 1000
            reasons = res.stop_reasons
            row = FrameRow(
                frame.seq,
                run_id,
                source.name,
                frame.name,
                frame.wall_ts,
                latency,
                res.score,
                verdict,
                float(np.mean(res.iterations)),
                max(set(reasons), key=reasons.count),
                str(map_path) if map_path else None,
                str(overlay_path) if overlay_path else None,
            )
            store.add(row)  # committed before it is reported
            summary.processed += 1
            summary.ng += verdict == "NG"
            summary.latencies_ms.append(latency)
            if on_result:
                on_result(row.__dict__)
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
        store.close()
        if opts.show:
            import cv2

            cv2.destroyAllWindows()
    return summary.to_dict() | {"database": str(db_path), "image_threshold": image_thr, "pixel_threshold": pixel_thr}


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
    color = (0, 0, 255) if verdict == "NG" else (0, 200, 0)
    cv2.putText(out, f"{verdict} {score:.3f}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, color, 2)
    return out
