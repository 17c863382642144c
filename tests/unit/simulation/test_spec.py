"""The SNN spec with the initial potential and the clipped (trained-threshold) neurons: round
trip, older versions, refusals, and the clipped rate model."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from snnergy.errors import CheckpointError, ConfigError
from snnergy.simulation import (
    SPEC_VERSION,
    IFNeuron,
    SpikingNetwork,
    SpikingStage,
    load_snn,
    save_snn,
    simulate_batch,
)


def net(v0: float = 0.5, clipped: tuple[str, ...] = ("q1",)) -> SpikingNetwork:
    torch.manual_seed(0)
    stages = [SpikingStage("fc1", "q1", nn.Sequential(nn.Flatten()), nn.Linear(4, 5), True),
              SpikingStage("fc2", "r2", nn.Sequential(), nn.Linear(5, 3), True),
              SpikingStage("fc3", None, nn.Sequential(), nn.Linear(3, 2), False)]
    return SpikingNetwork(stages, (1, 2, 2), IFNeuron(1.0, "subtract", v0), {"q1": [2.0], "r2": [0.7]},
                          (), clipped)


def test_spec_round_trip_keeps_v0_and_clipped(tmp_path) -> None:
    snn = net()
    save_snn(snn, tmp_path)
    spec = json.loads((tmp_path / "snn.json").read_text())
    assert spec["version"] == SPEC_VERSION == 3
    assert spec["neuron"] == {"threshold": 1.0, "reset": "subtract", "v0": 0.5}
    assert spec["clipped"] == ["q1"]
    loaded = load_snn(tmp_path)
    assert loaded.neuron == IFNeuron(1.0, "subtract", 0.5) and loaded.clipped == ("q1",)
    x = torch.rand(7, 1, 2, 2)
    a, b = simulate_batch(snn, x, [1, 4, 9], mode="looped"), simulate_batch(loaded, x, [1, 4, 9], mode="looped")
    assert torch.equal(a.potentials, b.potentials)
    assert all(torch.equal(a.final_counts[k], b.final_counts[k]) for k in a.final_counts)


@pytest.mark.parametrize("version", [1, 2])
def test_older_specs_read_with_v0_zero_and_relu_rate_models(version: int) -> None:
    spec = net(v0=0.0, clipped=()).to_spec()
    del spec["neuron"]["v0"], spec["clipped"]
    spec["version"] = version
    if version == 1:
        spec["stages"] = [{k: v for k, v in s.items() if k != "shortcuts"} for s in spec["stages"]]
    old = SpikingNetwork.from_spec(spec)
    assert old.neuron == IFNeuron(1.0, "subtract", 0.0) and old.clipped == ()


def test_spec_refuses_bad_v0_and_clipped_naming_the_key() -> None:
    spec = net().to_spec()
    spec["neuron"]["v0"] = 1.0
    with pytest.raises(CheckpointError, match=r"neuron\.v0"):
        SpikingNetwork.from_spec(spec)
    spec = net().to_spec()
    del spec["neuron"]["v0"]  # a version 3 file must hold it
    with pytest.raises(CheckpointError, match=r"missing key 'neuron\.v0'"):
        SpikingNetwork.from_spec(spec)
    spec = net().to_spec()
    spec["clipped"] = ["fc1"]  # a stage name, not a neuron name
    with pytest.raises(CheckpointError, match=r"clipped neurons \['fc1'\]"):
        SpikingNetwork.from_spec(spec)
    spec["clipped"] = "q1"
    with pytest.raises(CheckpointError, match=r"key 'clipped' must be a string list"):
        SpikingNetwork.from_spec(spec)
    with pytest.raises(ConfigError, match="not neuron names"):
        net(clipped=("nope",))


def test_rate_model_clips_clipped_neurons_at_one() -> None:
    # q1 is clipped: its rate model is clamp(x, 0, 1); r2 keeps relu(x) (it may exceed 1)
    snn = net()
    with torch.no_grad():
        snn.stages[0].layer.weight.fill_(1.0)
        snn.stages[0].layer.bias.copy_(torch.tensor([-1.0, 0.25, 0.5, 2.0, 5.0]))
        snn.stages[1].layer.weight.fill_(1.0)
        snn.stages[1].layer.bias.zero_()
    acts, _ = snn.activations(torch.zeros(1, 1, 2, 2))  # pre-activations = the biases
    assert acts["q1"].tolist() == [[0.0, 0.25, 0.5, 1.0, 1.0]]
    assert acts["r2"].tolist() == [[2.75] * 3]  # 0 + 0.25 + 0.5 + 1 + 1: relu, not clipped
    kinds = [(s.neuron.name, s.neuron.kind, dict(s.neuron.parameters)) for s in snn.plan().stages if s.neuron]
    assert kinds == [("q1", "clip", {"threshold": [1.0]}), ("r2", "relu", {})]
