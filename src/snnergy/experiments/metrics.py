"""``snnergy metrics``: a run folder's results in another benchmark's format (NeuroBench).

A run folder is one configuration: a ``snnergy train`` folder, or ``OUT/runs/<id>`` of a compare or
sweep. Its record comes from its own ``results.json`` (written by ``snnergy train``, and by compare
and sweep into each ``runs/<id>`` since they write ``neurobench.json``), else, for a compare or
sweep folder written before that, from ``OUT/results.json`` by the configuration's identity. The
static counts (footprint, parameters, zero weights, neurons per layer) come from the checkpoint's
model and its network plan (:mod:`snnergy.counting.static`); the mapping itself is
:func:`snnergy.reporting.neurobench.neurobench_metrics`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from snnergy.checkpoints import write_json
from snnergy.counting.static import (
    FLOAT32_BYTES,
    connection_sparsity,
    footprint_bytes,
    parameter_count,
    plan_connection_sparsity,
    plan_footprint_bytes,
    plan_neurons,
)
from snnergy.errors import CheckpointError, ConfigError, ResultsError
from snnergy.reporting.identity import config_hash, record_hash
from snnergy.reporting.neurobench import FORMAT, StaticCounts, neurobench_metrics
from snnergy.structure import trace
from snnergy.training import Checkpoint

from snnergy.experiments.pipeline import CHECKPOINT_DIR
from snnergy.experiments.steps import load_run
from snnergy.experiments.store import RESULTS_JSON, read_results, write_results

#: The formats ``snnergy metrics --format`` writes.
FORMATS = (FORMAT,)
#: The file compare and sweep write into each configuration's folder ``OUT/runs/<id>/``.
NEUROBENCH_JSON = "neurobench.json"


def check_format(name: str) -> str:
    """Checks a ``--format`` name.

    Raises:
        ConfigError: Not one of :data:`FORMATS`.

    Example:
        >>> check_format("neurobench")
        'neurobench'
    """
    if name not in FORMATS:
        raise ConfigError(f"--format '{name}' is not a known metrics format; known: {', '.join(FORMATS)}")
    return name


def static_counts(checkpoint: Checkpoint) -> tuple[StaticCounts, StaticCounts]:
    """The static counts of a checkpoint's DNN and of the SNN it converts to (its network plan)."""
    model = checkpoint.model
    plan = trace(model, tuple(checkpoint.input_shape))
    neurons = plan_neurons(plan)
    convert = checkpoint.config.convert
    dnn = StaticCounts(footprint_bytes(model), parameter_count(model), connection_sparsity(model), neurons)
    snn_bytes = plan_footprint_bytes(plan, convert.channelwise)
    # quantization may round weights to zero: which ones, only the converted network knows
    zeros = None if convert.weight_bits is not None else plan_connection_sparsity(plan)
    return dnn, StaticCounts(snn_bytes, snn_bytes // FLOAT32_BYTES, zeros, neurons)


def _record_of(folder: Path, checkpoint: Checkpoint) -> dict[str, Any]:
    """The folder's own record, else its compare/sweep's record of the same configuration."""
    wanted = config_hash(checkpoint.config)
    own = folder / RESULTS_JSON
    if own.is_file():
        records = read_results(folder)
        source = own
    elif folder.parent.name == "runs" and (folder.parent.parent / RESULTS_JSON).is_file():
        records = read_results(folder.parent.parent)
        source = folder.parent.parent / RESULTS_JSON
    else:
        raise ResultsError(f"{folder}: no {RESULTS_JSON} here (`snnergy train` writes one; compare and sweep "
                           f"write runs/<id>/{RESULTS_JSON}): run the training or comparison first")
    if len(records) == 1 and source == own:
        return records[0]
    matching = [r for r in records if record_hash(r) == wanted]
    if not matching:
        raise ResultsError(f"{source}: no record of the configuration of {folder}/{CHECKPOINT_DIR}")
    return matching[-1]


def run_metrics(folder: str | Path, format: str = FORMAT, out: str | Path | None = None) -> dict[str, Any]:
    """A run folder's metrics in ``format`` (NeuroBench's), written as JSON to ``out`` if given.

    Args:
        folder: A ``snnergy train`` folder or a compare/sweep ``OUT/runs/<id>``.
        format: ``"neurobench"``.
        out: A JSON file to write.

    Raises:
        ConfigError: Unknown ``format``.
        CheckpointError: ``folder`` is missing or holds no checkpoint.
        ResultsError: No (or a failed, or another model's) result record for it.
    """
    check_format(format)
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder; give a `snnergy train` folder or a compare/sweep "
                              "OUT/runs/<id>")
    if not (folder / CHECKPOINT_DIR).is_dir():
        raise CheckpointError(f"{folder}: no {CHECKPOINT_DIR}/ here: give a `snnergy train` folder or a "
                              "compare/sweep OUT/runs/<id> (a comparison's top folder holds many runs)")
    checkpoint = load_run(folder)
    record = _record_of(folder, checkpoint)
    dnn, snn = static_counts(checkpoint)
    metrics = neurobench_metrics(record, dnn, snn, run=str(folder))
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, metrics)
    return metrics


def write_run_files(folder: str | Path, record: dict[str, Any]) -> None:
    """Writes one finished configuration's ``results.json`` (its record) and ``neurobench.json``
    into its compare/sweep folder ``OUT/runs/<id>`` (which holds its checkpoint)."""
    folder = Path(folder)
    write_results(folder, [record])
    run_metrics(folder, FORMAT, folder / NEUROBENCH_JSON)


__all__ = ["FORMATS", "NEUROBENCH_JSON", "check_format", "run_metrics", "static_counts", "write_run_files"]
