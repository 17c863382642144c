"""End to end: `snnergy compare`, then `convert` and `simulate` from files, on digits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snnergy.cli import main

SCHEMA_DNN = {"accuracy", "sparsity", "macs_nominal", "macs_dense", "macs_effective", "energy_j"}
SCHEMA_SNN = {"timesteps", "accuracy", "synops", "input_macs", "neuron_updates", "spike_rate", "energy_j"}


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    code = main(
        ["compare", "--dataset", "digits", "--model", "lenet", "--regularizers", "none,hoyer-square",
         "--strengths", "0.3", "--epochs", "15", "--lr", "0.01", "--timesteps", "4,16,64",
         "--device", "cpu", "--quiet", "--out", str(out)]
    )
    assert code == 0
    return out


def test_compare_writes_every_file(compared: Path) -> None:
    for name in ("results.json", "results.csv", "report.md", "report.html", "config.json",
                 "plots/accuracy_energy.png", "plots/accuracy_timesteps.png", "plots/layers.png"):
        assert (compared / name).is_file(), name
    assert (compared / "runs" / "none-0" / "checkpoint" / "model.safetensors").is_file()
    assert (compared / "runs" / "hoyer-square-0.3" / "checkpoint" / "checkpoint.json").is_file()
    report = (compared / "report.md").read_text()
    assert "## Which regularizer?" in report and "Lowest SNN energy" in report
    csv_lines = (compared / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 2 * 3  # header + 2 configurations x 3 reported T


def test_compare_schema_and_totals(compared: Path) -> None:
    records = json.loads((compared / "results.json").read_text())
    assert [r["config"]["regularizer"] for r in records] == ["none", "hoyer-square"]
    for record in records:
        dnn, snn = record["dnn"], record["snn"]
        assert SCHEMA_DNN <= set(dnn) and SCHEMA_SNN <= set(snn)
        assert snn["timesteps"] == [4, 16, 64]
        for key in ("accuracy", "synops", "input_macs", "neuron_updates"):
            assert len(snn[key]) == 3
        # totals agree: the per-layer SynOps add up to the total at each T
        for k in range(3):
            assert snn["synops"][k] == pytest.approx(sum(v[k] for v in snn["synops_per_layer"].values()))
        # counts only grow with T; effective <= dense <= nominal
        assert snn["synops"] == sorted(snn["synops"])
        assert dnn["macs_effective"] <= dnn["macs_dense"] <= dnn["macs_nominal"]
        # DNN energy on 45 nm fp32 = effective MACs x 4.6 pJ
        assert dnn["energy_j"]["cmos45-fp32"] == pytest.approx(dnn["macs_effective"] * 4.6e-12)
        # SNN energy = SynOps x 0.9 pJ + input MACs x 4.6 pJ (no neuron term on this profile)
        for k in range(3):
            expected = snn["synops"][k] * 0.9e-12 + snn["input_macs"][k] * 4.6e-12
            assert snn["energy_j"]["cmos45-fp32"][k] == pytest.approx(expected)
    plain = records[0]
    assert plain["dnn"]["accuracy"] > 0.9
    # the unregularized SNN at the largest T is within 2 pp of its DNN
    assert abs(plain["snn"]["accuracy"][-1] - plain["dnn"]["accuracy"]) <= 0.02
    # the regularizer made the network sparser and the SNN cheaper
    sparse = records[1]
    mean = lambda d: sum(d.values()) / len(d)  # noqa: E731
    assert mean(sparse["dnn"]["sparsity"]) > mean(plain["dnn"]["sparsity"])
    assert sparse["snn"]["synops"][-1] < plain["snn"]["synops"][-1]


def test_convert_then_simulate_from_files(compared: Path, tmp_path: Path) -> None:
    run = compared / "runs" / "none-0"
    snn_dir = tmp_path / "snn"
    assert main(["convert", str(run), "--percentile", "99.9", "--out", str(snn_dir)]) == 0
    assert (snn_dir / "snn.safetensors").is_file() and (snn_dir / "snn.json").is_file()
    assert main(["simulate", str(snn_dir), "--timesteps", "32", "--max-samples", "100", "--quiet"]) == 0
    record = json.loads((snn_dir / "results.json").read_text())[0]
    assert record["snn"]["timesteps"] == [1, 2, 4, 8, 16, 32]
    assert record["snn"]["samples"] == 100
    assert main(["simulate", str(snn_dir), "--timesteps", "8,32", "--input", "poisson",
                 "--max-samples", "50", "--quiet", "--out", str(tmp_path / "poisson")]) == 0
    poisson = json.loads((tmp_path / "poisson" / "results.json").read_text())[0]["snn"]
    assert poisson["input"] == "poisson" and poisson["input_macs"] == [0.0, 0.0]


def test_convert_refuses_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint folder not found" in capsys.readouterr().err
    assert main(["simulate", str(tmp_path / "nope")]) == 2


def test_a_compare_folder_is_a_sweep_folder(compared: Path) -> None:
    from snnergy.experiments.sweep_store import SweepStore

    with SweepStore(compared / "sweep.sqlite", readonly=True) as store:
        assert store.records() == json.loads((compared / "results.json").read_text())
    assert json.loads((compared / "sweep.json").read_text())["layout"]["report"] == "compare"
    before = (compared / "report.md").read_text()
    assert main(["report", str(compared)]) == 0  # the one writer, in the folder's style
    assert (compared / "report.md").read_text() == before


def test_compare_resumes_a_folder_written_before_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from snnergy import experiments
    from snnergy.config import DataConfig, ExperimentConfig, ModelConfig, SimulateConfig, TrainConfig

    base = ExperimentConfig(data=DataConfig(dataset="synthetic-blobs"), model=ModelConfig(name="tiny-mlp"),
                            train=TrainConfig(epochs=1), simulate=SimulateConfig(timesteps=(4,)), device="cpu")
    first = experiments.compare(base, grid=[("none", 0.0), ("l1", 0.1)], out=tmp_path)
    (tmp_path / "sweep.sqlite").unlink()  # as an older snnergy left it: results.json only

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished configuration was trained again")

    monkeypatch.setattr("snnergy.experiments.runner.run_configuration", no_training)
    seen: list[dict] = []
    again = experiments.compare(base, grid=[("none", 0.0), ("l1", 0.1)], out=tmp_path, on_result=seen.append)
    assert again == first == seen
