"""Baseline vs gradient projection on one bundle, with the paper's Table 2 scores and figure 5 study.

Everything runs through the runtime (`Projector` and its runner), the code that is deployed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeproj import contract
from edgeproj.evaluation import studies
from edgeproj.evaluation.studies import ALPHAS, RULES, image_score_candidates, improvement_rates, rule_study
from edgeproj.evaluation.testset import TestSet
from edgeproj.metrics import au_pro, roc_auc
from edgeproj.runtime.gate import FrameGate
from edgeproj.runtime.projector import Projector
from edgeproj.runtime.scoring import MapNorm, dssim_maps, fuses_pixels, image_score, pixel_map, raw_counterpart


@dataclass
class EvalOptions:
    """What to evaluate besides baseline vs grad."""

    study: bool = True
    study_every: int = 5
    study_iterations: int | None = None  # default: the manifest's max iterations
    pro_fpr: float = 0.3
    rule_study: bool = False  # step size x update rule, stop rules on (studies.rule_study)
    alphas: tuple[float, ...] = ALPHAS
    appendix_b: bool = False  # iterations to 95% of the final pixel AUROC, stop rules on and off


def method_metrics(
    ts: TestSet, maps: list[np.ndarray], fpr_limit: float = 0.3, image_score_kind: str = "map_max", norm: MapNorm | None = None
) -> dict:
    """pixel AUROC (exact, all test pixels), AU-PRO to fpr_limit, image AUROC (the deployed image score;
    `norm` the calibrated map statistics a norm_* score needs)."""
    labels = np.concatenate([m.ravel() for m in ts.masks])
    scores = np.concatenate([m.ravel() for m in maps])
    img_scores = np.array([image_score(m, image_score_kind, img, norm) for m, img in zip(maps, ts.images)])
    return {
        "pixel_auroc": roc_auc(labels, scores),
        "au_pro": au_pro(ts.masks, maps, fpr_limit),
        "image_auroc": roc_auc(ts.labels, img_scores),
    }


def gate_figures(proj: Projector, ts: TestSet, rec_loss0: np.ndarray, diverged: np.ndarray, maps: list[np.ndarray]) -> dict:
    """What the frame gate does on a test set: images it flags (good and defective, by check), the AUROCs
    with it applied, and the good-part false-reject and defect recall at the calibrated image threshold
    with and without it (how far calibration's promise carries to new parts)."""
    m = proj.manifest
    gate = FrameGate.of(m)
    per_image = np.split(np.asarray(rec_loss0), np.cumsum(ts.counts)[:-1])
    checks = [gate.check_frame(img).merged(gate.check_model(r)) for img, r in zip(ts.images, per_image)]
    flagged = np.array([not c.passed for c in checks])
    labels = ts.labels
    scores = np.array([proj.score(a, img) for a, img in zip(maps, ts.images)], np.float64)
    finite = scores[np.isfinite(scores)]
    top = (finite.max() if finite.size else 0.0) + 1.0
    gated = np.where(flagged | ~np.isfinite(scores), top, scores)  # a flagged image is rejected outright
    by = Counter(c.check for c in checks if not c.passed)
    out = {
        "calibrated": gate.calibrated,
        "flagged_good": int(np.sum(flagged & ~labels)),
        "flagged_defect": int(np.sum(flagged & labels)),
        "good": int(np.sum(~labels)),
        "defect": int(np.sum(labels)),
        "by_check": dict(by.most_common()),
        "image_auroc": roc_auc(labels, scores),
        "image_auroc_with_gate": roc_auc(labels, gated),
    }
    keep = ~flagged
    if keep.any() and labels[keep].any():
        pix = np.concatenate([a.ravel() for a, k in zip(maps, keep) if k])
        lab = np.concatenate([msk.ravel() for msk, k in zip(ts.masks, keep) if k])
        out["pixel_auroc_on_passed_images"] = roc_auc(lab, pix)
    thr = m.calibration.image_threshold
    if thr is not None:
        # Rejected as the line's verdict rule rejects: not a finite score at or below the threshold, or a
        # diverged tile (FAULT; its map here holds the baseline's instead).
        div = np.array([d.any() for d in np.split(np.asarray(diverged, bool), np.cumsum(ts.counts)[:-1])])
        over = ~(scores <= thr) | div
        good, bad = ~labels, labels
        out["at_image_threshold"] = {
            "threshold": thr,
            "good_rejected": float(np.mean(over[good])) if good.any() else float("nan"),
            "good_rejected_with_gate": float(np.mean((over | flagged)[good])) if good.any() else float("nan"),
            "defects_found": float(np.mean(over[bad])) if bad.any() else float("nan"),
            "defects_found_with_gate": float(np.mean((over | flagged)[bad])) if bad.any() else float("nan"),
            "calibration_promise": (m.calibration.measured or {}).get("promise"),
        }
    return out


def convergence_study(
    proj: Projector, ts: TestSet, iterations: int, every: int, tick: Callable[[int], None] | None = None
) -> dict:
    """Pixel AUROC of DSSIM(x0, x_t) after every `every` iterations, per update rule (paper figure 5).

    Stop rules are off here: each rule runs the full `iterations` so the curves are comparable.
    """
    return studies.curves(proj, ts, iterations, every, stop_rules=False, rules=tuple(RULES), tick=tick)


def evaluate_bundle(proj: Projector, ts: TestSet, opts: EvalOptions, tick: Callable[[int], None] | None = None) -> dict:
    """All figures for one bundle on one test set; also returns the maps for the figures."""
    m = proj.manifest
    res = proj.project_patches(ts.tiles)
    if tick:
        tick(len(ts.tiles))
    w = m.ssim_window
    tile_maps = {
        "baseline": dssim_maps(res.x0, res.recon0, w),
        "grad": dssim_maps(res.x0, res.projection, w),
    }
    div = res.diverged
    tile_maps["grad"][div] = tile_maps["baseline"][div]
    # Table 2 of the paper: single-gradient scores from the gradient graph at x = x0, lambda = 0.
    out = proj.gradient(ts.tiles, ts.tiles, lam=0.0)
    g_abs = np.abs(out[contract.GRAD]).mean(axis=1)
    tile_maps["grad_norm"] = g_abs
    err2 = ((ts.tiles - out[contract.RECON]) ** 2).mean(axis=1)
    tile_maps["grad_x_recon_error"] = g_abs * err2
    tile_maps["recon_squared_error"] = err2  # the plain (x - f(x))^2 baseline of Table 2
    maps = {k: ts.stitch(v) for k, v in tile_maps.items()}
    # The calibrated statistics belong to the projection's maps; the other maps get the same score without them.
    kind = m.projection.image_score
    metrics = {
        k: method_metrics(
            ts, v, opts.pro_fpr, kind if k == "grad" else raw_counterpart(kind), proj.map_norm if k == "grad" else None
        )
        for k, v in maps.items()
    }
    # The line thresholds and draws the pixel map of its image score: fused with the texture check for a
    # *_tex score (scoring.pixel_map). "grad" stays the paper's projection map; this is what the line shows.
    if fuses_pixels(kind, proj.map_norm):
        deployed = [pixel_map(a, kind, img, proj.map_norm) for a, img in zip(maps["grad"], ts.images)]
        labels = np.concatenate([msk.ravel() for msk in ts.masks])
        pixel = {
            "map": "projection fused with the texture check",
            "pixel_auroc": roc_auc(labels, np.concatenate([a.ravel() for a in deployed])),
            "au_pro": au_pro(ts.masks, deployed, opts.pro_fpr),
        }
    else:
        pixel = {"map": "projection", "pixel_auroc": metrics["grad"]["pixel_auroc"], "au_pro": metrics["grad"]["au_pro"]}
    improvement = {
        k: (metrics["grad"][k] - metrics["baseline"][k]) / metrics["baseline"][k] if metrics["baseline"][k] else float("nan")
        for k in ("pixel_auroc", "au_pro", "image_auroc")
    }
    reasons: dict[str, int] = {}
    for r in res.stop_reasons:
        reasons[r] = reasons.get(r, 0) + 1
    out = {
        "variant": m.variant,
        "category": ts.category.name,
        "images": len(ts.images),
        "defect_images": int(ts.labels.sum()),
        "tiles": int(len(ts.tiles)),
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in ts.category.skipped],
        "settings": {
            "alpha": m.projection.alpha,
            "lam": m.projection.lam,
            "max_iterations": m.projection.max_iterations,
            "tuned": m.projection.tuned,
            "tuned_on_step": m.projection.tuned_on_step,
            "map_kind": "dssim_projection",
            "backend": proj.backend,
        },
        "baseline": metrics["baseline"],
        "grad": metrics["grad"],
        "single_gradient": {k: metrics[k] for k in ("grad_norm", "grad_x_recon_error", "recon_squared_error")},
        "improvement_rate": improvement,
        "image_score": {"deployed": kind, "choice": m.calibration.image_score_choice},
        "pixel_map": pixel,
        "image_scores": image_score_candidates(ts, res, maps["grad"], maps["baseline"], proj.map_norm),
        "image_improvement_rates": improvement_rates(ts, maps["baseline"], maps["grad"]),
        "iterations": {"mean": float(res.iterations.mean()), "max": int(res.iterations.max()), "stop_reasons": reasons},
        "gate": gate_figures(proj, ts, res.rec_loss0, res.diverged, maps["grad"]),
    }
    if opts.rule_study:
        out["rule_study"] = rule_study(proj, ts, opts.alphas, opts.pro_fpr, tick)
    if opts.appendix_b:
        iters = opts.study_iterations or m.projection.max_iterations
        out["appendix_b"] = {
            "stop_rules_on": studies.curves(proj, ts, iters, opts.study_every, True, tick=tick),
            "stop_rules_off": studies.curves(proj, ts, iters, opts.study_every, False, tick=tick),
        }
    if opts.study:
        iters = opts.study_iterations or m.projection.max_iterations
        curves = convergence_study(proj, ts, iters, opts.study_every, tick)
        out["convergence"] = curves
        final = {k: v["pixel_auroc"][-1] for k, v in curves.items()}
        # Judged over the whole curve, not its last point: the deployed stop rule ends a projection
        # after a few iterations, so the early part of the curve is where the default operates.
        mean = {k: float(np.mean(v["pixel_auroc"][1:])) for k, v in curves.items()}
        best = max(("tuned_gradient", "tuned_step"), key=lambda k: mean[k])
        out["placement"] = {
            "final_pixel_auroc": final,
            "mean_pixel_auroc": mean,
            "better": best,
            "manifest_default": "tuned_step" if m.projection.tuned_on_step else "tuned_gradient",
        }
    return out, maps
