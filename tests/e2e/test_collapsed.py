"""A network a regularizer silenced is reported as collapsed: in the record, in report.md, with no
division by zero, no NaN or inf in the files, and no "savings" claimed for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from snnergy.config import ConvertConfig, DataConfig, ExperimentConfig, ModelConfig, SimulateConfig, TrainConfig
from snnergy.conversion import convert
from snnergy.data import load_dataset
from snnergy.experiments import compare, measure, read_results, result_record, simulate, write_results
from snnergy.models import build_model
from snnergy.reporting import collapsed_layers, summary_rows, verdict, write_report

BLOBS = ExperimentConfig(
    data=DataConfig(dataset="synthetic-blobs", batch_size=32),
    model=ModelConfig(name="tiny-mlp"),
    train=TrainConfig(epochs=2, lr=1e-2),
    simulate=SimulateConfig(timesteps=(4, 8)),
    device="cpu",
)


def strict_json(path: Path) -> object:
    """Parses JSON refusing the NaN/Infinity tokens that Python's json would otherwise accept."""
    def refuse(token: str) -> None:
        raise AssertionError(f"{path} holds {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def assert_finite_text(text: str) -> None:
    words = {w.strip("|*,.()").lower() for w in text.split()}
    assert not words & {"inf", "-inf", "nan", "infinity"}, words & {"inf", "-inf", "nan", "infinity"}


def test_silenced_layer_is_collapsed_in_record_and_report(tmp_path: Path) -> None:
    splits = load_dataset(BLOBS.data)
    torch.manual_seed(0)
    net = build_model(BLOBS.model, splits.input_shape, splits.num_classes)
    with torch.no_grad():  # relu1 = relu(0 . x - 1) = 0 on every input: the network has collapsed
        net.fc1.weight.zero_()
        net.fc1.bias.fill_(-1.0)
    dnn = measure(net, (splits.test_x, splits.test_y), profiles=["cmos45-fp32"])
    snn = convert(net, splits.train_x, ConvertConfig())
    sim = simulate(snn, (splits.test_x, splits.test_y), timesteps=[4, 8], profiles=["cmos45-fp32"])
    assert dnn.collapsed == ["relu1"] and snn.silent_layers == ("relu1",)
    # relu1 silent: scale 1.0 instead of a division by zero, and no spike anywhere
    assert snn.scales["relu1"] == [1.0] and sim.synops == [0.0, 0.0]
    # DNN: fc1 sees 64 non-zero inputs (blobs carry noise > 0 everywhere) x fan-out 16 = 1024 MACs,
    # fc2 sees zeros only: 0. SNN: the same 1024 input MACs once per sample (analog input).
    assert dnn.macs_effective == 1024.0 and sim.input_macs == [1024.0, 1024.0]
    assert sim.silent_layers == ["relu1"]  # simulate() carries the network's silent layers
    record = result_record(BLOBS, dnn, sim)
    plain = {**record, "config": {**record["config"], "regularizer": "none", "strength": 0.0},
             "dnn": {**record["dnn"], "collapsed": [], "sparsity": {"relu1": 0.5}, "accuracy": 0.9},
             "snn": {**record["snn"], "silent_layers": [], "accuracy": [0.9, 0.9]}}
    write_results(tmp_path, [plain, record])
    records = read_results(tmp_path)  # passes the schema check
    assert records[1]["dnn"]["collapsed"] == ["relu1"] and records[1]["snn"]["silent_layers"] == ["relu1"]
    strict_json(tmp_path / "results.json")
    row = summary_rows(records)[1]
    assert row["note"] == "collapsed: relu1 silent"
    assert row["snn_dnn_energy_ratio"] != row["snn_dnn_energy_ratio"] and row["t_within"] is None  # NaN, None
    report = write_report(tmp_path, records).read_text()
    assert "collapsed: relu1 silent" in report and "Collapsed networks" in report
    assert_finite_text(report)


def test_huge_strength_collapses_and_is_left_out_of_the_verdict(tmp_path: Path) -> None:
    # l1 at strength 1000 pushes every hidden unit of the tiny MLP to zero within two epochs.
    records = compare(BLOBS, grid=[("none", 0.0), ("l1", 1000.0)], out=tmp_path)
    plain, silenced = records
    assert "error" not in silenced
    assert not collapsed_layers(plain) and collapsed_layers(silenced) == ["relu1"]
    saved = strict_json(tmp_path / "results.json")
    assert collapsed_layers(saved[1]) == ["relu1"]  # type: ignore[index]
    # whatever the target, the collapsed network never wins "lowest energy"
    for drop in (0.01, 1.0):
        lines = verdict(records, drop=drop)
        assert not any("l1" in line for line in lines if line.startswith("- Lowest"))
        assert lines[-1].startswith("- Collapsed networks") and "l1 (strength 1000) (relu1)" in lines[-1]
    report = (tmp_path / "report.md").read_text()
    assert "collapsed: relu1 silent" in report
    assert_finite_text(report)


@pytest.mark.parametrize("drop", [0.01])
def test_sweep_report_leaves_collapsed_configurations_out_of_fronts(drop: float) -> None:
    from snnergy.reporting import pareto, sweep_report_markdown

    def rec(reg: str, strength: float, acc: float, energy: float, silent: list[str]) -> dict:
        return {"config": {"dataset": "d", "model": "m", "regularizer": reg, "strength": strength, "seed": 0},
                "dnn": {"accuracy": acc, "sparsity": {"relu1": 1.0 if silent else 0.5}, "macs_dense": 10.0,
                        "macs_effective": energy * 1e12, "energy_j": {"cmos45-fp32": energy}},
                "snn": {"timesteps": [8], "accuracy": [acc], "synops": [energy * 1e12], "input_macs": [1.0],
                        "neuron_updates": [8.0], "energy_j": {"cmos45-fp32": [energy]}, "silent_layers": silent}}

    records = [rec("none", 0.0, 0.9, 4e-12, []), rec("l1", 0.1, 0.9, 2e-12, []), rec("l1", 9.0, 0.1, 1e-13, ["relu1"])]
    groups = pareto.group_records(records)
    # without the exclusion l1 9 (cheapest, accuracy 0.1) would head l1's fronts
    assert [p.group.label for p in pareto.snn_fronts(groups, "cmos45-fp32")["l1"]] == ["l1 0.1"]
    assert [g.label for g in pareto.dnn_fronts(groups, "cmos45-fp32")["l1"]] == ["l1 0.1"]
    # an absolute target of 0.05 that the collapsed network reaches: still not chosen
    iso = pareto.iso_accuracy(groups, 0.05, "cmos45-fp32")
    assert [r.get("snn_configuration") for r in iso] == ["none", "l1 0.1"]
    text = sweep_report_markdown(records, drop=drop)
    assert "collapsed: relu1 silent" in text and "Collapsed networks" in text and "l1 9 (relu1)" in text
