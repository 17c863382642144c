"""``snnergy compare``: train each regularizer at a few strengths, measure the DNN, convert,
simulate the SNN, and write results, report and plots.

Each finished configuration is written to ``results.json``/``results.csv`` at once, so an
interrupted comparison keeps every configuration it finished; the same command run again reuses
them and resumes the interrupted configuration's training after its last finished epoch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from snnergy.config import ExperimentConfig, config_to_dict
from snnergy.conversion import convert as convert_model
from snnergy.data import calibration_set
from snnergy.energy import ENERGY_PROFILES
from snnergy.errors import ConfigError, SnnergyError
from snnergy.regularizers import REGULARIZERS
from snnergy.reporting import DEFAULT_PROFILE, write_report

from snnergy.experiments.pipeline import measure_trained, result_record, train
from snnergy.experiments.snn import simulate
from snnergy.experiments.store import RESULTS_JSON, read_results, write_config, write_results

DEFAULT_REGULARIZERS = ("none", "l1", "hoyer", "hoyer-square")

# Strengths per regularizer (per-element normalized penalties, see snnergy.regularizers), chosen
# on digits/LeNet (30 epochs, Adam 1e-2) so that the three give visibly different sparsity: from
# a mild setting that keeps DNN accuracy to one that trades a few points for sparser activity.
# Measured there (DNN accuracy / mean sparsity; unregularized 97.3 % / 0.63):
#   l1            0.03: 97.8 % / 0.69   0.1: 98.2 % / 0.77   0.15: 94.4 % / 0.85   (0.2 collapses)
#   hoyer         0.003: 97.3 % / 0.64  0.01: 96.4 % / 0.70  0.03: 83.3 % / 0.89   (0.1 collapses)
#   hoyer-square  0.003: 97.3 % / 0.66  0.01: 96.9 % / 0.70  0.03: 90.4 % / 0.84   (0.1 collapses)
# l2 and transformed-l1 are not in the default comparison; their grids are untuned starting points
# (transformed-l1 behaves like l1 for small activations).
# The energy-aware penalties are in raw units (task loss per SynOp per timestep, per MAC), so their
# strengths are small. Same setting, DNN accuracy / SNN accuracy at T=64 / SynOps at T=64 per sample
# (unregularized 97.3 % / 97.6 % / 1.60 M; l1 0.1 for reference: 98.2 % / 98.2 % / 0.85 M):
#   synops  3e-7: 98.2 / 98.2 % / 1.12 M   7e-7: 97.6 / 97.1 % / 0.73 M   1.5e-6: 96.0 / 96.0 % / 0.59 M
#           (1e-6: 96.0 / 95.6 % / 0.64 M; 2e-6: 92.2 / 92.2 % / 0.54 M)
#   macs    (DNN accuracy / effective MACs per sample; unregularized 97.3 % / 56.1 k, l1 0.1: 34.9 k)
#           1e-7: 97.3 % / 52.8 k   3e-7: 96.9 % / 42.7 k   1e-6: 94.9 % / 25.9 k   (3e-6: 60.7 %; 1e-5 collapses)
DEFAULT_STRENGTHS: dict[str, tuple[float, ...]] = {
    "none": (0.0,),
    "l1": (0.03, 0.1, 0.15),
    "l2": (0.01, 0.03, 0.1),
    "hoyer": (0.003, 0.01, 0.03),
    "hoyer-square": (0.003, 0.01, 0.03),
    "transformed-l1": (0.03, 0.1, 0.15),
    "synops": (3e-7, 7e-7, 1.5e-6),
    "macs": (1e-7, 3e-7, 1e-6),
}


def default_grid(regularizers: Sequence[str]) -> list[tuple[str, float]]:
    """The (regularizer, strength) pairs ``compare`` runs by default.

    Example:
        >>> default_grid(["none", "l1"])
        [('none', 0.0), ('l1', 0.03), ('l1', 0.1), ('l1', 0.15)]
    """
    grid = []
    for name in regularizers:
        REGULARIZERS.get(name)
        if name not in DEFAULT_STRENGTHS:
            raise ConfigError(f"regularizer '{name}' has no default strengths; pass --strengths")
        grid += [(name, s) for s in DEFAULT_STRENGTHS[name]]
    return grid


def run_configuration(config: ExperimentConfig, out: Path | None, progress: bool = False) -> dict[str, Any]:
    """Train, measure, convert and simulate one configuration; returns its result record."""
    trained = train(config, out=out, progress=progress)
    dnn = measure_trained(trained)
    calibration = calibration_set(trained.splits, config.data.calibration_size, seed=config.seed)
    snn = convert_model(trained.model, calibration.to(trained.device), config.convert)
    record = simulate(
        snn,
        (trained.splits.test_x, trained.splits.test_y),
        timesteps=config.simulate.timesteps,
        input=config.simulate.input,
        max_samples=config.simulate.max_samples,
        max_memory=config.simulate.max_memory,
        profiles=config.profiles,
        seed=config.seed,
        device=trained.device,
        progress=progress,
    )
    return result_record(config, dnn, record)


def compare(
    base: ExperimentConfig | None = None,
    *,
    grid: Sequence[tuple[str, float]] | None = None,
    out: str | Path | None = None,
    profile: str = DEFAULT_PROFILE,
    progress: bool = False,
    on_result: Callable[[Mapping[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Runs every (regularizer, strength) of ``grid`` on the ``base`` configuration.

    Args:
        base: Dataset, model, training, conversion and simulation settings shared by all runs.
        grid: (regularizer, strength) pairs (``None``: :data:`DEFAULT_REGULARIZERS` at their
            :data:`DEFAULT_STRENGTHS`).
        out: Folder for ``results.json``, ``results.csv``, ``report.md``, ``plots/`` and each
            configuration's checkpoint (``runs/<regularizer>-<strength>/checkpoint``).
        profile: Energy profile of the report and plots.
        progress: Show progress bars.
        on_result: Called with each finished (or failed) record.

    Returns:
        One record per configuration; a configuration that fails with a
        :class:`~snnergy.errors.SnnergyError` is recorded with an ``error`` part and the
        comparison goes on.
    """
    base = base or ExperimentConfig()
    grid = list(grid) if grid is not None else default_grid(DEFAULT_REGULARIZERS)
    for name, _ in grid:
        REGULARIZERS.get(name)
    ENERGY_PROFILES.get(profile)
    if base.profiles is not None and profile not in base.profiles:
        raise ConfigError(f"report profile '{profile}' is not among the configured profiles {list(base.profiles)}")
    records: list[dict[str, Any]] = []
    finished = finished_records(out) if out is not None else {}
    if out is not None:
        write_config(out, base)
    for name, strength in grid:
        config = replace(base, train=replace(base.train, regularizer=name, strength=float(strength)))
        run_out = Path(out) / "runs" / f"{name}-{strength:g}" if out is not None else None
        record = finished.get(_identity(config))
        if record is None:
            try:
                record = run_configuration(config, run_out, progress)
            except SnnergyError as err:
                record = {**result_record(config), "error": str(err)}
        records.append(record)
        if out is not None:
            write_results(out, records)
        if on_result is not None:
            on_result(record)
    if out is not None:
        write_report(out, records, profile)
    return records


def finished_records(out: str | Path) -> dict[str, dict[str, Any]]:
    """The finished (not failed) records of an earlier comparison in ``out``, by configuration:
    a rerun of the same command reuses them instead of training again (it resumes)."""
    if not (Path(out) / RESULTS_JSON).is_file():
        return {}
    return {json.dumps(r["config"]["resolved"], sort_keys=True): r for r in read_results(out) if "error" not in r}


def _identity(config: ExperimentConfig) -> str:
    return json.dumps(json.loads(json.dumps(config_to_dict(config))), sort_keys=True)
