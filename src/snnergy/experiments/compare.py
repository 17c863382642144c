"""``snnergy compare``: train each regularizer at a few strengths, measure the DNN, convert,
simulate the SNN, and write results, report and plots.

A comparison is a sweep built in code (:func:`compare_sweep`: the base configuration with a grid
over ``train`` tables, one per (regularizer, strength)) and run by the sweep's driver
(:func:`~snnergy.experiments.sweep.run_sweep`): the same runner, store (``OUT/sweep.sqlite``),
configuration identity and report writer as ``snnergy sweep``. Its own :data:`COMPARE_LAYOUT`
keeps the comparison's outputs: ``runs/<regularizer>-<strength>/checkpoint/``, failed
configurations listed in ``results.json``, and the per-configuration report. Each finished
configuration is stored and written to ``results.json``/``results.csv`` at once, so an interrupted
comparison keeps every configuration it finished; the same command run again reuses them and
resumes the interrupted configuration's training after its last finished epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from snnergy.config import ExperimentConfig, config_to_dict
from snnergy.errors import ConfigError
from snnergy.regularizers import REGULARIZERS
from snnergy.reporting import DEFAULT_PROFILE
from snnergy.reporting.identity import record_hash

from snnergy.experiments.grid import Sweep, SweepLayout, parse_sweep
from snnergy.experiments.runner import run_configuration
from snnergy.experiments.store import RESULTS_JSON, read_results, write_config
from snnergy.experiments.sweep import check_profile, run_sweep, stored_records
from snnergy.experiments.sweep_store import STORE_FILE, Outcome, SweepStore

DEFAULT_REGULARIZERS = ("none", "l1", "hoyer", "hoyer-square")
COMPARE_LAYOUT = SweepLayout(run_folders="label", report="compare", failed_in_results=True)
"""How a comparison's folder is written: ``runs/<regularizer>-<strength>/``, the per-configuration
report, failed configurations listed in ``results.json``."""

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
#   synops  (measured with the former scale, differentiated through the batch percentile:)
#           3e-7: 98.2 / 98.2 % / 1.12 M   7e-7: 97.6 / 97.1 % / 0.73 M   1.5e-6: 96.0 / 96.0 % / 0.59 M
#           With the scale constant in the backward pass (the default now, see regularizers.energy_aware),
#           DNN / SNN accuracy at T=128: 5e-7: 98.4 / 98.2 %; 1e-6: 94.9 / 95.1 %; 1.5e-6 collapses (10 %),
#           and 7e-7 reaches the 97 % target at T=16 with 1.98e5 SynOps (none: 3.48e5).
#   macs    (DNN accuracy / effective MACs per sample; unregularized 97.3 % / 56.1 k, l1 0.1: 34.9 k)
#           1e-7: 97.3 % / 52.8 k   3e-7: 96.9 % / 42.7 k   1e-6: 94.9 % / 25.9 k   (3e-6: 60.7 %; 1e-5 collapses)
DEFAULT_STRENGTHS: dict[str, tuple[float, ...]] = {
    "none": (0.0,),
    "l1": (0.03, 0.1, 0.15),
    "l2": (0.01, 0.03, 0.1),
    "hoyer": (0.003, 0.01, 0.03),
    "hoyer-square": (0.003, 0.01, 0.03),
    "transformed-l1": (0.03, 0.1, 0.15),
    "synops": (3e-7, 7e-7, 1e-6),
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


def compare_sweep(base: ExperimentConfig, grid: Sequence[tuple[str, float]]) -> Sweep:
    """The sweep a comparison runs: ``base`` with one ``train`` table per (regularizer, strength),
    validated like a sweep file (``none`` runs once, at strength 0).

    Example:
        >>> sweep = compare_sweep(ExperimentConfig(), [("none", 0.0), ("l1", 0.1)])
        >>> [(c.train.regularizer, c.train.strength) for c in sweep.configs], sweep.layout.run_folder(sweep.configs[1])
        ([('none', 0.0), ('l1', 0.1)], 'l1-0.1')
    """
    for name, _ in grid:
        REGULARIZERS.get(name)
    tables = [{"regularizer": name, "strength": float(strength)} for name, strength in grid]
    sweep = parse_sweep({"base": config_to_dict(base), "grid": {"train": tables}}, source="compare")
    return replace(sweep, layout=COMPARE_LAYOUT)


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
        out: Folder for ``results.json``, ``results.csv``, ``report.md``, ``plots/``, the store
            ``sweep.sqlite`` and each configuration's checkpoint
            (``runs/<regularizer>-<strength>/checkpoint``); ``None``: nothing written.
        profile: Energy profile of the report and plots.
        progress: Show progress bars.
        on_result: Called with each record, reused or finished (or failed) now.

    Returns:
        One record per configuration, in grid order; a configuration that fails is recorded
        with an ``error`` part and the comparison goes on (and runs again next time).
    """
    base = base or ExperimentConfig()
    grid = list(grid) if grid is not None else default_grid(DEFAULT_REGULARIZERS)
    sweep = compare_sweep(base, grid)
    check_profile(sweep, profile)
    if out is not None:
        adopt_results(out)
        write_config(out, base)
        for record in stored_records(out, sweep.configs):
            if on_result is not None:
                on_result(record)
    summary = run_sweep(
        sweep, out, retry_failed=True, profile=profile, run_progress=progress,
        on_outcome=(lambda outcome: on_result(outcome.record)) if on_result is not None else None,
    )
    return list(summary.records)


def adopt_results(out: str | Path) -> int:
    """Stores the finished records of a ``results.json`` written by a comparison before the store
    existed (an older snnergy), so that the same command still resumes; returns how many. Only
    complete comparison records (with an ``snn`` part) count: a ``snnergy train`` folder's record
    is not a finished comparison."""
    out = Path(out)
    if (out / STORE_FILE).is_file() or not (out / RESULTS_JSON).is_file():
        return 0
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    finished = [r for r in read_results(out)
                if "error" not in r and r.get("snn") and isinstance(r["config"].get("resolved"), Mapping)]
    with SweepStore(out / STORE_FILE) as store:
        for record in finished:
            store.put(Outcome(record_hash(record), "finished", dict(record["config"]["resolved"]), record, None, now, now, 0.0))
    return len(finished)


__all__ = [
    "COMPARE_LAYOUT",
    "DEFAULT_REGULARIZERS",
    "DEFAULT_STRENGTHS",
    "adopt_results",
    "compare",
    "compare_sweep",
    "default_grid",
    "run_configuration",
]
