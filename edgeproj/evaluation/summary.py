"""One evaluation result, read once from the report's JSON into dataclasses for whoever prints it.

`evaluation_report` writes plain JSON (results.json, the verb's --json); `EvaluationSummary.of` is the
one place that knows its keys, so `evaluate` prints attributes, not string lookups.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scores:
    """Pixel AUROC, AU-PRO and image AUROC of one method (the baseline or the projection)."""

    pixel_auroc: float
    au_pro: float
    image_auroc: float

    @classmethod
    def of(cls, d: dict) -> Scores:
        return cls(d["pixel_auroc"], d["au_pro"], d["image_auroc"])


@dataclass(frozen=True)
class AtThreshold:
    """Rates at the calibrated image threshold, without and with the frame gate."""

    good_rejected: float
    good_rejected_with_gate: float
    defects_found: float
    defects_found_with_gate: float


@dataclass(frozen=True)
class GateOnTestSet:
    """What the frame gate did on the labelled test images (None fields when the bundle has no gate)."""

    calibrated: bool
    flagged_good: int | None = None
    good: int | None = None
    flagged_defect: int | None = None
    defect: int | None = None
    image_auroc_with_gate: float | None = None
    at_image_threshold: AtThreshold | None = None


@dataclass(frozen=True)
class EvaluationSummary:
    """The headline figures of one (category, variant) evaluation."""

    category: str
    variant: str
    label: str  # the variant as the paper's Table 1 names it
    baseline: Scores
    projection: Scores
    gate: GateOnTestSet | None
    image_score: str | None  # the deployed image score
    image_score_chosen: str | None  # set when calibrate chose it on synthetic defects
    image_score_rule: str | None  # why it was not chosen, when it was not
    pixel_map: dict | None = None  # the deployed pixel map's name, pixel AUROC and AU-PRO (None: older report)
    calibrated_for_evaluation: dict | None = None  # the copy evaluate calibrated when the bundle was not

    @classmethod
    def of(cls, r: dict) -> EvaluationSummary:
        from edgeproj.models.variants import get_variant

        g = r.get("gate")
        gate = None
        if g is not None:
            at = g.get("at_image_threshold")
            gate = GateOnTestSet(
                calibrated=bool(g.get("calibrated")),
                flagged_good=g.get("flagged_good"),
                good=g.get("good"),
                flagged_defect=g.get("flagged_defect"),
                defect=g.get("defect"),
                image_auroc_with_gate=g.get("image_auroc_with_gate"),
                at_image_threshold=AtThreshold(
                    at["good_rejected"], at["good_rejected_with_gate"], at["defects_found"], at["defects_found_with_gate"]
                )
                if at
                else None,  # fmt: skip
            )
        score = r.get("image_score") or {}
        choice = score.get("choice") or {}
        chosen = choice.get("chosen") if choice.get("candidates_auroc") else None
        return cls(
            category=r["category"],
            variant=r["variant"],
            label=get_variant(r["variant"]).label,
            baseline=Scores.of(r["baseline"]),
            projection=Scores.of(r["grad"]),
            gate=gate,
            image_score=score.get("deployed"),
            image_score_chosen=chosen,
            image_score_rule=None if chosen else (choice.get("rule") or "the bundle was not calibrated"),
            pixel_map=r.get("pixel_map"),
            calibrated_for_evaluation=r.get("calibrated_for_evaluation"),
        )
