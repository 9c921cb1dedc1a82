"""The frame gate (issue 23): a frame that shows no judgeable part is FAULT, never OK; good parts still pass.

The statistics and their ranges as units; reading never repairs a pixel; every hostile class through
`inspect` and `project` on the session's trained and calibrated bundle; the same frames come out OK
once the gate is widened beyond the normal range (so the hostile tests can fail); the camera alarm.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import run_cli

from edgeproj.calibration.gate import fit_gate, frame_statistics
from edgeproj.calibration.thresholds import binomial_upper_bound
from edgeproj.data.hostile import CLASSES, GROUPS, make_frames, write_frames
from edgeproj.data.images import read_image
from edgeproj.errors import BundleError, DataError
from edgeproj.line.alarm import GateMonitor
from edgeproj.line.pipeline import InspectOptions, inspect
from edgeproj.line.sources import FrameSource
from edgeproj.preprocess import Preprocess
from edgeproj.runtime import Projector, load_manifest
from edgeproj.runtime.gate import (
    STATISTICS,
    FrameGate,
    GateSpec,
    fit_range,
    image_statistics,
    statistic_names,
    statistic_of,
)
from edgeproj.runtime.manifest import MANIFEST
from edgeproj.runtime.verdict import FAULT, NG, OK, judge

PRE = Preprocess(mode="texture", resize=128, stride=64, channels=1)


def _texture(seed: int = 0, size: int = 128, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0.2, 0.8, (size, size, channels)).astype(np.float32), (0, 0), 1.0)
    return img.reshape(size, size, channels)


# ----------------------------------------------------------------------------------------- units


def test_statistics_of_known_frames():
    flat = np.full((128, 128, 1), 0.5, np.float32)
    s = image_statistics(flat, PRE)
    assert s["brightness"] == pytest.approx(127.5) and s["contrast"] == pytest.approx(0.0, abs=1e-3)
    assert s["sharpness"] == pytest.approx(0.0, abs=1e-6) and s["flattest_tile"] == pytest.approx(0.0, abs=1e-3)
    assert s["detail_x"] == s["detail_y"] == -20.0  # a flat frame: no detail at all, finite
    assert image_statistics(np.ones_like(flat), PRE)["saturated"] == 100.0
    assert image_statistics(np.zeros_like(flat), PRE)["black"] == 100.0
    tex = _texture()
    t = image_statistics(tex, PRE)
    blurred = image_statistics(cv2.GaussianBlur(tex, (0, 0), 2.0).reshape(tex.shape), PRE)
    assert blurred["sharpness"] < 0.2 * t["sharpness"] and blurred["detail_x"] < t["detail_x"]
    # Stretching horizontally lowers horizontal detail and leaves vertical detail.
    wide = cv2.resize(tex, (256, 128))[:, 64:192, None]
    w = image_statistics(wide, PRE)
    assert w["detail_x"] < t["detail_x"] - 0.3 and abs(w["detail_y"] - t["detail_y"]) < 0.2
    rgb_pre = Preprocess(mode="texture", resize=128, stride=64, channels=3)
    rgb = image_statistics(_texture(channels=3), rgb_pre)
    assert {"brightness_R", "brightness_G", "brightness_B", "contrast_B", "colourfulness"} <= set(rgb)
    assert set(rgb) == set(statistic_names(3, "image")) and "colourfulness" not in statistic_names(1)
    gray_rgb = np.repeat(_texture(), 3, axis=2)  # a colour camera in a gray mode
    assert image_statistics(gray_rgb, rgb_pre)["colourfulness"] == pytest.approx(0.0, abs=1e-3)
    # JPEG's 8x8 blocks, on the frame as delivered.
    u8 = np.round(tex[:, :, 0] * 255).astype(np.uint8)
    jpeg = cv2.imdecode(cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, 5])[1], cv2.IMREAD_GRAYSCALE)
    assert abs(t["blockiness"]) < 0.1 and image_statistics(jpeg[:, :, None] / np.float32(255), PRE)["blockiness"] > 0.5


def test_ranges_are_min_max_widened_by_robust_spreads_in_their_scale():
    contrast = statistic_of("contrast")  # log scale, both sides
    values = [10.0, 11.0, 12.0, 13.0, 14.0]
    r = fit_range(contrast, values, margin=3.0)
    logs = np.log(values)
    spread = max((np.percentile(logs, 75) - np.percentile(logs, 25)) / 1.349, contrast.floor)
    assert r.lo == pytest.approx(math.exp(logs.min() - 3 * spread)) and r.hi == pytest.approx(math.exp(logs.max() + 3 * spread))
    assert (r.seen_min, r.seen_max) == (10.0, 14.0)
    # A statistic that barely varies still gets its floor, so new good parts are not rejected for noise.
    flat = fit_range(statistic_of("brightness"), [100.0] * 5, margin=3.0)
    assert flat.lo == pytest.approx(100.0 - 3 * 2.0) and flat.hi == pytest.approx(100.0 + 3 * 2.0)
    # One-sided statistics have no bound on their harmless side.
    assert fit_range(statistic_of("saturated"), [0.0, 0.0], 3.0).lo is None
    assert fit_range(statistic_of("flattest_tile"), [20.0, 30.0], 3.0).hi is None
    assert {s.name for s in STATISTICS} >= {"brightness", "contrast", "sharpness", "saturated", "lr_tile_min", "lr_median"}


def test_a_malformed_gate_is_refused_not_ignored():
    stats = [image_statistics(_texture(i), PRE) | {"lr_tile_min": 1.0 + i, "lr_median": 2.0 + i} for i in range(4)]
    spec = fit_gate(stats, (128, 128), 1)
    doc = spec.to_dict()
    assert GateSpec.from_dict(json.loads(json.dumps(doc)), "b", 1) == spec
    for edit in (
        lambda d: d["ranges"]["sharpness"].update(lo=float("nan")),
        lambda d: d["ranges"]["sharpness"].update(lo=1e9),  # lo > hi
        lambda d: d["ranges"].update(unknown_stat=d["ranges"]["sharpness"]),
        lambda d: d.update(reference_hw=[0, 128]),
        lambda d: d["ranges"]["sharpness"].update(lo=None, hi=None),
    ):
        bad = json.loads(json.dumps(doc))
        edit(bad)
        with pytest.raises(BundleError, match="malformed.*recalibrate"):
            GateSpec.from_dict(bad, "b", 1)
    # A partial gate, or one of another channel count, would pass what its missing ranges are there to stop.
    partial = json.loads(json.dumps(doc))
    del partial["ranges"]["contrast"]
    with pytest.raises(BundleError, match="missing \\['contrast'\\]"):
        GateSpec.from_dict(partial, "b", 1)
    with pytest.raises(BundleError, match="3-channel"):
        GateSpec.from_dict(doc, "b", 3)
    # A statistic the runtime did not measure fails: a check that did not run never passes.
    gate = FrameGate(PRE, spec)
    assert [f.check for f in gate.check_statistics({}, "model")] == ["lr_tile_min", "lr_median"]


def test_binomial_bound_matches_scipy():
    beta = pytest.importorskip("scipy.stats").beta
    for k, n in ((0, 30), (3, 30), (0, 200), (5, 200), (29, 30)):
        assert binomial_upper_bound(k, n) == pytest.approx(beta.ppf(0.95, k + 1, n - k), rel=1e-6)
    assert binomial_upper_bound(4, 4) == 1.0 and math.isnan(binomial_upper_bound(0, 0))


def test_geometry_tiny_frames_and_other_aspect_ratios_fail_unless_stated():
    spec = fit_gate(
        [image_statistics(_texture(i), PRE) | {"lr_tile_min": 1.0, "lr_median": 2.0} for i in range(4)], (128, 128), 1
    )
    gate = FrameGate(PRE, spec)
    assert gate.check_geometry((64, 64)) == []  # 2x: allowed
    (tiny,) = gate.check_geometry((4, 4))
    assert tiny.check == "size" and "32.0x" in tiny.message and "--resize" in tiny.message
    (aspect,) = gate.check_geometry((128, 160))
    assert aspect.check == "aspect" and "1.250" in aspect.message
    assert gate.check_geometry((128, 134)) == []  # within the 5% tolerance
    # A bundle without a calibrated gate still refuses a tiny frame and, from the training size, another aspect.
    bare = FrameGate(PRE, None, (128, 128))
    assert bare.advisory and [f.check for f in bare.check_geometry((4, 4))] == ["size"]
    assert [f.check for f in bare.check_geometry((128, 300))] == ["aspect"]


def test_reading_never_repairs_a_pixel(tmp_path):
    img = np.full((32, 32), 0.5, np.float32)
    cases = {"inf.tiff": np.inf, "nan.tiff": np.nan}
    for name, value in cases.items():
        bad = img.copy()
        bad[3:13, 3:13] = value
        cv2.imwrite(str(tmp_path / name), bad)
        with pytest.raises(DataError, match=f"{name}.*NaN or infinite"):
            read_image(tmp_path / name, 1)
    cv2.imwrite(str(tmp_path / "u255.tiff"), img * 255)
    with pytest.raises(DataError, match="u255.tiff.*outside \\[0, 1\\]"):
        read_image(tmp_path / "u255.tiff", 1)
    cv2.imwrite(str(tmp_path / "neg.tiff"), img - 0.6)
    with pytest.raises(DataError, match="neg.tiff.*outside"):
        read_image(tmp_path / "neg.tiff", 1)
    ok = img.copy()
    ok[0, 0] = 1.0 + 1e-7  # float rounding is not an unnormalized image
    cv2.imwrite(str(tmp_path / "round.tiff"), ok)
    assert read_image(tmp_path / "round.tiff", 1).max() == 1.0
    gate = FrameGate(PRE, None)
    assert gate.check_pixels(np.where(img > 0, np.inf, img)).check == "pixels"
    assert "0-255" in gate.check_pixels(img * 255).message


def test_the_verdict_of_a_frame_that_failed_the_gate_is_fault_whatever_its_score():
    spec = fit_gate(
        [image_statistics(_texture(i), PRE) | {"lr_tile_min": 1.0, "lr_median": 2.0} for i in range(4)], (128, 128), 1
    )
    checked = FrameGate(PRE, spec).check_frame(np.full((128, 128, 1), 0.5, np.float32))
    assert not checked.passed and checked.check in ("contrast", "sharpness", "detail_x", "detail_y", "flattest_tile")
    v = judge(0.0, 1.0, gate=checked)  # the easiest reconstruction there is
    assert v.verdict == FAULT and v.gate == checked.check and "frame gate:" in v.reason and "below the calibrated" in v.reason
    assert judge(0.0, 1.0, gate=FrameGate(PRE, spec).check_frame(_texture(1))).verdict == OK


def test_hostile_classes_cover_every_group_of_the_issue():
    assert set(GROUPS) == {
        "blank", "flat", "blurred", "exposure", "occluded", "other product", "tiny", "distorted", "camera", "float", "non-finite",
    }  # fmt: skip
    frames = make_frames(_texture(), _texture(5))
    assert set(frames) == {c.name for c in CLASSES if not c.rgb_only}
    assert set(make_frames(_texture(channels=3), _texture(5))) == {c.name for c in CLASSES}
    assert frames["tiny_4"].shape[:2] == (4, 4) and not np.isfinite(frames["nonfinite_inf"]).all()


# ----------------------------------------------------------------------------- on a trained bundle


@pytest.fixture(scope="module")
def hostile_folder(gate_demo_root, tmp_path_factory) -> Path:
    """Every hostile class, built from a good demo grid test image and a stone image (another product)."""
    good = read_image(gate_demo_root / "grid" / "test" / "good" / "000.png", 1)
    other = read_image(sorted((gate_demo_root / "stone" / "train" / "good").glob("*.png"))[0], 1)
    folder = tmp_path_factory.mktemp("hostile")
    write_frames(folder, good, other)
    return folder


def _inspect_verdicts(bundle: Path, folder: Path, out: Path) -> dict[str, dict]:
    res = run_cli("inspect", bundle, "--source", folder, "--out", out, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert rows[-1]["summary"]
    return {Path(r["name"]).stem: r for r in rows[:-1]}


def _project_verdicts(bundle: Path, folder: Path, out: Path) -> dict[str, dict]:
    files = sorted(folder.iterdir())
    res = run_cli("project", bundle, *files, "--out", out, "--json", "--quiet")
    # The unreadable files (non-finite, unnormalized) are FAULTs that make `project` exit 2, after the summary.
    assert res.exit_code in (0, 2), res.output
    doc = json.loads((out / "summary.json").read_text())
    return {Path(s["source"]).stem: s for s in doc["images"]}


def _ok(verdicts: dict[str, dict]) -> list[str]:
    return sorted(name for name, r in verdicts.items() if r["verdict"] == OK)


def test_every_hostile_class_is_fault_through_inspect(trained_bundle, hostile_folder, tmp_path):
    got = _inspect_verdicts(trained_bundle, hostile_folder, tmp_path / "out")
    assert set(got) == {c.name for c in CLASSES if not c.rgb_only}
    assert _ok(got) == [], {n: got[n]["score"] for n in _ok(got)}
    for name, r in got.items():
        # Each one names what is wrong: a gate statistic with its value and range, the size, or the unread file.
        assert r["verdict"] in (FAULT, NG), (name, r)
        if r["verdict"] == FAULT:
            assert r["gate"] and r["fault"], (name, r)
    for name in ("blank_gray", "blur_4px", "exposure_30", "tiny_4", "nonfinite_inf", "float_0_255", "occluded_black"):
        assert got[name]["verdict"] == FAULT, (name, got[name])
    assert got["tiny_4"]["gate"] == "size" and got["nonfinite_inf"]["gate"] == "unreadable"
    assert "below the calibrated" in got["exposure_30"]["fault"] and "brightness" in got["exposure_30"]["fault"]


def test_every_hostile_class_is_fault_through_project(trained_bundle, hostile_folder, tmp_path):
    got = _project_verdicts(trained_bundle, hostile_folder, tmp_path / "out")
    assert set(got) == {c.name for c in CLASSES if not c.rgb_only}
    assert _ok(got) == []
    assert "NaN or infinite" in got["nonfinite_nan"]["fault"] and "outside [0, 1]" in got["float_0_255"]["fault"]
    assert got["blank_white"]["verdict"] == FAULT and got["blank_white"]["gate"]


def test_good_parts_pass_the_gate(trained_bundle, gate_demo_root):
    """New good parts (the test set's, never trained or calibrated on) and the normal images all pass."""
    manifest = load_manifest(trained_bundle)
    gate = FrameGate.of(manifest)
    assert gate.calibrated and gate.advisory is None
    grid = gate_demo_root / "grid"
    goods = sorted((grid / "test" / "good").glob("*.png")) + sorted((grid / "train" / "good").glob("*.png"))
    with Projector(manifest) as proj:
        for path in goods:
            img = read_image(path, 1)
            (res,) = proj.project([img], lean=True)
            checked = gate.check_frame(img).merged(gate.check_model(res.rec_loss0))
            assert checked.passed, (path.name, checked.reason)


def _widened(bundle: Path, dst: Path) -> Path:
    """A copy of the bundle whose gate accepts anything a statistic can measure (pixels and geometry stay)."""
    shutil.copytree(bundle, dst)
    doc = json.loads((dst / MANIFEST).read_text())
    for r in doc["calibration"]["gate"]["ranges"].values():
        r["lo"] = None if r["lo"] is None else -1e12
        r["hi"] = None if r["hi"] is None else 1e12
    (dst / MANIFEST).write_text(json.dumps(doc))
    return dst


def test_a_gate_wider_than_the_normal_range_lets_hostile_frames_pass(trained_bundle, gate_demo_root, hostile_folder, tmp_path):
    """The hostile tests above can fail: with the statistics' ranges opened up and the projection's score
    alone, frames that show no part are judged on their anomaly score, and the easy ones come out OK. The
    bundle's own score has the texture check (a texture line's calibration gives it one): behind the same
    widened gate, those blank frames are NG, a second line of defence."""
    from edgeproj.calibration.calibrate import CalibrationOptions, calibrate_bundle
    from edgeproj.data.mvtec import normal_images

    projection_only = tmp_path / "projection_only"
    shutil.copytree(trained_bundle, projection_only)
    good = normal_images(gate_demo_root / "grid")
    calibrate_bundle(projection_only, good, CalibrationOptions(image_score="map_max_smoothed"))
    got = _inspect_verdicts(_widened(projection_only, tmp_path / "wide"), hostile_folder, tmp_path / "out")
    passed = _ok(got)
    assert passed, "a widened gate still stopped every hostile frame: the hostile tests could not fail"
    easy = {"blank_gray", "flat_mean"} & set(passed)
    assert easy, passed
    # Pixels and geometry are not calibrated statistics: they still fail.
    assert got["tiny_4"]["verdict"] == FAULT and got["nonfinite_inf"]["verdict"] == FAULT
    assert load_manifest(trained_bundle).projection.image_score.endswith("_tex")
    textured = _inspect_verdicts(_widened(trained_bundle, tmp_path / "wide_tex"), hostile_folder, tmp_path / "out_tex")
    assert {n: textured[n]["verdict"] for n in easy} == {n: NG for n in easy}


def test_a_bundle_calibrated_before_the_gate_still_works_and_says_so_once(calibrated_bundle, demo_root, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(calibrated_bundle, old)
    doc = json.loads((old / MANIFEST).read_text())
    del doc["calibration"]["gate"]
    (old / MANIFEST).write_text(json.dumps(doc))
    folder = tmp_path / "frames"
    folder.mkdir()
    for p in sorted((demo_root / "grid" / "test" / "good").glob("*.png")):
        shutil.copy(p, folder / p.name)
    res = run_cli("inspect", old, "--source", folder, "--out", tmp_path / "o", "--quiet")
    assert res.exit_code == 0, res.output
    assert res.output.count("has no frame gate") == 1 and "edgeproj calibrate" in res.output
    res = run_cli("project", old, folder, "--out", tmp_path / "p", "--quiet")
    assert res.exit_code == 0 and res.output.count("has no frame gate") == 1


def test_calibrate_shows_the_gate_and_an_honest_promise(bundle_copy, demo_root):
    res = run_cli("calibrate", bundle_copy, demo_root / "grid")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "frame gate (" in out and "sharpness" in out and "lr_median" in out and "accepted" in out
    assert "good parts rejected:" in out and "95% confidence" in out
    cal = json.loads((bundle_copy / MANIFEST).read_text())["calibration"]
    assert cal["gate"]["ranges"]["sharpness"]["lo"] > 0 and cal["measured"]["promise"]["upper_95"] > 0
    assert cal["measured"]["holdout_gate"]["images"] == cal["images"]["holdout"]


def test_calibration_figures_of_the_gate_use_the_runtime_statistics(calibrated_bundle, demo_root):
    """The ranges in the manifest are what image_statistics/model_statistics measure on the calibration images."""
    manifest = load_manifest(calibrated_bundle)
    good = [read_image(p, 1) for p in sorted((demo_root / "grid" / "train" / "good").glob("*.png"))]
    with Projector(manifest) as proj:
        rec = [r.rec_loss0 for r in proj.project(good, lean=True)]
    stats = frame_statistics(good, rec, manifest.preprocess)
    spec = FrameGate.of(manifest).spec
    for key, r in spec.ranges.items():
        seen = [s[key] for s in stats]
        assert r.seen_min == pytest.approx(min(seen), rel=1e-4) and r.seen_max == pytest.approx(max(seen), rel=1e-4), key


# --------------------------------------------------------------------------------------- the alarm


class ListSource(FrameSource):
    def __init__(self, frames):
        super().__init__(1)
        self.frames = list(frames)
        self.name = "frames"

    def read(self):
        return self._frame(self.frames.pop(0), name=f"f{self.seq}") if self.frames else None


class StatusSink:
    def __init__(self):
        self.statuses: list[dict] = []

    def status(self, **info):
        self.statuses.append(info)

    def publish(self, row, image=None, anomaly_map=None):
        pass

    def stats(self):
        return {}

    def close(self):
        pass


def test_frames_failing_the_gate_in_a_row_raise_one_alarm_that_clears(calibrated_bundle, demo_root, tmp_path, caplog):
    from edgeproj.line.sinks import Sinks

    good = [read_image(p, 1) for p in sorted((demo_root / "grid" / "train" / "good").glob("*.png"))[:3]]
    blank = np.full((128, 128, 1), 0.5, np.float32)
    dark = (good[0] * 0.3).astype(np.float32)
    frames = [good[0], blank, blank, dark, blank, blank, good[1], blank, good[2]]
    sink = StatusSink()
    with caplog.at_level(logging.WARNING, logger="edgeproj.line"), Projector.from_bundle(calibrated_bundle) as proj:
        summary = inspect(
            proj, ListSource(frames), tmp_path / "r.sqlite", tmp_path, InspectOptions(alarm_after=3), sinks=Sinks([sink])
        )
    g = summary.gate
    assert g.failed == 6 and g.alarms == 1 and not g.alarm_active
    assert sum(g.by_check.values()) == 6 and len(g.by_check) >= 2  # the dark frame fails on its own check
    alarms = [r.message for r in caplog.records if r.message.startswith("ALARM:")]
    assert len(alarms) == 1 and "3 frames in a row" in alarms[0]
    assert sum("ALARM cleared" in r.message for r in caplog.records) == 1
    raised = [s for s in sink.statuses if s.get("alarm")]
    assert raised and raised[0]["alarm"]["frames_in_row"] == 3 and "frame gate" in raised[0]["alarm"]["reason"]
    assert sink.statuses[-1]["alarm"] is None and sink.statuses[-1]["gate"]["failed"] == 6
    assert summary.fault == 6 and summary.ok + summary.ng == 3


def test_the_alarm_monitor_counts_and_throttles():
    sink = StatusSink()
    now = [0.0]
    m = GateMonitor(2, sink, clock=lambda: now[0])
    m.update(0, "sharpness", "blurred")
    m.update(1, "sharpness", "blurred")  # the alarm: sent at once
    m.update(2, "contrast", "flat")  # within the second: not sent
    assert [bool(s["alarm"]) for s in sink.statuses] == [False, True]
    now[0] = 5.0
    m.update(3, "", "")  # back in range: cleared at once
    assert sink.statuses[-1]["alarm"] is None and m.summary().by_check == {"sharpness": 2, "contrast": 1}


def test_evaluate_reports_what_the_gate_flags_and_the_aurocs_with_it(trained_bundle, gate_demo_root, tmp_path):
    """A blank frame and a blurred copy slipped into the good test images: evaluate counts them as flagged
    and reports the AUROCs with the gate applied next to the calibrated threshold's rates."""
    data = tmp_path / "data"
    shutil.copytree(gate_demo_root / "grid", data / "grid")
    good = read_image(data / "grid" / "test" / "good" / "000.png", 1)
    from edgeproj.data.images import write_png

    write_png(data / "grid" / "test" / "good" / "900_blank.png", np.full_like(good, 0.5))
    write_png(data / "grid" / "test" / "good" / "901_blur.png", cv2.GaussianBlur(good, (0, 0), 3.0))
    res = run_cli("evaluate", trained_bundle, data, "--category", "grid", "--out", tmp_path / "rep", "--json", "--no-study")
    assert res.exit_code == 0, res.output
    g = json.loads(res.stdout)["gate"]
    assert g["calibrated"] and g["flagged_good"] >= 2 and sum(g["by_check"].values()) == g["flagged_good"] + g["flagged_defect"]
    assert 0.0 <= g["image_auroc_with_gate"] <= 1.0 and 0.0 <= g["pixel_auroc_on_passed_images"] <= 1.0
    at = g["at_image_threshold"]
    # The two inserted frames are good parts the gate rejects: they count in the false-reject rate with the gate.
    assert at["good_rejected_with_gate"] * g["good"] >= g["flagged_good"] >= 2
    assert at["calibration_promise"]["images"] > 0


def test_stated_geometry_makes_a_frame_fit(trained_bundle, gate_demo_root, tmp_path):
    """A frame of another aspect ratio or far too small is FAULT, unless --roi / --resize state the geometry."""
    from edgeproj.data.images import write_png

    good = read_image(gate_demo_root / "grid" / "test" / "good" / "001.png", 1)
    wide = np.concatenate([good, good[:, :32]], axis=1)  # 128x160: the part plus 32 columns of something
    write_png(tmp_path / "wide.png", wide)
    write_png(tmp_path / "small.png", cv2.resize(good, (32, 32), interpolation=cv2.INTER_AREA))

    def verdict(img, *opts):
        res = run_cli("project", trained_bundle, tmp_path / img, "--out", tmp_path / "o", "--json", "--quiet", *opts)
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)["images"][0]

    assert verdict("wide.png")["gate"] == "aspect"
    assert verdict("wide.png", "--roi", "0,0,128,128").get("gate") is None  # the stated ROI is the part
    assert verdict("small.png")["gate"] == "size"
    assert verdict("small.png", "--resize", "128x128").get("gate") != "size"  # judged on its content now
    # The tolerance is the calibration's: a gate calibrated with a wide one accepts the wide frame.
    spec = FrameGate.of(load_manifest(trained_bundle)).spec
    loose = FrameGate(PRE, GateSpec(spec.ranges, spec.reference_hw, 0.3, spec.margin, spec.images, spec.method))
    assert loose.check_geometry((128, 160)) == [] and FrameGate(PRE, spec).check_geometry((128, 160))


def test_a_processing_error_neither_raises_nor_clears_the_camera_alarm(trained_bundle, gate_demo_root, tmp_path, monkeypatch):
    from edgeproj.runtime.backends.ort_cpu import OrtCpuRunner

    good = read_image(gate_demo_root / "grid" / "test" / "good" / "000.png", 1).copy()
    good[0, 0, 0] = 0.123  # marks the frame whose projection fails
    real = OrtCpuRunner.load

    def flaky(self, x0, weight, settings):
        if np.isclose(x0[:, 0, 0, 0], 0.123).any():
            raise RuntimeError("device lost")
        return real(self, x0, weight, settings)

    monkeypatch.setattr(OrtCpuRunner, "load", flaky)
    blank = np.full_like(good, 0.5)
    frames = [blank, blank, good, blank]  # the error between the 2nd and 3rd blank frame
    with Projector.from_bundle(trained_bundle) as proj:
        summary = inspect(proj, ListSource(frames), tmp_path / "r.sqlite", tmp_path, InspectOptions(alarm_after=3))
    g = summary.gate
    assert g.failed == 3 and g.passed == 0 and g.alarms == 1 and g.alarm_active
    assert summary.fault == 4


def test_undecodable_frames_past_a_videos_end_are_not_parts():
    """A video container may count frames past its last one: those are held, and dropped at the end; an
    undecodable frame with a good one after it is a part (FAULT)."""
    from edgeproj.line.capture import END, Capture

    class Video(FrameSource):
        errors_may_trail = True

        def __init__(self):
            super().__init__(1)
            self.items = ["good", "bad", "good", "bad", "bad"]

        def read(self):
            if not self.items:
                return None
            kind = self.items.pop(0)
            return self._frame(
                np.zeros((8, 8, 1), np.float32) if kind == "good" else None, error="" if kind == "good" else "undecodable"
            )

    cap = Capture(Video(), maxsize=16).start()
    got = []
    while (item := cap.get(timeout=5)) is not END:
        got.append(item.image is not None)
    assert got == [True, False, True] and cap.stats.corrupt == 3 and cap.stats.read == 5
