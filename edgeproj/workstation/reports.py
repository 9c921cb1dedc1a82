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
        ts = load_testset(data, opts.category, m.preprocess, opts.limit)
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
        results.append(res)
    return results, figures


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
