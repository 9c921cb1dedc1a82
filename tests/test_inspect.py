"""`edgeproj inspect`: video, folder, live drop policy, reconnect, kill -9 durability, corrupt files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeproj.data.mvtec import load_category
from edgeproj.errors import ConfigError, DataError
from edgeproj.line.capture import Capture
from edgeproj.line.pipeline import InspectOptions, inspect
from edgeproj.line.sources import FrameSource, SourceLost, open_source
from edgeproj.line.store import read_rows
from edgeproj.runtime import Projector


@pytest.fixture(scope="module")
def calibrated(calibrated_bundle) -> Path:
    """The session's calibrated l2ae bundle (tests/conftest.py)."""
    return calibrated_bundle


def _frames(demo_root: Path) -> tuple[list[Path], list[bool]]:
    cat = load_category(demo_root, "grid")
    good = sorted((demo_root / "grid" / "train" / "good").glob("*.png"))[:4]
    defects = [s.path for s in cat.test if s.is_anomalous]
    return good + defects, [False] * len(good) + [True] * len(defects)


def test_video_of_demo_images_flags_the_defective_frames(calibrated, demo_root, tmp_path):
    paths, is_defect = _frames(demo_root)
    video = tmp_path / "line.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 5, (128, 128), True)
    assert w.isOpened()
    for p in paths:
        w.write(cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR))
    w.release()
    src = open_source(str(video), 1)
    assert not src.live
    with Projector.from_bundle(calibrated) as proj:
        summary = inspect(proj, src, tmp_path / "r.sqlite", tmp_path, InspectOptions())
    rows = read_rows(tmp_path / "r.sqlite")
    assert summary.processed == len(paths) == len(rows) and summary.dropped == 0
    ng = {r["seq"] for r in rows if r["verdict"] == "NG"}
    defect_seqs = {i for i, d in enumerate(is_defect) if d}
    # The calibration images themselves (scores <= the image threshold) must pass, defects must be found.
    assert not ng & set(range(4)), rows
    assert len(ng & defect_seqs) >= len(defect_seqs) // 2, rows
    for r in rows:
        if r["verdict"] == "NG":
            assert Path(r["map_path"]).is_file() and Path(r["overlay_path"]).is_file()
    assert summary.latency_ms_p50 > 0 and summary.fps > 0


def test_frames_in_flight_keep_order_and_verdicts(calibrated, demo_root, tmp_path):
    paths, _ = _frames(demo_root)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, p in enumerate(paths):
        shutil.copy(p, folder / f"{i:03d}.png")
    from edgeproj.runtime.backends.ort_cpu import OrtCpuOptions

    rows, most = {}, {}
    with Projector.from_bundle(calibrated, options=OrtCpuOptions(lanes=2)) as proj:
        assert proj.pipelined
        real = proj.submit
        waiting = {"now": 0, "most": 0}

        def counted(image, **kw):  # how many frames are projecting at once
            wait = real(image, **kw)
            waiting["now"] += 1
            waiting["most"] = max(waiting["most"], waiting["now"])

            def result():
                waiting["now"] -= 1
                return wait()

            return result

        proj.submit = counted
        for depth in (1, 3):
            waiting["most"] = 0
            db = tmp_path / f"r{depth}.sqlite"
            summary = inspect(proj, open_source(str(folder), 1), db, tmp_path / f"o{depth}", InspectOptions(in_flight=depth))
            assert summary.processed == len(paths) and summary.dropped == 0
            rows[depth], most[depth] = read_rows(db), waiting["most"]
    # At most `depth` in flight; with 3 allowed, frames really overlapped (a frame reads in about a
    # millisecond, a projection takes tens).
    assert most[1] == 1 and 2 <= most[3] <= 3
    one, three = rows[1], rows[3]
    assert [r["seq"] for r in three] == list(range(len(paths)))  # judged in the order they were read
    assert [r["name"] for r in three] == [r["name"] for r in one]
    assert [r["verdict"] for r in three] == [r["verdict"] for r in one]
    np.testing.assert_allclose([r["score"] for r in three], [r["score"] for r in one], rtol=1e-5)
    with pytest.raises(ConfigError, match="in-flight"):
        InspectOptions(in_flight=0)


def test_a_glob_with_an_image_extension_is_a_source_not_a_missing_file(demo_root, tmp_path):
    """`--source 'dir/*.png'` (the form the error message suggests) reads the matching images."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for p in sorted((demo_root / "grid" / "train" / "good").glob("*.png"))[:3]:
        shutil.copy(p, folder / p.name)
    (folder / "notes.txt").write_text("not an image")
    src = open_source(str(folder / "*.png"), 1)
    assert [p.name for p in src.paths] == sorted(p.name for p in folder.glob("*.png"))
    with pytest.raises(DataError, match="does not exist"):
        open_source(str(folder / "missing.png"), 1)


def test_folder_source_counts_a_corrupt_file_and_loses_nothing(calibrated, demo_root, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    paths, _ = _frames(demo_root)
    for i, p in enumerate(paths[:5]):
        shutil.copy(p, folder / f"{i:03d}.png")
    data = (folder / "002.png").read_bytes()
    (folder / "002.png").write_bytes(data[: len(data) // 2])  # truncated
    with Projector.from_bundle(calibrated) as proj:
        summary = inspect(proj, open_source(str(folder), 1), tmp_path / "r.sqlite", tmp_path, InspectOptions(queue_size=1))
    # The unreadable file is a part that could not be judged: a FAULT row, never skipped.
    assert summary.frames_read == 5 and summary.corrupt == 1 and summary.processed == 5 and summary.dropped == 0
    assert summary.fault >= 1 and summary.gate.by_check.get("unreadable") == 1
    rows = read_rows(tmp_path / "r.sqlite")
    assert [r["name"] for r in rows] == ["000.png", "001.png", "002.png", "003.png", "004.png"]
    assert rows[2]["verdict"] == "FAULT" and rows[2]["gate"] == "unreadable" and "truncated" in rows[2]["fault"]


class FakeLive(FrameSource):
    """A live source that delivers frames as fast as it is read; optionally fails once mid-stream."""

    live = True
    name = "fake-live"

    def __init__(self, n: int, fail_at: int | None = None, fail_opens: int = 0):
        super().__init__(1)
        self.n, self.fail_at, self.fail_opens = n, fail_at, fail_opens
        self.opens = 0
        self.failed = False
        self.img = np.full((128, 128, 1), 0.5, np.float32)

    def open(self):
        self.opens += 1
        if self.failed and self.opens <= 1 + self.fail_opens:
            raise SourceLost("still down")

    def read(self):
        if self.seq >= self.n:
            return None  # a live source normally never ends; this one does, so the test terminates
        if self.fail_at is not None and self.seq == self.fail_at and not self.failed:
            self.failed = True
            raise SourceLost("unplugged")
        return self._frame(self.img)


def test_live_source_faster_than_projection_drops_oldest(calibrated, tmp_path):
    src = FakeLive(40)
    with Projector.from_bundle(calibrated) as proj:
        summary = inspect(proj, src, tmp_path / "r.sqlite", tmp_path, InspectOptions(queue_size=2))
    assert summary.frames_read == 40
    assert summary.dropped > 0
    assert summary.processed + summary.dropped == 40
    seqs = [r["seq"] for r in read_rows(tmp_path / "r.sqlite")]
    assert seqs == sorted(seqs) and seqs[-1] == 39  # the newest frame is never the one dropped


def test_live_source_that_fails_mid_stream_is_reopened(calibrated, tmp_path):
    src = FakeLive(6, fail_at=3, fail_opens=2)
    waits = []
    cap = Capture(src, maxsize=16, backoff=(0.5, 8.0), sleep=waits.append)
    with Projector.from_bundle(calibrated) as proj:
        summary = inspect(proj, src, tmp_path / "r.sqlite", tmp_path, InspectOptions(queue_size=16), capture=cap)
    assert summary.reconnects == 3 and waits == [0.5, 1.0, 2.0]  # two failed reopens, then success
    assert summary.frames_read == 6 and summary.processed + summary.dropped == 6


def test_uncalibrated_bundle_is_refused_unless_thresholds_given(bundles, tmp_path):
    with Projector.from_bundle(bundles["l2ae"]) as proj:
        with pytest.raises(ConfigError, match="not calibrated"):
            inspect(proj, FakeLive(1), tmp_path / "r.sqlite", tmp_path, InspectOptions())
        summary = inspect(proj, FakeLive(2), tmp_path / "r.sqlite", tmp_path, InspectOptions(image_threshold=10.0))
    assert summary.processed + summary.dropped == 2 and summary.ng == 0


def test_a_negative_threshold_rejects_every_part(bundles, tmp_path):
    """The *_tex scores are in normal standard deviations, so a threshold may be negative: every part is NG
    (a lower threshold only rejects more), and the overlays keep a usable colour scale."""
    from edgeproj.overlays import colour_top

    with Projector.from_bundle(bundles["l2ae"]) as proj:
        summary = inspect(
            proj, FakeLive(2), tmp_path / "r.sqlite", tmp_path, InspectOptions(image_threshold=-1.0, pixel_threshold=-1.0)
        )
    assert summary.ok == 0 and summary.ng == summary.processed >= 1
    assert colour_top(-1.0) is None and colour_top(0.0) is None and colour_top(None) is None and colour_top(0.3) == 0.6


def test_kill_9_loses_no_reported_row(calibrated, demo_root, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    paths, _ = _frames(demo_root)
    for i in range(30):
        shutil.copy(paths[i % len(paths)], folder / f"{i:03d}.png")
    db = tmp_path / "r.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "edgeproj",
        "inspect",
        str(calibrated),
        "--source",
        str(folder),
        "--out",
        str(tmp_path / "o"),
        "--db",
        str(db),
        "--json",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    reported = []
    for line in proc.stdout:
        doc = json.loads(line)
        if "seq" in doc and "summary" not in doc:
            reported.append(doc["seq"])
        if len(reported) == 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    stored = {r["seq"] for r in read_rows(db)}
    assert set(reported) <= stored


def test_sigterm_finishes_the_frame_and_exits_0(calibrated, demo_root, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    paths, _ = _frames(demo_root)
    for i in range(20):
        shutil.copy(paths[i % len(paths)], folder / f"{i:03d}.png")
    cmd = [
        sys.executable,
        "-m",
        "edgeproj",
        "inspect",
        str(calibrated),
        "--source",
        str(folder),
        "--out",
        str(tmp_path / "o"),
        "--json",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(json.loads(line))
        if len(lines) == 2:
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = json.loads(rest.strip().splitlines()[-1])
    assert summary["summary"] and summary["stopped_by"] == "SIGTERM"
    assert len(read_rows(tmp_path / "o" / "results.sqlite")) == summary["processed"] < 20


def test_cli_inspect_folder_and_bad_source(calibrated, demo_root, tmp_path):
    from typer.testing import CliRunner

    from edgeproj.cli.app import app

    res = CliRunner().invoke(
        app, ["inspect", str(calibrated), "--source", str(demo_root / "grid" / "test" / "hole"), "--out", str(tmp_path), "--json"]
    )
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.strip().splitlines()]
    assert lines[-1]["summary"] and lines[-1]["processed"] == len(lines) - 1
    bad = CliRunner().invoke(app, ["inspect", str(calibrated), "--source", str(tmp_path / "nothing-here.xyz")])
    assert bad.exit_code == 2 and "edgeproj: error:" in bad.output
