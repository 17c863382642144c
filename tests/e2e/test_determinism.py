"""Determinism: the same command with the same seed on CPU writes the same numbers.

Two runs of ``snnergy train`` and of ``snnergy compare`` on digits (2 epochs; compare with two
configurations) into different folders must give identical ``results.json`` numbers, every one
of them, compared exactly; only wall-clock fields may differ. A different seed must change them
(else the comparison would prove nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from snnergy.cli import main

WALL_CLOCK = {"seconds", "wall_s", "started_at", "finished_at", "elapsed_s"}
COMMON = ["--dataset", "digits", "--model", "lenet", "--epochs", "2", "--device", "cpu", "--quiet"]
COMMANDS = {
    "train": ["train", *COMMON],
    "compare": ["compare", *COMMON, "--regularizers", "none,l1@0.1", "--timesteps", "4,16", "--max-samples", "120"],
}


def numbers(node: Any, path: str = "") -> dict[str, Any]:
    """Every number (and string) of a JSON document by path, wall-clock fields left out."""
    if isinstance(node, dict):
        return {k: v for key, value in node.items() if key not in WALL_CLOCK
                for k, v in numbers(value, f"{path}.{key}").items()}
    if isinstance(node, list):
        return {k: v for i, value in enumerate(node) for k, v in numbers(value, f"{path}[{i}]").items()}
    return {path: node}


def run(command: str, out: Path, seed: int) -> dict[str, Any]:
    assert main([*COMMANDS[command], "--seed", str(seed), "--out", str(out)]) == 0
    return numbers(json.loads((out / "results.json").read_text()))


@pytest.mark.parametrize("command", ["train", "compare"])
def test_same_seed_same_numbers(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = run(command, tmp_path / "a", seed=3)
    second = run(command, tmp_path / "b", seed=3)
    floats = [p for p, v in first.items() if isinstance(v, float)]
    # not vacuous: accuracy, sparsity, MACs, energy (and, for compare, every SNN series) are there
    assert len(floats) > (100 if command == "compare" else 10)
    assert first == second
    if command == "compare":
        assert (tmp_path / "a" / "results.csv").read_text() == (tmp_path / "b" / "results.csv").read_text()
    else:
        other = run(command, tmp_path / "c", seed=4)
        assert any(other[p] != first[p] for p in floats)
