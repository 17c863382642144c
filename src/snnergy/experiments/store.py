"""Result files of a run folder: ``results.json`` (a list of records), ``results.csv``, ``config.json``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snnergy.checkpoints import read_json, write_json
from snnergy.config import ExperimentConfig, config_to_dict
from snnergy.reporting import result_rows, write_csv
from snnergy.reporting.schema import check_records

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
    """Reads ``results.json`` of a run folder, checked record by record.

    Raises:
        CheckpointError: The file is missing or is not JSON.
        ResultsError: It is not a list of result records: a missing key, a value of the wrong type
            or range, lists of different lengths, NaN or inf (see :mod:`snnergy.reporting.schema`).
    """
    path = Path(out) / RESULTS_JSON
    return check_records(read_json(path), str(path))
