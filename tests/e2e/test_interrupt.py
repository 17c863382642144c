"""Ctrl-C (SIGINT) and SIGTERM stop `train`, `compare` and `sweep` cleanly: exit code 128 + signal,
every finished epoch checkpoint and result kept, worker processes stopped, and the same command
resumes; a resumed training ends with the same weights as one never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from snnergy.checkpoints import load_tensors
from snnergy.train_state import STATE_FILE, load_train_state

SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.slow


def _default_sigint() -> None:
    # A shell starts background jobs (`make test &`, nohup) with SIGINT ignored, and children inherit
    # that, so Python would never raise KeyboardInterrupt; a terminal's Ctrl-C reaches a process
    # whose SIGINT is the default, which this restores in the child before it starts.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "snnergy", *args], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint)


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snnergy", *args], env=ENV, text=True, capture_output=True,
                          timeout=300)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"finished before the interrupt: {proc.communicate()}"
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def trained_epochs(folder: Path) -> int:
    path = folder / "checkpoint" / STATE_FILE
    try:
        return load_train_state(path).epoch if path.is_file() else 0
    except Exception:  # noqa: BLE001 - being written: atomic rename, so retry
        return 0


def test_sigterm_during_train_keeps_the_checkpoint_and_the_rerun_resumes_exactly(tmp_path: Path) -> None:
    command = ["train", "--dataset", "digits", "--model", "lenet", "--epochs", "4", "--quiet"]
    proc = start([*command, "--out", str(tmp_path / "cut")])
    wait_for(lambda: trained_epochs(tmp_path / "cut") >= 1, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    kept = trained_epochs(tmp_path / "cut")
    assert 1 <= kept < 4  # the finished epochs' checkpoint is there and loads

    resumed = run([*command, "--out", str(tmp_path / "cut")])
    assert resumed.returncode == 0, resumed.stderr
    assert f"after epoch {kept} of 4" in resumed.stderr
    plain = run([*command, "--out", str(tmp_path / "plain")])
    assert plain.returncode == 0, plain.stderr
    a = load_tensors(tmp_path / "cut" / "checkpoint" / "model.safetensors")
    b = load_tensors(tmp_path / "plain" / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((tmp_path / "cut" / "checkpoint" / "checkpoint.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    ra = json.loads((tmp_path / "cut" / "results.json").read_text())[0]["dnn"]
    rb = json.loads((tmp_path / "plain" / "results.json").read_text())[0]["dnn"]
    assert ra == rb


def test_a_finished_training_state_of_another_configuration_is_refused(tmp_path: Path) -> None:
    first = run(["train", "--dataset", "digits", "--model", "tiny-mlp", "--epochs", "1", "--quiet", "--out", str(tmp_path)])
    assert first.returncode == 0, first.stderr
    other = run(["train", "--dataset", "digits", "--model", "tiny-mlp", "--epochs", "1", "--lr", "0.001", "--quiet",
                 "--out", str(tmp_path)])
    assert other.returncode == 2
    assert "another configuration (train.lr: 0.01 stored, 0.001 now)" in other.stderr
    assert trained_epochs(tmp_path) == 1  # nothing overwritten


def test_sigint_during_compare_keeps_finished_configurations_and_the_rerun_reuses_them(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    command = ["compare", "--dataset", "digits", "--model", "lenet", "--regularizers", "none,l1@0.1",
               "--epochs", "3", "--timesteps", "4,8", "--quiet", "--out", str(out)]
    results = out / "results.json"

    def one_finished() -> bool:
        try:
            return len(json.loads(results.read_text())) == 1
        except (OSError, ValueError):
            return False

    proc = start(command)
    wait_for(one_finished, proc)
    before = json.loads(results.read_text())[0]
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, (stdout, err)
    assert "Traceback" not in err
    assert json.loads(results.read_text()) == [before]

    again = run(command)
    assert again.returncode == 0, again.stderr
    records = json.loads(results.read_text())
    assert [r["config"]["regularizer"] for r in records] == ["none", "l1"]
    assert records[0] == before  # reused, not retrained


def test_sigterm_during_a_sweep_stops_its_workers_and_the_rerun_completes(tmp_path: Path) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        '[base]\ndevice = "cpu"\n[base.data]\ndataset = "digits"\n[base.model]\nname = "lenet"\n'
        '[base.train]\nepochs = 3\n[base.simulate]\ntimesteps = [4]\n'
        '[grid]\n"train.regularizer" = ["none", "l1"]\nseed = [0, 1]\n[strengths]\nl1 = [0.1]\n'
    )
    out = tmp_path / "out"
    proc = start(["sweep", str(sweep), "--out", str(out), "--workers", "2", "--quiet"])
    wait_for(lambda: len(children(proc.pid)) >= 2 and any((out / "runs").glob("*/checkpoint/" + STATE_FILE)), proc)
    workers = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "sweep workers outlived the sweep"

    again = run(["sweep", str(sweep), "--out", str(out), "--workers", "2", "--quiet"])
    assert again.returncode == 0, again.stderr
    # a sweep that finishes lets its workers exit: no "leaked semaphore objects" warning at shutdown
    assert "leaked semaphore" not in again.stderr, again.stderr
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 4 and all("error" not in r for r in records)
