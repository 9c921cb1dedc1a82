"""Evaluation reports: bundles (given, or trained per variant) -> figures, results.json and table.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeproj.evaluation.evaluate import EvalOptions
from edgeproj.evaluation.studies import RULES
from edgeproj.progress import NullProgress, Progress
from edgeproj.runtime.manifest import Manifest
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
            b, calibrated_here = calibrated_copy(Path(b), m, data, opts, progress)
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
COPY_MARKER = "evaluate-copy.json"  # what evaluate wrote: a later evaluation may replace only such a folder


def refuse_fp16_calibration(choice: BackendChoice, what: str) -> None:
    """ConfigError when an uncalibrated bundle would be calibrated for evaluation under FP16 options."""
    from edgeproj.errors import ConfigError

    if getattr(choice.options, "fp16", False) or choice.force_fp16:
        raise ConfigError(
            f"{what} and calibration measures in FP32: drop --fp16/--force-fp16, calibrate the bundle first "
            "(`edgeproj calibrate`), or evaluate it as exported with --no-calibrate"
        )


def calibrated_copy(bundle: Path, manifest: Manifest, data: Path, opts: ReportOptions, progress: Progress) -> tuple[Path, dict]:
    """Copy an uncalibrated bundle (its manifest and graphs; `manifest` as the caller loaded it) into the report
    folder and calibrate the copy as `edgeproj calibrate BUNDLE DATA/C` would with the same backend flags;
    returns the copy and what was done.

    Without it an evaluation would measure a line nobody can deploy (`inspect` refuses an uncalibrated
    bundle): the export's placeholder image score instead of the one chosen for this line, no stop
    threshold, no frame gate. The given bundle is left as it is; a folder in the copy's place is replaced
    only when it is an earlier evaluation's copy that nobody changed since."""
    import json
    import os
    import shutil

    from edgeproj.calibration.calibrate import CalibrationOptions, calibrate_bundle
    from edgeproj.data.mvtec import load_category
    from edgeproj.errors import ConfigError, EdgeprojError
    from edgeproj.files import sha256_file
    from edgeproj.runtime.manifest import MANIFEST

    choice = opts.choice
    refuse_fp16_calibration(choice, f"bundle '{bundle}' is not calibrated")
    normal = load_category(data, opts.category, check_images=False).train
    files = [MANIFEST] + [g.file for g in manifest.graphs.values()]  # plain names inside the bundle (load_manifest)
    dest = opts.out / f"{CALIBRATED_PREFIX}{bundle.resolve().name}"
    if dest.resolve() == bundle.resolve() or dest.resolve() in bundle.resolve().parents:
        raise ConfigError(f"the calibrated copy {dest} would replace bundle '{bundle}'; choose another --out")
    if dest.exists() or dest.is_symlink():
        if not _evaluate_wrote(dest, files):
            raise ConfigError(
                f"{dest} exists and is not an unchanged copy evaluate wrote; move it, choose another --out, "
                "or pass --no-calibrate"
            )
        shutil.rmtree(dest)
    partial = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True)
    done = False
    try:
        for f in files:  # the files alone, without their permissions: a read-only bundle gives a writable copy
            shutil.copyfile(bundle / f, partial / f)
        cal = calibrate_bundle(
            partial, normal, CalibrationOptions(backend=choice.backend, options=choice.options, batch=choice.batch),
            progress=progress,
        )  # fmt: skip
        done = True
    except EdgeprojError as exc:
        raise type(exc)(
            f"evaluate calibrates an uncalibrated bundle on {data / opts.category / 'train' / 'good'} first: {exc} "
            "(or evaluate it as exported with --no-calibrate)"
        ) from None
    finally:
        if not done:  # a failed copy or calibration leaves nothing behind
            shutil.rmtree(partial, ignore_errors=True)
    marker = {"from": str(bundle), "manifest_sha256": sha256_file(partial / MANIFEST)}
    (partial / COPY_MARKER).write_text(json.dumps(marker) + "\n")
    partial.rename(dest)
    return dest, {
        "from": str(bundle),
        "bundle": str(dest),
        "normal_images": len(normal),
        "folder": str(Path(data) / opts.category / "train" / "good"),
        "warning": cal.image_score_choice.get("warning"),
    }


def _evaluate_wrote(folder: Path, files: list[str]) -> bool:
    """Whether `folder` is a copy evaluate wrote and nobody changed since: its marker, its manifest as
    calibrated then, and no file beyond the bundle's own."""
    import json

    from edgeproj.files import sha256_file
    from edgeproj.runtime.manifest import MANIFEST

    if folder.is_symlink() or not folder.is_dir():
        return False
    try:
        marker = json.loads((folder / COPY_MARKER).read_text())
        digest = sha256_file(folder / MANIFEST)
        names = {p.name for p in folder.iterdir()}
    except (OSError, ValueError):
        return False
    same = isinstance(marker, dict) and marker.get("manifest_sha256") == digest
    return same and names <= set(files) | {COPY_MARKER}


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
