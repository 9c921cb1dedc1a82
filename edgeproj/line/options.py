"""The options of a line run, as the CLI builds them: the source, the judgement, storage and where verdicts go.

Plain dataclasses that import nothing heavy (the CLI reads them for --help); what they open is imported
when it is opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgeproj.errors import ConfigError

if TYPE_CHECKING:
    from edgeproj.line.outputs import OverlaySinks
    from edgeproj.line.sources import FrameSource
    from edgeproj.line.store import ResultStore


@dataclass(frozen=True)
class SourceOptions:
    """Which source to read (see `open_source`) and how the capture treats it."""

    spec: str | None = None
    csi: int | None = None  # Jetson CSI sensor id, instead of `spec`
    max_pixels: int = 64_000_000  # frames with more pixels are FAULT
    queue_size: int = 4  # capture queue length: a live source drops the oldest frame beyond it
    max_reconnects: int = 10  # failed (re)opens in a row that end the run

    def open(self, channels: int) -> FrameSource:
        """The source, opened as `open_source` does."""
        from edgeproj.line.sources import open_source

        return open_source(self.spec, channels, self.csi, max_pixels=self.max_pixels)


@dataclass
class InspectOptions:
    """How frames are judged (where the verdicts go is `SinkOptions`)."""

    image_threshold: float | None = None  # default: the bundle's calibration
    pixel_threshold: float | None = None
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h in frame pixels
    resize: tuple[int, int] | None = None  # width, height the frame (after the ROI) is resized to, as stated
    queue_size: int = 4
    max_frames: int | None = None
    store_buffer: int = 10_000  # rows held in memory while the database is unavailable
    # Frames projected at once: the next frame's tiles start while this one's last tiles finish (lanes).
    in_flight: int = 2
    alarm_after: int = 5  # frames in a row that fail the frame gate before the camera ALARM

    def __post_init__(self):
        from edgeproj.runtime.framing import check_resize, check_roi

        check_resize(self.resize)
        if not 1 <= self.alarm_after <= 1_000_000:
            raise ConfigError(f"--alarm-after {self.alarm_after}: give 1..1000000 frames in a row")
        if not 1 <= self.in_flight <= 8:
            raise ConfigError(f"--in-flight {self.in_flight}: frames in flight must be 1..8 (2 keeps every CPU lane busy)")
        if self.queue_size < 1:
            raise ConfigError("the capture queue needs at least 1 slot (a live source drops the oldest frame beyond it)")
        check_roi(self.roi)


@dataclass(frozen=True)
class StorageOptions:
    """Where a run keeps its results: the output folder (saved frames, spools) and the database in it."""

    out: Path = Path("inspect-out")
    db: Path | None = None  # default: OUT/results.sqlite
    durability: str = "normal"  # see ResultStore
    max_rows: int = 1_000_000

    def open(self, out: Path) -> ResultStore:
        """The database, in the checked output folder `out` unless `db` names another file."""
        from edgeproj.line.store import ResultStore

        return ResultStore(self.db or out / "results.sqlite", durability=self.durability, max_rows=self.max_rows)


@dataclass(frozen=True)
class FrameOutputs:
    """Which local outputs a run feeds: saved frame PNGs (always NG and FAULT, every frame with `save_all`;
    `keep_frames` pairs kept), an annotated video, a window."""

    save_all: bool = False
    keep_frames: int = 2000  # saved frame PNG pairs kept under OUT/frames (the oldest are deleted)
    video: Path | None = None
    show: bool = False

    def open(self, out_dir: Path, stop, pixel_threshold: float | None) -> OverlaySinks:
        """The outputs, in the order they are fed: saved frames, the video, the window (`stop` is its StopFlag)."""
        from edgeproj.line.outputs import OverlaySink, OverlaySinks, SavedFrames, VideoFile, Window

        sinks: list[OverlaySink] = [SavedFrames(out_dir / "frames", self.keep_frames, self.save_all)]
        sinks += [VideoFile(self.video)] if self.video else []
        sinks += [Window(stop)] if self.show else []
        return OverlaySinks(sinks, pixel_threshold)


@dataclass(frozen=True)
class LiveOptions:
    """The live operator page (edgeproj.line.live): where it listens and the token it asks for."""

    listen: str  # PORT or HOST:PORT (127.0.0.1 unless a host is given)
    token: str | None = None  # mandatory off loopback


@dataclass(frozen=True)
class MqttOptions:
    """Verdicts published to an MQTT broker (edgeproj.line.mqtt), QoS 1, spooled on disk while it is down."""

    url: str  # mqtt[s]://[USER@]HOST[:PORT]/TOPIC
    user: str | None = None
    password_env: str | None = None  # the name of the environment variable holding the password
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False  # do not verify the broker's certificate name
    spool: int = 100_000  # messages kept on disk while the broker is down

    def password(self) -> str | None:
        if not self.password_env:
            return None
        if self.password_env not in os.environ:
            raise ConfigError(f"--mqtt-password-env: the variable {self.password_env} is not set")
        return os.environ[self.password_env]


@dataclass(frozen=True)
class SinkOptions:
    """Where a run's verdicts go besides the database: local outputs, the live page, MQTT (None: not used)."""

    outputs: FrameOutputs = field(default_factory=FrameOutputs)
    live: LiveOptions | None = None
    mqtt: MqttOptions | None = None
