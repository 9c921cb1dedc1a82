"""Evaluation through the runtime: figures, convergence study, metrics against sklearn, report files, CLI."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from cli_helpers import one_line_error, run_cli
from sklearn.metrics import roc_auc_score

from edgeproj.errors import ConfigError
from edgeproj.evaluation.evaluate import RULES, EvalOptions, evaluate_bundle, method_metrics
from edgeproj.evaluation.report import figure3, write_report
from edgeproj.evaluation.testset import load_testset
from edgeproj.models.variants import variant_names
from edgeproj.runtime import Projector, load_manifest
from edgeproj.workstation.bundles import parse_variants

METRICS = ("pixel_auroc", "au_pro", "image_auroc")


@pytest.fixture(scope="module")
def testset(bundles, demo_root):
    return load_testset(demo_root, "grid", load_manifest(bundles["l2ae"]).preprocess)


@pytest.fixture(scope="module")
def evaluated(bundles, testset):
    ticks = []
    with Projector(load_manifest(bundles["l2ae"]), batch=4) as proj:
        res, maps = evaluate_bundle(proj, testset, EvalOptions(study=True, study_every=5, study_iterations=10), tick=ticks.append)
    return res, maps, ticks


def _in01(x: float) -> bool:
    return isinstance(x, float) and 0.0 <= x <= 1.0


def test_evaluate_bundle_figures(evaluated, testset):
    res, maps, ticks = evaluated
    assert res["variant"] == "l2ae" and res["category"] == "grid"
    assert res["images"] == len(testset.images) == 6
    assert res["defect_images"] == 4 and res["tiles"] == len(testset.tiles)
    for method in ("baseline", "grad"):
        assert set(res[method]) == set(METRICS)
        assert all(_in01(res[method][k]) for k in METRICS), res[method]
    assert set(res["single_gradient"]) == {"grad_norm", "grad_x_recon_error", "recon_squared_error"}
    for sg in res["single_gradient"].values():
        assert all(_in01(sg[k]) for k in METRICS), sg
    for k in METRICS:
        b, g = res["baseline"][k], res["grad"][k]
        assert res["improvement_rate"][k] == pytest.approx((g - b) / b)
    it = res["iterations"]
    assert 1 <= it["mean"] <= it["max"] <= res["settings"]["max_iterations"]
    assert sum(it["stop_reasons"].values()) == res["tiles"]
    assert res["settings"]["backend"] == "ort-cpu"
    # Progress ticks: one pass of tiles for the projection, one per update rule for the study.
    assert sum(ticks) == res["tiles"] * (1 + len(RULES))
    # The maps returned are the ones scored.
    assert set(maps) == {"baseline", "grad", "grad_norm", "grad_x_recon_error", "recon_squared_error"}
    for ms in maps.values():
        assert len(ms) == 6 and all(m.shape == img.shape[:2] for m, img in zip(ms, testset.images))
    assert method_metrics(testset, maps["grad"]) == res["grad"]


def test_evaluate_convergence_and_placement(evaluated):
    res = evaluated[0]
    conv = res["convergence"]
    assert set(conv) == {"standard", "tuned_gradient", "tuned_step"}
    for rule, c in conv.items():
        assert c["iterations"] == [0, 5, 10], rule
        assert len(c["pixel_auroc"]) == 3 and all(_in01(a) for a in c["pixel_auroc"]), c
        # At iteration 0 the projection is x0 itself: DSSIM(x0, x0) is 0 everywhere, AUROC 0.5.
        assert c["pixel_auroc"][0] == pytest.approx(0.5)
    # standard and tuned rules take different paths.
    assert conv["standard"]["pixel_auroc"][-1] != conv["tuned_step"]["pixel_auroc"][-1]
    pl = res["placement"]
    assert pl["final_pixel_auroc"] == {k: v["pixel_auroc"][-1] for k, v in conv.items()}
    assert pl["mean_pixel_auroc"] == {k: pytest.approx(np.mean(v["pixel_auroc"][1:])) for k, v in conv.items()}
    assert pl["better"] == max(("tuned_gradient", "tuned_step"), key=lambda k: pl["mean_pixel_auroc"][k])
    assert pl["manifest_default"] == "tuned_step"


def test_evaluate_without_study(bundles, testset):
    with Projector(load_manifest(bundles["l2ae"])) as proj:
        res, _ = evaluate_bundle(proj, testset, EvalOptions(study=False))
    assert "convergence" not in res and "placement" not in res
    assert all(_in01(res["grad"][k]) for k in METRICS)


def test_method_metrics_match_sklearn(evaluated, testset):
    maps = evaluated[1]
    labels = np.concatenate([m.ravel() for m in testset.masks])
    assert 0 < labels.sum() < labels.size
    rng = np.random.default_rng(0)
    # Quantized random maps add many ties: ranks must be averaged like sklearn does.
    quantized = [np.round(rng.random(m.shape) * 8) / 8 for m in maps["grad"]]
    for ms in (maps["baseline"], maps["grad"], quantized):
        got = method_metrics(testset, ms)
        scores = np.concatenate([m.ravel() for m in ms])
        assert got["pixel_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        img_scores = [float(m.max()) for m in ms]
        assert got["image_auroc"] == pytest.approx(roc_auc_score(testset.labels, img_scores), abs=1e-12)
        assert _in01(got["au_pro"])
    # A map equal to the ground truth is perfect on every metric.
    perfect = method_metrics(testset, [m.astype(np.float64) for m in testset.masks])
    assert perfect["pixel_auroc"] == 1.0 and perfect["au_pro"] == pytest.approx(1.0)


def test_write_report_and_figure3(evaluated, testset, tmp_path):
    res, maps, _ = evaluated
    figs = figure3(testset, maps, tmp_path, "grid_l2ae")
    defect = [k for k in testset.kinds if k != "good"]
    assert len(figs) == len(defect) == 4
    for p in figs:
        assert p.name.startswith("fig3_grid_l2ae_") and p.suffix == ".png"
        img = cv2.imread(str(p))
        assert img is not None and img.shape == (128 + 20, 4 * (128 + 4), 3)
    assert len(figure3(testset, maps, tmp_path / "two", "t", limit=2)) == 2

    out = tmp_path / "report"
    doc = write_report(out, [res], {"grid_l2ae": figs})
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["results"][0]["grad"] == res["grad"]
    assert on_disk["results"][0]["convergence"] == res["convergence"]
    assert on_disk["placement"]["default"] in ("tuned_gradient", "tuned_step")
    assert on_disk["placement"] == json.loads(json.dumps(doc["placement"]))
    assert on_disk["figures"]["grid_l2ae"] == [str(p) for p in figs]
    table = (out / "table.md").read_text()
    assert "| category | L2AE | L2AE-grad |" in table
    for metric in METRICS:
        assert f"### {metric}" in table
        b, g = res["baseline"][metric], res["grad"][metric]
        cell = f"**{g:.3f}**" if g > b else f"{g:.3f}"
        assert f"| grid | {b:.3f} | {cell} |" in table
    assert "single-gradient" in table and "Tuned weight placement" in table
    conv = out / "convergence.png"
    assert conv.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and cv2.imread(str(conv)) is not None
    assert on_disk["figures"]["convergence"] == [str(conv)]


def test_evaluate_cli_json(bundles, demo_root, tmp_path):
    out = tmp_path / "rep"
    res = run_cli(
        "evaluate", bundles["l2ae"], demo_root, "--category", "grid", "--out", out, "--json", "--no-study", "--limit", "6"
    )
    assert res.exit_code == 0, (res.stderr, res.exception)
    doc = json.loads(res.stdout)
    for method in ("baseline", "grad"):
        assert isinstance(doc[method], dict)
        assert set(doc[method]) >= set(METRICS)
        assert all(_in01(doc[method][k]) for k in METRICS)
    assert doc["images"] == 6 and "convergence" not in doc
    assert (out / "table.md").is_file() and (out / "roc_grid_l2ae.png").is_file()
    assert json.loads((out / "results.json").read_text())["results"][0]["grad"] == doc["grad"]
    assert len(list(out.glob("fig3_grid_l2ae_*.png"))) == 4


def test_evaluate_cli_without_defect_images(bundles, demo_root, tmp_path):
    res = run_cli(
        "evaluate",
        bundles["l2ae"],
        demo_root,
        "--category",
        "grid",
        "--out",
        tmp_path / "r2",
        "--json",
        "--no-study",
        "--limit",
        "2",
    )
    # AUROC is undefined without defect images: a one-line error naming the cause, never a traceback.
    assert res.exit_code == 2, (res.exit_code, res.stderr, res.exception)
    one_line_error(res, "good and defect")


def test_evaluate_cli_errors(bundles, demo_root, tmp_path):
    b = bundles["l2ae"]
    one_line_error(run_cli("evaluate", b, "--category", "grid", "--out", tmp_path / "a"), "BUNDLE DATA")
    one_line_error(run_cli("evaluate", b, demo_root, demo_root, "--category", "grid", "--out", tmp_path / "a"), "BUNDLE DATA")
    one_line_error(
        run_cli("evaluate", demo_root, "--variants", "l2ae,wae", "--category", "grid", "--out", tmp_path / "a", "--json"), "wae"
    )
    one_line_error(
        run_cli("evaluate", b, demo_root, "--variants", "l2ae", "--category", "grid", "--out", tmp_path / "a"), "--variants"
    )
    one_line_error(
        run_cli("evaluate", b, demo_root, "--category", "nope", "--out", tmp_path / "a", "--json", "--no-study"), "'nope'", "grid"
    )
    # --category left out: click's own usage error, exit 2, no traceback.
    res = run_cli("evaluate", b, demo_root, "--out", tmp_path / "a", "--json")
    assert res.exit_code == 2 and "--category" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "a").exists()


def test_parse_variants():
    assert parse_variants("all") == list(variant_names())
    assert parse_variants("l2ae") == ["l2ae"]
    assert parse_variants(" vae, l2ae ,") == ["vae", "l2ae"]
    for bad in ("wae", "l2ae,foo", "", ",", "ALL", "L2AE"):
        with pytest.raises(ConfigError, match="unknown variant"):
            parse_variants(bad)
    with pytest.raises(ConfigError, match="'foo'"):
        parse_variants("l2ae,foo")


def test_evaluate_decides_with_the_calibrated_image_score(trained_bundle, gate_demo_root, tmp_path):
    """The grad image AUROC is the one of the score calibrate chose, and every candidate is listed."""
    from edgeproj.runtime.manifest import IMAGE_SCORES

    m = load_manifest(trained_bundle)
    ts = load_testset(gate_demo_root, "grid", m.preprocess)
    with Projector(m) as proj:
        res, maps = evaluate_bundle(proj, ts, EvalOptions(study=False))
    kind = m.projection.image_score
    assert res["image_score"]["deployed"] == kind == res["image_score"]["choice"]["chosen"]
    assert set(IMAGE_SCORES) <= set(res["image_scores"])
    assert res["grad"]["image_auroc"] == pytest.approx(res["image_scores"][kind])
    # The line's pixel map (fused with the texture check for this *_tex score) is measured beside the paper's.
    from edgeproj.metrics import au_pro, roc_auc
    from edgeproj.runtime.scoring import pixel_map

    assert kind.endswith("_tex") and res["pixel_map"]["map"] == "projection fused with the texture check"
    deployed = [pixel_map(a, kind, img, proj.map_norm) for a, img in zip(maps["grad"], ts.images)]
    labels = np.concatenate([msk.ravel() for msk in ts.masks])
    assert res["pixel_map"]["pixel_auroc"] == roc_auc(labels, np.concatenate([a.ravel() for a in deployed]))
    assert res["pixel_map"]["au_pro"] == au_pro(ts.masks, deployed, 0.3)


def test_evaluate_reports_the_projection_map_where_nothing_is_fused(evaluated):
    res, _, _ = evaluated
    assert res["pixel_map"] == {"map": "projection", "pixel_auroc": res["grad"]["pixel_auroc"], "au_pro": res["grad"]["au_pro"]}


def test_evaluate_prints_the_lines_pixel_map_when_it_is_fused(evaluated):
    import io

    from rich.console import Console

    from edgeproj.cli.evaluate import _print_summary
    from edgeproj.evaluation.summary import EvaluationSummary

    res, _, _ = evaluated

    def printed(r: dict) -> str:
        out = io.StringIO()
        _print_summary(Console(file=out, width=10_000), EvaluationSummary.of(r))
        return out.getvalue()

    assert "the line's pixel map" not in printed(res)
    fused = res | {"pixel_map": {"map": "projection fused with the texture check", "pixel_auroc": 0.9123, "au_pro": 0.7456}}
    assert "the line's pixel map (projection fused with the texture check): pixel AUROC 0.912, AU-PRO 0.746" in printed(fused)


def test_evaluate_cli_says_when_the_image_score_was_not_chosen(bundles, demo_root, tmp_path):
    before = (bundles["l2ae"] / "manifest.json").read_bytes()
    res = run_cli(
        "evaluate", bundles["l2ae"], demo_root, "--category", "grid", "--out", tmp_path / "r", "--no-study", "--limit", "6",
        "--no-calibrate",
    )  # fmt: skip
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert "not chosen for this line" in res.stdout + res.stderr and "edgeproj calibrate" in res.stdout + res.stderr
    assert "evaluated a copy calibrated" not in res.stdout + res.stderr
    assert not list((tmp_path / "r").glob("calibrated-*")) and (bundles["l2ae"] / "manifest.json").read_bytes() == before


def test_evaluate_calibrates_a_copy_of_an_uncalibrated_bundle(bundles, demo_root, tmp_path):
    """train, export, evaluate: the figures are those of the line `calibrate` would deploy (its image score,
    stop threshold and frame gate), measured on a calibrated copy; the exported bundle is left as it is."""
    bundle = bundles["l2ae"]
    before = (bundle / "manifest.json").read_bytes()
    out = tmp_path / "r"
    args = ("evaluate", bundle, demo_root, "--category", "grid", "--out", out, "--no-study", "--limit", "6")
    res = run_cli(*args, "--json")
    assert res.exit_code == 0, (res.stderr, res.exception)
    doc = json.loads(res.stdout)
    here = doc["calibrated_for_evaluation"]
    copy = out / "calibrated-l2ae"
    assert here["from"] == str(bundle) and here["bundle"] == doc["bundle"] == str(copy)
    assert here["normal_images"] == len(list((demo_root / "grid" / "train" / "good").glob("*.png")))
    m = load_manifest(copy)
    assert m.calibration.calibrated and doc["gate"]["calibrated"] and doc["gate"]["at_image_threshold"]
    # The demo grid has too few good images to hold out enough for a choice: calibrate's rule says so.
    choice = doc["image_score"]["choice"]
    assert choice["rule"].startswith("not chosen") and not choice.get("candidates_auroc")
    assert (bundle / "manifest.json").read_bytes() == before and not load_manifest(bundle).calibration.calibrated
    assert sorted(p.name for p in copy.iterdir()) == sorted([p.name for p in bundle.iterdir()] + ["evaluate-copy.json"])
    # Again into the same folder: the unchanged copy is replaced; the printed summary says what was evaluated
    # and no longer sends the user to calibrate, which just ran.
    res = run_cli(*args)
    assert res.exit_code == 0, (res.stderr, res.exception)
    text = res.stdout + res.stderr
    assert f"evaluated a copy calibrated on the {here['normal_images']} images of" in text
    assert "not chosen for this line" in text and "`edgeproj calibrate` chooses it" not in text
    # A calibrated bundle (the copy itself) is evaluated as it is.
    res = run_cli("evaluate", copy, demo_root, "--category", "grid", "--out", tmp_path / "r2", "--no-study", "--limit", "6",
                  "--json")  # fmt: skip
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert json.loads(res.stdout)["calibrated_for_evaluation"] is None and not list((tmp_path / "r2").glob("calibrated-*"))
    # Someone used the copy (added a file, recalibrated it): the next evaluation refuses to replace it.
    (copy / "notes.txt").write_text("mine")
    one_line_error(run_cli(*args), "not an unchanged copy evaluate wrote", "--no-calibrate")
    (copy / "notes.txt").unlink()
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["calibration"]["image_threshold"] *= 2
    (copy / "manifest.json").write_text(json.dumps(manifest))
    one_line_error(run_cli(*args), "not an unchanged copy evaluate wrote")
    assert json.loads((copy / "manifest.json").read_text()) == manifest


def test_evaluate_refuses_to_calibrate_over_what_it_did_not_write(bundle_copy, demo_root, tmp_path):
    out = tmp_path / "r"
    (out / "calibrated-bundle").mkdir(parents=True)
    (out / "calibrated-bundle" / "notes.txt").write_text("mine")
    args = ("evaluate", bundle_copy, demo_root, "--category", "grid", "--out", out, "--no-study", "--limit", "6")
    one_line_error(run_cli(*args), "not an unchanged copy evaluate wrote")
    assert (out / "calibrated-bundle" / "notes.txt").read_text() == "mine"
    # FP16 options: calibration measures in FP32, so an uncalibrated bundle is refused before any work.
    one_line_error(run_cli(*args[:5], "--out", tmp_path / "fp16", "--force-fp16"), "--no-calibrate")
    assert not (tmp_path / "fp16").exists()
    # Too few good images to calibrate on: one line naming the folder and the way out; nothing left behind.
    data = tmp_path / "data"
    shutil.copytree(demo_root / "grid", data / "grid")
    for p in sorted((data / "grid" / "train" / "good").glob("*.png"))[2:]:
        p.unlink()
    one_line_error(run_cli(*args[:2], data, *args[3:5], "--out", tmp_path / "few"), "train/good first", "--no-calibrate")
    assert not list((tmp_path / "few").glob("calibrated-*"))
    # A report folder inside the bundle: the copy holds the bundle's files only (no copy of the copy).
    before = {p.name: p.read_bytes() for p in bundle_copy.iterdir()}
    res = run_cli(*args[:5], "--out", bundle_copy / "report", "--no-study", "--limit", "6", "--json")
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert {p.name: p.read_bytes() for p in bundle_copy.iterdir() if p.name != "report"} == before
    copied = sorted(p.name for p in (bundle_copy / "report" / "calibrated-bundle").iterdir())
    assert copied == sorted([*before, "evaluate-copy.json"])
