"""Fitting the frame gate (edgeproj.runtime.gate) on normal images, and measuring what it rejects.

Every statistic's accepted range is the calibration images' min and max widened by a margin of robust
standard deviations (IQR / 1.349, at least the statistic's floor), measured in log space for
multiplicative quantities. The margin is wide on purpose: the gate is there to stop frames that show no
judgeable part, not to judge parts, and it must not reject new good parts that the thresholds accept.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from edgeproj.errors import ConfigError
from edgeproj.runtime.gate import (
    ASPECT_TOLERANCE,
    MARGIN,
    FrameGate,
    GateResult,
    GateSpec,
    fit_range,
    image_statistics,
    model_statistics,
    statistic_names,
    statistic_of,
)

MARGIN_RANGE = (0.5, 50.0)


def check_gate_options(margin: float, aspect_tolerance: float) -> None:
    """ConfigError for a margin or tolerance out of range (checked before any work)."""
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and MARGIN_RANGE[0] <= margin <= MARGIN_RANGE[1]):
        raise ConfigError(f"the gate margin must be in [{MARGIN_RANGE[0]:g}, {MARGIN_RANGE[1]:g}] robust SDs, got {margin!r}")
    if not (isinstance(aspect_tolerance, (int, float)) and math.isfinite(aspect_tolerance) and 0 <= aspect_tolerance <= 1):
        raise ConfigError(f"the aspect-ratio tolerance must be in [0, 1], got {aspect_tolerance!r}")


def frame_statistics(images: list[np.ndarray], rec_loss0: list[np.ndarray], pre) -> list[dict[str, float]]:
    """Image and model statistics of each normal image (rec_loss0: L_r at x0 of each image's tiles)."""
    return [image_statistics(img, pre) | model_statistics(r) for img, r in zip(images, rec_loss0)]


def fit_gate(
    stats: list[dict[str, float]],
    reference_hw: tuple[int, int],
    channels: int,
    margin: float = MARGIN,
    aspect_tolerance: float = ASPECT_TOLERANCE,
    unseen_rec_max: float | None = None,
) -> GateSpec:
    """The gate from the statistics of the calibration images (all of one size, `reference_hw`).

    Calibration images are usually training images, which the model reconstructs better than new parts:
    `unseen_rec_max`, the largest L_r training measured on patches it held out, raises the upper bound of
    the frame's median L_r to at least that value, so a new good part is not taken for another product.
    """
    check_gate_options(margin, aspect_tolerance)
    if len(stats) < 2:
        raise ConfigError("the frame gate needs at least 2 calibration images")
    ranges = {key: fit_range(statistic_of(key), [s[key] for s in stats], margin) for key in statistic_names(channels)}
    unseen = ""
    if unseen_rec_max is not None and math.isfinite(unseen_rec_max) and unseen_rec_max > (ranges["lr_median"].hi or 0):
        ranges["lr_median"] = replace(ranges["lr_median"], hi=float(unseen_rec_max))
        unseen = f"; the median L_r's upper bound raised to the largest L_r of a patch training held out ({unseen_rec_max:.4g})"
    method = (
        f"min and max over {len(stats)} calibration images, widened by {margin:g} robust SDs (IQR/1.349, at least each "
        "statistic's floor; log scale for contrast, sharpness and L_r); geometry: the calibration images' size, "
        f"aspect ratio within {100 * aspect_tolerance:g}%, at most 2x more enlargement than theirs{unseen}"
    )
    return GateSpec(
        ranges, (int(reference_hw[0]), int(reference_hw[1])), float(aspect_tolerance), float(margin), len(stats), method
    )


def gate_results(gate: FrameGate, stats: list[dict[str, float]]) -> list[GateResult]:
    """What the gate says of images whose statistics were measured (same size as calibration's)."""
    return [GateResult(tuple(gate.check_statistics(s)), s) for s in stats]


def rejection_summary(results: list[GateResult]) -> dict:
    """How many images the gate rejected, and by which check (the most telling one per image)."""
    by = Counter(r.check for r in results if not r.passed)
    return {"images": len(results), "rejected": by.total(), "by_check": dict(sorted(by.items()))}


@dataclass(frozen=True)
class RangeRow:
    """One statistic of the gate as `calibrate` reports it: accepted range, what calibration saw, unit."""

    statistic: str
    label: str
    unit: str
    lo: float | None
    hi: float | None
    seen_min: float
    seen_max: float
    scope: str


def describe_ranges(spec: GateSpec) -> list[RangeRow]:
    """One row per statistic for `calibrate`'s output."""
    rows = []
    for key, r in spec.ranges.items():
        st = statistic_of(key)
        rows.append(RangeRow(key, st.label, st.unit, r.lo, r.hi, r.seen_min, r.seen_max, st.scope))
    return rows
