"""The camera alarm: frames the gate stops, counted by check, and one ALARM when they come in a row.

A single blank frame is a gap between parts; several in a row are a camera, lighting or conveyor
problem that an operator must see apart from NG parts. After `after` consecutive frames that failed the
gate (or could not be read), one ALARM goes to the log, the MQTT status and the live page; it clears,
once, when a frame passes the gate again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

log = logging.getLogger("edgeproj.line")
UNREADABLE = "unreadable"  # the check recorded for a frame that could not be read or decoded


@dataclass(frozen=True)
class GateCounts:
    """The frame gate over a run: frames it passed and stopped (by check, most first), camera alarms raised."""

    passed: int = 0
    failed: int = 0
    by_check: dict = field(default_factory=dict)
    alarms: int = 0
    alarm_active: bool = False  # the last frames failed the gate in a row

    def as_json(self) -> dict:
        return asdict(self)


class GateMonitor:
    """Counts gate failures by check and raises/clears the camera alarm through the sinks' status."""

    def __init__(self, after: int, sinks=None, clock=time.monotonic, status_every_s: float = 1.0):
        self.after = after
        self.sinks = sinks
        self.clock = clock
        self.status_every_s = status_every_s
        self.passed = 0
        self.failed = 0
        self.by_check: dict[str, int] = {}
        self.in_row = 0
        self.alarms = 0
        self.active = False
        self.last_reason = ""
        self._next_status = 0.0

    def update(self, seq: int, check: str, reason: str = "") -> None:
        """One judged frame: `check` is the gate check it failed ('' when it passed the gate)."""
        if not check:
            self.passed += 1
            self.in_row = 0
            if self.active:
                self.active = False
                log.warning("ALARM cleared: frame %s is back in the calibrated range", seq)
                self._status(force=True)
            return
        self.failed += 1
        self.in_row += 1
        self.by_check[check] = self.by_check.get(check, 0) + 1
        self.last_reason = reason
        if self.in_row >= self.after and not self.active:
            self.active = True
            self.alarms += 1
            log.error(
                "ALARM: %d frames in a row failed the frame gate (camera, lighting or no part); latest, frame %s: %s",
                self.in_row, seq, reason,
            )  # fmt: skip
            self._status(force=True)
        else:
            self._status()

    def alarm(self) -> dict | None:
        """The active alarm as the sinks show it, or None."""
        if not self.active:
            return None
        return {"active": True, "frames_in_row": self.in_row, "reason": self.last_reason}

    def summary(self) -> GateCounts:
        by_check = dict(sorted(self.by_check.items(), key=lambda kv: -kv[1]))
        return GateCounts(self.passed, self.failed, by_check, self.alarms, self.active)

    def flush(self) -> None:
        """Send the final counts to the sinks (updates between alarms are sent at most once a second)."""
        self._status(force=True)

    def _status(self, force: bool = False) -> None:
        if self.sinks is None:
            return
        now = self.clock()
        if not force and now < self._next_status:
            return
        self._next_status = now + self.status_every_s
        self.sinks.status(alarm=self.alarm(), gate=self.summary().as_json())
