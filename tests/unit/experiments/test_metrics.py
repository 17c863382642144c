"""snnergy metrics --format neurobench: every number of a tiny net derived by hand, the JSON's keys,
what compare writes into runs/<id>, and bad input as one error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from snnergy.cli import main
from snnergy.config import ConvertConfig, DataConfig, ExperimentConfig, ModelConfig, SimulateConfig, TrainConfig
from snnergy.conversion import convert
from snnergy.errors import CheckpointError, ConfigError, ResultsError
from snnergy.experiments import measure, result_record, simulate, write_results
from snnergy.experiments.metrics import NEUROBENCH_JSON, run_metrics
from snnergy.models import build_model
from snnergy.training import save_checkpoint

# tiny-mlp with width 3/16: flatten - fc1 (2 -> 3) - relu1 - fc2 (3 -> 2), inputs (1, 2, 1)
TINY = ExperimentConfig(model=ModelConfig("tiny-mlp", width=0.1875), convert=ConvertConfig(percentile=100.0))
X = torch.tensor([[1.0, 0.0], [0.5, 0.5]]).reshape(2, 1, 2, 1)
Y = torch.tensor([0, 1])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder (checkpoint + results.json) of the hand-set tiny net, measured and simulated."""
    model = build_model(TINY.model, (1, 2, 1), 2).eval()
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
        model.fc1.bias.zero_()
        model.fc2.weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        model.fc2.bias.zero_()
    folder = tmp_path_factory.mktemp("tiny")
    save_checkpoint(folder / "checkpoint", model, TINY, input_shape=(1, 2, 1), num_classes=2)
    dnn = measure(model, (X, Y))
    snn = simulate(convert(model, X, TINY.convert), (X, Y), timesteps=[2, 4])
    write_results(folder, [result_record(TINY, dnn, snn)])
    return folder


def test_tiny_net_by_hand(tiny_run: Path, tmp_path: Path) -> None:
    metrics = run_metrics(tiny_run, "neurobench", tmp_path / "nb.json")
    assert json.loads((tmp_path / "nb.json").read_text()) == metrics
    dnn, snn = metrics["dnn"], metrics["snn"]
    # Static: fc1 6 weights + 3 biases, fc2 6 + 2: 17 float32 parameters = 68 bytes; zero weights
    # 3 of fc1's 6 and 3 of fc2's 6: 6 / 12 = 0.5. No BatchNorm: the SNN holds the same tensors.
    assert (dnn["Footprint"], dnn["ParameterCount"], dnn["ConnectionSparsity"]) == (68, 17, 0.5)
    assert (snn["Footprint"], snn["ParameterCount"], snn["ConnectionSparsity"]) == (68, 17, 0.5)
    # DNN. fc1 outputs x1 = (1, 0): (1, 0, -1) -> relu (1, 0, 0); x2 = (0.5, 0.5): (0.5, 0.5, 0).
    # Zeros 2 + 1 of 6 elements: sparsity 0.5. fc2 gives (1, 0) for both -> class 0, labels (0, 1):
    # accuracy 0.5. Effective MACs: fc1 non-zero inputs 1 and 2, fan-out 3 each -> 3 and 6; fc2 1
    # and 2 non-zero inputs, fan-out 2 -> 2 and 4; per sample (3 + 6 + 2 + 4) / 2 = 7.5. Dense 6 + 6.
    assert dnn["ClassificationAccuracy"] == 0.5
    assert dnn["ActivationSparsity"] == 0.5 and dnn["ActivationSparsityByLayer"] == {"relu1": 0.5}
    assert dnn["SynapticOperations"] == {"Effective_MACs": 7.5, "Effective_ACs": 0.0, "Dense": 12.0}
    assert dnn["samples"] == 2
    # SNN (percentile 100: lambda = the largest activation 1, weights unchanged; v0 = 0, reset by
    # subtraction). Constant currents x1 (1, 0, -1): neuron 0 spikes every step; x2 (0.5, 0.5, 0):
    # neurons 0 and 1 spike at steps 2 and 4. Spikes by T = 2: 2 + 2, by T = 4: 4 + 4; each spike
    # reaches fc2's 2 outputs: SynOps per sample (4*2 + 4*2)/2 = 8 at T = 4, (2*2 + 2*2)/2 = 4 at
    # T = 2. The analog first layer once per sample: (3 + 6) / 2 = 4.5. Spike rate at T = 4:
    # 8 spikes / (3 neurons x 4 steps x 2 samples) = 1/3, activation sparsity 2/3. Readout: x2 drives
    # output 0 only, class 0 as x1: accuracy 0.5. Dense: 12 MACs at each of the T steps.
    assert snn["timesteps"] == 4 and snn["samples"] == 2
    assert snn["ClassificationAccuracy"] == 0.5
    assert snn["ActivationSparsity"] == pytest.approx(2 / 3) and list(snn["ActivationSparsityByLayer"]) == ["relu1"]
    assert snn["SynapticOperations"] == {"Effective_MACs": 4.5, "Effective_ACs": 8.0, "Dense": 48.0}
    assert snn["per_timestep"] == {"timesteps": [2, 4], "ClassificationAccuracy": [0.5, 0.5],
                                   "Effective_MACs": [4.5, 4.5], "Effective_ACs": [4.0, 8.0], "Dense": [24.0, 48.0]}


NEUROBENCH_KEYS = ["Footprint", "ParameterCount", "ConnectionSparsity", "ClassificationAccuracy",
                   "ActivationSparsity", "ActivationSparsityByLayer", "SynapticOperations"]


def test_json_keys_and_units(tiny_run: Path) -> None:
    metrics = run_metrics(tiny_run)
    assert list(metrics) == ["format", "neurobench_version", "run", "config", "per_sample", "dnn", "snn",
                             "units", "mapping", "differences"]
    assert (metrics["format"], metrics["neurobench_version"], metrics["per_sample"]) == ("neurobench", "2.3", True)
    assert list(metrics["dnn"]) == [*NEUROBENCH_KEYS, "samples"]
    assert list(metrics["snn"]) == ["timesteps", "samples", *NEUROBENCH_KEYS, "per_timestep"]
    for part in ("dnn", "snn"):
        assert list(metrics[part]["SynapticOperations"]) == ["Effective_MACs", "Effective_ACs", "Dense"]
        keys = [k for k in NEUROBENCH_KEYS if k != "SynapticOperations"]
        keys += [f"SynapticOperations.{k}" for k in ("Effective_MACs", "Effective_ACs", "Dense")]
        for key in keys:  # every metric has its unit and its source
            assert key in metrics["units"] and f"{part}.{key}" in metrics["mapping"]
    assert any("Pooled spikes" in d for d in metrics["differences"])
    assert any("Zero weights" in d for d in metrics["differences"])
    assert metrics["config"]["model"] == "tiny-mlp" and "resolved" not in metrics["config"]


def test_train_run_has_no_snn_part_and_cli_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--epochs", "1",
                 "--device", "cpu", "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["metrics", str(run), "--format", "neurobench", "--out", str(tmp_path / "m.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "m.json").read_text())
    assert printed["snn"] is None
    record = json.loads((run / "results.json").read_text())[0]
    assert printed["dnn"]["SynapticOperations"]["Effective_MACs"] == record["dnn"]["macs_effective"]
    assert printed["dnn"]["ParameterCount"] == 64 * 16 + 16 + 16 * 4 + 4  # tiny-mlp on 1x8x8 blobs, 4 classes


def test_compare_writes_results_and_neurobench_per_run(tmp_path: Path) -> None:
    from snnergy.experiments import compare

    config = ExperimentConfig(data=DataConfig(dataset="synthetic-blobs"), model=ModelConfig(name="tiny-mlp"),
                              train=TrainConfig(epochs=1), simulate=SimulateConfig(timesteps=(4,)), device="cpu")
    records = compare(config, grid=[("none", 0.0)], out=tmp_path / "c")
    run = tmp_path / "c" / "runs" / "none-0"
    written = json.loads((run / NEUROBENCH_JSON).read_text())
    assert json.loads((run / "results.json").read_text()) == records
    assert written == run_metrics(run)
    snn = records[0]["snn"]
    assert written["snn"]["SynapticOperations"]["Effective_ACs"] == snn["synops"][-1]
    assert written["snn"]["ClassificationAccuracy"] == snn["accuracy"][-1] and written["snn"]["timesteps"] == 4
    # a comparison written before runs/<id>/results.json: the record is found in OUT/results.json
    (run / "results.json").unlink()
    assert run_metrics(run)["snn"] == written["snn"]


def test_bad_input_is_one_error(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="--format 'csv' is not a known metrics format; known: neurobench"):
        run_metrics(tiny_run, "csv")
    with pytest.raises(CheckpointError, match="no such folder"):
        run_metrics(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="no checkpoint/ here"):
        run_metrics(tmp_path)
    bare = tmp_path / "bare"
    (bare / "checkpoint").mkdir(parents=True)
    for name in ("checkpoint.json", "model.safetensors"):
        (bare / "checkpoint" / name).write_bytes((tiny_run / "checkpoint" / name).read_bytes())
    with pytest.raises(ResultsError, match="no results.json here"):
        run_metrics(bare)
    assert main(["metrics", str(bare)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("snnergy: error:") and "no results.json here" in err and err.count("\n") == 1
    assert main(["metrics", str(tiny_run), "--format", "xml"]) == 2
    assert "--format 'xml' is not a known metrics format" in capsys.readouterr().err
    assert main(["metrics", str(tiny_run), "--out", str(tmp_path)]) == 2  # --out is the JSON file to write
    assert f"--out {tmp_path} is a folder: give the .json file to write" in capsys.readouterr().err
