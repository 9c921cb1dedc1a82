"""Hostile input, table-driven (issue 12): every case exits 2 with one line, no traceback, nothing half-written.

Each case builds its arguments in a scratch folder, lists what must stay byte-identical and what must
not appear, and names the words the single error line must hold.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import one_line_error, run_cli

from edgeproj.runtime.manifest import MANIFEST


@dataclass
class Case:
    name: str
    args: Callable[[dict], list]  # ctx -> CLI arguments
    needles: tuple[str, ...]
    unchanged: Callable[[dict], list] = lambda ctx: [ctx["bundle"] / MANIFEST]
    absent: Callable[[dict], list] = lambda ctx: [ctx["tmp"] / "out"]
    setup: Callable[[dict], None] | None = None
    root_can_write: bool = False  # root ignores permission bits: skip where the case relies on them
    extra: dict = field(default_factory=dict)


def _manifest_edit(fn):
    def setup(ctx):
        path = ctx["bundle"] / MANIFEST
        doc = json.loads(path.read_text())
        path.write_text(fn(doc) if not isinstance(fn(doc), dict) else json.dumps(fn(doc)))

    return setup


def _graph_path(value):
    def edit(doc):
        doc["graphs"]["step"]["file"] = value
        return doc

    return _manifest_edit(edit)


def _write(ctx, name: str, data: bytes) -> Path:
    p = ctx["tmp"] / name
    p.write_bytes(data)
    return p


def _corrupt_folder(ctx) -> None:
    d = ctx["tmp"] / "corrupt"
    d.mkdir()
    for i in range(3):
        (d / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")


P, INS, C = "project", "inspect", "calibrate"
CASES = [
    # -- out-of-range run-time overrides: a defect must not become OK through an option
    Case(
        "max-iterations 0",
        lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out", "--max-iterations", "0"],
        ("--max-iterations",),
    ),
    Case(
        "max-iterations -5",
        lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out", "--max-iterations", "-5"],
        ("--max-iterations",),
    ),
    Case("lam -100", lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out", "--lam", "-100"], ("--lam",)),
    Case("alpha -1", lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out", "--alpha", "-1"], ("--alpha",)),
    Case("alpha 1e30", lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out", "--alpha", "1e30"], ("--alpha",)),
    Case("alpha nan", lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out", "--alpha", "nan"], ("--alpha",)),
    Case("threads 100000", lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out", "--threads", "100000"], ("--threads",)),
    Case("map kind bogus", lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out", "--map-kind", "l1"], ("--map-kind",)),
    Case("backend bogus", lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out", "--backend", "tpu"], ("--backend",)),
    Case("cuda graph on cpu", lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out", "--cuda-graph"], ("--cuda-graph",)),
    Case(
        "image threshold nan",
        lambda c: [INS, c["bundle"], "-s", c["folder"], "-o", c["tmp"] / "out", "--image-threshold", "nan"],
        ("--image-threshold",),
    ),
    Case(
        "image threshold inf",
        lambda c: [INS, c["bundle"], "-s", c["folder"], "-o", c["tmp"] / "out", "--image-threshold", "inf"],
        ("--image-threshold",),
    ),
    # -- ROI
    Case(
        "roi negative",
        lambda c: [INS, c["bundle"], "-s", c["folder"], "-o", c["tmp"] / "out", "--roi", "-1,0,5,5"],
        ("--roi", ">= 0"),
    ),
    Case(
        "roi not numbers",
        lambda c: [INS, c["bundle"], "-s", c["folder"], "-o", c["tmp"] / "out", "--roi", "a,b,c,d"],
        ("--roi", "four integers"),
    ),
    Case(
        "roi outside the frame",
        lambda c: [INS, c["bundle"], "-s", c["folder"], "-o", c["tmp"] / "out", "--roi", "200,0,100,100"],
        ("--roi", "does not fit", "frame"),
        absent=lambda c: [],  # the output folder is created before the first frame shows the ROI is wrong
    ),
    # -- resources
    Case(
        "queue size 0",
        lambda c: [INS, c["bundle"], "-s", c["folder"], "-o", c["tmp"] / "out", "--queue-size", "0"],
        ("--queue-size",),
    ),
    # -- manifests that are not manifests, graphs outside the bundle
    Case(
        "manifest is a JSON array",
        lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out"],
        ("not a manifest",),
        setup=lambda c: (c["bundle"] / MANIFEST).write_text("[1, 2]"),
        unchanged=lambda c: [],
    ),
    Case(
        "manifest not UTF-8",
        lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out"],
        ("not UTF-8",),
        setup=lambda c: (c["bundle"] / MANIFEST).write_bytes(b'{"a": "\xff\xfe"}'),
        unchanged=lambda c: [],
    ),
    Case(
        "graph path escapes the bundle",
        lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out"],
        ("plain file name",),
        setup=_graph_path("../../../etc/passwd"),
        unchanged=lambda c: [],
    ),
    Case(
        "graph path absolute",
        lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out"],
        ("plain file name",),
        setup=_graph_path("/etc/passwd"),
        unchanged=lambda c: [],
    ),
    # -- output folders that cannot be
    Case("project out is a file", lambda c: [P, c["bundle"], c["img"], "-o", c["file"]], ("is a file",), absent=lambda c: []),
    Case(
        "project out below a file",
        lambda c: [P, c["bundle"], c["img"], "-o", c["file"] / "x"],
        ("is a file",),
        absent=lambda c: [],
    ),
    Case("project out unwritable", lambda c: [P, c["bundle"], c["img"], "-o", "/proc/edgeproj-out"], ("cannot be created",)),
    Case(
        "inpaint out is a folder",
        lambda c: ["inpaint", c["bundle"], c["img"], "-o", c["tmp"]],
        ("is a folder",),
        absent=lambda c: [],
    ),
    Case(
        "inpaint out below a file",
        lambda c: ["inpaint", c["bundle"], c["img"], "-o", c["file"] / "x.png"],
        ("is a file",),
        absent=lambda c: [],
    ),
    Case(
        "train out is a file",
        lambda c: ["train", c["demo"], "-c", "grid", "-o", c["file"], "--steps", "1"],
        ("is a file",),
        absent=lambda c: [],
    ),
    Case("make-demo out is a file", lambda c: ["data", "make-demo", c["file"]], ("is a file",), absent=lambda c: []),
    Case(
        "inspect out is a file",
        lambda c: [INS, c["bundle"], "-s", c["folder"], "-o", c["file"]],
        ("is a file",),
        absent=lambda c: [],
    ),
    Case(
        "bench out below a file",
        lambda c: ["bench", c["bundle"], "-o", c["file"] / "r.json", "--iterations", "1"],
        ("is a file",),
        absent=lambda c: [],
    ),
    Case(
        "bench out unwritable",
        lambda c: ["bench", c["bundle"], "-o", "/proc/edgeproj/r.json", "--iterations", "1"],
        ("cannot be created",),
    ),
    # -- options checked before the work
    Case("calibrate holdout 2", lambda c: [C, c["bundle"], c["folder"], "--holdout", "2"], ("--holdout",)),
    Case("calibrate stop bogus", lambda c: [C, c["bundle"], c["folder"], "--stop", "bogus"], ("--stop",)),
    Case("calibrate choice defects 0", lambda c: [C, c["bundle"], c["folder"], "--choice-defects", "0"], ("--choice-defects",)),
    Case("calibrate pixel fpr 1.5", lambda c: [C, c["bundle"], c["folder"], "--pixel-fpr", "1.5"], ("--pixel-fpr",)),
    Case("calibrate NaN image", lambda c: [C, c["bundle"], c["nanfolder"]], ("zz_nan.tiff", "NaN")),
    Case("calibrate too few images", lambda c: [C, c["bundle"], c["twofolder"]], ("at least 3",)),
    Case(
        "export convtranspose bogus",
        lambda c: ["export", c["run"], "-o", c["tmp"] / "out", "--convtranspose", "bogus"],
        ("--convtranspose",),
    ),
    Case("export over a bundle", lambda c: ["export", c["run"], "-o", c["bundle"]], ("already holds a bundle", "--overwrite")),
    Case(
        "train device bogus",
        lambda c: ["train", c["demo"], "-c", "grid", "-o", c["tmp"] / "out", "--device", "bogus"],
        ("unknown device",),
    ),
    Case(
        "evaluate study-every 0",
        lambda c: ["evaluate", c["bundle"], c["demo"], "-c", "grid", "-o", c["tmp"] / "out", "--study-every", "0"],
        ("--study-every",),
    ),
    Case(
        "evaluate variants bogus",
        lambda c: ["evaluate", c["demo"], "-c", "grid", "-o", c["tmp"] / "out", "--variants", "xyz"],
        ("unknown variant",),
        absent=lambda c: [],
    ),
    Case(
        "bench compare is an array",
        lambda c: ["bench", c["bundle"], "--compare", _write(c, "a.json", b"[1]")],
        ("not a bench report",),
        absent=lambda c: [],
    ),
    Case("bench backends bogus", lambda c: ["bench", c["bundle"], "--backends", "bogus"], ("unknown backend",)),
    Case("bench iterations -3", lambda c: ["bench", c["bundle"], "--iterations", "-3"], ("--iterations",)),
    Case("bench batches 0", lambda c: ["bench", c["bundle"], "--batches", "0,4"], ("--batches",)),
    Case("demo categories bogus", lambda c: ["demo", "-o", c["tmp"] / "out", "--categories", "wood"], ("--categories",)),
    # -- inspect's database, window and sources
    Case(
        "inspect db is a folder",
        lambda c: [INS, c["bundle"], "-s", c["folder"], "-o", c["tmp"] / "o2", "--db", c["tmp"]],
        ("is a folder",),
        absent=lambda c: [],
    ),
    Case(
        "inspect db not a database",
        lambda c: [INS, c["bundle"], "-s", c["folder"], "-o", c["tmp"] / "o2", "--db", c["file"]],
        ("cannot be used",),
        absent=lambda c: [],
    ),
    Case("inspect show on headless OpenCV", lambda c: [INS, c["bundle"], "-s", c["folder"], "--show"], ("--show", "headless")),
    Case(
        "inspect missing video",
        lambda c: [INS, c["bundle"], "-s", c["tmp"] / "nope.avi", "-o", c["tmp"] / "o2"],
        ("does not exist",),
        absent=lambda c: [],
    ),
    Case(
        "inspect unknown source",
        lambda c: [INS, c["bundle"], "-s", "nonsense-source", "-o", c["tmp"] / "o2"],
        ("neither",),
        absent=lambda c: [],
    ),
    Case(
        "inspect camera that does not exist",
        lambda c: [INS, c["bundle"], "-s", "97", "-o", c["tmp"] / "o2", "--max-reconnects", "0"],
        ("camera:97", "failed before any frame"),
        absent=lambda c: [],
    ),
    Case(
        "inspect all frames corrupt",
        # --json: each unreadable frame is a FAULT row on stdout (human output prints them too), the error one line.
        lambda c: [INS, c["bundle"], "-s", c["tmp"] / "corrupt", "-o", c["tmp"] / "o2", "--json"],
        ("no frame could be judged", "3 corrupt", "recorded as FAULT"),
        setup=_corrupt_folder,
        absent=lambda c: [],
    ),
    Case(
        "inspect uncalibrated",
        lambda c: [INS, c["raw_bundle"], "-s", c["folder"], "-o", c["tmp"] / "o2"],
        ("not calibrated",),
        absent=lambda c: [],
    ),
    Case(
        "inspect with a malformed frame gate",
        lambda c: [INS, c["bundle"], "-s", c["folder"], "-o", c["tmp"] / "o2"],
        ("frame gate", "malformed", "recalibrate"),
        setup=_manifest_edit(lambda d: (d["calibration"]["gate"]["ranges"]["sharpness"].update(lo=1e30), d)[1]),
        unchanged=lambda c: [],
        absent=lambda c: [c["tmp"] / "o2"],
    ),
    Case(
        "project with a malformed frame gate",
        lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out"],
        ("frame gate", "malformed"),
        setup=_manifest_edit(lambda d: (d["calibration"]["gate"].update(aspect_tolerance=-1), d)[1]),
        unchanged=lambda c: [],
    ),
    Case(
        "inspect --resize not WxH",
        lambda c: [INS, c["bundle"], "-s", c["folder"], "--resize", "256"],
        ("--resize", "WIDTHxHEIGHT"),
    ),
    Case(
        "project --resize zero",
        lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out", "--resize", "0x10"],
        ("--resize", "1.."),
    ),
    Case("project --roi negative", lambda c: [P, c["bundle"], c["img"], "-o", c["tmp"] / "out", "--roi", "-1,0,5,5"], ("--roi",)),
    Case("calibrate --gate-margin 0", lambda c: ["calibrate", c["bundle"], c["folder"], "--gate-margin", "0"], ("gate-margin",)),
]


@pytest.fixture
def ctx(calibrated_bundle, bundles, runs, demo_root, tmp_path) -> dict:
    bundle = tmp_path / "bundle"
    shutil.copytree(calibrated_bundle, bundle)
    folder = demo_root / "grid" / "test" / "good"
    nanfolder = tmp_path / "nan"
    shutil.copytree(demo_root / "grid" / "train" / "good", nanfolder)
    img = np.full((256, 256), 0.5, np.float32)
    img[3, 3] = np.nan
    cv2.imwrite(str(nanfolder / "zz_nan.tiff"), img)
    two = tmp_path / "two"
    two.mkdir()
    for p in sorted(folder.glob("*.png"))[:2]:
        shutil.copy(p, two / p.name)
    (tmp_path / "plain.txt").write_text("not a folder")
    return {"tmp": tmp_path, "bundle": bundle, "raw_bundle": bundles["l2ae"], "run": runs["l2ae"], "demo": demo_root,
            "folder": folder, "img": sorted(folder.glob("*.png"))[0], "file": tmp_path / "plain.txt", "nanfolder": nanfolder,
            "twofolder": two}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case_is_one_line_and_exit_2(case: Case, ctx):
    if case.root_can_write and os.geteuid() == 0:
        pytest.skip("runs as root: permission bits do not stop root")
    if case.setup:
        case.setup(ctx)
    keep = {p: p.read_bytes() for p in case.unchanged(ctx) if p.is_file()}
    res = run_cli(*case.args(ctx))
    one_line_error(res, *case.needles)
    for p, data in keep.items():
        assert p.read_bytes() == data, f"{p} changed"
    for p in case.absent(ctx):
        assert not p.exists() or not any(p.iterdir()), f"{p} was left behind"


def test_project_keeps_outputs_apart_and_writes_the_summary_when_an_image_fails(calibrated_bundle, demo_root, tmp_path):
    a, b = tmp_path / "a" / "good", tmp_path / "b" / "good"
    for d in (a, b):
        d.mkdir(parents=True)
        shutil.copy(demo_root / "grid" / "test" / "good" / "000.png", d / "000.png")
    (a / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    res = run_cli(P, calibrated_bundle, a, b, "-o", tmp_path / "out", "--json", "--max-iterations", "2")
    one_line_error(res, "1 of 3 images failed", "001.png")
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [s["verdict"] for s in doc["images"]].count("FAULT") == 1 and doc["counts"]["FAULT"] == 1
    assert {Path(s["map_png"]).name for s in doc["images"] if "map_png" in s} == {"a_good_000_map.png", "b_good_000_map.png"}


def test_rgb_frames_for_a_gray_bundle_follow_one_rule(calibrated_bundle, demo_root, tmp_path):
    """Colour frames are converted for a gray bundle, whatever the source; the rule is said once."""
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    for p in sorted((demo_root / "grid" / "test" / "good").glob("*.png"))[:2]:
        cv2.imwrite(
            str(rgb / p.name),
            cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR) // 2 + np.uint8([0, 40, 80]),
        )
    res = run_cli(INS, calibrated_bundle, "-s", rgb, "-o", tmp_path / "o", "--json")
    assert res.exit_code == 0, (res.stderr, res.exception)
    lines = [json.loads(x) for x in res.stdout.strip().splitlines()]
    assert lines[-1]["processed"] == 2 and lines[-1]["corrupt"] == 0
