"""`edgeproj evaluate`: baseline vs gradient projection through the runtime, like the paper."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from edgeproj.cli.common import backend_flags, float_option
from edgeproj.cli.groups import takes

if TYPE_CHECKING:
    from edgeproj.runtime.projector import BackendChoice


@takes(backend_flags(batch=8))
def command(
    targets: list[Path] = typer.Argument(
        ..., help="BUNDLE DATA, or DATA alone with --variants; with --synthetic, DATA is a folder of normal images."
    ),
    category: Optional[str] = typer.Option(
        None, "--category", "-c", help="Category under the MVTec-layout DATA root (not with --synthetic)."
    ),
    synthetic: bool = typer.Option(
        False,
        "--synthetic",
        help="No defect labels needed: inject synthetic defects (foreign patch, scratch, stain, missing material, blur) "
        "into DATA's normal images (the ones training held out when the bundle names them) and evaluate on those.",
    ),
    per_image: int = typer.Option(5, min=1, max=100, help="--synthetic: defects drawn per normal image."),
    synthetic_seed: int = typer.Option(0, min=0, help="--synthetic: seed of the defect generator."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default: report-CATEGORY)."),
    variants: Optional[str] = typer.Option(None, help="'all' or a comma list: train (or reuse) and evaluate these variants."),
    work: Optional[Path] = typer.Option(None, help="Where --variants keeps runs and bundles (default: OUT/work)."),
    steps: int = typer.Option(
        5000, min=1, max=10_000_000, help="Step cap for variants without a run (they stop earlier on the held-out plateau)."
    ),
    lr: float = float_option(1e-4, 1e-8, 1.0, "Training learning rate for variants without a run."),
    resize: Optional[int] = typer.Option(None, min=128, max=8192, help="Texture resize for training new runs (paper: 512)."),
    choice: BackendChoice = None,
    study: bool = typer.Option(True, help="Run the convergence study (paper figure 5) and the placement comparison."),
    study_every: int = typer.Option(5, min=1, max=10_000, help="Iterations between points of the convergence curves."),
    study_iterations: Optional[int] = typer.Option(
        None, min=1, max=10_000, help="Iterations of the convergence curves (default: the manifest's max)."
    ),
    rule_study: bool = typer.Option(
        False, "--rule-study", help="Step size (0.02 to 0.5) x update rule on the deployed projection, stop rules on."
    ),
    appendix_b: bool = typer.Option(
        False, "--appendix-b", help="Iterations to 95% of the final pixel AUROC, stop rules on and off."
    ),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate only the first N test images."),
    calibrate: bool = typer.Option(
        True,
        help="An uncalibrated bundle: evaluate a copy in OUT calibrated on every image of DATA/C/train/good as "
        "`edgeproj calibrate` would (the line's image score, thresholds and frame gate; not with --synthetic). "
        "--no-calibrate: as exported, a quicker look.",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress output (bars on a terminal, timestamped lines otherwise)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON on stdout."),
):
    """Pixel AUROC, AU-PRO and image AUROC of baseline and gradient projection; report folder with PNGs."""
    from edgeproj.cli.output import console, emit_json, progress
    from edgeproj.errors import ConfigError
    from edgeproj.evaluation.evaluate import EvalOptions
    from edgeproj.workstation.reports import ReportOptions, evaluation_report, train_variants

    if synthetic and (variants or category):
        raise ConfigError("--synthetic takes BUNDLE and a folder of normal images; drop --variants and --category")
    if not synthetic and not category:
        raise ConfigError("give --category (the category under the MVTec-layout DATA root), or use --synthetic")
    if variants:
        if len(targets) != 1:
            raise ConfigError("with --variants give only DATA (the bundles are trained and exported under --work)")
        data = targets[0]
    else:
        if len(targets) != 2:
            raise ConfigError("give BUNDLE DATA (or DATA with --variants)")
        bundle, data = targets
    from edgeproj.cli.common import output_dir
    from edgeproj.data.mvtec import load_category, normal_images

    if calibrate and not synthetic:  # FP16 options with a bundle that would be calibrated here: refused first
        from edgeproj.runtime import load_manifest
        from edgeproj.workstation.reports import refuse_fp16_calibration

        if variants or not load_manifest(bundle).calibration.calibrated:
            refuse_fp16_calibration(
                choice, "--variants calibrates the bundles it trains" if variants else f"bundle '{bundle}' is not calibrated"
            )

    if variants:
        from edgeproj.workstation.bundles import parse_variants

        parse_variants(variants)  # an unknown name is an error before any training
    synthetic_info = None
    if synthetic:
        from edgeproj.runtime import load_manifest
        from edgeproj.workstation.synthetic_check import CATEGORY, build_synthetic_set

        manifest = load_manifest(bundle)
        normal_images(data)  # a missing or empty folder is an error before the report folder exists
        category = CATEGORY
        out = output_dir(out or Path("report-synthetic"))
        data = out / "synthetic-data"
        synthetic_info = build_synthetic_set(manifest, targets[1], data, per_image=per_image, seed=synthetic_seed)
    else:
        load_category(data, category, check_images=False)  # an unknown category too
        out = output_dir(out or Path(f"report-{category}"))
    opts = ReportOptions(
        category,
        out,
        choice,
        EvalOptions(
            study=study, study_every=study_every, study_iterations=study_iterations, rule_study=rule_study, appendix_b=appendix_b
        ),
        limit,
        calibrate=calibrate and not synthetic,
    )
    with progress(enabled=not (quiet or json_out)) as prog:
        if variants:
            from edgeproj.workstation.bundles import TrainSettings, parse_variants

            bundles = train_variants(
                data,
                category,
                parse_variants(variants),
                work or out / "work",
                TrainSettings(steps=steps, lr=lr, resize=resize),
                prog,
            )
        else:
            bundles = [bundle]
        results, doc = evaluation_report(bundles, data, opts, prog)
    if synthetic_info is not None:
        import json

        results[0]["synthetic"] = synthetic_info
        (out / "synthetic.json").write_text(json.dumps(synthetic_info, indent=2) + "\n")
    c = console()
    if json_out:
        for r in results:  # stderr: a weak line is said in every mode, as calibrate says it
            if warning := (r.get("calibrated_for_evaluation") or {}).get("warning"):
                c.print(f"warning: {warning}", soft_wrap=True)
        emit_json(results[0] if len(results) == 1 else {"results": results, "placement": doc["placement"]})
        return
    from edgeproj.evaluation.summary import EvaluationSummary

    for r in results:
        _print_summary(c, EvaluationSummary.of(r))
    if synthetic_info is not None:
        c.print(
            f"synthetic defects: {synthetic_info['defects']} on {synthetic_info['normal_images']} "
            f"({', '.join(f'{k} {n}' for k, n in synthetic_info['per_kind'].items())}); written to {data}"
        )
    c.print((out / "table.md").read_text())
    c.print(f"report written to {out}")


def _print_summary(c, s) -> None:
    """Baseline -> projection figures, what the frame gate did, and how the image score was chosen."""
    b, p = s.baseline, s.projection
    c.print(
        f"{s.category} {s.label}: pixel AUROC {b.pixel_auroc:.3f} -> {p.pixel_auroc:.3f}, "
        f"AU-PRO {b.au_pro:.3f} -> {p.au_pro:.3f}, image AUROC {b.image_auroc:.3f} -> {p.image_auroc:.3f}"
    )
    if s.pixel_map and s.pixel_map["map"] != "projection":
        c.print(
            f"  the line's pixel map ({s.pixel_map['map']}): pixel AUROC {s.pixel_map['pixel_auroc']:.3f}, "
            f"AU-PRO {s.pixel_map['au_pro']:.3f}"
        )
    if here := s.calibrated_for_evaluation:
        c.print(
            f"  the bundle was not calibrated: evaluated a copy calibrated on the {here['normal_images']} images of "
            f"{here['folder']} ({here['bundle']}), as `edgeproj calibrate` would deploy it"
        )
        if here.get("warning"):
            c.print(f"  warning: {here['warning']}", soft_wrap=True)
    g = s.gate
    if g and g.calibrated:
        line = (
            f"  frame gate: flagged {g.flagged_good} of {g.good} good and {g.flagged_defect} of {g.defect} "
            f"defective test images; image AUROC with the gate {g.image_auroc_with_gate:.3f}"
        )
        if at := g.at_image_threshold:
            line += (
                f"; at the calibrated threshold good parts rejected {100 * at.good_rejected:.1f}% "
                f"({100 * at.good_rejected_with_gate:.1f}% with the gate), defects found "
                f"{100 * at.defects_found:.1f}% ({100 * at.defects_found_with_gate:.1f}%)"
            )
        c.print(line)
    elif g:
        c.print("  frame gate: none (the bundle was calibrated before it existed; recalibrate to add it)")
    if s.image_score_chosen is None and s.calibrated_for_evaluation:  # calibrate ran and could not choose
        c.print(f"  image score {s.image_score}: not chosen for this line ({s.image_score_rule})")
    elif s.image_score_chosen is None:
        c.print(
            f"  image score {s.image_score}: not chosen for this line ({s.image_score_rule}); `edgeproj calibrate` "
            "chooses it on the normal images"
        )
    else:
        c.print(f"  image score {s.image_score_chosen}, chosen by calibrate on synthetic defects")
