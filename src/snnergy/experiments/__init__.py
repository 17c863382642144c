"""Experiments: one configuration end to end, comparisons over regularizers, and result files.

This is the Python API behind the command line: ``train`` -> ``measure`` (DNN record) ->
``convert`` -> (``finetune_split``, SNN-in-the-loop fine-tuning when ``finetune.timesteps`` > 0) ->
``simulate`` (SNN record); ``run_sweep`` runs many configurations (a sweep file's,
or ``compare``'s over regularizers and strengths) through one runner, store and report.
"""

from snnergy.energy import describe_profiles
from snnergy.experiments.finetune import FinetunedFolder, finetune_folder, finetune_split
from snnergy.experiments.compare import (
    DEFAULT_REGULARIZERS,
    DEFAULT_STRENGTHS,
    compare,
    compare_sweep,
    comparison_grid,
    default_grid,
    model_tables,
)
from snnergy.experiments.hardware import map_run, run_plan
from snnergy.experiments.grid import Sweep, SweepLayout, load_sweep, parse_sweep
from snnergy.experiments.measure import measure
from snnergy.experiments.pipeline import TrainedModel, measure_trained, result_record, train
from snnergy.experiments.snn import simulate
from snnergy.experiments.steps import (
    convert,
    convert_checkpoint,
    convert_model_file,
    export_run_nir,
    load_converted,
    load_run,
    quantize_converted,
    simulate_converted,
)
from snnergy.experiments.store import read_results, write_config, write_results
from snnergy.experiments.runner import run_configuration
from snnergy.experiments.sweep import SweepSummary, run_sweep
from snnergy.experiments.sweep_store import Outcome, SweepStore
from snnergy.reporting.identity import config_hash

__all__ = [
    "DEFAULT_REGULARIZERS",
    "map_run",
    "run_plan",
    "DEFAULT_STRENGTHS",
    "Outcome",
    "Sweep",
    "SweepLayout",
    "SweepStore",
    "SweepSummary",
    "TrainedModel",
    "compare",
    "compare_sweep",
    "comparison_grid",
    "config_hash",
    "convert",
    "convert_checkpoint",
    "convert_model_file",
    "quantize_converted",
    "default_grid",
    "model_tables",
    "describe_profiles",
    "export_run_nir",
    "FinetunedFolder",
    "finetune_folder",
    "finetune_split",
    "load_converted",
    "load_run",
    "load_sweep",
    "measure",
    "measure_trained",
    "parse_sweep",
    "read_results",
    "result_record",
    "run_configuration",
    "run_sweep",
    "simulate",
    "simulate_converted",
    "train",
    "write_config",
    "write_results",
]
