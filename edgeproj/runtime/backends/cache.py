"""On-device caches of the GPU backends: where they live, who may read them, and their checksums.

Caches live under `$XDG_CACHE_HOME/edgeproj` (fallback `~/.cache/edgeproj`; the Jetson image sets
`XDG_CACHE_HOME=/cache`, a volume). Every cache folder is private to the user (0700), files are 0600,
and a cached TensorRT engine is deserialized only after its sha256 matches the one recorded when it was
written: TensorRT deserialization runs code paths nobody wants to feed a tampered file.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from edgeproj.errors import BackendError

CHECKSUMS = "edgeproj-checksums.json"


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/edgeproj`, or `~/.cache/edgeproj` when the variable is unset or not absolute."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "edgeproj"


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) mode 0700; tighten an existing folder of ours to 0700.

    A folder owned by another user is refused: its engines could have been written by anyone.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.stat()
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise BackendError(f"cache folder {path} belongs to another user (uid {st.st_uid}); use a folder of your own")
        if stat.S_IMODE(st.st_mode) != 0o700:
            path.chmod(0o700)
    except OSError as exc:
        raise BackendError(f"cannot use cache folder {path}: {exc.strerror or exc}") from None
    return path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_private(path: Path, data: bytes) -> None:
    """Write atomically (temporary file + rename), mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_verified(path: Path, sha256: str | None) -> bytes:
    """The bytes of a cached file whose recorded checksum is `sha256`; BackendError when they differ."""
    data = path.read_bytes()
    if not sha256 or sha256_bytes(data) != sha256:
        raise BackendError(
            f"cached file {path} does not match the checksum recorded when it was written (tampered or corrupt); "
            f"refusing to load it: delete {path.parent} and rerun to rebuild"
        )
    return data


class ChecksumLedger:
    """sha256 of every file in a cache folder that a library (ONNX Runtime's TensorRT provider) writes itself.

    `verify()` runs before the library may read the folder: a recorded file that changed is refused,
    an unrecorded file (a run that died before recording, or a file dropped in) is deleted, so only
    files this user's own runs wrote and recorded are ever deserialized. `record()` runs after the
    library wrote its files.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / CHECKSUMS

    def _load(self) -> dict:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            raise BackendError(f"cache checksum file {self.path} is unreadable; delete {self.folder} and rerun") from None
        return doc if isinstance(doc, dict) else {}

    def _files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file() and p.name != CHECKSUMS and not p.name.startswith("."))

    def verify(self) -> list[str]:
        """Check every file against the ledger; returns the names of unrecorded files that were removed."""
        known = self._load()
        removed = []
        for p in self._files():
            want = known.get(p.name)
            if want is None:
                p.unlink()
                removed.append(p.name)
                continue
            read_verified(p, want)
        return removed

    def record(self) -> None:
        """Record the checksum of every file now in the folder."""
        doc = {p.name: sha256_bytes(p.read_bytes()) for p in self._files()}
        write_private(self.path, json.dumps(doc, indent=2, sort_keys=True).encode())
        for p in self._files():
            if stat.S_IMODE(p.stat().st_mode) & 0o077:
                p.chmod(0o600)
