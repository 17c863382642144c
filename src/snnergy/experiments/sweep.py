"""Sweeps: a base configuration times lists of values, run to completion across crashes.

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
go together. Everything is validated before any run starts. Each configuration's identity is
the SHA-256 of its resolved config (:func:`config_hash`); results go to a SQLite store
(:mod:`snnergy.experiments.sweep_store`), so a rerun skips what is finished.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from snnergy.checkpoints import write_json
from snnergy.config import ExperimentConfig, config_from_dict, config_to_dict, read_toml
from snnergy.data import DATASETS
from snnergy.energy import ENERGY_PROFILES
from snnergy.errors import ConfigError, SnnergyError
from snnergy.models import MODELS
from snnergy.regularizers import REGULARIZERS
from snnergy.reporting.tables import DEFAULT_PROFILE

from snnergy.experiments.pipeline import result_record
from snnergy.experiments.store import write_results
from snnergy.experiments.sweep_store import STORE_FILE, Outcome, SweepStore

SWEEP_TABLES = ("description", "base", "grid", "strengths")
# Config fields whose values must be registered names, and the registry that knows them.
NAMED_FIELDS = {"data.dataset": DATASETS, "model.name": MODELS, "train.regularizer": REGULARIZERS}
SWEEP_JSON = "sweep.json"


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: the base config, the grid, and the configurations it expands to.

    Attributes:
        base: The configuration every run starts from.
        grid: (dotted key, values) pairs, in file order.
        strengths: (regularizer, strengths) pairs, or ``None`` when the file has no ``[strengths]``.
        configs: The distinct resolved configurations, in product order.
        source: Where the sweep came from (the file path), for messages.
    """

    base: ExperimentConfig
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    strengths: tuple[tuple[str, tuple[float, ...]], ...] | None
    configs: tuple[ExperimentConfig, ...]
    source: str = "sweep"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (saved as ``OUT/sweep.json``)."""
        return {
            "source": self.source,
            "base": config_to_dict(self.base),
            "grid": {k: list(v) for k, v in self.grid},
            "strengths": None if self.strengths is None else {k: list(v) for k, v in self.strengths},
            "configurations": len(self.configs),
        }


def config_hash(config: ExperimentConfig) -> str:
    """A configuration's identity: SHA-256 of the canonical JSON of its resolved config.

    Canonical: :func:`~snnergy.config.config_to_dict`, sorted keys, no whitespace; ints given
    for float fields are floats by then, so ``strength = 0`` and ``0.0`` are the same run.

    Example:
        >>> a = ExperimentConfig()
        >>> config_hash(a) == config_hash(ExperimentConfig()), len(config_hash(a))
        (True, 64)
        >>> config_hash(a) == config_hash(replace(a, seed=1))
        False
    """
    text = json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    """Sets ``data[a][b][c] = value`` for ``"a.b.c"``; a table merged into a table section."""
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
    for key, _ in grid:
        if field_path == key or field_path.startswith(key + "."):
            return f"grid key '{key}'"
    return f"base.{field_path}"


# --- execution --------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become ``None`` (results.json refuses them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def execute(config: ExperimentConfig, run_out: str | None = None, threads: int | None = None) -> Outcome:
    """Runs one configuration and never raises (but for interrupts): what went wrong is the outcome.

    Args:
        config: The resolved configuration.
        run_out: Folder for its checkpoint (``None``: no checkpoint).
        threads: ``torch.set_num_threads`` for this run (``None``: leave as is).

    Returns:
        A finished outcome with the result record, or a failed one with the error.
    """
    from snnergy.experiments.compare import run_configuration

    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    started, clock = _now(), time.perf_counter()
    error: str | None = None
    try:
        record = _finite(run_configuration(config, Path(run_out) if run_out else None, progress=False))
    except SnnergyError as err:
        error = f"{type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 - a run that raises is recorded, the sweep goes on
        error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=-3)}"
    if error is not None:
        return _failed(config, error, started, time.perf_counter() - clock)
    return Outcome(config_hash(config), "finished", config_to_dict(config), record, None, started, _now(), time.perf_counter() - clock)


def _failed(config: ExperimentConfig, error: str, started: str, wall_s: float) -> Outcome:
    record = {**result_record(config), "error": error.splitlines()[0]}
    return Outcome(config_hash(config), "failed", config_to_dict(config), record, error, started, _now(), wall_s)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_in_process(jobs: Sequence[tuple[ExperimentConfig, str | None]]) -> Iterator[Outcome]:
    for config, run_out in jobs:
        yield execute(config, run_out)


def _run_pool(jobs: Sequence[tuple[ExperimentConfig, str | None]], workers: int) -> Iterator[Outcome]:
    """Runs jobs in ``workers`` spawned processes (torch and fork do not mix), each pinned to its
    share of the cores; yields outcomes as they finish."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, cpu_count() // workers)
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(threads,)
    )
    try:
        pending = {pool.submit(execute, config, run_out) for config, run_out in jobs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    yield future.result()
                except BrokenProcessPool:
                    raise SnnergyError(
                        "a sweep worker process died (out of memory or killed); finished rows are kept, "
                        "rerun the same command to resume"
                    ) from None
    finally:
        # on an interrupt (or the consumer closing early) a worker still running a configuration
        # is stopped rather than waited for; its epoch checkpoints let the next run resume it
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=10)


def _ray_execute(config: ExperimentConfig, run_out: str | None) -> Outcome:
    return execute(config, run_out, threads=1)


def _run_ray(jobs: Sequence[tuple[ExperimentConfig, str | None]], address: str, workers: int | None) -> Iterator[Outcome]:
    """Runs jobs as Ray tasks (one CPU each) and yields outcomes as they finish.

    ``address``: ``"auto"`` joins the running cluster (``$RAY_ADDRESS`` or a local ``ray start``)
    or else starts a local instance; ``"local"`` always starts one (``workers`` CPUs if given);
    anything else is a cluster address (``ray://head:10001``, ``head:6379``). This snnergy
    package is shipped to the workers (Ray's ``py_modules``); torch and the other dependencies
    must be installed on every node, and checkpoints are written on the node that ran the task.
    A task that Ray itself fails (a worker lost, out of memory) is recorded as failed.
    """
    try:
        import ray
    except ImportError:
        raise SnnergyError("--ray needs Ray: pip install 'snnergy[ray]'") from None
    import snnergy

    started_here = not ray.is_initialized()
    if started_here:
        common: dict[str, Any] = {"log_to_driver": False, "runtime_env": {"py_modules": [snnergy]}}
        local: dict[str, Any] = {**common, "include_dashboard": False}
        if workers:
            local["num_cpus"] = workers
        try:
            if address == "local":
                ray.init(**local)
            elif address == "auto":
                try:
                    ray.init(address="auto", **common)
                except ConnectionError:  # no running cluster: start one here
                    ray.init(**local)
            else:
                ray.init(address=address, **common)
        except Exception as err:  # noqa: BLE001 - Ray raises many kinds
            raise SnnergyError(f"could not start or join Ray at '{address}': {err}") from None
    remote = ray.remote(num_cpus=1, max_retries=0)(_ray_execute)
    pending = {remote.remote(config, run_out): (config, _now()) for config, run_out in jobs}
    try:
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            config, submitted = pending.pop(ref)
            try:
                yield ray.get(ref)
            except ray.exceptions.RayError as err:
                yield _failed(config, f"{type(err).__name__}: {err}", submitted, 0.0)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class SweepSummary:
    """What one ``run_sweep`` call did.

    Attributes:
        total: Configurations in the sweep.
        skipped: Already in the store (finished, or failed without ``retry_failed``).
        finished: Finished in this call.
        failed: Failed in this call.
        out: The run folder.
        report: Path of ``report.md`` (``None`` when nothing finished yet).
    """

    total: int
    skipped: int
    finished: int
    failed: int
    out: Path
    report: Path | None


def run_sweep(
    sweep: Sweep | str | Path,
    out: str | Path,
    *,
    workers: int = 1,
    ray: str | None = None,
    retry_failed: bool = False,
    checkpoints: bool = True,
    profile: str = DEFAULT_PROFILE,
    drop: float = 0.01,
    report: bool = True,
    progress: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> SweepSummary:
    """Runs every configuration of ``sweep`` that ``out``'s store does not hold yet.

    Each outcome is written to ``out/sweep.sqlite`` in one transaction by this process as soon
    as it arrives, then ``results.json``/``results.csv`` are rewritten from the store; at the
    end ``report.md`` and ``plots/``. A configuration that raises is stored as failed and the
    sweep goes on.

    Args:
        sweep: A :class:`Sweep` or the path of a sweep file.
        out: Run folder (created; an existing one is resumed).
        workers: Processes running configurations at once (1: in this process); with
            ``ray="local"`` (or ``"auto"`` without a cluster), the CPUs of the local Ray instance.
        ray: ``None`` for local processes, else ``"auto"``, ``"local"`` or a Ray cluster address.
        retry_failed: Run configurations stored as failed again.
        checkpoints: Keep each configuration's checkpoint in ``out/runs/<id[:12]>/``.
        profile: Energy profile of the report.
        drop: The report's target: at most this far below the unregularized DNN's accuracy.
        report: Write ``report.md``, ``plots/``, ``summary.csv`` and ``layers.csv`` at the end.
        progress: Show a progress bar over configurations (with ETA).
        on_outcome: Called with each outcome after it is stored.

    Example:
        >>> import tempfile
        >>> sweep = parse_sweep({"base": {"data": {"dataset": "synthetic-blobs"}, "model": {"name": "tiny-mlp"},
        ...     "train": {"epochs": 1}, "simulate": {"timesteps": [4]}, "device": "cpu"}, "grid": {"seed": [0, 1]}})
        >>> out = tempfile.mkdtemp()
        >>> run_sweep(sweep, out, report=False).finished, run_sweep(sweep, out, report=False).skipped
        (2, 2)
    """
    from snnergy.reporting.sweep_report import write_sweep_report

    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    ENERGY_PROFILES.get(profile)
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    for config in sweep.configs:
        if config.profiles is not None and profile not in config.profiles:
            raise ConfigError(f"{sweep.source}: report profile '{profile}' is not among the configured profiles {list(config.profiles)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SWEEP_JSON, sweep.to_dict())
    finished = failed = 0
    with SweepStore(out / STORE_FILE) as store:
        statuses = store.statuses()
        todo = [
            c for c in sweep.configs
            if statuses.get(config_hash(c)) is None or (retry_failed and statuses[config_hash(c)] == "failed")
        ]
        jobs = [(c, str(out / "runs" / config_hash(c)[:12]) if checkpoints else None) for c in todo]
        if not jobs:
            outcomes: Iterator[Outcome] = iter(())
        elif ray is not None:
            outcomes = _run_ray(jobs, ray, workers if workers > 1 else None)
        elif workers > 1 and len(jobs) > 1:
            outcomes = _run_pool(jobs, min(workers, len(jobs)))
        else:
            outcomes = _run_in_process(jobs)
        bar = _progress_bar(len(jobs), progress)
        try:
            for outcome in outcomes:
                store.put(outcome)
                write_results(out, store.records())
                finished += outcome.status == "finished"
                failed += outcome.status == "failed"
                bar.update(1)
                bar.set_postfix(failed=failed, refresh=False)
                if on_outcome is not None:
                    on_outcome(outcome)
        finally:
            bar.close()
            getattr(outcomes, "close", lambda: None)()  # stops the pool or cancels Ray tasks
        write_results(out, store.records())
        records = store.records(include_failed=True)
    written = write_sweep_report(out, records, profile, drop) if records and report else None
    return SweepSummary(len(sweep.configs), len(sweep.configs) - len(jobs), finished, failed, out, written)


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sweep", unit="config", disable=not enabled or total == 0, dynamic_ncols=True)
