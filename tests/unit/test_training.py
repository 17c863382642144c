from __future__ import annotations

from pathlib import Path

import pytest
import torch

from snnergy.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from snnergy.errors import CheckpointError, ConfigError, TrainingError
from snnergy.experiments import train
from snnergy.training import load_checkpoint, resolve_device


def blobs_config(**train_kw) -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(dataset="synthetic-blobs", batch_size=32),
        model=ModelConfig(name="tiny-mlp"),
        train=TrainConfig(**{"epochs": 2, "lr": 1e-2, **train_kw}),
        device="cpu",
    )


def test_digits_lenet_learns_well_above_chance() -> None:
    cfg = ExperimentConfig(
        data=DataConfig(dataset="digits", batch_size=32),
        model=ModelConfig(name="mlp"),
        train=TrainConfig(epochs=3, lr=3e-3),
        device="cpu",
    )
    trained = train(cfg)
    # 10 classes: chance is 10 %; three epochs of an MLP on digits reach > 85 %.
    assert trained.history[-1].test_accuracy > 0.85
    assert [h.epoch for h in trained.history] == [1, 2, 3]


def test_regularizer_raises_sparsity_and_logs_penalty() -> None:
    plain = train(blobs_config())
    sparse = train(blobs_config(regularizer="l1", strength=3.0))
    assert sparse.history[-1].penalty > 0 and plain.history[-1].penalty == 0
    assert sparse.history[-1].sparsity > plain.history[-1].sparsity


def test_same_seed_same_weights() -> None:
    a = train(blobs_config()).model.state_dict()
    b = train(blobs_config()).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    trained = train(blobs_config(), out=tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoint")
    x = trained.splits.test_x[:16]
    assert torch.equal(trained.model(x), ckpt.model(x))
    assert ckpt.config == trained.config
    assert len(ckpt.history) == 2


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    train(blobs_config(epochs=1), out=tmp_path)
    weights = (tmp_path / "checkpoint" / "model.safetensors").read_bytes()
    # A learning rate of 1e30 with plain SGD overflows the weights within a few steps.
    with pytest.raises(TrainingError, match="training diverged: loss is (nan|inf)"):
        train(blobs_config(epochs=3, lr=1e30, optimizer="sgd", schedule="constant"), out=tmp_path)
    assert (tmp_path / "checkpoint" / "model.safetensors").read_bytes() == weights
    load_checkpoint(tmp_path / "checkpoint")  # still loads


def test_bad_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        load_checkpoint(tmp_path / "missing")
    train(blobs_config(epochs=1), out=tmp_path)
    folder = tmp_path / "checkpoint"
    meta = folder / "checkpoint.json"
    text = meta.read_text()
    meta.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="not a valid JSON file"):
        load_checkpoint(folder)
    meta.write_text(text)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(folder)
    weights.unlink()
    with pytest.raises(CheckpointError, match="weights file not found"):
        load_checkpoint(folder)


def test_checkpoint_with_wrong_shapes_is_refused(tmp_path: Path) -> None:
    from snnergy.checkpoints import load_tensors, save_tensors

    train(blobs_config(epochs=1), out=tmp_path)
    weights = tmp_path / "checkpoint" / "model.safetensors"
    tensors = load_tensors(weights)
    first = next(iter(tensors))
    tensors[first] = torch.zeros(3, 3)
    save_tensors(weights, tensors)
    with pytest.raises(CheckpointError, match=f"tensor '{first}' has shape"):
        load_checkpoint(tmp_path / "checkpoint")


def test_config_errors_before_training() -> None:
    with pytest.raises(ConfigError, match="unknown regularizer 'l3'"):
        train(blobs_config(regularizer="l3"))
    with pytest.raises(ConfigError, match="unknown optimizer"):
        train(blobs_config(optimizer="adamw"))
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
