"""Result files of a run folder: ``results.json`` (a list of records), ``results.csv``, ``config.json``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snnergy.checkpoints import read_json, write_json
from snnergy.config import ExperimentConfig, config_to_dict
from snnergy.errors import SnnergyError
from snnergy.reporting import result_rows, write_csv

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
CONFIG_JSON = "config.json"


def write_results(out: str | Path, records: Sequence[dict[str, Any]]) -> None:
    """Writes ``results.json`` and ``results.csv`` into ``out`` (each atomically)."""
    out = Path(out)
    write_json(out / RESULTS_JSON, list(records))
    write_csv(out / RESULTS_CSV, result_rows(records))


def write_config(out: str | Path, config: ExperimentConfig) -> None:
    """Saves the resolved config beside the results."""
    write_json(Path(out) / CONFIG_JSON, config_to_dict(config))


def read_results(out: str | Path) -> list[dict[str, Any]]:
    """Reads ``results.json`` of a run folder; anything but a list of records is an error."""
    path = Path(out) / RESULTS_JSON
    data = read_json(path)
    if not isinstance(data, list) or not all(isinstance(r, dict) and "config" in r for r in data):
        raise SnnergyError(f"{path}: expected a list of result records with a 'config' part")
    return data
