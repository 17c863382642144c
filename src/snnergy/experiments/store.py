"""Result files of a run folder: ``results.json`` (a list of records), ``results.csv``, ``config.json``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snnergy.checkpoints import read_json, write_json
from snnergy.config import ExperimentConfig, config_to_dict
from snnergy.errors import CheckpointError, ConfigError
from snnergy.reporting import result_rows, write_csv
from snnergy.reporting.schema import check_records
from snnergy.train_state import config_difference

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
CONFIG_JSON = "config.json"


#: Files and folders a run writes: a folder holding any of them holds a run's results.
RUN_FILES = (RESULTS_JSON, RESULTS_CSV, "snn.json", "checkpoint", "sweep.sqlite")
#: Config keys that do not change the network a folder's results describe (how it was simulated,
#: where the data lie, on which device).
SIMULATION_KEYS = ("simulate", "profiles", "device")


def check_out_folder(out: str | Path, config: ExperimentConfig, step: str) -> None:
    """Refuses to write ``step``'s files (``convert``, ``simulate``) into a folder holding another
    run's results, which would then describe a different network.

    A folder is another run's when it holds any of :data:`RUN_FILES` and its ``config.json`` is
    missing or differs from ``config`` outside :data:`SIMULATION_KEYS` and ``data.data_dir``;
    re-running the same conversion, or simulating the same network with other T, is allowed.

    Raises:
        ConfigError: ``out`` is a file, or a folder of another run (naming the first differing key).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> check_out_folder(folder, ExperimentConfig(), "convert")  # empty: fine
        >>> write_results(folder, [])
        >>> check_out_folder(folder, ExperimentConfig(), "convert")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        snnergy.errors.ConfigError: ... holds another run's results (results.json, results.csv) and no config.json ...
    """
    out = Path(out)
    check_not_a_file(out)
    if not out.is_dir():
        return
    found = [name for name in RUN_FILES if (out / name).exists()]
    if not found:
        return
    advice = f"choose a new --out folder for `snnergy {step}`, or delete {', '.join(found)} there"
    if not (out / CONFIG_JSON).is_file():
        raise ConfigError(f"{out} holds another run's results ({', '.join(found)}) and no {CONFIG_JSON} "
                          f"saying which: {advice}")
    try:
        stored = read_json(out / CONFIG_JSON)
    except CheckpointError as err:
        raise ConfigError(f"{out} holds another run's results ({', '.join(found)}): {err}; {advice}") from None
    difference = config_difference(_network_keys(stored), _network_keys(config_to_dict(config)))
    if difference:
        raise ConfigError(f"{out} holds the results of another run ({', '.join(found)}; {CONFIG_JSON} differs at "
                          f"{difference}): {advice}")


def _network_keys(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        return {"config": config}
    kept = {k: v for k, v in config.items() if k not in SIMULATION_KEYS}
    if isinstance(kept.get("data"), dict):
        kept["data"] = {k: v for k, v in kept["data"].items() if k != "data_dir"}
    return kept


def check_not_a_file(out: str | Path) -> None:
    """Refuses an output folder that is a file, or lies under one.

    Raises:
        ConfigError: ``out`` (or a folder above it) exists and is not a folder.

    Example:
        >>> import tempfile
        >>> check_not_a_file(tempfile.mkstemp()[1])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        snnergy.errors.ConfigError: --out ... is a file, not a folder: give a folder (it is created if missing)
    """
    out = Path(out)
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            where = "" if path == out else f" (its parent {path} is a file)"
            raise ConfigError(f"--out {out} is a file, not a folder{where}: give a folder (it is created if missing)")


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
