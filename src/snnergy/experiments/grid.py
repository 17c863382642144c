"""Sweep definitions: a base configuration times lists of values, validated and expanded.

A sweep file (TOML) has a ``[base]`` table (an :class:`~snnergy.config.ExperimentConfig`, the same
tables as a config file), a ``[grid]`` table mapping dotted keys to lists (the product is taken,
in file order) and optionally a ``[strengths]`` table mapping regularizer names to lists of
strengths (strengths are only comparable within one regularizer; ``none`` runs once at 0)::

    [base]
    seed = 0
    [base.data]
    dataset = "digits"
    [grid]
    "train.regularizer" = ["none", "l1", "hoyer"]
    seed = [0, 1]
    [strengths]
    l1 = [0.03, 0.1]
    hoyer = [0.003, 0.01]

A grid key may also name a whole section with tables as values (``model = [{name = "lenet"},
{name = "vgg", width = 0.5}]``): each table is merged into the base section, for settings that
go together. The grid key ``config`` takes tables of whole-config settings (``config = [{model =
{activation = "relu"}, train = {regularizer = "none"}}, {model = {activation = "qcfs"}, train =
{regularizer = "synops", strength = 1e-6}}]``), each merged section by section into the base:
for configurations that are chosen points rather than a product. Everything is validated before
any run starts. Each configuration's identity is the SHA-256 of its resolved config (:func:`~snnergy.reporting.identity.config_hash`, the one
identity of a configuration). :func:`snnergy.experiments.sweep.run_sweep` runs a sweep; ``snnergy
compare`` builds one in code (:func:`snnergy.experiments.compare.compare_sweep`).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from snnergy.config import ExperimentConfig, config_from_dict, config_to_dict, read_toml
from snnergy.data import DATASETS
from snnergy.energy import ENERGY_PROFILES
from snnergy.errors import ConfigError
from snnergy.models import MODELS
from snnergy.regularizers import REGULARIZERS
from snnergy.reporting import REPORT_STYLES
from snnergy.reporting.identity import config_hash

SWEEP_TABLES = ("description", "base", "grid", "strengths")
# Config fields whose values must be registered names, and the registry that knows them.
NAMED_FIELDS = {"data.dataset": DATASETS, "model.name": MODELS, "train.regularizer": REGULARIZERS}
RUN_FOLDERS = ("id", "label")
WHOLE_CONFIG_KEY = "config"
"""The grid key whose values are tables of whole-config settings (chosen points, not a product)."""


@dataclass(frozen=True)
class SweepLayout:
    """How a sweep's run folder is written (``snnergy sweep``'s defaults; ``snnergy compare`` has its own).

    Attributes:
        run_folders: Where each configuration's checkpoint goes: ``"id"``, ``runs/<id[:12]>/``;
            ``"label"``, ``runs/<label>/`` (:func:`run_label`: the model axes that differ from the
            full-width ReLU network, then ``<regularizer>-<strength>``; unique only when those tell
            the configurations apart, as in a comparison).
        report: The report style (a name in :data:`snnergy.reporting.REPORT_STYLES`).
        failed_in_results: Also list failed configurations (with their ``error``) in ``results.json``.

    Example:
        >>> SweepLayout(run_folders="label").run_folder(ExperimentConfig())
        'none-0'
    """

    run_folders: str = "id"
    report: str = "sweep"
    failed_in_results: bool = False

    def __post_init__(self) -> None:
        if self.run_folders not in RUN_FOLDERS:
            raise ConfigError(f"run_folders must be one of {', '.join(RUN_FOLDERS)}, got {self.run_folders!r}")
        REPORT_STYLES.get(self.report)

    def run_folder(self, config: ExperimentConfig) -> str:
        """The folder name, under ``OUT/runs/``, of ``config``'s checkpoint."""
        if self.run_folders == "label":
            return run_label(config)
        return config_hash(config)[:12]


def run_label(config: ExperimentConfig) -> str:
    """A configuration's short folder name: the activation when not ``relu`` (``qcfs`` with its
    levels), ``w<width>`` when the width is not 1, then ``<regularizer>-<strength>``.

    Example:
        >>> from snnergy.config import ModelConfig, TrainConfig
        >>> run_label(ExperimentConfig(train=TrainConfig(regularizer="l1", strength=0.1)))
        'l1-0.1'
        >>> run_label(ExperimentConfig(model=ModelConfig(activation="qcfs", levels=4, width=0.5),
        ...                            train=TrainConfig(regularizer="synops", strength=7e-7)))
        'qcfs4-w0.5-synops-7e-07'
    """
    model = config.model
    parts = []
    if model.activation != "relu":
        parts.append(f"qcfs{model.levels}" if model.activation == "qcfs" else model.activation)
    if model.width != 1.0:
        parts.append(f"w{model.width:g}")
    return "-".join([*parts, f"{config.train.regularizer}-{config.train.strength:g}"])


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: the base config, the grid, and the configurations it expands to.

    Attributes:
        base: The configuration every run starts from.
        grid: (dotted key, values) pairs, in file order.
        strengths: (regularizer, strengths) pairs, or ``None`` when the file has no ``[strengths]``.
        configs: The distinct resolved configurations, in product order.
        source: Where the sweep came from (the file path), for messages.
        layout: How its run folder is written.
    """

    base: ExperimentConfig
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    strengths: tuple[tuple[str, tuple[float, ...]], ...] | None
    configs: tuple[ExperimentConfig, ...]
    source: str = "sweep"
    layout: SweepLayout = SweepLayout()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (saved as ``OUT/sweep.json``)."""
        return {
            "source": self.source,
            "base": config_to_dict(self.base),
            "grid": {k: list(v) for k, v in self.grid},
            "strengths": None if self.strengths is None else {k: list(v) for k, v in self.strengths},
            "configurations": len(self.configs),
            "layout": asdict(self.layout),
        }


def load_sweep(path: str | Path) -> Sweep:
    """Reads and validates a sweep file; every error message starts with the file's path."""
    path = Path(path)
    return parse_sweep(read_toml(path, "sweep file"), source=str(path))


def parse_sweep(data: Mapping[str, Any], source: str = "sweep") -> Sweep:
    """Validates a sweep given as a mapping (the parsed TOML) and expands it.

    Args:
        data: ``{"base": {...}, "grid": {"dotted.key": [values]}, "strengths": {name: [values]}}``.
        source: Named at the start of every error message (the file path).

    Raises:
        ConfigError: An unknown table or key, a value of the wrong type, an empty list, or an
            unknown dataset/model/regularizer/profile name; the message names the key and the
            allowed values.

    Example:
        >>> sweep = parse_sweep({"grid": {"train.regularizer": ["none", "l1"], "seed": [0, 1]},
        ...                      "strengths": {"l1": [0.1, 0.3]}})
        >>> [(c.train.regularizer, c.train.strength, c.seed) for c in sweep.configs]
        [('none', 0.0, 0), ('none', 0.0, 1), ('l1', 0.1, 0), ('l1', 0.3, 0), ('l1', 0.1, 1), ('l1', 0.3, 1)]
        >>> parse_sweep({"grid": {"data.datset": ["digits"]}}, "s.toml")
        Traceback (most recent call last):
        ...
        snnergy.errors.ConfigError: s.toml: grid key 'data.datset': unknown config key 'data.datset'; allowed: dataset, data_dir, batch_size, calibration_size, train_limit, test_limit
    """
    try:
        return _parse(data, source)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def _parse(data: Mapping[str, Any], source: str) -> Sweep:
    for key in data:
        if key not in SWEEP_TABLES:
            raise ConfigError(f"unknown sweep table '{key}'; allowed: {', '.join(SWEEP_TABLES)}")
    if not isinstance(data.get("description", ""), str):
        raise ConfigError(f"'description' must be a string, got {data['description']!r}")
    base = config_from_dict(ExperimentConfig, data.get("base", {}), "base")
    grid_data = data.get("grid", {})
    if not isinstance(grid_data, Mapping):
        raise ConfigError(f"'grid' must be a table of dotted keys to lists, got {grid_data!r}")
    grid = []
    for key, values in grid_data.items():
        if isinstance(values, str) or not isinstance(values, list) or not values:
            raise ConfigError(f"grid key '{key}' needs a non-empty list of values, got {values!r}")
        grid.append((key, tuple(values)))
    strengths = _parse_strengths(data.get("strengths"), grid)
    configs = expand(base, grid, strengths)
    for config in configs:
        check_names(config, grid)
    return Sweep(base, tuple(grid), strengths, tuple(configs), source)


def _parse_strengths(table: Any, grid: Sequence[tuple[str, Any]]) -> tuple[tuple[str, tuple[float, ...]], ...] | None:
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise ConfigError(f"'strengths' must be a table of regularizer names to lists, got {table!r}")
    if any(key == "train.strength" for key, _ in grid):
        raise ConfigError("give strengths either as grid key 'train.strength' or in [strengths], not both")
    parsed = []
    for name, values in table.items():
        try:
            REGULARIZERS.get(name)
        except ConfigError as err:
            raise ConfigError(f"strengths key '{name}': {err}") from None
        if isinstance(values, str) or not isinstance(values, list) or not values:
            raise ConfigError(f"strengths.{name} needs a non-empty list of numbers, got {values!r}")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"strengths.{name} expects finite numbers >= 0, got {v!r}")
        parsed.append((name, tuple(float(v) for v in values)))
    return tuple(parsed)


def expand(
    base: ExperimentConfig,
    grid: Sequence[tuple[str, Sequence[Any]]],
    strengths: Sequence[tuple[str, Sequence[float]]] | None = None,
) -> list[ExperimentConfig]:
    """The product of the grid's lists applied to ``base``, then each regularizer's strengths.

    The unregularized configuration (``none``) is canonical at strength 0, and configurations
    that resolve to the same config (the same :func:`config_hash`) are kept once, in order.

    Example:
        >>> cfgs = expand(ExperimentConfig(), [("model.name", ["lenet", "mlp"]), ("train.strength", [0.1])])
        >>> [(c.model.name, c.train.regularizer, c.train.strength) for c in cfgs]
        [('lenet', 'none', 0.0), ('mlp', 'none', 0.0)]
    """
    by_name = dict(strengths) if strengths is not None else None
    base_dict = config_to_dict(base)
    configs: dict[str, ExperimentConfig] = {}
    for combination in itertools.product(*(values for _, values in grid)):
        data = copy.deepcopy(base_dict)
        for (key, _), value in zip(grid, combination):
            _set_dotted(data, key, value)
        regularizer = data["train"]["regularizer"]
        if by_name is None:
            choices: Sequence[float] = [data["train"]["strength"]]
        elif regularizer in by_name:
            choices = by_name[regularizer]
        elif regularizer == "none":
            choices = [0.0]
        else:
            raise ConfigError(
                f"regularizer '{regularizer}' has no entry in [strengths]; add e.g. {regularizer} = [0.01, 0.1]"
            )
        for strength in choices:
            data["train"]["strength"] = strength
            what = ", ".join(f"{k} = {v!r}" for (k, _), v in zip(grid, combination)) or "base"
            try:
                config = config_from_dict(ExperimentConfig, data)
            except ConfigError as err:
                raise ConfigError(f"grid point ({what}): {err}") from None
            if config.train.regularizer == "none":
                config = replace(config, train=replace(config.train, strength=0.0))
            configs.setdefault(config_hash(config), config)
    return list(configs.values())


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Sets ``data[a][b][c] = value`` for ``"a.b.c"``; a table merged into a table section; the key
    ``config`` merges a table of sections (and top-level keys) into the whole config."""
    if dotted == WHOLE_CONFIG_KEY:
        if not isinstance(value, Mapping):
            raise ConfigError(f"grid key '{dotted}' takes tables of config settings, got {value!r}")
        for key, part in value.items():
            if key not in data:
                raise ConfigError(f"grid key '{dotted}': unknown config key '{key}'; allowed: {', '.join(data)}")
            _set_dotted(data, key, part)
        return
    node = data
    *parents, leaf = dotted.split(".")
    for i, part in enumerate(parents):
        if not isinstance(node.get(part), dict):
            sections = [k for k, v in node.items() if isinstance(v, dict)]
            raise ConfigError(
                f"grid key '{dotted}': unknown config section '{'.'.join(parents[: i + 1])}'; allowed: {', '.join(sections)}"
            )
        node = node[part]
    if leaf not in node:
        raise ConfigError(f"grid key '{dotted}': unknown config key '{dotted}'; allowed: {', '.join(node)}")
    if isinstance(node[leaf], dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"grid key '{dotted}' is a section: its values must be tables, got {value!r}")
        node[leaf] = {**node[leaf], **copy.deepcopy(dict(value))}
    else:
        node[leaf] = copy.deepcopy(value)


def check_names(config: ExperimentConfig, grid: Sequence[tuple[str, Any]] = ()) -> None:
    """Checks dataset, model, regularizer and profile names against their registries.

    Raises:
        ConfigError: Names the key (the grid key that set it, or ``base.<key>``) and the known names.
    """
    values = {
        "data.dataset": [config.data.dataset],
        "model.name": [config.model.name],
        "train.regularizer": [config.train.regularizer],
        "profiles": list(config.profiles or ()),
    }
    penalty_profile = getattr(config.train, "penalty_profile", None)  # energy-aware regularizers
    if penalty_profile is not None:
        values["train.penalty_profile"] = [penalty_profile]
    registries = {**NAMED_FIELDS, "profiles": ENERGY_PROFILES, "train.penalty_profile": ENERGY_PROFILES}
    for field_path, names in values.items():
        for name in names:
            try:
                registries[field_path].get(name)
            except ConfigError as err:
                raise ConfigError(f"{_source_of(field_path, grid)}: {err}") from None


def _source_of(field_path: str, grid: Sequence[tuple[str, Any]]) -> str:
    for key, values in grid:
        if field_path == key or field_path.startswith(key + "."):
            return f"grid key '{key}'"
        if key == WHOLE_CONFIG_KEY and any(_sets(v, field_path) for v in values):
            return f"grid key '{key}'"
    return f"base.{field_path}"


def _sets(table: Any, field_path: str) -> bool:
    """Whether a ``config`` grid table sets ``field_path`` (``"train.regularizer"``)."""
    node = table
    for part in field_path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


__all__ = [
    "NAMED_FIELDS",
    "RUN_FOLDERS",
    "SWEEP_TABLES",
    "WHOLE_CONFIG_KEY",
    "Sweep",
    "SweepLayout",
    "check_names",
    "config_hash",
    "expand",
    "load_sweep",
    "parse_sweep",
    "run_label",
]
