"""Shared output helpers for verbs: JSON on stdout, rich tables and progress bars on stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Standard JSON text (NaN/Infinity become null) for results holding numpy values and paths."""
    from edgeproj.runtime.manifest import dumps_strict

    return dumps_strict(obj, indent)


def emit_json(obj: Any) -> None:
    """Print one JSON document on stdout (the machine-readable result of a verb)."""
    sys.stdout.write(dumps(obj) + "\n")
    sys.stdout.flush()


def console():
    """A rich console on stderr, so stdout stays clean for --json."""
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def progress(enabled: bool = True) -> Iterator[Any]:
    """A rich progress display on stderr; a silent stand-in when disabled (--json, CI logs)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
