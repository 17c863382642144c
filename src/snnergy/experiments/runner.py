"""Running configurations: one end to end (:func:`run_configuration`), and many in this process,
in a pool of processes or as Ray tasks (:func:`outcomes`), each turned into a stored
:class:`~snnergy.experiments.sweep_store.Outcome` that never raises for a failed run.
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from snnergy.config import ExperimentConfig, config_to_dict
from snnergy.conversion import convert as convert_model
from snnergy.data import calibration_set
from snnergy.errors import SnnergyError
from snnergy.reporting.identity import config_hash

from snnergy.experiments.finetune import finetune_split
from snnergy.experiments.metrics import write_run_files
from snnergy.experiments.pipeline import measure_trained, result_record, train
from snnergy.experiments.steps import simulate_test_split
from snnergy.experiments.variants import snn_extras
from snnergy.experiments.sweep_store import Outcome

Job = tuple[ExperimentConfig, "str | None"]
"""A configuration and the folder of its checkpoint (``None``: no checkpoint)."""


def run_configuration(config: ExperimentConfig, out: Path | None, progress: bool = False) -> dict[str, Any]:
    """Train, measure, convert, fine-tune the SNN (when ``finetune.timesteps`` > 0) and simulate one
    configuration; returns its result record (with ``snn.finetune`` when fine-tuned, ``snn.cores``,
    and ``snn.quantized`` when ``simulate.quantize`` lists widths: :func:`~snnergy.experiments.variants.snn_extras`)."""
    trained = train(config, out=out, progress=progress)
    dnn = measure_trained(trained)
    calibration = calibration_set(trained.splits, config.data.calibration_size, seed=config.seed)
    snn = convert_model(trained.model, calibration.to(trained.device), config.convert)
    tuned = None
    if config.finetune.timesteps > 0:  # SNN-in-the-loop fine-tuning (0: none, the default)
        tuned = finetune_split(snn, config, trained.splits, trained.device, progress)
        snn = tuned.snn
    record = result_record(config, dnn, simulate_test_split(snn, config, trained.splits, trained.device, progress))
    record["snn"].update(snn_extras(snn, config, (trained.splits.test_x, trained.splits.test_y), trained.device, progress))
    if tuned is not None:
        record["snn"]["finetune"] = tuned.summary()
    return record


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


def execute(
    config: ExperimentConfig, run_out: str | None = None, threads: int | None = None, progress: bool = False
) -> Outcome:
    """Runs one configuration and never raises (but for interrupts): what went wrong is the outcome.

    Args:
        config: The resolved configuration.
        run_out: Folder for its checkpoint (``None``: no checkpoint).
        threads: ``torch.set_num_threads`` for this run (``None``: leave as is).
        progress: Show the run's own progress bars (training, simulation).

    Returns:
        A finished outcome with the result record, or a failed one with the error. With ``run_out``
        a finished configuration's record is also written there as ``results.json`` and as
        NeuroBench metrics, ``neurobench.json`` (:func:`~snnergy.experiments.metrics.write_run_files`).
    """
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    started, clock = _now(), time.perf_counter()
    error: str | None = None
    try:
        record = _finite(run_configuration(config, Path(run_out) if run_out else None, progress=progress))
        if run_out:  # the configuration's own results.json and neurobench.json beside its checkpoint
            write_run_files(run_out, record)
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


def _run_in_process(jobs: Sequence[Job], progress: bool = False) -> Iterator[Outcome]:
    for config, run_out in jobs:
        yield execute(config, run_out, progress=progress)


def _run_pool(jobs: Sequence[Job], workers: int) -> Iterator[Outcome]:
    """Runs jobs in ``workers`` spawned processes (torch and fork do not mix), each pinned to its
    share of the cores; yields outcomes as they finish."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, cpu_count() // workers)
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(threads,)
    )
    finished = False
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
        finished = True
    finally:
        if finished:  # every job done: the workers exit and release their locks (no leaked semaphores)
            pool.shutdown(wait=True)
        else:
            _stop(pool)


def _stop(pool: Any) -> None:
    """On an interrupt (or the consumer closing early) a worker still running a configuration is
    stopped rather than waited for; its epoch checkpoints let the next run resume it."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


def _ray_execute(config: ExperimentConfig, run_out: str | None) -> Outcome:
    return execute(config, run_out, threads=1)


def _run_ray(jobs: Sequence[Job], address: str, workers: int | None) -> Iterator[Outcome]:
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
    package = sys.modules[__name__.split(".")[0]]  # the snnergy package, shipped to the workers

    started_here = not ray.is_initialized()
    if started_here:
        common: dict[str, Any] = {"log_to_driver": False, "runtime_env": {"py_modules": [package]}}
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


def outcomes(jobs: Sequence[Job], workers: int = 1, ray: str | None = None, progress: bool = False) -> Iterator[Outcome]:
    """The outcomes of ``jobs`` as they finish: in this process (``workers`` 1 or a single job), in
    ``workers`` spawned processes, or as Ray tasks (``ray``: ``"auto"``, ``"local"`` or an address).

    Closing the iterator early (an interrupt) stops the pool's workers or cancels the Ray tasks.

    Args:
        jobs: (configuration, checkpoint folder) pairs.
        workers: Processes at once; with Ray, the CPUs of a local instance.
        ray: ``None`` for local processes.
        progress: Show each run's own progress bars (in this process only).
    """
    if not jobs:
        return iter(())
    if ray is not None:
        return _run_ray(jobs, ray, workers if workers > 1 else None)
    if workers > 1 and len(jobs) > 1:
        return _run_pool(jobs, min(workers, len(jobs)))
    return _run_in_process(jobs, progress)


__all__ = ["Job", "cpu_count", "execute", "outcomes", "run_configuration"]
