"""Shared output helpers for verbs: JSON on stdout, rich tables and progress bars on stderr."""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Standard JSON text (NaN/Infinity become null) for results holding numpy values and paths."""
    from edgeproj.jsonio import dumps_strict

    return dumps_strict(obj, indent)


def emit_json(obj: Any) -> None:
    """Print one JSON document on stdout (the machine-readable result of a verb)."""
    sys.stdout.write(dumps(obj) + "\n")
    sys.stdout.flush()


def console():
    """A rich console on stderr, so stdout stays clean for --json."""
    from rich.console import Console

    return Console(stderr=True)


def progress_line(text: str) -> None:
    """One timestamped progress line on stderr (logs, pipes, containers)."""
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    sys.stderr.write(f"{stamp} {text}\n")
    sys.stderr.flush()


class LogProgress:
    """Progress for output that is not a terminal: a timestamped line per task at start, every 10% or
    `every_s` seconds (whichever comes first), and at completion. Fits the rich Progress calls used."""

    def __init__(self, every_s: float = 30.0, step: float = 0.1, clock=time.monotonic, write=progress_line):
        self.every_s, self.step, self.clock, self.write = every_s, step, clock, write
        self.tasks: dict[int, dict] = {}

    def add_task(self, description: str, total: float | None = None, **fields) -> int:
        tid = len(self.tasks)
        self.tasks[tid] = {"d": description, "total": total, "done": 0.0, "info": fields.get("info", ""), "t": self.clock(),
                           "mark": 0, "finished": False}  # fmt: skip
        self.write(f"{description}: started" + (f" ({fields['info']})" if fields.get("info") else ""))
        return tid

    def update(self, task_id: int, *, advance: float | None = None, completed: float | None = None, **fields) -> None:
        t = self.tasks[task_id]
        if fields.get("total") is not None:  # a run that ends before its cap (training on its plateau)
            t["total"] = fields["total"]
        if completed is not None:
            t["done"] = completed
        if advance is not None:
            t["done"] += advance
        if "info" in fields:
            t["info"] = fields["info"]
        total, now = t["total"], self.clock()
        frac = t["done"] / total if total else None
        finished = frac is not None and frac >= 1.0
        if t["finished"]:
            return
        bucket = int(frac / self.step + 1e-9) if frac is not None else 0  # whole steps (10%) reached
        due = now - t["t"] >= self.every_s or bucket > t["mark"] or finished
        if due:
            t["t"], t["finished"], t["mark"] = now, finished, max(t["mark"], bucket)
            count = f"{t['done']:.0f}/{total:.0f} ({100 * frac:.0f}%)" if frac is not None else f"{t['done']:.0f}"
            self.write(f"{t['d']}: {count}" + (f" {t['info']}" if t["info"] else "") + (" done" if finished else ""))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@contextmanager
def progress(enabled: bool = True) -> Iterator[Any]:
    """Progress on stderr: rich bars on a terminal, timestamped lines otherwise, nothing when disabled."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if enabled and not sys.stderr.isatty():
        with LogProgress() as prog:
            yield prog
        return
    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console(),
        disable=not enabled,
    )
    with prog:
        yield prog
