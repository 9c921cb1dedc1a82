"""What a calibration measured, read once from the manifest's calibration section into dataclasses.

The manifest keeps the section as plain JSON (`Calibration.measured`, `.images`, ...); `CalibrationSummary.of`
is the one place that knows those keys, so `calibrate` prints attributes, not string lookups.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeproj.runtime.gate import GateSpec
from edgeproj.runtime.manifest import Calibration


@dataclass(frozen=True)
class SyntheticThreshold:
    """The image threshold set for a miss rate on synthetic defects."""

    miss_rate: float
    defects: int
    threshold_at_normal_frr_target: float


@dataclass(frozen=True)
class Promise:
    """The false-reject rate of good parts on held-out images, with its 95% upper bound."""

    rejected: int
    images: int
    rate: float
    upper_95: float
    unseen_by_training: int
    unseen_rejected: int
    unseen_upper_95: float


@dataclass(frozen=True)
class HeldOut:
    """The held-out normal images' figures."""

    images: int
    pixel_fpr: float
    image_frr: float
    frr_with_gate: float
    gate_rejected: int
    promise: Promise


@dataclass(frozen=True)
class ScoreChoice:
    """How the image score was chosen: every candidate's AUROC on synthetic defects, or the rule given."""

    chosen: str | None
    before: str | None
    normal_images: int | None
    candidates_auroc: dict[str, float]
    rule: str | None
    defects_per_image: int | None = None
    eligible: tuple[str, ...] = ()  # empty: every candidate (calibrated before the texture check)
    pixel_auroc: dict[str, float] | None = None  # synthetic defects: projection map, fused map (None: not measured)
    warning: str | None = None  # the chosen score hardly separates the synthetic defects (score_choice.separation_warning)


@dataclass(frozen=True)
class Labelled:
    """Figures on a labelled test set, when one was given."""

    pixel_auroc: float
    best_pixel_f1: float
    best_pixel_threshold: float
    best_image_f1: float


@dataclass(frozen=True)
class CalibrationSummary:
    """The thresholds and the figures that back them."""

    rec_loss_threshold: float | None
    pixel_threshold: float | None
    image_threshold: float | None
    calibration_images: int
    pixel_method: str  # what the pixel threshold was set on
    pixel_fpr: float
    image_frr: float
    synthetic: SyntheticThreshold | None
    heldout: HeldOut | None
    score_choice: ScoreChoice | None
    labelled: Labelled | None
    gate: GateSpec | None

    @classmethod
    def of(cls, cal: Calibration, channels: int) -> CalibrationSummary:
        m = cal.measured
        syn = m.get("synthetic")
        heldout = None
        if "holdout_pixel_fpr" in m:
            pr = m["promise"]
            heldout = HeldOut(
                images=cal.images.get("holdout", 0),
                pixel_fpr=m["holdout_pixel_fpr"],
                image_frr=m["holdout_image_frr"],
                frr_with_gate=m["holdout_frr_with_gate"],
                gate_rejected=m["holdout_gate"]["rejected"],
                promise=Promise(
                    pr["rejected"], pr["images"], pr["rate"], pr["upper_95"], pr["unseen_by_training"],
                    pr.get("unseen_rejected", 0), pr.get("unseen_upper_95", float("nan")),
                ),
            )  # fmt: skip
        choice = cal.image_score_choice
        lab = cal.labelled
        return cls(
            rec_loss_threshold=cal.rec_loss_threshold,
            pixel_threshold=cal.pixel_threshold,
            image_threshold=cal.image_threshold,
            calibration_images=cal.images["calibration"],
            pixel_method=cal.method.get("pixel", "quantile of normal-pixel map values"),
            pixel_fpr=m["calibration_pixel_fpr"],
            image_frr=m["calibration_image_frr"],
            synthetic=SyntheticThreshold(syn["miss_rate"], syn["defects"], syn["threshold_at_normal_frr_target"])
            if syn
            else None,
            heldout=heldout,
            score_choice=ScoreChoice(
                choice.get("chosen"),
                choice.get("before"),
                choice.get("normal_images"),
                dict(choice.get("candidates_auroc") or {}),
                choice.get("rule"),
                choice.get("defects_per_image"),
                tuple(choice.get("eligible") or ()),
                choice.get("pixel_auroc"),
                choice.get("warning"),
            )
            if choice
            else None,  # fmt: skip
            labelled=Labelled(
                lab["pixel_auroc"], lab["best_f1_pixel"]["f1"], lab["best_f1_pixel"]["threshold"], lab["best_f1_image"]["f1"]
            )
            if lab is not None
            else None,  # fmt: skip
            gate=GateSpec.from_dict(cal.gate, "this calibration", channels) if cal.gate else None,
        )
