"""Evaluation reports: bundles (given, or trained per variant) -> figures, results.json and table.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeproj.evaluation.evaluate import EvalOptions
from edgeproj.evaluation.studies import RULES
from edgeproj.progress import NullProgress, Progress
from edgeproj.runtime.projector import BackendChoice
from edgeproj.workstation.bundles import TrainSettings


@dataclass
class ReportOptions:
    """What an evaluation report runs and how."""

    category: str
    out: Path
    choice: BackendChoice = field(default_factory=BackendChoice)
    evaluation: EvalOptions = field(default_factory=EvalOptions)
    limit: int | None = None  # evaluate only the first N test images
    figure_limit: int = 6  # Fig. 3 rows per bundle
    # An uncalibrated bundle: evaluate a copy calibrated on the category's good training images (the
    # line's image score, thresholds, stop threshold and gate) instead of the export's placeholders.
    calibrate: bool = False


def evaluate_bundles(
    bundles: list[Path], data: Path, opts: ReportOptions, progress: Progress | None = None
) -> tuple[list[dict], dict]:
    """Evaluate each bundle on the category's test set through the runtime; writes the per-bundle figures.

    Returns the result dicts and the figure paths by tag; `write_report` assembles the report folder.
    """
    from edgeproj.evaluation.evaluate import evaluate_bundle
    from edgeproj.evaluation.report import figure3, plot_roc
    from edgeproj.evaluation.testset import load_testset
    from edgeproj.models.variants import get_variant
    from edgeproj.runtime import load_manifest

    progress = progress or NullProgress()
    results, figures = [], {}
    for b in bundles:
        m = load_manifest(b)
        variant = get_variant(m.variant)  # a variant this edgeproj does not know fails here, before the evaluation
        ts = load_testset(data, opts.category, m.preprocess, opts.limit)  # a test set it cannot use fails first
        calibrated_here = None
        if opts.calibrate and not m.calibration.calibrated:
            b, calibrated_here = calibrated_copy(Path(b), data, opts, progress)
            m = load_manifest(b)
        e = opts.evaluation
        total = len(ts.tiles) * (1 + 3 * e.study + len(RULES) * len(e.alphas) * e.rule_study + 4 * e.appendix_b)
        task = progress.add_task(f"evaluate {opts.category}/{m.variant}", total=total, info=f"{len(ts.images)} images")
        with opts.choice.projector(m) as proj:
            res, maps = evaluate_bundle(proj, ts, opts.evaluation, tick=lambda n, t=task: progress.update(t, advance=n))
        if variant.vae and Path(m.training.get("run", "")).is_dir():
            from edgeproj.evaluation.evaluate import method_metrics
            from edgeproj.workstation.kl_gradient import kl_gradient_maps

            maps["kl_gradient"] = ts.stitch(kl_gradient_maps(Path(m.training["run"]), ts.tiles))
            res["single_gradient"]["kl_gradient"] = method_metrics(ts, maps["kl_gradient"], opts.evaluation.pro_fpr)
        opts.out.mkdir(parents=True, exist_ok=True)
        tag = f"{opts.category}_{m.variant}"
        figures[tag] = figure3(ts, maps, opts.out, tag, limit=opts.figure_limit)
        roc = plot_roc(ts, {k: maps[k] for k in ("baseline", "grad", "grad_norm")}, res, opts.out / f"roc_{tag}.png")
        if roc:
            figures[tag].append(roc)
        res["bundle"] = str(b)
        res["calibrated_for_evaluation"] = calibrated_here
        results.append(res)
    return results, figures


CALIBRATED_PREFIX = "calibrated-"


def refuse_fp16_calibration(choice: BackendChoice, what: str) -> None:
    """ConfigError when an uncalibrated bundle would be calibrated for evaluation under FP16 options."""
    from edgeproj.errors import ConfigError

    if getattr(choice.options, "fp16", False) or choice.force_fp16:
        raise ConfigError(
            f"{what} is not calibrated and calibration measures in FP32: run `edgeproj calibrate` on it "
            "first, or evaluate it as exported with --no-calibrate"
        )


def calibrated_copy(bundle: Path, data: Path, opts: ReportOptions, progress: Progress) -> tuple[Path, dict]:
    """Copy an uncalibrated bundle into the report folder and calibrate the copy as `edgeproj calibrate`
    would, with its defaults, on the category's good training images; returns the copy and what was done.

    Without it an evaluation would measure a line nobody can deploy (`inspect` refuses an uncalibrated
    bundle): the export's placeholder image score instead of the one chosen for this line, no stop
    threshold, no frame gate. The given bundle is left as it is."""
    import shutil

    from edgeproj.calibration.calibrate import CalibrationOptions, calibrate_bundle
    from edgeproj.data.mvtec import load_category
    from edgeproj.errors import ConfigError

    choice = opts.choice
    refuse_fp16_calibration(choice, f"bundle '{bundle}'")
    normal = load_category(data, opts.category, check_images=False).train
    dest = opts.out / f"{CALIBRATED_PREFIX}{bundle.resolve().name}"
    if dest.resolve() == bundle.resolve() or dest.resolve() in bundle.resolve().parents:
        raise ConfigError(f"the calibrated copy {dest} would replace bundle '{bundle}'; choose another --out")
    if dest.exists():
        if not _copy_of(dest, bundle):
            raise ConfigError(f"{dest} exists and is not a copy of bundle '{bundle}'; move it or choose another --out")
        shutil.rmtree(dest)  # an earlier evaluation's copy of the same graphs: calibrated afresh
    opts.out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(bundle, dest)
    cal = calibrate_bundle(
        dest, normal, CalibrationOptions(backend=choice.backend, options=choice.options, batch=choice.batch), progress=progress
    )
    return dest, {
        "from": str(bundle),
        "bundle": str(dest),
        "normal_images": len(normal),
        "folder": str(Path(data) / opts.category / "train" / "good"),
        "warning": cal.image_score_choice.get("warning"),
    }


def _copy_of(folder: Path, bundle: Path) -> bool:
    """Whether `folder` holds a bundle with the same graphs (by checksum) as `bundle`."""
    from edgeproj.errors import EdgeprojError
    from edgeproj.runtime import load_manifest

    try:
        mine, theirs = load_manifest(folder), load_manifest(bundle)
    except EdgeprojError:
        return False
    return {k: g.sha256 for k, g in mine.graphs.items()} == {k: g.sha256 for k, g in theirs.graphs.items()}


def train_variants(
    data: Path,
    category: str,
    variants: list[str],
    work: Path,
    settings: TrainSettings,
    progress: Progress | None = None,
    export_parity_steps: int = 50,
) -> list[Path]:
    """A bundle per variant under `work`, training and exporting only what is missing."""
    from edgeproj.workstation.bundles import ensure_bundle

    progress = progress or NullProgress()
    bundles = []
    for v in variants:
        task = progress.add_task(f"train/export {category}/{v}", total=settings.steps, info="")
        b, _ = ensure_bundle(
            data,
            category,
            v,
            work,
            settings,
            export_parity_steps=export_parity_steps,
            on_step=lambda s, loss, t=task: progress.update(t, completed=s, info=f"loss {loss:.4g}"),
            progress=progress,
        )
        progress.update(task, completed=settings.steps, info="exported")
        bundles.append(b)
    return bundles


def evaluation_report(
    bundles: list[Path], data: Path, opts: ReportOptions, progress: Progress | None = None
) -> tuple[list[dict], dict]:
    """Evaluate bundles and write the whole report folder; returns the results and the report document."""
    from edgeproj.evaluation.report import write_report

    results, figures = evaluate_bundles(bundles, data, opts, progress)
    return results, write_report(opts.out, results, figures)
