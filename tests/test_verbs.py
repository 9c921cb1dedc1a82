"""The runtime verbs from the command line: project, inpaint, help texts, and bundle errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import typer
from cli_helpers import one_line_error, run_cli
from typer.testing import CliRunner

from edgeproj.data.images import read_image, read_mask, write_png
from edgeproj.runtime import load_manifest

VERBS = ("data", "train", "export", "project", "inpaint", "calibrate", "evaluate", "inspect", "bench", "demo")


@pytest.fixture
def grid_images(demo_root, tmp_path):
    """Three grid test images under distinct names in one folder."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for kind in ("good", "hole", "scratch"):
        shutil.copy(demo_root / "grid" / "test" / kind / "000.png", folder / f"{kind}.png")
    return folder


# ------------------------------------------------------------------ project


def test_project_folder_json(bundles, grid_images, tmp_path):
    out = tmp_path / "out"
    res = run_cli("project", bundles["l2ae"], grid_images, "--out", out, "--json", "--max-iterations", "3")
    assert res.exit_code == 0, (res.stderr, res.exception)
    doc = json.loads(res.stdout)
    assert doc == json.loads((out / "summary.json").read_text())
    assert doc["backend"] == "ort-cpu" and doc["providers"] == ["CPUExecutionProvider"]
    calibrated = load_manifest(bundles["l2ae"]).calibration.calibrated
    stems = ["good", "hole", "scratch"]
    assert [s["source"] for s in doc["images"]] == [str(grid_images / f"{k}.png") for k in stems]
    for stem, s in zip(stems, doc["images"]):
        assert isinstance(s["score"], float) and s["score"] > 0
        assert s["baseline_score"] > 0
        assert isinstance(s["stop_reasons"], dict) and sum(s["stop_reasons"].values()) == s["tiles"] >= 1
        assert set(s["stop_reasons"]) <= {"rec_loss_threshold", "converged", "max_iterations", "diverged"}
        assert 1 <= s["iterations_max"] <= 3
        # Uncalibrated: no threshold, so no part can be judged OK (FAULT, with the reason).
        assert s["verdict"] in (("OK", "NG") if calibrated else ("FAULT",)), s
        for kind in ("map", "overlay"):
            png = out / f"{stem}_{kind}.png"
            assert s[f"{kind}_png"] == str(png)
            img = cv2.imread(str(png))
            assert img is not None and img.shape == (128, 128, 3), png
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{k}_{kind}.png" for k in stems for kind in ("map", "overlay")] + ["summary.json"]
    )


def test_project_single_files_and_human_output(bundles, grid_images, tmp_path):
    res = run_cli(
        "project",
        bundles["l2ae"],
        grid_images / "hole.png",
        grid_images / "good.png",
        "--out",
        tmp_path / "o",
        "--max-iterations",
        "2",
        "--standard",
        "--map-kind",
        "squared_error",
    )
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert res.stdout.strip() == ""  # without --json, stdout stays clean; the summary goes to stderr
    assert re.search(r"hole\.png: (OK|NG|FAULT) score", res.stderr) and re.search(r"good\.png: (OK|NG|FAULT) score", res.stderr)
    doc = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert [s["map_kind"] for s in doc["images"]] == ["squared_error"] * 2


def test_project_same_stem_in_two_folders_keeps_both(bundles, demo_root, tmp_path):
    out = tmp_path / "o"
    res = run_cli(
        "project",
        bundles["l2ae"],
        demo_root / "grid" / "test" / "good",
        demo_root / "grid" / "test" / "hole",
        "--out",
        out,
        "--json",
        "--max-iterations",
        "2",
    )
    assert res.exit_code == 0, (res.stderr, res.exception)
    doc = json.loads(res.stdout)
    maps = [s["map_png"] for s in doc["images"]]
    assert len(doc["images"]) == 3
    assert len(set(maps)) == len(maps), maps


# ------------------------------------------------------------------ inpaint


def _mask(demo_root, tmp_path):
    """The ground-truth hole mask, dilated a little, saved as an 8-bit PNG."""
    m = read_mask(demo_root / "grid" / "ground_truth" / "hole" / "000_mask.png", (128, 128))
    m = cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return write_png(tmp_path / "mask.png", m), m


def test_inpaint_known_mask(bundles, demo_root, tmp_path):
    image = demo_root / "grid" / "test" / "hole" / "000.png"
    mask_path, m = _mask(demo_root, tmp_path)
    out = tmp_path / "res" / "repaired.png"
    res = run_cli("inpaint", bundles["l2ae"], image, "--mask", mask_path, "--out", out, "--json", "--max-iterations", "15")
    assert res.exit_code == 0, (res.stderr, res.exception)
    doc = json.loads(res.stdout)
    assert doc["mode"].startswith("known-mask") and doc["out"] == str(out) and doc["mask"] == str(mask_path)
    assert doc["iterations_max"] <= 15 and "rec_loss_threshold" not in doc["stop_reasons"]  # eq. 7: no L_r stop
    src, rep = read_image(image), read_image(out)
    assert rep.shape == src.shape
    assert np.array_equal(rep[~m], src[~m])  # outside the mask: bit-exact after the 8-bit round trip
    inside_changed = np.mean(np.abs(rep[m] - src[m]) > 1.5 / 255)
    assert inside_changed > 0.5, inside_changed


def test_inpaint_blind(bundles, demo_root, tmp_path):
    image = demo_root / "grid" / "test" / "hole" / "000.png"
    out = tmp_path / "blind.png"
    res = run_cli("inpaint", bundles["l2ae"], image, "--out", out, "--json", "--max-iterations", "5")
    assert res.exit_code == 0, (res.stderr, res.exception)
    doc = json.loads(res.stdout)
    assert doc["mode"].startswith("blind") and doc["mask"] is None
    assert 1 <= doc["iterations_max"] <= 5
    src, rep = read_image(image), read_image(out)
    assert rep.shape == src.shape and not np.array_equal(rep, src)


def test_inpaint_errors(bundles, demo_root, tmp_path):
    image = demo_root / "grid" / "test" / "hole" / "000.png"
    write_png(tmp_path / "small_mask.png", np.ones((64, 64), bool))
    one_line_error(
        run_cli("inpaint", bundles["l2ae"], image, "--mask", tmp_path / "small_mask.png", "--out", tmp_path / "x.png"),
        "64x64",
        "128x128",
    )
    one_line_error(run_cli("inpaint", bundles["l2ae"], tmp_path / "missing.png", "--out", tmp_path / "x.png"), "does not exist")
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------ help


def test_root_help_lists_every_verb():
    res = run_cli("--help")
    assert res.exit_code == 0
    for verb in VERBS:
        assert any(line.strip(" │|").split(" ")[0] == verb for line in res.stdout.splitlines()), (verb, res.stdout)
    res = run_cli("--version")
    assert res.exit_code == 0 and res.stdout.startswith("edgeproj ")


def test_demo_help_lists_options():
    res = run_cli("demo", "--help")
    assert res.exit_code == 0, res.output
    for opt in ("--out", "--variants", "--categories", "--steps", "--lr", "--study-iterations", "--seed", "--json"):
        assert opt in res.stdout, opt


@pytest.mark.parametrize("verb", ["project", "inpaint", "calibrate", "evaluate", "bench"])
def test_verb_help(verb):
    res = run_cli(verb, "--help")
    assert res.exit_code == 0, res.output
    assert "--json" in res.stdout and "Usage: edgeproj " + verb in res.stdout


@pytest.mark.parametrize("verb", [[], *([v] for v in VERBS), ["doctor"], ["data", "make-demo"], ["data", "check"]])
def test_help_reads_at_80_columns_with_nothing_cut(verb):
    """Every line fits 80 columns, no name or value is cut with an ellipsis, and every option is listed."""
    import click

    from edgeproj.cli.app import app

    res = CliRunner().invoke(app, [*verb, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "\u2026" not in res.stdout
    assert not [line for line in lines if line.rstrip().endswith("...") and not line.startswith("Usage:")], res.stdout
    command = typer.main.get_command(app)
    for name in verb:
        command = command.commands[name]
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert any(opt in res.stdout for opt in param.opts), (param.opts, res.stdout)


@pytest.mark.parametrize("args", [["project", "--help"], ["--help"], ["doctor", "--json"]])
def test_a_closed_stdout_is_not_an_error(args):
    """`edgeproj project --help | head` must not end in "Broken pipe": the reader left, the run is fine."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write fails with EPIPE, as after `head` has exited
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edgeproj", *args], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


# ------------------------------------------------------------------ bundle errors


@pytest.mark.parametrize("graph", ["gradient.onnx", "step.onnx"])
def test_project_corrupted_graph_is_checksum_error(bundle_copy, grid_images, tmp_path, graph):
    path = bundle_copy / graph
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit, same size
    path.write_bytes(bytes(data))
    line = one_line_error(run_cli("project", bundle_copy, grid_images, "--out", tmp_path / "o"), "checksum", graph)
    assert "re-copy or re-export" in line
    assert not (tmp_path / "o" / "summary.json").exists()


def test_project_missing_graph_and_bundle(bundle_copy, grid_images, tmp_path):
    (bundle_copy / "step.onnx").unlink()
    one_line_error(run_cli("project", bundle_copy, grid_images, "--out", tmp_path / "o"), "missing")
    one_line_error(run_cli("project", tmp_path / "nobundle", grid_images, "--out", tmp_path / "o"), "manifest.json")


def test_a_bundle_calibrated_under_another_stop_check_is_refused_unless_accepted(calibrated_bundle, grid_images, tmp_path):
    """Thresholds calibrated on a projection that checks the stop rule elsewhere (another edgeproj, a GPU
    runner reading it back every k steps) do not fit: `project` refuses in one line before any session
    opens, and runs with a warning on stderr (stdout stays JSON) when told to accept it."""
    m = load_manifest(calibrated_bundle)
    assert m.calibration.method["stop_check"] == "before the step"  # calibrated on the CPU, which probes
    assert m.stop_check_mismatch("before the step", "ort-cpu") is None
    gpu = m.stop_check_mismatch("after the step, read back every 5 steps", "trt")
    assert "--backend trt" in gpu and "--accept-stop-check" in gpu
    dst = tmp_path / "bundle"
    shutil.copytree(calibrated_bundle, dst)
    doc = json.loads((dst / "manifest.json").read_text())
    del doc["calibration"]["method"]["stop_check"]  # as calibrations made before the record
    (dst / "manifest.json").write_text(json.dumps(doc))
    old = load_manifest(dst)
    assert "chunk not recorded" in old.stop_check_mismatch("before the step", "ort-cpu")
    res = run_cli("project", dst, grid_images, "--out", tmp_path / "o", "--json", "--max-iterations", "2")
    one_line_error(res, "--accept-stop-check")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    res = run_cli("project", dst, grid_images, "--out", tmp_path / "o", "--json", "--max-iterations", "2", "--accept-stop-check")
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert "warning:" in res.stderr and "edgeproj calibrate" in res.stderr
    assert len(json.loads(res.stdout)["images"]) == 3
    # inspect: the same refusal, before the source opens or the results database is made
    res = run_cli("inspect", dst, "--source", grid_images, "--out", tmp_path / "line", "--json", "--max-frames", "1")
    one_line_error(res, "--accept-stop-check")
    assert not (tmp_path / "line").exists()


def test_a_backend_that_cannot_run_here_is_named_before_the_stop_check_advice(calibrated_bundle, grid_images, tmp_path):
    """A CPU-calibrated bundle on a GPU backend this machine lacks: the line says the backend is missing and
    why, not "recalibrate with --backend trt on this device", which cannot be done here."""
    from edgeproj.runtime.backends import backend

    why = backend("trt").unavailable_reason()
    if why is None:
        pytest.skip("TensorRT runs here: the refusal this test checks cannot happen")
    res = run_cli("project", calibrated_bundle, grid_images, "--out", tmp_path / "o", "--backend", "trt")
    line = one_line_error(res, "backend trt is unavailable here")
    assert "--accept-stop-check" not in line


def test_calibrate_refuses_fp16_thresholds_in_one_line(tmp_path):
    """The manifest records no precision: thresholds from FP16 maps would judge FP32 runs unseen."""
    for flags in (["--backend", "trt", "--fp16"], ["--force-fp16"]):
        res = run_cli("calibrate", tmp_path / "bundle", tmp_path / "good", *flags)
        one_line_error(res, "FP32", "--precision-check")


def test_inspect_whose_reader_leaves_ends_with_an_error_not_a_normal_exit(calibrated_bundle, grid_images, tmp_path):
    """`inspect --json | consumer` whose consumer dies: the run stops early, which is not "ended normally"."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edgeproj", "inspect", str(calibrated_bundle), "--source", str(grid_images), "--json",
             "--out", str(tmp_path / "line"), "--accept-stop-check"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("edgeproj: error: stdout was closed by its reader: inspect stopped early"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_inspect_repeats_calibrations_weak_separation_warning(calibrated_bundle, grid_images, tmp_path):
    """A line whose chosen score hardly separated the synthetic defects from good parts says so when it
    starts (calibrate warned; a defective part may pass as OK), and the verdicts still come."""
    from edgeproj.calibration.score_choice import separation_warning

    dst = tmp_path / "bundle"
    shutil.copytree(calibrated_bundle, dst)
    doc = json.loads((dst / "manifest.json").read_text())
    doc["calibration"]["image_score_choice"]["warning"] = separation_warning("map_max_tex", 0.55)
    (dst / "manifest.json").write_text(json.dumps(doc))
    res = run_cli("inspect", dst, "--source", grid_images, "--out", tmp_path / "line", "--json", "--max-frames", "1")
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert "warning: the image score map_max_tex separates synthetic defects" in res.stderr and "AUROC 0.550" in res.stderr


def test_inspect_takes_a_negative_threshold_and_refuses_one_out_of_range(calibrated_bundle, grid_images, tmp_path):
    """A *_tex score is in normal standard deviations, so a threshold may be negative: every part is then NG
    (a lower threshold only rejects more). Beyond the range it is one line and exit 2."""
    res = run_cli("inspect", calibrated_bundle, "--source", grid_images, "--out", tmp_path / "a", "--json",
                  "--image-threshold", "-1", "--pixel-threshold", "-1")  # fmt: skip
    assert res.exit_code == 0, (res.stderr, res.exception)
    rows = [json.loads(ln) for ln in res.stdout.splitlines() if ln.strip()]
    verdicts = [r["verdict"] for r in rows if r.get("verdict")]
    assert verdicts and set(verdicts) == {"NG"}
    one_line_error(run_cli("inspect", calibrated_bundle, "--source", grid_images, "--out", tmp_path / "b",
                           "--image-threshold", "-2e6"), "--image-threshold")  # fmt: skip


@pytest.mark.parametrize("section", ["image_score_choice", "map_norm", "measured"])
def test_a_null_calibration_section_is_one_line(calibrated_bundle, grid_images, tmp_path, section):
    """A calibration section that is null (a hand edit, another tool) is a malformed manifest: one line and
    exit 2 naming it, never an AttributeError traceback from a reader's .get()."""
    dst = tmp_path / "bundle"
    shutil.copytree(calibrated_bundle, dst)
    doc = json.loads((dst / "manifest.json").read_text())
    doc["calibration"][section] = None
    (dst / "manifest.json").write_text(json.dumps(doc))
    res = run_cli("inspect", dst, "--source", grid_images, "--out", tmp_path / "line", "--json", "--max-frames", "1")
    one_line_error(res, f"calibration.{section} must be an object")
