"""The progress interface library flows report to (a rich Progress fits it; `NullProgress` is silent)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """What a long library call reports: tasks with a total, advanced or set, with a short info text."""

    def add_task(self, description: str, total: float | None = None, **fields) -> int: ...

    def update(self, task_id: int, *, advance: float | None = None, completed: float | None = None, **fields) -> None: ...


class NullProgress:
    """A Progress that shows nothing."""

    def add_task(self, description: str, total: float | None = None, **fields) -> int:
        return 0

    def update(self, task_id: int, *, advance: float | None = None, completed: float | None = None, **fields) -> None:
        pass
