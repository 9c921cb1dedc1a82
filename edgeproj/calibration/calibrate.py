"""Calibration from normal images through the runtime (no torch): stop, pixel and image thresholds.

The thresholds go into the manifest's `calibration` section (and the L_r stop threshold into
`projection.stop`), outside the graphs, so recalibrating never needs a re-export. The manifest is
rewritten atomically: a calibration killed half-way leaves the previous manifest intact.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeproj import __version__
from edgeproj.calibration.gate import check_gate_options, fit_gate, frame_statistics, gate_results, rejection_summary
from edgeproj.calibration.score_choice import (
    CHOICE_PER_IMAGE,
    MIN_PAIRS,
    RULE,
    TEXTURE_RULE,
    candidate_figures,
    choose,
    eligible,
    kept,
    pixel_figures,
    separation_warning,
    synthetic_defects,
)
from edgeproj.calibration.thresholds import (
    best_f1,
    binomial_upper_bound,
    exceed_rate,
    miss_rate_threshold,
    quantile_threshold,
    stop_threshold,
)
from edgeproj.data.images import read_image
from edgeproj.errors import DataError
from edgeproj.metrics import roc_auc
from edgeproj.preprocess import to_patches
from edgeproj.runtime.gate import ASPECT_TOLERANCE, MARGIN, FrameGate
from edgeproj.runtime.manifest import IMAGE_SCORES, Calibration, check_writable, load_manifest, write_manifest
from edgeproj.runtime.projector import ImageResult, Projector
from edgeproj.runtime.scoring import MapNorm, fuses_pixels, image_score, raw_counterpart, score_and_pixel_map

FP16_MAX_AUROC_DROP = 0.005
# Fewer normal images than this cannot set an image threshold worth trusting (nor hold any out).
MIN_NORMAL_IMAGES = 3
STOP_RULES = ("min", "quantile")
# What the pixel threshold is set on (scoring.pixel_map): the projection map, or for a *_tex score this one.
FUSED_PIXEL_MAP = (
    "projection map fused with the texture check (the larger of the border-normalized map and the standardized |z| map)"
)


@dataclass
class CalibrationOptions:
    """Targets of a calibration."""

    stop_rule: str = "min"  # min (paper) or quantile
    stop_quantile: float = 0.0
    pixel_fpr: float = 0.01  # target per-pixel false-positive rate on normal images
    image_frr: float = 0.01  # target false-reject rate of normal images
    holdout: float = 0.25  # fraction of normal images kept aside to measure the rates reached
    # Set the image threshold for this miss rate on synthetic defects drawn on the normal images instead of
    # the false-reject target (None: false-reject target).
    synthetic_miss_rate: float | None = None
    synthetic_per_image: int = 2
    backend: str = "ort-cpu"
    batch: int = 8
    options: object = None  # the backend's options dataclass (None: its defaults)
    force_fp16: bool = False
    seed: int = 0
    gate_margin: float = MARGIN  # robust SDs beyond the calibrated min and max of each gate statistic
    image_score: str = "auto"  # auto: chosen on synthetic defects (score_choice); or one of IMAGE_SCORES
    choice_per_image: int = CHOICE_PER_IMAGE  # synthetic defects per held-out image for the choice
    aspect_tolerance: float = ASPECT_TOLERANCE

    def __post_init__(self):
        from edgeproj.errors import ConfigError

        check_gate_options(self.gate_margin, self.aspect_tolerance)
        if not (isinstance(self.choice_per_image, int) and 1 <= self.choice_per_image <= 64):
            raise ConfigError(f"synthetic defects per held-out image must be in [1, 64], got {self.choice_per_image!r}")
        if self.image_score != "auto" and self.image_score not in IMAGE_SCORES:
            raise ConfigError(f"unknown image score '{self.image_score}'; use auto or one of {', '.join(IMAGE_SCORES)}")
        if self.stop_rule not in STOP_RULES:
            raise ConfigError(f"unknown stop rule '{self.stop_rule}'; use one of {', '.join(STOP_RULES)}")
        for name, v, lo, hi in (
            ("stop quantile", self.stop_quantile, 0.0, 1.0),
            ("pixel false-positive rate", self.pixel_fpr, 0.0, 0.5),
            ("image false-reject rate", self.image_frr, 0.0, 0.5),
            ("hold-out fraction", self.holdout, 0.0, 0.9),
            ("synthetic miss rate", 0.0 if self.synthetic_miss_rate is None else self.synthetic_miss_rate, 0.0, 0.5),
        ):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise ConfigError(f"{name} must be in [{lo}, {hi}], got {v!r}")


def _hash_list(paths: list[Path]) -> str:
    """Identifies the image set by file names and sizes (cheap on a device; not a content hash)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).name.encode() + b"\0" + str(Path(p).stat().st_size).encode() + b"\0")
    return h.hexdigest()


def load_normal(paths: list[Path], channels: int) -> list[np.ndarray]:
    """Read normal images; all must share one size (a line camera's), else a DataError names the odd one."""
    if not paths:
        raise DataError("no normal images to calibrate on; pass a folder of good images")
    if len(paths) < MIN_NORMAL_IMAGES:
        raise DataError(f"calibration needs at least {MIN_NORMAL_IMAGES} normal images, got {len(paths)}; add good images")
    images, first = [], None
    for p in paths:
        img = read_image(p, channels=channels)  # refuses NaN, infinite and out-of-range samples, naming the file
        if first is None:
            first = (img.shape[:2], p)
        elif img.shape[:2] != first[0]:
            raise DataError(
                f"'{p}' is {img.shape[1]}x{img.shape[0]} but '{first[1]}' is {first[0][1]}x{first[0][0]}: "
                "calibrate on images of one size, as the camera delivers them"
            )
        images.append(img)
    return images


def _require_finite(values: np.ndarray, what: str, paths: list[Path]) -> None:
    """DataError naming the first image whose figure is not finite: a NaN would make every threshold NaN."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(values, np.float64)))
    if bad.size:
        i = int(bad[0])
        name = paths[i] if len(values) == len(paths) else f"one of {len(paths)} images (patch {i})"
        raise DataError(
            f"the {what} of normal image {name} is not finite (the projection diverged); "
            "calibration refuses it: check the image and the bundle"
        )


def _maps(proj: Projector, images: list[np.ndarray], threshold: float) -> tuple[list[np.ndarray], np.ndarray, list[ImageResult]]:
    res = proj.project(images, settings=proj.settings(rec_loss_threshold=threshold))
    return [r.projection_map for r in res], np.array([r.score for r in res]), res


def _scores_and_pixels(maps: list[np.ndarray], imgs: list[np.ndarray], kind: str, norm: MapNorm) -> tuple[np.ndarray, np.ndarray]:
    """Image scores `kind` of projection maps and the pixel values of the map the line thresholds for them,
    as the Projector computes them (scoring.score_and_pixel_map: each frame's |z| map measured once)."""
    pairs = [score_and_pixel_map(m, kind, img, norm) for m, img in zip(maps, imgs)]
    return np.array([s for s, _ in pairs], np.float64), np.concatenate([p.ravel() for _, p in pairs])


def _holdout_order(paths: list[Path], unseen: set[str], rng: np.random.Generator) -> list[int]:
    """A seeded order of the images with those training never saw first: the hold-out then measures the
    false-reject rate on new parts, not on parts the model learned (which score optimistically low)."""
    order = [int(i) for i in rng.permutation(len(paths))]
    return [i for i in order if paths[i].name in unseen] + [i for i in order if paths[i].name not in unseen]


def promise(rejected: np.ndarray, unseen: np.ndarray) -> dict:
    """What a calibration can honestly promise about new good parts: the false-reject rate seen on the
    held-out images and its one-sided 95% upper bound (Clopper-Pearson), over all of them and over those
    training never saw (the fairest stand-in for new parts)."""
    rejected, unseen = np.asarray(rejected, bool), np.asarray(unseen, bool)
    k, n, ku, nu = int(rejected.sum()), rejected.size, int(rejected[unseen].sum()), int(unseen.sum())
    return {
        "rejected": k,
        "images": n,
        "rate": k / n if n else float("nan"),
        "upper_95": binomial_upper_bound(k, n),
        "unseen_by_training": nu,
        "unseen_rejected": ku,
        "unseen_upper_95": binomial_upper_bound(ku, nu) if nu else None,  # None, not NaN: the manifest is strict JSON
    }


def statistics_free(manifest):
    """The manifest without the normal statistics calibration is about to measure again, scoring with the
    projection-only raw map: the old statistics may be missing or malformed (the very reason to
    recalibrate), and nothing else changes (stop threshold, precision verdict, projection settings)."""
    projection = replace(manifest.projection, image_score=raw_counterpart(manifest.projection.image_score))
    return replace(manifest, calibration=replace(manifest.calibration, map_norm={}), projection=projection)


def calibrate_bundle(
    bundle: Path, normal_paths: list[Path], opts: CalibrationOptions, labelled=None, precision: dict | None = None, progress=None
) -> Calibration:
    """Calibrate `bundle` on normal images (and optionally a labelled TestSet); returns the section written.

    `progress` (edgeproj.progress.Progress) counts the images projected, phase by phase.
    """
    from edgeproj.progress import NullProgress

    progress = progress or NullProgress()
    manifest = load_manifest(bundle)
    paths = sorted(Path(p) for p in normal_paths)
    images = load_normal(paths, manifest.channels)
    rng = np.random.default_rng(opts.seed)
    unseen = set((manifest.training.get("data") or {}).get("held_out") or [])
    order = _holdout_order(paths, unseen, rng)
    n_hold = int(round(opts.holdout * len(images))) if len(images) >= 4 else 0
    hold_idx, cal_idx = sorted(order[:n_hold]), sorted(order[n_hold:])
    hold_unseen = np.array([paths[i].name in unseen for i in hold_idx], bool)
    cal = [images[i] for i in cal_idx]
    hold = [images[i] for i in hold_idx]
    check_writable(Path(bundle), "bundle")
    n_lab = len(labelled.images) if labelled is not None else 0
    defects = _synthetic_defects(images, opts) if opts.synthetic_miss_rate is not None else []
    n_choice = len(hold) * opts.choice_per_image if opts.image_score == "auto" and len(hold) >= MIN_PAIRS else 0
    task = progress.add_task("calibrate", total=2 * len(cal) + len(hold) + n_choice + n_lab + len(defects), info="L_r at x0")
    fresh = statistics_free(manifest)
    with Projector(fresh, backend=opts.backend, options=opts.options, batch=opts.batch, force_fp16=opts.force_fp16) as proj:
        stop_check = proj.stop_check
        cal_tiles = [to_patches(img, manifest.preprocess)[0] for img in cal]
        rec = proj.rec_losses(np.concatenate(cal_tiles))
        progress.update(task, advance=len(cal), info="maps of the calibration images")
        _require_finite(rec, "L_r at x0", [paths[i] for i in cal_idx])
        stop = stop_threshold(rec, opts.stop_rule, opts.stop_quantile)
        cal_maps, cal_scores, _ = _maps(proj, cal, stop)
        _require_finite(cal_scores, "anomaly map", [paths[i] for i in cal_idx])
        cal_rec = np.split(rec, np.cumsum([len(t) for t in cal_tiles])[:-1])
        spec = fit_gate(
            frame_statistics(cal, cal_rec, manifest.preprocess), cal[0].shape[:2], manifest.channels,
            opts.gate_margin, opts.aspect_tolerance, ((manifest.training.get("heldout") or {}).get("stop") or {}).get("max"),
        )  # fmt: skip
        gate = FrameGate(manifest.preprocess, spec)
        progress.update(task, advance=len(cal), info="held-out images")
        norm = MapNorm.fit(cal_maps, cal)
        hold_maps, hold_res = [], []
        if hold:
            hold_maps, _, hold_res = _maps(proj, hold, stop)
            progress.update(task, advance=len(hold), info="synthetic defects on the held-out images")
        kind, choice = _choose_score(proj, manifest.projection.image_score, opts, hold, hold_maps, stop, norm)
        progress.update(task, advance=n_choice, info="labelled set")

        def scores(maps: list[np.ndarray], imgs: list[np.ndarray]) -> np.ndarray:
            return np.array([image_score(m, kind, img, norm) for m, img in zip(maps, imgs)], np.float64)

        cal_scores, cal_pixels = _scores_and_pixels(cal_maps, cal, kind, norm)
        _require_finite(cal_scores, "image score", [paths[i] for i in cal_idx])
        _require_finite(cal_pixels, "pixel map", [paths[i] for i in cal_idx])
        pixel_thr = quantile_threshold(cal_pixels, opts.pixel_fpr)
        image_thr = quantile_threshold(cal_scores, opts.image_frr)
        image_method = f"quantile of normal image scores ({kind})"
        synthetic = None
        if defects:
            defect_scores = scores(_maps(proj, [d.image for d in defects], stop)[0], [d.image for d in defects])
            _require_finite(defect_scores, "anomaly map of a synthetic defect", paths)
            progress.update(task, advance=len(defects), info="labelled set")
            image_thr = miss_rate_threshold(defect_scores, opts.synthetic_miss_rate)
            image_method = (
                f"synthetic defects: miss rate <= {opts.synthetic_miss_rate:g} over {len(defects)} defects drawn on the "
                f"normal images ({kind})"
            )
            synthetic = {
                "defects": len(defects),
                "per_kind": {k: sum(d.kind == k for d in defects) for k in sorted({d.kind for d in defects})},
                "miss_rate": float(np.mean(defect_scores <= image_thr)),
                "threshold_at_normal_frr_target": quantile_threshold(cal_scores, opts.image_frr),
            }
        measured = {
            "calibration_pixel_fpr": exceed_rate(cal_pixels, pixel_thr),
            "calibration_image_frr": exceed_rate(cal_scores, image_thr),
        }
        if hold:
            hold_scores, hold_pixels = _scores_and_pixels(hold_maps, hold, kind, norm)
            _require_finite(hold_scores, "anomaly map", [paths[i] for i in hold_idx])
            gated = gate_results(gate, frame_statistics(hold, [r.rec_loss0 for r in hold_res], manifest.preprocess))
            over = hold_scores > image_thr
            blocked = np.array([not g.passed for g in gated])
            measured |= {
                "holdout_pixel_fpr": exceed_rate(hold_pixels, pixel_thr),
                "holdout_image_frr": exceed_rate(hold_scores, image_thr),
                "holdout_gate": rejection_summary(gated),
                "holdout_frr_with_gate": float(np.mean(over | blocked)),
                # The figure to quote to the line: held-out good parts rejected (threshold or gate), with its bound.
                "promise": promise(over | blocked, hold_unseen),
            }
        if synthetic is not None:
            measured["synthetic"] = synthetic
        lab = _labelled_figures(proj, labelled, stop, pixel_thr, image_thr, kind, norm) if labelled is not None else None
        progress.update(task, advance=n_lab, info="")
    if precision and not isinstance(precision.get("fp16"), dict) and manifest.calibration.fp16 is not None:
        # "FP16 unavailable" on this device (TensorRT 11) must not erase a verdict measured on another one.
        prec = manifest.calibration.precision | {"fp16_here": precision.get("fp16")}
    elif precision:
        prec = precision
    elif manifest.calibration.fp16 is not None:
        # A measured FP16 verdict stays until it is measured again; recalibrating must not re-enable FP16.
        prec = manifest.calibration.precision
    else:
        prec = {
            "fp32": "reference",
            "fp16": "not measured: run `edgeproj calibrate --precision-check` on a machine with TensorRT",
            "int8": (
                "not offered: TensorRT 11 removed the implicit INT8 calibrators, and explicit Q/DQ on a graph "
                "whose output is a gradient needs per-layer range study of the backward pass; FP32/FP16 only"
            ),
        }
    calibration = Calibration(
        rec_loss_threshold=stop,
        pixel_threshold=pixel_thr,
        image_threshold=image_thr,
        method={
            "stop": opts.stop_rule if opts.stop_rule == "min" else f"quantile {opts.stop_quantile}",
            "pixel": f"quantile of normal-pixel values of the {FUSED_PIXEL_MAP if fuses_pixels(kind, norm) else 'projection map'}",
            "image": image_method,
            "backend": opts.backend,
            "stop_check": stop_check,
        },
        targets={"pixel_fpr": opts.pixel_fpr, "image_frr": opts.image_frr}
        | ({"synthetic_miss_rate": opts.synthetic_miss_rate} if defects else {}),
        images={
            "calibration": len(cal),
            "holdout": len(hold),
            "holdout_unseen_by_training": int(hold_unseen.sum()),
            "list_sha256": _hash_list(paths),
        },  # fmt: skip
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        edgeproj_version=__version__,
        rec_loss_at_x0={"min": float(rec.min()), "median": float(np.median(rec)), "max": float(rec.max())},
        measured=measured,
        labelled=lab,
        precision=prec,
        gate=spec.to_dict(),
        map_norm=norm.to_dict(),
        image_score_choice=choice,
    )
    write_manifest(manifest.with_calibration(calibration, image_score=kind))
    return calibration


def _choose_score(
    proj: Projector, current: str, opts: CalibrationOptions, hold, hold_maps, stop: float, norm: MapNorm
) -> tuple[str, dict]:
    """The image score for this line and how it was chosen (score_choice.RULE), or the user's --image-score."""
    if opts.image_score != "auto":
        return opts.image_score, {"chosen": opts.image_score, "rule": "set by the user (--image-score)"}
    mode = proj.manifest.preprocess.mode
    keep = kept(current, mode)
    kept_text = "the bundle's score kept" + (f", with the texture check ({keep})" if keep != current else "")
    if len(hold) < MIN_PAIRS:
        return keep, {
            "chosen": keep,
            "rule": f"not chosen: {len(hold)} held-out images, at least {MIN_PAIRS} are needed; {kept_text}",
        }
    drawn = synthetic_defects(hold, opts.seed, opts.choice_per_image)
    shown = len({i for i, _ in drawn})
    if shown < MIN_PAIRS:
        return keep, {
            "chosen": keep,
            "rule": f"not chosen: synthetic defects could be drawn on {shown} of {len(hold)} held-out images "
            f"(flat or saturated images), at least {MIN_PAIRS} are needed; {kept_text}",
        }
    defects = [d for _, d in drawn]
    defect_images = [d.image for d in defects]
    defect_maps = _maps(proj, defect_images, stop)[0]
    figures = candidate_figures(hold_maps, hold, defect_maps, defect_images, norm)
    candidates = eligible(mode)
    if not any(np.isfinite(figures[k]) for k in candidates):
        raise DataError("every candidate image score was NaN on the synthetic defects (a projection diverged); check the bundle")
    kind = choose(figures, candidates)
    warning = separation_warning(kind, figures[kind])
    return kind, {
        "chosen": kind,
        "rule": RULE + ("; " + TEXTURE_RULE if candidates != IMAGE_SCORES else ""),
        "candidates_auroc": figures,
        "eligible": list(candidates),
        "normal_images": len(hold),
        "defects_per_image": opts.choice_per_image,
        "synthetic_defects": {k: sum(d.kind == k for d in defects) for k in sorted({d.kind for d in defects})},
        "pixel_auroc": pixel_figures(defect_maps, defects, norm),
        "before": current,
    } | ({"warning": warning} if warning else {})


def _synthetic_defects(images: list[np.ndarray], opts: CalibrationOptions) -> list:
    """Synthetic defects on every normal image (their clean versions set the false-reject rate): the image
    score choice's draw (a kind an image cannot show gives way to the next)."""
    defects = [d for _, d in synthetic_defects(images, opts.seed, opts.synthetic_per_image)]
    if len(defects) < MIN_PAIRS:
        raise DataError(
            f"--synthetic-miss-rate: synthetic defects could be drawn {len(defects)} times on the normal images "
            f"(flat or saturated images), at least {MIN_PAIRS} are needed to set a threshold; set it from the "
            "normal images instead (leave the option out)"
        )
    return defects


def _labelled_figures(proj: Projector, ts, stop: float, pixel_thr: float, image_thr: float, kind: str, norm: MapNorm) -> dict:
    """Best-F1 thresholds on a labelled MVTec-layout test set, and what the normal-data thresholds give there."""
    res = proj.project(ts.images, settings=proj.settings(rec_loss_threshold=stop))
    labels = np.concatenate([m.ravel() for m in ts.masks])
    img_scores, scores = _scores_and_pixels([r.projection_map for r in res], ts.images, kind, norm)
    pix = best_f1(labels, scores)
    img = best_f1(ts.labels, img_scores)
    pred = scores > pixel_thr
    tp = float(np.sum(pred & labels))
    return {
        "images": len(ts.images),
        "pixel_auroc": roc_auc(labels, scores),
        "image_auroc": roc_auc(ts.labels, img_scores),
        "best_f1_pixel": pix,
        "best_f1_image": img,
        "at_calibrated_thresholds": {
            "pixel_precision": tp / max(1.0, float(pred.sum())),
            "pixel_recall": tp / max(1.0, float(labels.sum())),
            "image_recall": float(np.mean(img_scores[ts.labels] > image_thr)) if ts.labels.any() else float("nan"),
            "image_false_reject": float(np.mean(img_scores[~ts.labels] > image_thr)) if (~ts.labels).any() else float("nan"),
        },
    }
