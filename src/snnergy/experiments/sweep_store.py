"""The sweep store: one SQLite row per finished (or failed) configuration, in the run folder.

``OUT/sweep.sqlite`` holds table ``runs``: ``id`` (the configuration's hash, primary key),
``status`` (``finished`` or ``failed``), ``config`` (resolved config, JSON), ``record`` (the
result record, JSON, docs/design.md's schema), ``error``, ``started_at``/``finished_at`` (UTC, ISO
8601), ``wall_s`` and ``attempts``. Only the sweep's parent process writes, one row per
transaction, in WAL mode with ``synchronous=FULL``: a sweep killed at any moment (``kill -9``
included) keeps every committed row and never leaves a half-written one. A finished row is
never overwritten; a failed one is replaced when it is retried.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnergy.errors import ResultsError, SnnergyError
from snnergy.reporting.schema import check_record

STORE_FILE = "sweep.sqlite"
SCHEMA_VERSION = "1"
STATUSES = ("finished", "failed")
RUN_COLUMNS = ("id", "status", "config", "record", "error", "started_at", "finished_at", "wall_s", "attempts")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('finished', 'failed')),
    config TEXT NOT NULL,
    record TEXT,
    error TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    wall_s REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# A finished row is final: the upsert only replaces a failed one.
_UPSERT = """
INSERT INTO runs (id, status, config, record, error, started_at, finished_at, wall_s)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status, config = excluded.config, record = excluded.record,
    error = excluded.error, started_at = excluded.started_at, finished_at = excluded.finished_at,
    wall_s = excluded.wall_s, attempts = runs.attempts + 1
WHERE runs.status != 'finished'
"""


@dataclass(frozen=True)
class Outcome:
    """One configuration's result as stored: a row of ``runs``.

    Attributes:
        id: SHA-256 of the resolved config (:func:`snnergy.reporting.identity.config_hash`).
        status: ``"finished"`` or ``"failed"``.
        config: The resolved config (``config_to_dict``).
        record: The result record (failed: its ``config`` part plus ``error``).
        error: The error (type, message and, for unexpected ones, a traceback), or ``None``.
        started_at: UTC start time, ISO 8601.
        finished_at: UTC end time, ISO 8601.
        wall_s: Wall-clock seconds of the run.
        attempts: How many times it ran (a retried failure counts again).
    """

    id: str
    status: str
    config: dict[str, Any]
    record: dict[str, Any] | None
    error: str | None
    started_at: str
    finished_at: str
    wall_s: float
    attempts: int = 1


class SweepStore:
    """The SQLite results store of one run folder; a context manager.

    Args:
        path: The database file (created with its tables if missing); ``None``: a store in memory,
            gone when closed (a sweep run without a folder).
        readonly: Open an existing store for reading only (for reports).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "sweep.sqlite"
        >>> failed = {"config": {"dataset": "digits", "model": "mlp", "regularizer": "l1", "strength": 9.0, "seed": 0},
        ...           "error": "TrainingError: diverged"}
        >>> with SweepStore(path) as store:
        ...     store.put(Outcome("a1", "failed", failed["config"], failed, failed["error"], "t0", "t1", 1.5))
        ...     store.statuses(), store.records(include_failed=True) == [failed]
        True
        ({'a1': 'failed'}, True)
    """

    def __init__(self, path: str | Path | None, readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else Path(":memory:")
        if readonly and (path is None or not self.path.is_file()):
            raise ResultsError(f"{self.path}: no sweep store here; run `snnergy sweep` first")
        try:
            if readonly:
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
            elif path is None:
                self._db = sqlite3.connect(":memory:", isolation_level=None)
                self._db.executescript(_SCHEMA)
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            self._check()
        except sqlite3.DatabaseError as err:
            if hasattr(self, "_db"):
                self._db.close()
            raise ResultsError(f"{self.path}: not a snnergy sweep store ({err})") from None
        except ResultsError:
            self._db.close()
            raise

    def _check(self) -> None:
        """Checks the schema version and that table ``runs`` has every column this code reads."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            raise ResultsError(f"{self.path}: sweep store schema {row and row[0]!r}, this snnergy reads {SCHEMA_VERSION!r}")
        columns = {info[1] for info in self._db.execute("PRAGMA table_info(runs)")}
        missing = [c for c in RUN_COLUMNS if c not in columns]
        if missing:
            raise ResultsError(f"{self.path}: not a snnergy sweep store (table 'runs' lacks {', '.join(missing)})")

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection (committed rows are on disk already)."""
        self._db.close()

    def put(self, outcome: Outcome) -> bool:
        """Writes one outcome in one transaction; returns ``False`` if a finished row of the same
        id was already there (it is kept unchanged)."""
        if outcome.status not in STATUSES:
            raise SnnergyError(f"outcome status must be one of {STATUSES}, got {outcome.status!r}")
        values = (
            outcome.id,
            outcome.status,
            json.dumps(outcome.config, sort_keys=True),
            None if outcome.record is None else json.dumps(outcome.record),
            outcome.error,
            outcome.started_at,
            outcome.finished_at,
            float(outcome.wall_s),
        )
        with self._transaction():
            changed = self._db.execute(_UPSERT, values).rowcount
        return changed == 1

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def statuses(self) -> dict[str, str]:
        """``{id: status}`` of every stored configuration; a row of another status is an error."""
        statuses = dict(self._db.execute("SELECT id, status FROM runs"))
        for id_, status in statuses.items():
            if status not in STATUSES:
                raise ResultsError(f"{self.path}: row {id_!r} has status {status!r}, expected one of {STATUSES}")
        return statuses

    def outcomes(self, status: str | None = None) -> list[Outcome]:
        """Stored rows (of one status, or all), oldest first."""
        query = "SELECT id, status, config, record, error, started_at, finished_at, wall_s, attempts FROM runs"
        rows = (
            self._db.execute(query + " WHERE status = ? ORDER BY finished_at, id", (status,))
            if status is not None
            else self._db.execute(query + " ORDER BY finished_at, id")
        )
        return list(self._rows(rows))

    def _rows(self, rows: Any) -> Iterator[Outcome]:
        for id_, status, config, record, error, started, finished, wall_s, attempts in rows:
            try:
                outcome = Outcome(
                    id_, status, json.loads(config), None if record is None else json.loads(record),
                    error, started, finished, wall_s, attempts,
                )
            except (TypeError, ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
                raise ResultsError(f"{self.path}: row {id_!r} holds malformed JSON ({err})") from None
            if outcome.record is not None:
                check_record(outcome.record, f"{self.path}: row {id_!r}")
            yield outcome

    def records(self, include_failed: bool = False) -> list[dict[str, Any]]:
        """Result records of finished configurations (each once), oldest first; with
        ``include_failed`` also failed ones (their ``config`` part plus ``error``)."""
        rows = self.outcomes(None if include_failed else "finished")
        return [o.record for o in rows if o.record is not None]
