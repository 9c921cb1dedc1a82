"""One frame from capture to verdict: ROI/resize, the frame gate, projection started, then waited for and judged.

A frame is submitted (its projection starts, on lanes while the line reads the next frame) and later
settled (the projection is waited for and the part judged). Any failure on the way makes the frame a
FAULT with its reason; nothing here raises into the line except a setup error (a ROI outside the frame).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgeproj.errors import EdgeprojError
from edgeproj.line.alarm import UNREADABLE
from edgeproj.line.sources import Frame
from edgeproj.runtime.framing import crop_roi, frame_as_stated
from edgeproj.runtime.gate import FrameGate, GateFailure, GateResult
from edgeproj.runtime.projector import Projector
from edgeproj.runtime.verdict import Verdict, judge

log = logging.getLogger("edgeproj.line")


@dataclass
class InFlight:
    """A submitted frame: the judged image, a wait for its result, or why it is FAULT before projecting."""

    frame: Frame
    image: np.ndarray | None = None
    wait: Callable | None = None
    error: str = ""
    checked: GateResult = field(default_factory=GateResult)


@dataclass
class Judged:
    """A settled frame: its verdict and, when it was projected, its result (an ImageResult)."""

    frame: Frame
    image: np.ndarray | None
    result: object | None
    verdict: Verdict
    error: str = ""  # why judging failed (the frame is FAULT); a processing error says nothing about the camera

    @property
    def score(self) -> float | None:
        """The image score for the row: None when there is none or it is not finite."""
        return None if self.result is None or not math.isfinite(self.result.score) else float(self.result.score)

    @property
    def iterations(self) -> float | None:
        return None if self.result is None else float(np.mean(self.result.iterations))

    @property
    def stop_reason(self) -> str:
        """The stop rule that ended most tiles ('gate' or 'error' for a frame never projected)."""
        v = self.verdict
        reasons = self.result.stop_reasons if self.result is not None else (["gate"] if v.gate else ["error"])
        return max(set(reasons), key=reasons.count)


class FrameJudge:
    """Submits frames to the projector and judges them against the image threshold and the frame gate."""

    def __init__(self, projector: Projector, gate: FrameGate, image_threshold: float, roi, resize):
        self.projector = projector
        self.gate = gate
        self.image_threshold = image_threshold
        self.roi, self.resize = roi, resize
        self._roi_checked = False

    def submit(self, frame: Frame) -> InFlight:
        """Prepare the frame and start its projection when the gate passes it."""
        if not self._roi_checked and frame.image is not None:  # a ROI outside the camera's frame is a setup error: stop now
            crop_roi(frame.image, self.roi)
            self._roi_checked = True
        if frame.image is None:  # reading never repairs a pixel: an unreadable frame is the gate's FAULT
            unreadable = GateFailure(UNREADABLE, f"the frame could not be read: {frame.error or 'no image'}")
            return InFlight(frame, checked=GateResult((unreadable,)))
        item = InFlight(frame)
        try:
            item.image = frame_as_stated(frame.image, self.roi, self.resize)
            item.checked = self.gate.check_frame(item.image)
            if item.checked.passed:  # a frame that shows no judgeable part is not worth a projection
                item.wait = self.projector.submit(item.image, lean=True)
        except Exception as exc:  # noqa: BLE001 - any failure judging a part makes it a FAULT, the line goes on
            item.error = _reason(exc)
        return item

    def settle(self, item: InFlight) -> Judged:
        """Wait for the frame's projection (if it was started) and judge it."""
        res, error, checked = None, item.error, item.checked
        if not error and item.wait is not None:
            try:
                res = item.wait()
                checked = checked.merged(self.gate.check_model(res.rec_loss0))
            except Exception as exc:  # noqa: BLE001 - as in submit()
                error = _reason(exc)
        if error:
            log.error("frame %s: FAULT (%s)", item.frame.name or item.frame.seq, error)
        score, diverged = (None, 0) if res is None else (res.score, res.diverged)
        v = judge(score, self.image_threshold, diverged, error, gate=checked)
        return Judged(item.frame, item.image, res, v, error)


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, EdgeprojError) else str(exc)
