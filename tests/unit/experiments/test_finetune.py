"""Fine-tuning as a pipeline step: the runner with ``finetune.timesteps`` > 0, a sweep grid over it,
and the folder-to-folder step behind ``snnergy finetune``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snnergy.config import DataConfig, ExperimentConfig, FinetuneConfig, ModelConfig, SimulateConfig, TrainConfig
from snnergy.errors import CheckpointError, ConfigError
from snnergy.experiments import finetune_folder, load_converted, parse_sweep, run_configuration, train
from snnergy.experiments.pipeline import CHECKPOINT_DIR
from snnergy.reporting.schema import check_records


def tiny(**finetune: object) -> ExperimentConfig:
    return ExperimentConfig(data=DataConfig(dataset="synthetic-blobs", batch_size=32),
                            model=ModelConfig(name="tiny-mlp"), train=TrainConfig(epochs=1),
                            simulate=SimulateConfig(timesteps=(2, 4)), finetune=FinetuneConfig(**finetune),
                            device="cpu")


def test_runner_fine_tunes_between_conversion_and_simulation() -> None:
    record = run_configuration(tiny(timesteps=4, epochs=2, lr=1e-3, strength=1e-4, train_limit=64), None)
    check_records([record], "record")
    tuned = record["snn"]["finetune"]
    assert tuned["timesteps"] == 4 and tuned["epochs"] == 2
    assert tuned["synops"] > 0 and 0 <= tuned["train_accuracy"] <= 1
    assert set(tuned["thresholds"]) == set(record["snn"]["spike_rate"])  # one per spiking layer
    assert record["config"]["resolved"]["finetune"]["timesteps"] == 4  # the record says it was fine-tuned


def test_runner_default_does_not_fine_tune() -> None:
    record = run_configuration(tiny(), None)
    assert "finetune" not in record["snn"]
    assert record["config"]["resolved"]["finetune"]["timesteps"] == 0


def test_sweep_grid_over_finetune_timesteps() -> None:
    sweep = parse_sweep({"grid": {"finetune.timesteps": [0, 8], "finetune.strength": [3e-7]}})
    assert [(c.finetune.timesteps, c.finetune.strength) for c in sweep.configs] == [(0, 3e-7), (8, 3e-7)]
    with pytest.raises(ConfigError, match="finetune.timesteps must be an integer >= 0"):
        parse_sweep({"grid": {"finetune.timesteps": [-1]}})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    train(tiny(), out=out)
    return out


def test_folder_from_a_training_run_writes_a_simulatable_snn(run: Path, tmp_path: Path) -> None:
    done = finetune_folder(run, tmp_path / "ft", {"finetune.timesteps": 4, "finetune.epochs": 1, "convert.v0": 0.5})
    assert done.before.timesteps == done.after.timesteps == [1, 2, 4]  # 1, 2, 4, ..., T
    snn, config = load_converted(tmp_path / "ft")  # what `snnergy simulate` loads
    assert config.finetune.timesteps == 4 and snn.neuron.v0 == 0.5
    [record] = json.loads((tmp_path / "ft" / "results.json").read_text())
    check_records([record], "results.json")
    assert record["snn"]["accuracy"] == done.after.accuracy
    assert record["snn"]["finetune"]["before"] == {"timesteps": 4, "accuracy": done.before.accuracy[-1],
                                                   "synops": done.before.synops[-1]}


def test_folder_from_a_converted_snn_and_from_a_checkpoint_subfolder(run: Path, tmp_path: Path) -> None:
    first = finetune_folder(run / CHECKPOINT_DIR, tmp_path / "a", {"finetune.timesteps": 2})
    again = finetune_folder(tmp_path / "a", tmp_path / "b", {"finetune.timesteps": 2})
    assert again.before.synops == first.after.synops  # it started from the fine-tuned network
    finetune_folder(tmp_path / "a", tmp_path / "c", {"finetune.timesteps": 2, "convert.v0": 0.25})
    assert load_converted(tmp_path / "c")[0].neuron.v0 == 0.25  # --v0 sets a converted network's too


@pytest.mark.parametrize("overrides,error,message", [
    ({"finetune.timesteps": 0}, ConfigError, "finetune.timesteps must be >= 1"),
    ({}, ConfigError, "finetune.timesteps must be >= 1"),
    ({"finetune.timesteps": 4, "finetune.lr": -1.0}, ConfigError, "finetune.lr must be a finite number > 0"),
])
def test_folder_bad_settings(run: Path, tmp_path: Path, overrides: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        finetune_folder(run, tmp_path / "o", overrides)
    assert not (tmp_path / "o").exists()


def test_folder_that_is_no_run(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such folder"):
        finetune_folder(tmp_path / "missing", tmp_path / "o", {"finetune.timesteps": 4})
    with pytest.raises(CheckpointError, match="neither a converted SNN"):
        finetune_folder(tmp_path, tmp_path / "o", {"finetune.timesteps": 4})
