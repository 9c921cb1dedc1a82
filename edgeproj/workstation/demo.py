"""The demo pipeline on the embedded procedural data: generate, train, export, calibrate, evaluate, benchmark."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeproj.evaluation.evaluate import EvalOptions
from edgeproj.progress import NullProgress, Progress


@dataclass
class DemoOptions:
    """The demo's run: which variants and categories, and how long each model trains."""

    out: Path = Path("demo-out")
    variants: list[str] = field(default_factory=lambda: ["l2ae", "dsae"])
    categories: list[str] = field(default_factory=lambda: ["grid", "stone"])
    steps: int = 600
    lr: float = 5e-4  # above the paper's 1e-4 so the demo trains in about a minute per model
    study_iterations: int = 20
    study_every: int = 2
    seed: int = 0
    calibration_images: int = 16
    studies: bool = False  # the method studies: step size x update rule, appendix B, inpainting (issue 16)


def run_demo(opts: DemoOptions, progress: Progress | None = None) -> dict:
    """Run the whole pipeline; writes OUT/report (table.md, results.json, PNG figures) and returns the document."""
    from edgeproj.data.demo import make_demo
    from edgeproj.evaluation.report import write_report
    from edgeproj.workstation.bundles import TrainSettings
    from edgeproj.workstation.reports import ReportOptions, evaluate_bundles, train_variants

    progress = progress or NullProgress()
    t0 = time.perf_counter()
    data = opts.out / "data"
    make_demo(data, seed=opts.seed)
    report = opts.out / "report"
    settings = TrainSettings(steps=opts.steps, lr=opts.lr, seed=opts.seed, resize=256, mode="texture")
    evaluation = EvalOptions(
        study_iterations=opts.study_iterations, study_every=opts.study_every, rule_study=opts.studies, appendix_b=opts.studies
    )
    results, figures, timings, calibration, ranking = [], {}, {}, {}, {}
    for cat in opts.categories:
        for v in opts.variants:
            tag = f"{cat}_{v}"
            t = time.perf_counter()
            (bundle,) = train_variants(data, cat, [v], opts.out / "work", settings, progress, export_parity_steps=10)
            timings[f"train_export_{tag}"] = round(time.perf_counter() - t, 1)
            calibration[tag] = _calibrate(bundle, data / cat, opts.calibration_images, progress).to_dict()
            t = time.perf_counter()
            res, figs = evaluate_bundles(
                [bundle], data, ReportOptions(cat, report, evaluation=evaluation, figure_limit=4), progress
            )
            timings[f"evaluate_{tag}"] = round(time.perf_counter() - t, 1)
            if v == opts.variants[0]:
                t = time.perf_counter()
                ranking[tag] = _synthetic_ranking(bundle, data, cat, opts.out / "work" / "synthetic" / cat, progress)
                timings[f"synthetic_ranking_{tag}"] = round(time.perf_counter() - t, 1)
            results += res
            figures |= figs
    bench_report = _bench(Path(results[0]["bundle"]))
    bench = bench_report["summary"]
    inpainting = _inpainting(Path(results[0]["bundle"]), data, opts.categories[0], report) if opts.studies else None
    doc = write_report(report, results, figures)
    timings["total"] = round(time.perf_counter() - t0, 1)
    doc |= {"timings_s": timings, "calibration": calibration, "bench": bench, "synthetic_ranking": ranking}
    # The summary above gives only the figures whose rounds agree; the full report keeps every figure and its rounds.
    doc["bench_report"] = bench_report
    if ranking:
        from edgeproj.workstation.synthetic_check import ranking_markdown

        with open(report / "table.md", "a") as f:
            for tag, r in ranking.items():
                f.write(ranking_markdown(r, f"synthetic check, {tag}"))
    if inpainting:
        doc["inpainting"] = inpainting
        with open(report / "table.md", "a") as f:
            f.write(_inpainting_markdown(inpainting))
    from edgeproj.jsonio import dumps_strict

    (report / "results.json").write_text(dumps_strict(doc) + "\n")
    return doc


def _synthetic_ranking(bundle: Path, data: Path, category: str, work: Path, progress: Progress | None = None) -> dict:
    """Rank baseline, update rules and step sizes on the real labelled defects and on synthetic ones."""
    from edgeproj.evaluation.testset import load_testset
    from edgeproj.runtime import Projector, load_manifest
    from edgeproj.workstation.synthetic_check import CATEGORY, RANKING_SETTINGS, build_synthetic_set, ranking_check

    m = load_manifest(bundle)
    info = build_synthetic_set(m, data / category / "train" / "good", work)
    real = load_testset(data, category, m.preprocess)
    synth = load_testset(work, CATEGORY, m.preprocess)
    progress = progress or NullProgress()
    task = progress.add_task(
        f"synthetic check {category}", total=len(RANKING_SETTINGS) * (len(real.tiles) + len(synth.tiles)), info=""
    )
    with Projector(m) as proj:
        doc = ranking_check(proj, real, synth, tick=lambda n: progress.update(task, advance=n))
    return doc | {"synthetic_set": info}


def _calibrate(bundle: Path, category_dir: Path, limit: int, progress: Progress | None = None):
    """Calibrate on a subset of the category's normal images (a quarter held out to measure the rates)."""
    from edgeproj.calibration.calibrate import CalibrationOptions, calibrate_bundle
    from edgeproj.data.mvtec import normal_images

    return calibrate_bundle(bundle, normal_images(category_dir)[:limit], CalibrationOptions(), progress=progress)


def _inpainting(bundle: Path, data: Path, category: str, report: Path) -> dict:
    """Paper section 4.2 on clean demo images: known-mask (eq. 7) and blind (eq. 8) against f(x)."""
    from edgeproj.data.images import read_image
    from edgeproj.runtime import Projector, load_manifest
    from edgeproj.workstation.inpainting import inpainting_study, summarize, write_figure

    m = load_manifest(bundle)
    clean = [read_image(p, m.channels) for p in sorted((data / category / "test" / "good").glob("*.png"))[:4]]
    with Projector(m) as proj:
        rows, panels = inpainting_study(proj, clean)
    return {
        "images": len(rows),
        "per_image": rows,
        "mean": summarize(rows),
        "figure": str(write_figure(panels, report / "inpainting.png")),
    }


def _inpainting_markdown(doc: dict) -> str:
    lines = ["", f"### inpainting (paper section 4.2), {doc['images']} clean images with a painted 32x32 square", "",
             "| method | PSNR square | SSIM square | PSNR image | SSIM image |", "|---|---|---|---|---|"]  # fmt: skip
    for name, v in doc["mean"].items():
        lines.append(
            f"| {name} | {v['psnr_region']:.2f} | {v['ssim_region']:.3f} | {v['psnr_image']:.2f} | {v['ssim_image']:.3f} |"
        )
    return "\n".join(lines) + "\n\nFigure: inpainting.png\n"


def _bench(bundle: Path) -> dict:
    """A short benchmark of the deployed loop against the PyTorch eager loop, in interleaved rounds (the report JSON)."""
    from edgeproj.bench.runner import BenchOptions, run_bench

    opts = BenchOptions(batches=(1, 8), iterations=20, warmup=3, repeats=5, frame_sizes=(256,), line_frames=8, memory=False)
    return run_bench(bundle, opts)
