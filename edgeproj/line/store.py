"""Results database: SQLite in WAL mode, one committed row per frame before it is reported."""

from __future__ import annotations

import sqlite3
from dataclasses import astuple, dataclass, fields
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    seq INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    source TEXT,
    name TEXT,
    capture_ts REAL NOT NULL,
    latency_ms REAL NOT NULL,
    score REAL,
    verdict TEXT NOT NULL,
    iterations REAL,
    stop_reason TEXT,
    map_path TEXT,
    overlay_path TEXT,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS frames_verdict ON frames (verdict);
"""


@dataclass
class FrameRow:
    seq: int
    run_id: str
    source: str
    name: str
    capture_ts: float
    latency_ms: float
    score: float
    verdict: str
    iterations: float
    stop_reason: str
    map_path: str | None
    overlay_path: str | None


class ResultStore:
    """Append-only frame log. A row is committed (WAL, synchronous=NORMAL: survives a process kill)
    before `add` returns, so whatever the caller reports afterwards is on disk."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        cols = ",".join(f.name for f in fields(FrameRow))
        self._insert = f"INSERT INTO frames ({cols}) VALUES ({','.join('?' * len(fields(FrameRow)))})"

    def add(self, row: FrameRow) -> None:
        self.db.execute(self._insert, astuple(row))

    def close(self) -> None:
        self.db.close()


def read_rows(path: Path) -> list[dict]:
    """All frame rows, in capture order (for tests and reports)."""
    db = sqlite3.connect(str(path))
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM frames ORDER BY run_id, seq")]
    finally:
        db.close()
