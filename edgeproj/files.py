"""File-system helpers shared by export, the runtime and the CLI: checksums, durable writes, write probes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_durably(path: Path, text: str) -> None:
    """Write `text` through a temporary file, fsync and rename, then fsync the folder.

    A kill leaves the old file intact (the rename is atomic); the folder's fsync makes the rename itself
    survive a power loss. OSError when the file cannot be written (the temporary file is removed).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def unwritable_reason(folder: Path) -> str | None:
    """None when a new file can be created in `folder` now, else the system's reason (e.g. "Permission denied")."""
    probe = Path(folder) / f".edgeproj-write-test.{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return str(exc.strerror or exc)
    return None
