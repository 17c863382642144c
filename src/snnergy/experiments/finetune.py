"""SNN-in-the-loop fine-tuning as an experiment step: on a configuration's training split
(:func:`finetune_split`, the runner's step between conversion and simulation) and from a folder
to a folder (:func:`finetune_folder`, behind ``snnergy finetune``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import torch

from snnergy.config import ExperimentConfig, apply_overrides, doubling_timesteps
from snnergy.conversion import convert as convert_model
from snnergy.data import DatasetSplits, calibration_set, load_dataset
from snnergy.errors import CheckpointError, ConfigError
from snnergy.finetuning import FinetuneResult, finetune
from snnergy.records import SNNRecord
from snnergy.simulation import IFNeuron, SpikingNetwork, save_snn
from snnergy.training import META_FILE, resolve_device

from snnergy.experiments.pipeline import CHECKPOINT_DIR, result_record
from snnergy.experiments.steps import load_converted, load_run, simulate_test_split
from snnergy.experiments.store import write_config, write_results


def finetune_split(snn: SpikingNetwork, config: ExperimentConfig, splits: DatasetSplits, device: torch.device,
                   progress: bool = False) -> FinetuneResult:
    """Fine-tunes ``snn`` on the training split with ``config.finetune`` (batches of
    ``data.batch_size``, the input encoding of ``simulate.input``, seeded by ``seed``)."""
    return finetune(snn, (splits.train_x, splits.train_y), config.finetune, batch_size=config.data.batch_size,
                    input=config.simulate.input, seed=config.seed, device=device, progress=progress)


@dataclass
class FinetunedFolder:
    """What :func:`finetune_folder` did: the config it wrote, the simulator's records of the
    network before and after fine-tuning (same test samples and T), and the fine-tuning itself."""

    config: ExperimentConfig
    before: SNNRecord
    after: SNNRecord
    result: FinetuneResult


def finetune_folder(folder: str | Path, out: str | Path, overrides: Mapping[str, Any] | None = None,
                    progress: bool = False) -> FinetunedFolder:
    """Fine-tunes the SNN of a run folder and writes the result as a converted SNN folder.

    ``folder`` is a converted SNN folder (``snnergy convert``: ``snn.json``, its config) or a
    training run (``snnergy train``, or one configuration of a compare/sweep: ``checkpoint/``),
    which is first converted with its saved config, as ``snnergy convert`` does. ``overrides``
    (dotted paths) change that config; ``finetune.timesteps`` must end up >= 1. Unless they set
    ``simulate.timesteps``, the simulation reports 1, 2, 4, ..., T. ``convert.v0`` also sets the
    initial potential of an already converted network. Writes ``out/snn.safetensors``,
    ``snn.json``, ``config.json`` and ``results.json`` / ``.csv`` (the simulator's record after
    fine-tuning, with ``snn.finetune``: the last epoch, the thresholds and the record at T before).

    Raises:
        CheckpointError: ``folder`` is missing or holds neither kind of run.
        ConfigError: A bad override, or ``finetune.timesteps`` < 1.
    """
    folder, overrides = Path(folder), dict(overrides or {})
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder; give a `snnergy train` (or compare) run folder "
                              "or a `snnergy convert` SNN folder")
    if (folder / "snn.json").is_file():
        snn, config = load_converted(folder)
        config = apply_overrides(config, overrides)
        if "convert.v0" in overrides and config.convert.v0 is not None:
            snn.neuron = IFNeuron(snn.neuron.threshold, snn.neuron.reset, config.convert.v0)
        splits = load_dataset(config.data, seed=config.seed)
    elif (folder / CHECKPOINT_DIR).is_dir() or (folder / META_FILE).is_file():
        checkpoint = load_run(folder)
        config = apply_overrides(checkpoint.config, overrides)
        splits = load_dataset(config.data, seed=config.seed)
        if tuple(splits.input_shape) != tuple(checkpoint.input_shape):
            raise ConfigError(f"dataset '{config.data.dataset}' has inputs {splits.input_shape}, "
                              f"the checkpoint's model expects {tuple(checkpoint.input_shape)}")
        calibration = calibration_set(splits, config.data.calibration_size, seed=config.seed)
        snn = convert_model(checkpoint.model, calibration, config.convert)
    else:
        raise CheckpointError(f"{folder}: neither a converted SNN (snn.json, from `snnergy convert`) nor a "
                              f"training run ({CHECKPOINT_DIR}/, from `snnergy train` or compare's runs/<id>)")
    steps = config.finetune.timesteps
    if steps < 1:
        raise ConfigError(f"finetune.timesteps must be >= 1 to fine-tune, got {steps}")
    if "simulate.timesteps" not in overrides:
        config = replace(config, simulate=replace(config.simulate, timesteps=doubling_timesteps(steps)))
    device = resolve_device(config.device)
    before = simulate_test_split(snn, config, splits, device, progress)
    result = finetune_split(snn, config, splits, device, progress)
    after = simulate_test_split(result.snn, config, splits, device, progress)
    save_snn(result.snn, Path(out))
    write_config(out, config)
    record = result_record(config, snn=after)
    at = before.timesteps.index(steps) if steps in before.timesteps else -1
    record["snn"]["finetune"] = {**result.summary(), "before": {
        "timesteps": before.timesteps[at], "accuracy": before.accuracy[at], "synops": before.synops[at]}}
    write_results(out, [record])
    return FinetunedFolder(config, before, after, result)


__all__ = ["FinetunedFolder", "finetune_folder", "finetune_split"]
