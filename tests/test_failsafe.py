"""Fail safe: no fault, bad input or bad state ever yields an OK part (issue 12).

The verdict rule is tested as a property over every kind of number and state; the line loop is driven
with NaN, infinite and extreme frames, a locked database and a full disk; calibration refuses
non-finite inputs and never writes a non-finite number.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeproj.calibration.calibrate import CalibrationOptions, calibrate_bundle
from edgeproj.errors import ConfigError, DataError
from edgeproj.line.options import FrameOutputs
from edgeproj.line.pipeline import InspectOptions, inspect
from edgeproj.line.sources import FrameSource
from edgeproj.line.store import FrameRow, ResultStore, read_rows
from edgeproj.runtime import Projector, load_manifest
from edgeproj.runtime.manifest import MANIFEST, Calibration
from edgeproj.runtime.verdict import FAULT, NG, OK, judge

ANY_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1e308, -1e308, 5e-324]),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.none(),
    st.booleans(),
    st.text(max_size=3),
)


@settings(max_examples=2000, deadline=None)
@given(score=ANY_NUMBER, threshold=ANY_NUMBER, diverged=st.integers(0, 3), error=st.sampled_from(["", "boom"]))
def test_verdict_is_ok_only_for_finite_numbers_at_or_below_the_threshold(score, threshold, diverged, error):
    v = judge(score, threshold, diverged, error, gate=None)
    assert v.verdict in (OK, NG, FAULT)
    finite = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)  # noqa: E731
    if v.verdict == OK:
        assert finite(score) and finite(threshold) and not diverged and not error
        assert float(score) <= float(threshold)
    if not (finite(score) and finite(threshold)) or diverged or error:
        assert v.verdict == FAULT and v.reason
    if v.verdict == NG:
        assert float(score) > float(threshold)


class ArraySource(FrameSource):
    """Frames from a list of arrays (a file-like source: nothing dropped)."""

    def __init__(self, frames: list[np.ndarray], channels: int = 1):
        super().__init__(channels)
        self.frames = list(frames)
        self.name = "arrays"

    def read(self):
        if not self.frames:
            return None
        return self._frame(self.frames.pop(0), name=f"f{self.seq}")


@pytest.fixture(scope="module")
def good_frames(demo_root) -> list[np.ndarray]:
    """Good parts as arrays: the demo grid's normal images the session bundle was calibrated on (they pass
    the frame gate, unlike a flat frame)."""
    from edgeproj.data.images import read_image

    return [read_image(p, 1) for p in sorted((demo_root / "grid" / "train" / "good").glob("*.png"))]


def _hostile_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, (128, 128, 1)).astype(np.float32)
    nan_pixel = base.copy()
    nan_pixel[5, 5] = np.nan
    inf_pixel = base.copy()
    inf_pixel[60, 60] = np.inf
    return [
        np.full((128, 128, 1), np.nan, np.float32),  # an all-NaN float TIFF
        nan_pixel,
        inf_pixel,
        np.full((128, 128, 1), -np.inf, np.float32),
        np.full((128, 128, 1), 1e30, np.float32),  # extreme, out of [0, 1]
        np.full((128, 128, 1), -1e30, np.float32),
    ]


def test_nan_inf_and_extreme_frames_are_never_ok(calibrated_bundle, tmp_path):
    rows: list[FrameRow] = []
    with Projector.from_bundle(calibrated_bundle) as proj:
        summary = inspect(
            proj, ArraySource(_hostile_frames()), tmp_path / "r.sqlite", tmp_path, InspectOptions(), on_result=rows.append
        )
    assert len(rows) == 6 and summary.processed == 6
    assert all(r.verdict != OK for r in rows), rows
    # Non-finite pixels give a non-finite score or a diverged projection: FAULT, with the reason stored.
    for r in rows[:4]:
        assert r.verdict == FAULT and r.fault, r
    assert summary.fault >= 4 and summary.ok == 0
    stored = read_rows(tmp_path / "r.sqlite")
    assert [r["verdict"] for r in stored] == [r.verdict for r in rows]
    assert all(r["score"] is None or math.isfinite(r["score"]) for r in stored)


@pytest.mark.parametrize("threshold", [float("nan"), float("inf")])
def test_a_non_finite_threshold_is_refused(calibrated_bundle, tmp_path, threshold):
    frames = [np.full((128, 128, 1), 0.5, np.float32)]
    with Projector.from_bundle(calibrated_bundle) as proj, pytest.raises(ConfigError, match="finite"):
        inspect(proj, ArraySource(frames), tmp_path / "r.sqlite", tmp_path, InspectOptions(image_threshold=threshold))


def test_a_manifest_with_a_nan_threshold_does_not_load(calibrated_bundle, tmp_path):
    from edgeproj.errors import BundleError

    dst = tmp_path / "b"
    shutil.copytree(calibrated_bundle, dst)
    doc = json.loads((dst / MANIFEST).read_text())
    doc["calibration"]["image_threshold"] = float("nan")
    (dst / MANIFEST).write_text(json.dumps(doc))  # Python writes the non-standard NaN token
    with pytest.raises(BundleError, match="image threshold must be a finite number"):
        load_manifest(dst)


def test_a_processing_error_is_a_fault_and_the_line_goes_on(calibrated_bundle, good_frames, tmp_path, monkeypatch):
    """The second frame's projection fails inside a lane while the next frame is in flight."""
    from edgeproj.runtime.backends.ort_cpu import OrtCpuOptions, OrtCpuRunner

    marker = 0.123  # one pixel of the second frame marks it for the failing runner
    frames = [good_frames[0], good_frames[1].copy(), good_frames[2]]
    frames[1][0, 0, 0] = marker
    real = OrtCpuRunner.load

    def flaky(self, x0, weight, settings):
        if np.isclose(x0[:, 0, 0, 0], marker).any():
            raise RuntimeError("device lost")
        return real(self, x0, weight, settings)

    monkeypatch.setattr(OrtCpuRunner, "load", flaky)
    rows: list[FrameRow] = []
    with Projector.from_bundle(calibrated_bundle, options=OrtCpuOptions(lanes=2)) as proj:
        assert proj.pipelined
        summary = inspect(proj, ArraySource(frames), tmp_path / "r.sqlite", tmp_path, InspectOptions(), on_result=rows.append)
        assert all(t.is_alive() for t in proj._pool._threads)  # the lane that failed goes on
    assert [r.verdict == FAULT for r in rows] == [False, True, False]
    assert "device lost" in rows[1].fault and summary.fault == 1 and summary.processed == 3


def test_a_locked_database_does_not_stop_the_line_and_loses_no_row(calibrated_bundle, good_frames, tmp_path):
    """Another process holds the database: verdicts go on, rows wait in the buffer, then land in order."""
    db = tmp_path / "r.sqlite"
    ResultStore(db).close()
    locker = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")
    frames = good_frames[:5]
    rows: list[FrameRow] = []
    released = threading.Event()

    def on_result(row):
        rows.append(row)
        if len(rows) == 3 and not released.is_set():
            locker.execute("COMMIT")  # the other process lets go after the third verdict
            released.set()

    with Projector.from_bundle(calibrated_bundle) as proj:
        summary = inspect(proj, ArraySource(frames), ResultStore(db, busy_ms=50), tmp_path, InspectOptions(), on_result=on_result)
    locker.close()
    assert len(rows) == 5 and summary.processed == 5
    assert summary.storage_alarms == 1 and summary.rows_unstored == 0 and summary.rows_lost_from_store == 0
    assert [r["seq"] for r in read_rows(db)] == [0, 1, 2, 3, 4]


def test_a_full_disk_raises_an_alarm_and_keeps_rows_until_it_clears(calibrated_bundle, good_frames, tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "r.sqlite")
    real_add = store.add
    state = {"full": True}

    def add(row):
        if state["full"]:
            raise sqlite3.OperationalError("database or disk is full")
        real_add(row)

    monkeypatch.setattr(store, "add", add)
    frames = good_frames[:4]
    rows: list[FrameRow] = []

    def on_result(row):
        rows.append(row)
        if len(rows) == 2:
            state["full"] = False

    with Projector.from_bundle(calibrated_bundle) as proj:
        summary = inspect(proj, ArraySource(frames), store, tmp_path, InspectOptions(store_buffer=1), on_result=on_result)
    # The buffer held one row: the first verdict was reported but could not be kept, and is counted.
    assert len(rows) == 4 and summary.storage_alarms == 1 and summary.rows_lost_from_store == 1
    assert [r["seq"] for r in read_rows(tmp_path / "r.sqlite")] == [1, 2, 3]


def test_saved_frames_are_bounded(calibrated_bundle, good_frames, tmp_path):
    frames = good_frames[:5]
    with Projector.from_bundle(calibrated_bundle) as proj:
        inspect(
            proj,
            ArraySource(frames),
            tmp_path / "r.sqlite",
            tmp_path,
            InspectOptions(),
            outputs=FrameOutputs(save_all=True, keep_frames=2),
        )
    assert len(list((tmp_path / "frames").glob("*_overlay.png"))) == 2
    assert len(list((tmp_path / "frames").glob("*_map.png"))) == 2


def test_database_durability_setting(tmp_path):
    for name, level in (("normal", 1), ("full", 2)):
        store = ResultStore(tmp_path / f"{name}.sqlite", durability=name)
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == level
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.close()


def test_roi_outside_a_later_frame_is_a_fault(calibrated_bundle, good_frames, tmp_path):
    # A 256x256 frame whose top-left 128x128 ROI is a good part, then a frame the ROI does not fit.
    frames = [np.tile(good_frames[0], (2, 2, 1)), good_frames[1][:100, :100]]
    rows: list[FrameRow] = []
    with Projector.from_bundle(calibrated_bundle) as proj:
        inspect(
            proj,
            ArraySource(frames),
            tmp_path / "r.sqlite",
            tmp_path,
            InspectOptions(roi=(0, 0, 128, 128)),
            on_result=rows.append,
        )
    assert rows[0].verdict != FAULT and rows[1].verdict == FAULT and "roi" in rows[1].fault


# ---------------------------------------------------------------- calibration


def _normal_folder(demo_root: Path, dst: Path, n: int = 6) -> Path:
    dst.mkdir()
    for p in sorted((demo_root / "grid" / "train" / "good").glob("*.png"))[:n]:
        shutil.copy(p, dst / p.name)
    return dst


def test_calibration_refuses_a_nan_image_naming_it(bundle_copy, demo_root, tmp_path):
    import cv2

    folder = _normal_folder(demo_root, tmp_path / "good")
    img = np.full((256, 256), 0.5, np.float32)
    img[10, 10] = np.nan
    cv2.imwrite(str(folder / "zz_nan.tiff"), img)
    before = (bundle_copy / MANIFEST).read_bytes()
    with pytest.raises(DataError, match="zz_nan.tiff"):
        calibrate_bundle(bundle_copy, sorted(folder.iterdir()), CalibrationOptions())
    assert (bundle_copy / MANIFEST).read_bytes() == before


def test_calibration_needs_a_minimum_of_images(bundle_copy, demo_root, tmp_path):
    folder = _normal_folder(demo_root, tmp_path / "good", n=2)
    with pytest.raises(DataError, match="at least 3"):
        calibrate_bundle(bundle_copy, sorted(folder.iterdir()), CalibrationOptions())


def test_calibration_never_writes_a_non_finite_number(bundle_copy, demo_root, monkeypatch):
    """A projection that diverges on a normal image is refused, not turned into a NaN threshold."""
    from edgeproj.runtime.projector import Projector as P

    real = P.project

    def nan_maps(self, images, **kw):
        out = real(self, images, **kw)
        out[0].score = float("nan")
        return out

    monkeypatch.setattr(P, "project", nan_maps)
    before = (bundle_copy / MANIFEST).read_bytes()
    with pytest.raises(DataError, match="not finite"):
        calibrate_bundle(bundle_copy, sorted((demo_root / "grid" / "train" / "good").glob("*.png"))[:6], CalibrationOptions())
    assert (bundle_copy / MANIFEST).read_bytes() == before
    with pytest.raises(ConfigError, match="finite"):
        Calibration(image_threshold=float("nan"))


def test_manifest_and_json_output_are_strict_json(calibrated_bundle):
    text = (calibrated_bundle / MANIFEST).read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON token {c}"))
    from edgeproj.jsonio import dumps_strict

    assert json.loads(dumps_strict({"a": float("nan"), "b": [float("inf"), np.float32(1.5)]})) == {"a": None, "b": [None, 1.5]}
