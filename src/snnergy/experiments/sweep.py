"""Sweeps run to completion across crashes: the one driver behind ``snnergy sweep`` and ``snnergy compare``.

:func:`run_sweep` runs every configuration of a :class:`~snnergy.experiments.grid.Sweep` (read
from a sweep file, or built in code as ``compare`` does) that the run folder's store does not hold
yet, through :func:`snnergy.experiments.runner.outcomes`. Each configuration is named by its one
identity (:func:`~snnergy.reporting.identity.config_hash`), each outcome committed to
``OUT/sweep.sqlite`` (:mod:`snnergy.experiments.sweep_store`) at once, so a rerun of the same
command (even after ``kill -9``) skips what is finished; ``results.json``/``results.csv`` mirror
the store, and ``report.md`` comes from the one report writer (:func:`snnergy.reporting.write_report`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snnergy.checkpoints import read_json, write_json
from snnergy.config import ExperimentConfig
from snnergy.energy import ENERGY_PROFILES
from snnergy.errors import ConfigError, ResultsError
from snnergy.reporting import DEFAULT_PROFILE, write_report
from snnergy.reporting.identity import config_hash
from snnergy.training import EpochLog, load_checkpoint

from snnergy.experiments.grid import Sweep, SweepLayout, load_sweep, parse_sweep
from snnergy.experiments.pipeline import CHECKPOINT_DIR
from snnergy.experiments.tensorboard import require_tensorboard, write_history
from snnergy.experiments.runner import outcomes
from snnergy.experiments.store import check_not_a_file, write_results
from snnergy.experiments.sweep_store import STORE_FILE, Outcome, SweepStore

SWEEP_JSON = "sweep.json"


@dataclass(frozen=True)
class SweepSummary:
    """What one ``run_sweep`` call did.

    Attributes:
        total: Configurations in the sweep.
        skipped: Already in the store (finished, or failed without ``retry_failed``).
        finished: Finished in this call.
        failed: Failed in this call.
        out: The run folder (``None``: nothing written).
        report: Path of ``report.md`` (``None`` when nothing finished yet).
        records: The sweep's result records in its order, failed ones (with ``error``) included.
    """

    total: int
    skipped: int
    finished: int
    failed: int
    out: Path | None
    report: Path | None
    records: tuple[dict[str, Any], ...] = field(default=(), repr=False)


def check_profile(sweep: Sweep, profile: str) -> None:
    """Checks that the report's energy profile exists and that every configuration computes it.

    Raises:
        ConfigError: Names the sweep's source and the configured profiles.
    """
    ENERGY_PROFILES.get(profile)
    for config in sweep.configs:
        if config.profiles is not None and profile not in config.profiles:
            raise ConfigError(f"{sweep.source}: report profile '{profile}' is not among the configured profiles {list(config.profiles)}")


def ordered_records(
    store: SweepStore, ids: Sequence[str], include_failed: bool = False, others: bool = True
) -> list[dict[str, Any]]:
    """The stored records of ``ids`` in that order, then (with ``others``) the store's other rows
    oldest first; failed ones (their ``config`` part plus ``error``) only with ``include_failed``."""
    rows = {o.id: o for o in store.outcomes() if o.record is not None and (include_failed or o.status == "finished")}
    chosen = [rows.pop(id_) for id_ in dict.fromkeys(ids) if id_ in rows]
    if others:
        chosen += list(rows.values())
    return [o.record for o in chosen if o.record is not None]


def stored_records(out: str | Path, configs: Sequence[ExperimentConfig]) -> list[dict[str, Any]]:
    """The finished records already stored in ``out`` for ``configs``, in their order (none when
    ``out`` holds no store)."""
    path = Path(out) / STORE_FILE
    if not path.is_file():
        return []
    with SweepStore(path, readonly=True) as store:
        return ordered_records(store, [config_hash(c) for c in configs], others=False)


def read_layout(out: str | Path) -> SweepLayout:
    """The layout saved in ``out/sweep.json`` (the default one when there is none).

    Raises:
        ResultsError: ``sweep.json`` holds a layout this snnergy does not know.
    """
    path = Path(out) / SWEEP_JSON
    if not path.is_file():
        return SweepLayout()
    data = read_json(path)
    layout = data.get("layout", {}) if isinstance(data, Mapping) else None
    try:
        return SweepLayout(**layout)  # type: ignore[arg-type]
    except (TypeError, ConfigError) as err:
        raise ResultsError(f"{path}: 'layout' must be a table of {', '.join(SweepLayout.__dataclass_fields__)} ({err})") from None


def run_sweep(
    sweep: Sweep | str | Path,
    out: str | Path | None,
    *,
    workers: int = 1,
    ray: str | None = None,
    retry_failed: bool = False,
    checkpoints: bool = True,
    profile: str = DEFAULT_PROFILE,
    drop: float = 0.01,
    report: bool = True,
    progress: bool = False,
    run_progress: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
    tensorboard: str | Path | None = None,
) -> SweepSummary:
    """Runs every configuration of ``sweep`` that ``out``'s store does not hold yet.

    Each outcome is written to ``out/sweep.sqlite`` in one transaction by this process as soon
    as it arrives, then ``results.json``/``results.csv`` are rewritten from the store (the sweep's
    configurations in its order, then any other stored ones); at the end ``report.md`` and
    ``plots/`` in the style of ``sweep.layout``. A configuration that raises is stored as failed and
    the sweep goes on.

    Args:
        sweep: A :class:`~snnergy.experiments.grid.Sweep` or the path of a sweep file.
        out: Run folder (created; an existing one is resumed); ``None``: an in-memory store, no
            files, no checkpoints and no report.
        workers: Processes running configurations at once (1: in this process); with
            ``ray="local"`` (or ``"auto"`` without a cluster), the CPUs of the local Ray instance.
        ray: ``None`` for local processes, else ``"auto"``, ``"local"`` or a Ray cluster address.
        retry_failed: Run configurations stored as failed again.
        checkpoints: Keep each configuration's checkpoint in ``out/runs/<folder>/``
            (:meth:`~snnergy.experiments.grid.SweepLayout.run_folder`).
        profile: Energy profile of the report.
        drop: The report's target: at most this far below the unregularized DNN's accuracy.
        report: Write ``report.md`` and ``plots/`` (and, in the sweep style, ``summary.csv`` and
            ``layers.csv``) at the end.
        progress: Show a progress bar over configurations (with ETA).
        run_progress: Show each run's own progress bars (runs in this process only).
        on_outcome: Called with each outcome after it is stored.
        tensorboard: A folder: each configuration finished now writes its training log (from its
            checkpoint) as TensorBoard event files into ``tensorboard/<run folder name>``; needs
            ``checkpoints`` and the optional ``tensorboard`` package.

    Example:
        >>> import tempfile
        >>> sweep = parse_sweep({"base": {"data": {"dataset": "synthetic-blobs"}, "model": {"name": "tiny-mlp"},
        ...     "train": {"epochs": 1}, "simulate": {"timesteps": [4]}, "device": "cpu"}, "grid": {"seed": [0, 1]}})
        >>> out = tempfile.mkdtemp()
        >>> run_sweep(sweep, out, report=False).finished, run_sweep(sweep, out, report=False).skipped
        (2, 2)
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    ENERGY_PROFILES.get(profile)
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    check_profile(sweep, profile)
    layout = sweep.layout
    folder = Path(out) if out is not None else None
    check_budgets(sweep.configs)
    if tensorboard is not None:
        if not checkpoints or out is None:
            raise ConfigError("--tensorboard reads each configuration's checkpoint: it needs an --out folder "
                              "and checkpoints (drop --no-checkpoints)")
        require_tensorboard(tensorboard)
    if folder is not None:
        check_not_a_file(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / SWEEP_JSON, sweep.to_dict())
    ids = [config_hash(c) for c in sweep.configs]
    finished = failed = 0
    with SweepStore(folder / STORE_FILE if folder is not None else None) as store:
        statuses = store.statuses()
        todo = [c for c, id_ in zip(sweep.configs, ids)
                if statuses.get(id_) is None or (retry_failed and statuses[id_] == "failed")]
        by_id = {config_hash(c): c for c in todo}
        jobs = [(c, str(folder / "runs" / layout.run_folder(c)) if checkpoints and folder is not None else None) for c in todo]
        results: Iterator[Outcome] = outcomes(jobs, workers, ray, run_progress)
        bar = _progress_bar(len(jobs), progress)
        try:
            for outcome in results:
                store.put(outcome)
                if tensorboard is not None and outcome.status == "finished":
                    _log_run(folder / "runs" / layout.run_folder(by_id[outcome.id]), Path(tensorboard))  # type: ignore[operator]
                if folder is not None:
                    write_results(folder, ordered_records(store, ids, layout.failed_in_results))
                finished += outcome.status == "finished"
                failed += outcome.status == "failed"
                bar.update(1)
                bar.set_postfix(failed=failed, refresh=False)
                if on_outcome is not None:
                    on_outcome(outcome)
        finally:
            bar.close()
            getattr(results, "close", lambda: None)()  # stops the pool or cancels Ray tasks
        if folder is not None:
            write_results(folder, ordered_records(store, ids, layout.failed_in_results))
        everything = ordered_records(store, ids, include_failed=True)
        mine = ordered_records(store, ids, include_failed=True, others=False)
    written = None
    if folder is not None and everything and report:
        written = write_report(folder, everything, profile, drop, style=layout.report)
    return SweepSummary(len(sweep.configs), len(sweep.configs) - len(jobs), finished, failed, folder, written, tuple(mine))


def _log_run(run: Path, tensorboard: Path) -> None:
    """A finished configuration's training log into ``tensorboard/<run folder name>`` (when its
    checkpoint is on this machine)."""
    if (run / CHECKPOINT_DIR).is_dir():
        checkpoint = load_checkpoint(run / CHECKPOINT_DIR)
        write_history([EpochLog(**h) for h in checkpoint.history], tensorboard / run.name,
                      checkpoint.config.train.distill is not None)


def check_budgets(configs: Sequence[ExperimentConfig]) -> None:
    """Checks every configuration with a ``simulate.max_memory`` against its model's shapes
    before anything trains (:func:`~snnergy.experiments.snn.check_memory`), so that a budget
    too small fails at once instead of after each training. A configuration whose data or model
    cannot be built is left to its run, which stores the failure as before.

    Raises:
        ConfigError: A configuration whose simulation cannot fit its budget, naming it.
    """
    from snnergy.data import load_dataset
    from snnergy.errors import SnnergyError
    from snnergy.experiments.snn import check_memory
    from snnergy.models import build_model
    from snnergy.structure import trace

    seen: set[str] = set()
    for config in configs:
        if config.simulate.max_memory is None:
            continue
        key = repr((config.data, config.model, config.simulate))
        if key in seen:
            continue
        seen.add(key)
        try:
            splits = load_dataset(config.data, seed=config.seed)
            model = build_model(config.model, splits.input_shape, splits.num_classes)
            plan = trace(model, splits.input_shape)
        except SnnergyError:
            continue
        try:
            check_memory(plan, config.simulate)
        except ConfigError as err:
            raise ConfigError(f"{config.model.name} on {config.data.dataset}: {err} (checked before training)") from None


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sweep", unit="config", disable=not enabled or total == 0, dynamic_ncols=True)


__all__ = [
    "SWEEP_JSON",
    "Sweep",
    "SweepSummary",
    "check_profile",
    "config_hash",
    "load_sweep",
    "ordered_records",
    "parse_sweep",
    "read_layout",
    "run_sweep",
    "stored_records",
]
