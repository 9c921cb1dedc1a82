"""The part verdict: OK, NG or FAULT. FAULT is a reject that says the judgement itself failed.

The one rule of an inspection tool: a defective part must never come out OK. So OK is not "not NG":
a part is OK only when the frame passed the frame gate (it looks like the good parts calibration saw,
edgeproj.runtime.gate), its score and the threshold are both finite numbers, no tile of its projection
diverged, nothing failed while processing it, and the score is at or below the threshold. Everything
else that is not NG is FAULT, which the line treats as a reject.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

OK, NG, FAULT = "OK", "NG", "FAULT"
VERDICTS = (OK, NG, FAULT)


@dataclass(frozen=True)
class Verdict:
    """A verdict and, for FAULT, why."""

    verdict: str
    reason: str = ""
    gate: str = ""  # the frame-gate check that failed ("" when the gate passed or did not run)

    @property
    def rejected(self) -> bool:
        """NG and FAULT parts leave the line; only OK passes."""
        return self.verdict != OK


def _finite(value) -> bool:
    """A real number (Python or numpy, not a bool or a string) that is neither NaN nor infinite."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        return False
    try:
        return math.isfinite(float(value))
    except (OverflowError, ValueError):
        return False


def judge(score, threshold, diverged_tiles: int = 0, error: str = "", *, gate) -> Verdict:
    """The verdict of one part from its image score and the image threshold (see the module docstring).

    `gate` is the frame gate's GateResult (edgeproj.runtime.gate), required so that no caller forgets it;
    None says explicitly that the caller ran no gate. A frame that failed it is FAULT whatever its score:
    an easy reconstruction of a frame that shows no part is not evidence of a good part.
    """
    if error:
        return Verdict(FAULT, f"processing failed: {error}")
    if gate is not None and not gate.passed:
        return Verdict(FAULT, f"frame gate: {gate.reason}", gate.check)
    if not _finite(threshold):
        return Verdict(FAULT, f"no usable image threshold ({threshold!r}): calibrate the bundle or give a finite threshold")
    if not _finite(score):
        return Verdict(FAULT, f"the image score is not a finite number ({score!r})")
    if diverged_tiles:
        return Verdict(FAULT, f"the projection diverged on {diverged_tiles} tile(s)")
    if float(score) <= float(threshold):
        return Verdict(OK)
    return Verdict(NG)
