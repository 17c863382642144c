"""End to end: `snnergy sweep` survives kill -9, records failures, runs on a process pool or Ray,
and `snnergy report` works from the store alone."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snnergy.cli import main
from snnergy.experiments.sweep import config_hash, load_sweep, run_sweep
from snnergy.experiments.sweep_store import SweepStore

SRC = Path(__file__).resolve().parents[2] / "src"
TINY = """
[base]
device = "cpu"
profiles = ["cmos45-fp32", "loihi"]
[base.data]
dataset = "synthetic-blobs"
[base.model]
name = "tiny-mlp"
[base.train]
epochs = 1
[base.simulate]
timesteps = [4]
[grid]
"train.regularizer" = ["none", "l1"]
{extra}
[strengths]
l1 = [0.1]
"""


def sweep_file(folder: Path, extra: str) -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY.format(extra=extra))
    return path


def rows(store: Path) -> dict[str, tuple]:
    with sqlite3.connect(store) as db:
        return {row[0]: row for row in db.execute("SELECT * FROM runs")}


def sweep_command(path: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "snnergy", "sweep", str(path), "--out", str(out), "--quiet", "--no-checkpoints"]


@pytest.mark.slow
def test_killed_sweep_resumes_without_losing_or_repeating_rows(tmp_path: Path) -> None:
    path = sweep_file(tmp_path, "seed = [0, 1]")  # none, l1 0.1 x 2 seeds = 4 configurations
    out = tmp_path / "out"
    store = out / "sweep.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(sweep_command(path, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    before: dict[str, tuple] = {}
    while not before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        if store.is_file():
            try:
                before = rows(store)
            except sqlite3.OperationalError:  # tables not created yet
                pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the sweep ended before it could be killed"
    before = rows(store)  # every row committed before the kill
    assert 1 <= len(before) < 4
    done = subprocess.run(sweep_command(path, out), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "4 configurations" in done.stdout and f"{len(before)} already stored" in done.stdout
    after = rows(store)
    expected = {config_hash(c) for c in load_sweep(path).configs}
    assert set(after) == expected  # each configuration exactly once (id is the primary key)
    for id_, row in before.items():
        assert after[id_] == row  # earlier rows untouched
    assert all(row[1] == "finished" and json.loads(row[3])["dnn"] for row in after.values())
    records = json.loads((out / "results.json").read_text())
    assert sorted(r["config"]["resolved"]["seed"] for r in records) == [0, 0, 1, 1]
    assert len({json.dumps(r["config"], sort_keys=True) for r in records}) == 4


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """none and l1 0.1, each at lr 0.01 and at lr 1e30 (2 fail: Adam's first step sends the weights
    to ~1e30 and the loss to inf or NaN), on 2 processes. (A config that is invalid on its face, e.g.
    width -1, is refused when the sweep file is read, before anything runs.)"""
    folder = tmp_path_factory.mktemp("pool")
    path = sweep_file(folder, '"train.lr" = [0.01, 1e30]')
    summary = run_sweep(path, folder / "out", workers=2)
    assert (summary.total, summary.finished, summary.failed, summary.skipped) == (4, 2, 2, 0)
    return path, folder / "out"


def test_failing_configuration_is_recorded_and_the_rest_finish(pooled: tuple[Path, Path]) -> None:
    _, out = pooled
    with SweepStore(out / "sweep.sqlite", readonly=True) as store:
        failed = store.outcomes("failed")
        finished = store.outcomes("finished")
    assert len(failed) == 2 and len(finished) == 2
    assert all(o.config["train"]["lr"] == 1e30 and o.error.startswith("TrainingError: training diverged") for o in failed)
    assert all(o.config["train"]["lr"] == 0.01 and o.record["snn"]["timesteps"] == [4] for o in finished)
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 2 and all("error" not in r for r in records)
    report = (out / "report.md").read_text()
    assert "## Failed configurations" in report and report.count("training diverged") == 2


def test_rerun_skips_finished_and_retries_failed_on_request(pooled: tuple[Path, Path]) -> None:
    path, out = pooled
    again = run_sweep(path, out, report=False)
    assert (again.skipped, again.finished, again.failed) == (4, 0, 0)
    retried = run_sweep(path, out, retry_failed=True, report=False)
    assert (retried.skipped, retried.failed) == (2, 2)  # lr 1e30 fails again; the finished ones are kept
    with SweepStore(out / "sweep.sqlite", readonly=True) as store:
        assert sorted(o.attempts for o in store.outcomes()) == [1, 1, 2, 2]


def test_report_from_the_store(pooled: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, out = pooled
    (out / "report.md").unlink()
    (out / "report.html").unlink()
    assert main(["report", str(out), "--profile", "loihi", "--target-accuracy", "0.2"]) == 0
    assert "2 finished and 2 failed runs" in capsys.readouterr().out
    text = (out / "report.md").read_text()
    assert "profile `loihi`" in text and "accuracy >= 0.2000 (given)" in text
    page = (out / "report.html").read_text()  # beside it, the same text as a page
    assert "profile <code>loihi</code>" in page and "accuracy &gt;= 0.2000 (given)" in page
    assert (out / "plots" / "pareto_synthetic-blobs_tiny-mlp.png").is_file()


@pytest.mark.slow
def test_ray_gives_the_same_rows_as_the_process_pool(pooled: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'snnergy[ray]')")
    path, pool_out = pooled
    summary = run_sweep(path, tmp_path / "ray", ray="local", workers=2, checkpoints=False, report=False)
    assert (summary.finished, summary.failed) == (2, 2)
    with SweepStore(pool_out / "sweep.sqlite", readonly=True) as a, SweepStore(tmp_path / "ray" / "sweep.sqlite", readonly=True) as b:
        assert a.statuses() == b.statuses()
        pool_rows = {o.id: o.record for o in a.outcomes("finished")}
        ray_rows = {o.id: o.record for o in b.outcomes("finished")}
    assert ray_rows == pool_rows  # same seeds, one thread each: identical numbers
