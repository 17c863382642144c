"""The SQLite sweep store: one row per configuration, finished rows final, failed rows retried."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from snnergy.errors import SnnergyError
from snnergy.experiments.sweep_store import Outcome, SweepStore


def outcome(id_: str, status: str = "finished", at: str = "2024-01-01T00:00:01", value: int = 1) -> Outcome:
    config = {"dataset": "digits", "model": "mlp", "regularizer": "none", "strength": 0.0, "seed": value}
    dnn = {"accuracy": 0.5, "sparsity": {"relu1": 0.5}, "macs_dense": 10.0, "macs_effective": 5.0, "energy_j": {"p": 1e-9}}
    record = {"config": config, "dnn": dnn} if status == "finished" else {"config": config, "error": "boom"}
    return Outcome(id_, status, {"seed": value}, record, None if status == "finished" else "ValueError: boom", "2024-01-01T00:00:00", at, 1.25)


@pytest.fixture
def store(tmp_path: Path) -> SweepStore:
    with SweepStore(tmp_path / "sweep.sqlite") as opened:
        yield opened


def test_round_trip(store: SweepStore) -> None:
    assert store.put(outcome("a"))
    [row] = store.outcomes()
    assert row == outcome("a")  # every column comes back, attempts 1
    assert store.statuses() == {"a": "finished"}
    assert store.records() == [outcome("a").record]


def test_finished_rows_are_final(store: SweepStore) -> None:
    store.put(outcome("a", value=1))
    assert not store.put(outcome("a", value=2))  # a finished row is not replaced ...
    assert not store.put(outcome("a", "failed"))  # ... not even by a failure
    [row] = store.outcomes()
    assert row.record == outcome("a", value=1).record and row.attempts == 1


def test_failed_rows_are_replaced_when_retried(store: SweepStore) -> None:
    store.put(outcome("a", "failed"))
    assert store.put(outcome("a", "failed", at="2024-01-01T00:00:02"))
    assert store.outcomes()[0].attempts == 2
    assert store.put(outcome("a", "finished", at="2024-01-01T00:00:03"))
    [row] = store.outcomes()
    assert (row.status, row.error, row.attempts) == ("finished", None, 3)


def test_records_in_finishing_order_and_failed_on_request(store: SweepStore) -> None:
    store.put(outcome("b", at="2024-01-01T00:00:05", value=2))
    store.put(outcome("a", at="2024-01-01T00:00:03", value=1))
    store.put(outcome("c", "failed", at="2024-01-01T00:00:04", value=3))
    assert [r["config"]["seed"] for r in store.records()] == [1, 2]
    assert [r["config"]["seed"] for r in store.records(include_failed=True)] == [1, 3, 2]
    assert [o.id for o in store.outcomes("failed")] == ["c"]


def test_rows_survive_reopening_and_are_visible_to_other_readers(tmp_path: Path) -> None:
    path = tmp_path / "sweep.sqlite"
    writer = SweepStore(path)
    writer.put(outcome("a"))
    # another connection (a report, a test polling a running sweep) sees the committed row now
    assert sqlite3.connect(path).execute("SELECT count(*) FROM runs WHERE status = 'finished'").fetchone() == (1,)
    assert writer._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    writer.close()
    with SweepStore(path, readonly=True) as reader:
        assert reader.statuses() == {"a": "finished"}


def test_bad_status_writes_nothing(store: SweepStore) -> None:
    with pytest.raises(SnnergyError, match="status"):
        store.put(outcome("a", "running"))
    assert store.statuses() == {}


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(SnnergyError, match="no sweep store here"):
        SweepStore(tmp_path / "none.sqlite", readonly=True)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, just some text" * 100)
    with pytest.raises(SnnergyError, match="not a snnergy sweep store"):
        SweepStore(junk, readonly=True)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(SnnergyError, match=str(other)):
        SweepStore(other, readonly=True)
