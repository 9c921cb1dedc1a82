"""Shared output helpers for verbs: JSON on stdout, rich tables and progress bars on stderr."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np


def _default(obj: Any):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def dumps(obj: Any, indent: int | None = 2) -> str:
    """JSON text for results holding numpy scalars, arrays and paths."""
    return json.dumps(obj, indent=indent, default=_default)


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
