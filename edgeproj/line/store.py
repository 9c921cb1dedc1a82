"""Results database: SQLite in WAL mode, one committed row per frame; storage faults never stop the line.

`ResultStore` is the database. `GuardedStore` puts it behind the line: a row that cannot be written
(the database locked by another process, a full disk) is kept in a bounded in-memory buffer and
written, in order, as soon as storage works again; every outage raises one alarm and is counted.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import deque
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from edgeproj.errors import ConfigError

log = logging.getLogger("edgeproj.line")

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
    fault TEXT,
    gate TEXT,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS frames_verdict ON frames (verdict);
"""
DURABILITY = {"normal": "NORMAL", "full": "FULL"}


@dataclass
class FrameRow:
    seq: int
    run_id: str
    source: str
    name: str
    capture_ts: float
    latency_ms: float
    score: float | None
    verdict: str
    iterations: float | None
    stop_reason: str
    map_path: str | None
    overlay_path: str | None
    fault: str = ""
    gate: str = ""  # the frame-gate check that made it FAULT ('unreadable' when it could not be read)

    def as_json(self) -> dict:
        """The row as `inspect --json` prints it and the sinks receive it (the database's columns, in order)."""
        return dict(self.__dict__)


class ResultStore:
    """Append-only frame log, committed row by row.

    durability "normal" (WAL, synchronous=NORMAL) survives a process kill; "full" (synchronous=FULL)
    also survives a power loss, at the cost of an fsync per frame. `max_rows` bounds the table: the
    oldest rows are deleted beyond it. `busy_ms` is how long a write waits for a lock held elsewhere.
    """

    def __init__(self, path: Path, durability: str = "normal", max_rows: int = 1_000_000, busy_ms: int = 200):
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"--db '{path}' is a folder; give a database file name")
        if durability not in DURABILITY:
            raise ConfigError(f"durability must be one of {', '.join(DURABILITY)}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=busy_ms / 1000)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
            self.db.executescript(SCHEMA)
            cols = {r[1] for r in self.db.execute("PRAGMA table_info(frames)")}
            for col in ("fault", "gate"):  # a database written by an earlier edgeproj
                if col not in cols:
                    self.db.execute(f"ALTER TABLE frames ADD COLUMN {col} TEXT")
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"--db '{path}' cannot be used as a results database ({exc}); give a new file name") from None
        except OSError as exc:
            raise ConfigError(f"--db '{path}' cannot be created ({exc.strerror})") from None
        self.path = path
        self.max_rows = max_rows
        self._since_trim = 0
        names = [f.name for f in fields(FrameRow)]
        self._insert = f"INSERT OR REPLACE INTO frames ({','.join(names)}) VALUES ({','.join('?' * len(names))})"

    def add(self, row: FrameRow) -> None:
        """Write one row (raises sqlite3.Error or OSError when storage fails)."""
        self.db.execute(self._insert, astuple(row))
        self._since_trim += 1
        if self._since_trim >= 1000:
            self._since_trim = 0
            self.db.execute("DELETE FROM frames WHERE rowid <= (SELECT max(rowid) FROM frames) - ?", (self.max_rows,))

    def close(self) -> None:
        self.db.close()


class GuardedStore:
    """A ResultStore that never raises into the line: failed rows wait in a bounded buffer."""

    def __init__(self, store: ResultStore, buffer: int = 10_000):
        self.store = store
        self.pending: deque[FrameRow] = deque()
        self.buffer = buffer
        self.alarms = 0  # storage outages seen
        self.lost = 0  # rows dropped because the buffer was full (they were still reported on stdout)
        self._down = False

    def add(self, row: FrameRow) -> bool:
        """Queue the row and write everything pending; True when all of it is on disk.

        While storage is down at most `buffer` rows wait; beyond that the oldest is dropped and counted.
        """
        self.pending.append(row)
        if self.flush():
            return True
        while len(self.pending) > self.buffer:
            self.pending.popleft()
            self.lost += 1
        return False

    def flush(self) -> bool:
        while self.pending:
            try:
                self.store.add(self.pending[0])
            except (sqlite3.Error, OSError) as exc:
                if not self._down:
                    self._down = True
                    self.alarms += 1
                    log.error("ALARM: results database unavailable (%s); verdicts go on, %d row(s) held", exc, len(self.pending))
                return False
            self.pending.popleft()
        if self._down:
            self._down = False
            log.warning("results database back; held rows written")
        return True

    def close(self) -> None:
        self.flush()
        self.store.close()


def read_rows(path: Path) -> list[dict]:
    """All frame rows, in capture order (for tests and reports)."""
    db = sqlite3.connect(str(path))
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM frames ORDER BY run_id, seq")]
    finally:
        db.close()
