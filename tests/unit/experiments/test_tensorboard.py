"""--tensorboard DIR: the event file read back equals the training history in results.json; a
missing package is one clear error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from snnergy.cli import main
from snnergy.config import LoggingConfig
from snnergy.errors import ConfigError
from snnergy.experiments.tensorboard import TensorBoardLog

TRAIN = ["train", "--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--epochs", "2", "--regularizer", "l1",
         "--strength", "0.01", "--device", "cpu", "--quiet"]


def test_event_file_equals_the_history(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the optional extra is not installed: pip install 'snnergy[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main([*TRAIN, "--tensorboard", str(tmp_path / "tb"), "--out", str(tmp_path / "run")]) == 0
    history = json.loads((tmp_path / "run" / "results.json").read_text())[0]["train"]["history"]
    assert [h["epoch"] for h in history] == [1, 2] and list(history[0]["layer_sparsity"]) == ["relu1"]
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    expected = {"loss/task": "task_loss", "loss/penalty": "penalty", "accuracy/train": "train_accuracy",
                "accuracy/test": "test_accuracy", "sparsity/all": "sparsity", "lr": "lr"}
    assert sorted(events.Tags()["scalars"]) == sorted([*expected, "sparsity/relu1"])  # no distillation tag without a teacher
    for tag, key in {**expected, "sparsity/relu1": None}.items():
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        # scalars are stored as float32: the history's values rounded to float32
        values = [h["layer_sparsity"]["relu1"] if key is None else h[key] for h in history]
        assert logged == [(h["epoch"], float(np.float32(v))) for h, v in zip(history, values)], tag
    assert history[0]["penalty"] > 0  # the l1 penalty is logged, not a zero


def test_compare_writes_each_configurations_log(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the optional extra is not installed: pip install 'snnergy[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from snnergy.config import DataConfig, ExperimentConfig, ModelConfig, SimulateConfig, TrainConfig
    from snnergy.experiments import compare, load_run

    config = ExperimentConfig(data=DataConfig(dataset="synthetic-blobs"), model=ModelConfig(name="tiny-mlp"),
                              train=TrainConfig(epochs=2), simulate=SimulateConfig(timesteps=(4,)), device="cpu")
    compare(config, grid=[("none", 0.0), ("l1", 0.01)], out=tmp_path / "c", tensorboard=tmp_path / "tb")
    for label in ("none-0", "l1-0.01"):
        history = load_run(tmp_path / "c" / "runs" / label).history
        events = EventAccumulator(str(tmp_path / "tb" / label))
        events.Reload()
        assert [(e.step, e.value) for e in events.Scalars("loss/task")] == \
            [(h["epoch"], float(np.float32(h["task_loss"]))) for h in history]
        assert [e.value for e in events.Scalars("sparsity/relu1")] == \
            [float(np.float32(h["layer_sparsity"]["relu1"])) for h in history]
    with pytest.raises(ConfigError, match="--tensorboard reads each configuration's checkpoint"):
        compare(config, grid=[("none", 0.0)], out=None, tensorboard=tmp_path / "tb")


def test_missing_package_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    with pytest.raises(ConfigError, match=r"needs the tensorboard package: pip install 'snnergy\[tensorboard\]'"):
        TensorBoardLog(tmp_path / "tb")
    assert main([*TRAIN, "--tensorboard", str(tmp_path / "tb"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("snnergy: error: --tensorboard") and err.count("\n") == 1
    assert not (tmp_path / "run" / "checkpoint").exists()  # refused before training


def test_logging_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="logging.tensorboard must be a folder"):
        LoggingConfig(tensorboard="")
    assert LoggingConfig().tensorboard is None
