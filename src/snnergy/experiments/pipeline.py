"""One configuration end to end, as library functions: train, then measure the DNN.

These are the Python API behind ``snnergy train`` (and the first steps of ``snnergy compare``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snnergy.config import ExperimentConfig, LoggingConfig, config_to_dict
from snnergy.data import DatasetSplits, load_dataset
from snnergy.models import build_model
from snnergy.errors import ConfigError
from snnergy.records import DNNRecord
from snnergy.train_state import STATE_FILE, TrainState, config_difference, load_train_state, save_train_state
from snnergy.training import EpochLog, fit, resolve_device, save_checkpoint, seed_everything

from snnergy.experiments.measure import measure
from snnergy.experiments.store import check_not_a_file
from snnergy.experiments.tensorboard import TensorBoardLog

CHECKPOINT_DIR = "checkpoint"


@dataclass
class TrainedModel:
    """A trained DNN with what produced it (``resumed_from``: the finished epochs it resumed after,
    0 for a fresh run)."""

    model: nn.Module
    config: ExperimentConfig
    splits: DatasetSplits
    history: list[EpochLog]
    device: torch.device
    resumed_from: int = 0


def train(
    config: ExperimentConfig | None = None,
    *,
    out: str | Path | None = None,
    progress: bool = False,
    log_config: LoggingConfig | None = None,
) -> TrainedModel:
    """Loads the data, builds the model and trains it with the configured regularizer.

    Args:
        config: The experiment (``None``: defaults, i.e. LeNet on digits, no regularizer).
        out: If given, the checkpoint of every finished epoch is written to ``out/checkpoint``
            (atomically: a crash or a NaN keeps the last good one) with the state to resume from
            (:mod:`snnergy.train_state`); when ``out`` already holds such a state of the same
            configuration, training resumes after its last finished epoch.
        progress: Show progress bars.
        log_config: Where to log the epochs: with ``log_config.tensorboard``, TensorBoard event
            files there, written after each epoch trained in this call (a resumed run adds its
            new epochs).

    Raises:
        ConfigError: ``out`` holds a training run of another configuration;
            ``log_config.tensorboard`` without the ``tensorboard`` package.

    Example:
        >>> from snnergy.config import ExperimentConfig, DataConfig, ModelConfig, TrainConfig
        >>> cfg = ExperimentConfig(data=DataConfig(dataset="synthetic-blobs"),
        ...                        model=ModelConfig(name="tiny-mlp"), train=TrainConfig(epochs=1), device="cpu")
        >>> trained = train(cfg)
        >>> len(trained.history)
        1
    """
    config = config or ExperimentConfig()
    if out is not None:
        check_not_a_file(out)
    seed_everything(config.seed)
    device = resolve_device(config.device)
    splits = load_dataset(config.data, seed=config.seed)
    model = build_model(config.model, splits.input_shape, splits.num_classes)
    folder = Path(out) / CHECKPOINT_DIR if out is not None else None
    resume = resumable_state(folder, config) if folder is not None else None
    history = [EpochLog(**h) for h in resume.history] if resume is not None else []

    tensorboard = log_config.tensorboard if log_config is not None else None
    board = TensorBoardLog(tensorboard, config.train.distill is not None) if tensorboard else None

    def checkpoint(m: nn.Module, log: EpochLog) -> None:
        history.append(log)
        if board is not None:
            board.write(log)
        if folder is not None:
            save_checkpoint(folder, m, config, input_shape=splits.input_shape, num_classes=splits.num_classes,
                            history=history)

    def keep_state(state: TrainState) -> None:
        state.config = training_identity(config)
        save_train_state(folder / STATE_FILE, state)  # type: ignore[operator]

    logs = fit(
        model,
        splits,
        config.train,
        batch_size=config.data.batch_size,
        seed=config.seed,
        device=device,
        progress=progress,
        on_epoch=checkpoint,
        convert_config=config.convert,
        resume=resume,
        on_state=keep_state if folder is not None else None,
    )
    if board is not None:  # each epoch was flushed as it finished: an error above loses nothing
        board.close()
    return TrainedModel(model, config, splits, logs, device, resume.epoch if resume is not None else 0)


def training_identity(config: ExperimentConfig) -> dict[str, Any]:
    """The parts of a configuration that decide its training (JSON-normalized): a run resumes
    only from a state with the same identity."""
    full = json.loads(json.dumps(config_to_dict(config)))
    return {key: full[key] for key in ("data", "model", "train", "convert", "seed")}


def resumable_state(folder: Path, config: ExperimentConfig) -> TrainState | None:
    """The training state saved in ``folder`` for ``config``, or ``None`` when there is none.

    Raises:
        ConfigError: The state belongs to another configuration (the message names the first
            differing key); nothing is overwritten.
        CheckpointError: The state file is corrupt.
    """
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    state = load_train_state(path)
    difference = config_difference(state.config, training_identity(config))
    if difference is not None:
        raise ConfigError(
            f"{folder}: holds a training run of another configuration ({difference}); "
            "choose another output folder, or delete it to start over"
        )
    return state


def measure_trained(trained: TrainedModel) -> DNNRecord:
    """Measures a trained model on its test split with the configured energy profiles, with its
    accuracy on the test samples the SNN is simulated on (``simulate.max_samples``)."""
    return measure(
        trained.model,
        (trained.splits.test_x, trained.splits.test_y),
        profiles=trained.config.profiles,
        device=trained.device,
        snn_samples=trained.config.simulate.max_samples,
    )


def result_record(config: ExperimentConfig, dnn: DNNRecord | None = None, snn: Any = None,
                  history: list[EpochLog] | None = None) -> dict[str, Any]:
    """One record of ``results.json`` (docs/design.md schema): config, dnn and snn parts, and with
    ``history`` (``snnergy train``) the training log as ``train.history``, one object per epoch."""
    record: dict[str, Any] = {"config": flat_config(config)}
    if dnn is not None:
        record["dnn"] = dnn.to_dict()
    if snn is not None:
        record["snn"] = snn.to_dict()
    if history is not None:
        record["train"] = {"history": [asdict(h) for h in history]}
    return record


def flat_config(config: ExperimentConfig) -> dict[str, Any]:
    """The headline keys of docs/design.md's ``config`` part first (dataset, model, regularizer,
    strength, the model axes activation, levels and width, seed), then the full resolved config."""
    return {
        "dataset": config.data.dataset,
        "model": config.model.name,
        "regularizer": config.train.regularizer,
        "strength": config.train.strength,
        "activation": config.model.activation,
        "levels": config.model.levels,
        "width": config.model.width,
        "seed": config.seed,
        "resolved": config_to_dict(config),
    }
