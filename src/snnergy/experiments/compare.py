"""``snnergy compare``: train each regularizer at a few strengths, measure the DNN, convert,
simulate the SNN, and write results, report and plots.

A comparison is a sweep built in code (:func:`compare_sweep`: the base configuration with a grid
over ``model`` tables (activation, QCFS levels, width: :func:`model_tables`) times ``train`` tables,
one per (regularizer, strength)) and run by the sweep's driver
(:func:`~snnergy.experiments.sweep.run_sweep`): the same runner, store (``OUT/sweep.sqlite``),
configuration identity and report writer as ``snnergy sweep``. Its own :data:`COMPARE_LAYOUT`
keeps the comparison's outputs: ``runs/<label>/checkpoint/`` (e.g. ``l1-0.1``,
``qcfs4-w0.5-synops-7e-07``: :func:`~snnergy.experiments.grid.run_label`), failed
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

from snnergy.config import ACTIVATION_NAMES, ExperimentConfig, config_to_dict
from snnergy.errors import ConfigError
from snnergy.regularizers import REGULARIZERS
from snnergy.reporting import DEFAULT_PROFILE
from snnergy.reporting.identity import config_hash, record_hash

from snnergy.experiments.grid import Sweep, SweepLayout, parse_sweep, run_label
from snnergy.experiments.runner import run_configuration
from snnergy.experiments.store import RESULTS_JSON, read_results, write_config
from snnergy.experiments.sweep import check_profile, run_sweep, stored_records
from snnergy.experiments.sweep_store import STORE_FILE, Outcome, SweepStore

DEFAULT_REGULARIZERS = ("none", "l1", "hoyer", "hoyer-square")
COMPARE_LAYOUT = SweepLayout(run_folders="label", report="compare", failed_in_results=True)
"""How a comparison's folder is written: ``runs/<label>/`` (model axes, regularizer, strength), the
per-configuration report, failed configurations listed in ``results.json``."""

DEFAULT_ACTIVATIONS = ("relu", "qcfs")
"""The activations of the default comparison (``snnergy compare`` with no grid options): the
unregularized ReLU network is the reference every factor is taken against, QCFS the low-latency
conversion (Bu et al., ICLR 2022)."""
DEFAULT_LEVELS = 4
"""QCFS levels L of the default comparison (chosen on digits, see :data:`COMPARE_GRID`)."""

# The default comparison, per activation: (regularizer, strength) pairs, one strength per
# regularizer so that both activations fit the demo's time budget (<= 60 s on 2 cores).
# Measured on digits/LeNet (30 epochs, Adam 1e-2, T up to 128, seed 0; every-t selection against
# each run's own DNN minus 1 pp), DNN accuracy / smallest sufficient t / SynOps / SNN energy there
# (cmos45-fp32):
#   qcfs L=4  none:        99.1 % / t = 3 / 1.03e5 / 1.13e-7 J
#             synops 3e-7: 98.2 % / t = 4 / 9.53e4 / 1.06e-7 J
#             synops 5e-7: 98.0 % / t = 3 / 5.92e4 / 7.32e-8 J   (DNN 1.33e-7 J, 2.90e4 effective MACs)
#             synops 1e-6 and 3e-6 collapse (relu1..relu3 silent): QCFS's rate h/theta is exact (no
#             percentile clipping), so a strength weighs more than on a ReLU net.
#   relu      none:              98.0 % / t = 12 / 2.45e5 / 2.40e-7 J   (DNN 2.56e-7 J)
#             l1 0.1:            98.4 % / t = 11 / 1.21e5 / 1.29e-7 J   (DNN 1.61e-7 J)
#             hoyer 0.01:        97.3 % / t = 12 / 1.73e5 / 1.76e-7 J
#             hoyer-square 0.01: 97.3 % / t = 14 / 2.33e5 / 2.30e-7 J
# The default comparison's verdict (target: the ReLU DNN's 98.0 % - 1 pp on the same 450 images):
# qcfs4 synops 5e-7 at t = 3, 7.32e-8 J: 4.13x fewer SynOps and 3.28x less energy than the ReLU SNN
# (t = 12), 0.55x the cheapest DNN at the target (its own, 1.33e-7 J). With the fast path of the
# trained-threshold penalty (the same function, rounded differently; 1 epoch moves weights by 4e-8,
# 30 epochs diverge like another seed): synops 5e-7: 98.2 % DNN, t = 4, 8.14e4 SynOps, 9.31e-8 J, and
# the verdict picks qcfs4 none at t = 2 (8.02e-8 J): 3.65x fewer SynOps, 0.59x the cheapest DNN
# (qcfs4 synops's, 1.35e-7 J); docs/results/digits-lenet.
# L = 4 because QCFS reaches its DNN after about L steps: the low-latency end of Bu et al.'s range.
# Time (`time snnergy compare`, 2 cores shared with other jobs, load 6-12): this default 868 s wall /
# 375 s CPU; the former ReLU-only default (none + l1/hoyer/hoyer-square x 3 strengths, 54 s on 2 idle
# cores) 1,573 s / 808 s in the same conditions: 0.47-0.55 of it, about 25-30 s on 2 idle cores.
COMPARE_GRID: dict[str, tuple[tuple[str, float], ...]] = {
    "relu": (("none", 0.0), ("l1", 0.1), ("hoyer", 0.01), ("hoyer-square", 0.01)),
    "qcfs": (("none", 0.0), ("synops", 5e-7)),
    "clip": (("none", 0.0), ("synops", 5e-7)),
}
"""Per activation, the (regularizer, strength) pairs a comparison runs when no regularizers are
given (``--activations`` alone, or the default comparison)."""

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


def model_tables(
    base: ExperimentConfig,
    activations: Sequence[str] | None = None,
    levels: Sequence[int] | None = None,
    widths: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """The ``model`` tables a comparison crosses: every activation (``None``: the base's), QCFS once
    per level (``None``: the base's ``model.levels``; other activations keep the base's), every
    width (``None``: the base's), in that order.

    Raises:
        ConfigError: An unknown activation, or levels without any ``qcfs`` activation.

    Example:
        >>> model_tables(ExperimentConfig(), ["relu", "qcfs"], [4, 8], [0.5, 1.0])  # doctest: +NORMALIZE_WHITESPACE
        [{'activation': 'relu', 'width': 0.5}, {'activation': 'relu', 'width': 1.0},
         {'activation': 'qcfs', 'levels': 4, 'width': 0.5}, {'activation': 'qcfs', 'levels': 4, 'width': 1.0},
         {'activation': 'qcfs', 'levels': 8, 'width': 0.5}, {'activation': 'qcfs', 'levels': 8, 'width': 1.0}]
    """
    names = list(dict.fromkeys(activations or [base.model.activation]))
    for name in names:
        if name not in ACTIVATION_NAMES:
            raise ConfigError(f"unknown activation '{name}'; known: {', '.join(ACTIVATION_NAMES)}")
    if levels and "qcfs" not in names:
        raise ConfigError(f"levels {list(levels)} apply to qcfs only, and the activations are {', '.join(names)}; "
                          "add qcfs, e.g. --activations relu,qcfs")
    tables = []
    for name in names:
        for level in (list(dict.fromkeys(levels or [base.model.levels])) if name == "qcfs" else [None]):
            for width in dict.fromkeys(widths or [base.model.width]):
                table: dict[str, Any] = {"activation": name}
                if level is not None:
                    table["levels"] = int(level)
                table["width"] = float(width)
                tables.append(table)
    return tables


def comparison_grid(
    base: ExperimentConfig,
    grid: Sequence[tuple[str, float]] | None = None,
    activations: Sequence[str] | None = None,
    levels: Sequence[int] | None = None,
    widths: Sequence[float] | None = None,
) -> list[tuple[dict[str, Any], str, float]]:
    """The (model table, regularizer, strength) points of a comparison.

    - ``grid`` given: every model table (:func:`model_tables`) times every pair of ``grid``.
    - No ``grid``, no ``activations`` and a ReLU base: the default comparison,
      :data:`DEFAULT_ACTIVATIONS` (QCFS at :data:`DEFAULT_LEVELS` unless ``levels``) crossed with
      ``widths``, each with its :data:`COMPARE_GRID` pairs.
    - No ``grid`` but ``activations``: each activation with its :data:`COMPARE_GRID` pairs.
    - No ``grid`` and no ``activations`` on a base of another activation: the base's network with
      :data:`DEFAULT_REGULARIZERS` at their :data:`DEFAULT_STRENGTHS` (as before the model axes).

    Example:
        >>> points = comparison_grid(ExperimentConfig())
        >>> [(m["activation"], m.get("levels"), r, s) for m, r, s in points][:1], len(points)
        ([('relu', None, 'none', 0.0)], 6)
        >>> [(m["activation"], r) for m, r, _ in comparison_grid(ExperimentConfig(), [("none", 0.0)], ["relu", "qcfs"])]
        [('relu', 'none'), ('qcfs', 'none')]
    """
    if grid is not None:
        return [(m, name, float(s)) for m in model_tables(base, activations, levels, widths) for name, s in grid]
    if activations is None and base.model.activation != "relu":
        pairs = default_grid(DEFAULT_REGULARIZERS)
        return [(m, name, s) for m in model_tables(base, None, levels, widths) for name, s in pairs]
    if activations is None:
        activations, levels = DEFAULT_ACTIVATIONS, levels or [DEFAULT_LEVELS]
    points = []
    for m in model_tables(base, activations, levels, widths):
        pairs = COMPARE_GRID.get(m["activation"]) or tuple(default_grid(DEFAULT_REGULARIZERS))
        points += [(m, name, s) for name, s in pairs]
    return points


def compare_sweep(
    base: ExperimentConfig,
    grid: Sequence[tuple[str, float] | tuple[Mapping[str, Any], str, float]],
    models: Sequence[Mapping[str, Any]] | None = None,
) -> Sweep:
    """The sweep a comparison runs: ``base`` with a grid over ``model`` tables times ``train``
    tables, validated like a sweep file (``none`` runs once, at strength 0).

    Args:
        base: The configuration every run starts from.
        grid: (regularizer, strength) pairs, crossed with ``models``; or (model table, regularizer,
            strength) points (:func:`comparison_grid`), taken as they are.
        models: ``model`` tables (e.g. ``{"activation": "qcfs", "levels": 4, "width": 0.5}``) the
            pairs are crossed with (``None``: the base's network alone).

    Raises:
        ConfigError: An unknown name or bad value (naming the grid point), or two configurations
            that would share a run folder.

    Example:
        >>> sweep = compare_sweep(ExperimentConfig(), [("none", 0.0), ("l1", 0.1)])
        >>> [(c.train.regularizer, c.train.strength) for c in sweep.configs], sweep.layout.run_folder(sweep.configs[1])
        ([('none', 0.0), ('l1', 0.1)], 'l1-0.1')
        >>> sweep = compare_sweep(ExperimentConfig(), [("synops", 7e-7)], [{"activation": "qcfs", "levels": 4, "width": 0.5}])
        >>> [sweep.layout.run_folder(c) for c in sweep.configs]
        ['qcfs4-w0.5-synops-7e-07']
    """
    points = [(dict(p[0]), p[1], p[2]) if len(p) == 3 else (dict(m), p[0], p[1])  # type: ignore[misc]
              for p in grid for m in ([None] if len(p) == 3 else (models or [{}]))]
    for _, name, _ in points:
        REGULARIZERS.get(name)
    base_dict = config_to_dict(base)
    by_model: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for model, name, strength in points:
        key = repr(sorted(model.items()))
        by_model.setdefault(key, (model, []))[1].append({"regularizer": name, "strength": float(strength)})
    configs: dict[str, ExperimentConfig] = {}
    for model, tables in by_model.values():
        part = parse_sweep({"base": base_dict, "grid": {"model": [model], "train": tables}}, source="compare")
        for config in part.configs:
            configs.setdefault(config_hash(config), config)
    folders: dict[str, ExperimentConfig] = {}
    for config in configs.values():
        folder = run_label(config)
        if folder in folders:
            raise ConfigError(f"compare: two configurations would share the run folder runs/{folder}; "
                              "give each activation, level, width and regularizer strength once")
        folders[folder] = config
    pairs = dict.fromkeys((t["regularizer"], t["strength"]) for _, ts in by_model.values() for t in ts)
    grid_items: tuple[tuple[str, tuple[Any, ...]], ...] = (
        ("model", tuple(m for m, _ in by_model.values())),
        ("train", tuple({"regularizer": name, "strength": strength} for name, strength in pairs)),
    )  # sweep.json's record of the axes; the configurations are the points above
    return Sweep(base, grid_items, None, tuple(configs.values()), "compare", COMPARE_LAYOUT)


def compare(
    base: ExperimentConfig | None = None,
    *,
    grid: Sequence[tuple[str, float]] | None = None,
    activations: Sequence[str] | None = None,
    levels: Sequence[int] | None = None,
    widths: Sequence[float] | None = None,
    out: str | Path | None = None,
    profile: str = DEFAULT_PROFILE,
    progress: bool = False,
    on_result: Callable[[Mapping[str, Any]], None] | None = None,
    tensorboard: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Runs every (regularizer, strength) of ``grid`` on every network of the model axes
    (activations, QCFS levels, widths) of the ``base`` configuration (:func:`comparison_grid`).

    Args:
        base: Dataset, model, training, conversion and simulation settings shared by all runs.
        grid: (regularizer, strength) pairs (``None``: the default comparison, see
            :func:`comparison_grid`: ReLU and QCFS with their :data:`COMPARE_GRID` pairs on a ReLU
            base; :data:`DEFAULT_REGULARIZERS` at their :data:`DEFAULT_STRENGTHS` on another).
        activations: Activations crossed with the grid (``None``: the base's, or the default
            comparison's).
        levels: QCFS levels L crossed with ``qcfs`` (``None``: the base's ``model.levels``).
        widths: Model widths crossed with everything (``None``: the base's ``model.width``).
        out: Folder for ``results.json``, ``results.csv``, ``report.md``, ``plots/``, the store
            ``sweep.sqlite`` and each configuration's checkpoint
            (``runs/<label>/checkpoint``, e.g. ``qcfs4-w0.5-synops-7e-07``); ``None``: nothing written.
        profile: Energy profile of the report and plots.
        progress: Show progress bars.
        on_result: Called with each record, reused or finished (or failed) now.
        tensorboard: A folder for each configuration's training log as TensorBoard event files,
            ``tensorboard/<run folder>`` (:func:`~snnergy.experiments.sweep.run_sweep`).

    Returns:
        One record per configuration, in grid order; a configuration that fails is recorded
        with an ``error`` part and the comparison goes on (and runs again next time).
    """
    base = base or ExperimentConfig()
    sweep = compare_sweep(base, comparison_grid(base, grid, activations, levels, widths))
    check_profile(sweep, profile)
    if out is not None:
        adopt_results(out)
        write_config(out, base)
        for record in stored_records(out, sweep.configs):
            if on_result is not None:
                on_result(record)
    summary = run_sweep(
        sweep, out, retry_failed=True, profile=profile, run_progress=progress, tensorboard=tensorboard,
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
    "COMPARE_GRID",
    "COMPARE_LAYOUT",
    "DEFAULT_ACTIVATIONS",
    "DEFAULT_LEVELS",
    "DEFAULT_REGULARIZERS",
    "DEFAULT_STRENGTHS",
    "adopt_results",
    "compare",
    "compare_sweep",
    "comparison_grid",
    "default_grid",
    "model_tables",
    "run_configuration",
]
