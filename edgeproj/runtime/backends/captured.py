"""What GPU libraries print on stdout, taken off the caller's stdout and handed back as text.

onnxruntime's `preload_dlls()` prints "Failed to load ..." lines and its session fallback prints "EP Error
... Falling back" with Python's print; CUDA libraries may write to file descriptor 1 themselves. On
`doctor --json`, `project --json` or `inspect --json` that text would land before the JSON. The calls that
may print run inside `captured_stdout()`, and what they printed becomes part of the reason reported.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

# fd 1 and sys.stdout are process-wide: overlapping captures (two threads opening sessions) take turns.
_LOCK = threading.Lock()


class Captured:
    """The text printed inside a `captured_stdout()` block (filled in when the block ends)."""

    def __init__(self) -> None:
        self.text = ""

    @property
    def lines(self) -> list[str]:
        """The non-empty lines, without the banner lines of asterisks onnxruntime frames its errors with."""
        return [ln.strip() for ln in self.text.splitlines() if ln.strip() and set(ln.strip()) != {"*"} and "****" not in ln]


def _flush_c_stdio() -> None:
    # Native code writes through C stdio buffers: flush them into the captured descriptor before it is restored.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def captured_stdout() -> Iterator[Captured]:
    """Capture Python's `sys.stdout` and the process's file descriptor 1 for the block; yields a `Captured`.

    Where descriptor 1 cannot be duplicated (closed, or an exotic host), only Python's stdout is captured.
    """
    with _LOCK:
        with _capture() as got:
            yield got


@contextlib.contextmanager
def _capture() -> Iterator[Captured]:
    got = Captured()
    buf = io.StringIO()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    _flush_c_stdio()  # what was printed before the block stays the caller's
    try:
        saved = os.dup(1)
    except OSError:
        saved = None
    if saved is None:
        try:
            with contextlib.redirect_stdout(buf):
                yield got
        finally:
            got.text = buf.getvalue()
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            with contextlib.redirect_stdout(buf):
                yield got
        finally:
            _flush_c_stdio()
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            got.text = tmp.read().decode(errors="replace") + buf.getvalue()
