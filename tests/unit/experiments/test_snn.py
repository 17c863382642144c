"""SNN counts of the full record (simulate -> counting -> energy) against hand and brute force."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snnergy.config import ConvertConfig
from snnergy.conversion import convert
from snnergy.energy import ENERGY_PROFILES
from snnergy.experiments import simulate
from snnergy.simulation import if_step


def identity_net() -> nn.Sequential:
    """3 inputs -> 3 IF neurons (identity weights) -> 2 readout units (all-ones weights)."""
    net = nn.Sequential(OrderedDict(fc1=nn.Linear(3, 3), relu1=nn.ReLU(), fc2=nn.Linear(3, 2)))
    with torch.no_grad():
        net.fc1.weight.copy_(torch.eye(3))
        net.fc1.bias.zero_()
        net.fc2.weight.fill_(1.0)
        net.fc2.bias.zero_()
    return net


def test_hand_derived_synops_input_macs_and_energy() -> None:
    net = identity_net()
    # Calibration activations of relu1 are the inputs themselves; with percentile 100 (max) the
    # non-zero values {1.0, 0.5} give lambda = 1.0, so the SNN keeps the identity weights.
    x = torch.tensor([[1.0, 0.5, 0.0]])
    snn = convert(net, x, ConvertConfig(percentile=100.0))
    record = simulate(snn, (x, torch.tensor([0])), timesteps=[1, 2, 4])
    # Constant currents 1.0, 0.5, 0.0 into IF neurons (threshold 1, subtractive reset):
    # neuron 0 spikes every step; neuron 1 at steps 2 and 4; neuron 2 never.
    # Spikes after T = 1, 2, 4: 1, 3, 6. Each spike reaches both readout units: fan-out 2,
    # so SynOps = 2, 6, 12.
    assert record.synops == [2.0, 6.0, 12.0]
    assert record.synops_per_layer == {"relu1": [2.0, 6.0, 12.0]}
    # Analog input: the first layer's MACs once per sample: 2 non-zero inputs x fan-out 3 = 6.
    assert record.input_macs == [6.0, 6.0, 6.0]
    # Neuron updates: (3 IF neurons + 2 readout units) x T.
    assert record.neuron_updates == [5.0, 10.0, 20.0]
    # Spike rate at T = 4: 6 spikes / (3 neurons x 4 steps) = 0.5.
    assert record.spike_rate == {"relu1": pytest.approx(0.5)}
    # 45 nm fp32: 12 x 0.9 pJ + 6 x 4.6 pJ + 20 x 0 pJ = 38.4 pJ at T = 4.
    assert record.energy_j["cmos45-fp32"][-1] == pytest.approx(38.4e-12)
    # Loihi: 12 x 27.1 + 6 x 27.1 (MAC charged as one synaptic op) + 20 x 81 = 2107.8 pJ.
    assert record.energy_j["loihi"][-1] == pytest.approx(2107.8e-12)


def test_energy_on_every_profile_follows_the_formula() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(fc1=nn.Linear(6, 8), relu1=nn.ReLU(), fc2=nn.Linear(8, 3)))
    x = torch.rand(16, 6)
    snn = convert(net, x)
    record = simulate(snn, (x, torch.zeros(16, dtype=torch.long)), timesteps=[3, 9])
    for name in ENERGY_PROFILES.names():
        p = ENERGY_PROFILES.get(name)
        for k in range(2):
            expected = (
                record.synops[k] * p.e_ac_pj + record.input_macs[k] * p.e_mac_pj + record.neuron_updates[k] * p.e_neuron_pj
            ) * 1e-12
            assert record.energy_j[name][k] == pytest.approx(expected)


def lenet_like() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 3, 3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.AvgPool2d(2),
            conv2=nn.Conv2d(3, 4, 3, stride=2, padding=1),
            relu2=nn.ReLU(),
            flatten=nn.Flatten(),
            fc1=nn.Linear(4 * 2 * 2, 5),
            relu3=nn.ReLU(),
            fc2=nn.Linear(5, 3),
        )
    )


def brute_force_synops(snn, x: torch.Tensor, steps: int) -> list[float]:
    """Step-by-step simulation written here, counting each step's SynOps the NeuroBench way:
    for the spikes s of a layer, SynOps = sum of an all-ones copy of the next weighted layer
    applied to the (sum-)pooled spikes, i.e. every product a spike takes part in."""
    stages = list(snn.stages)
    v = [None] * len(stages)
    per_step = []
    with torch.no_grad():
        for _ in range(steps):
            inp, ops = x, 0.0
            for i, stage in enumerate(stages):
                current = stage.layer(stage.pre(inp))
                if not stage.spiking:
                    break
                if v[i] is None:
                    v[i] = torch.zeros_like(current)
                spikes, v[i] = if_step(current, v[i], snn.neuron)
                nxt = stages[i + 1]
                z = spikes
                for op in nxt.pre:
                    if isinstance(op, nn.AvgPool2d):
                        k = op.kernel_size if isinstance(op.kernel_size, int) else op.kernel_size[0]
                        z = op(z) * k * k  # sum pooling: a spike reaches every window holding it
                    else:
                        z = op(z)
                layer = nxt.layer
                if isinstance(layer, nn.Conv2d):
                    ones = torch.ones_like(layer.weight)
                    ops += float(F.conv2d(z, ones, None, layer.stride, layer.padding, layer.dilation, layer.groups).sum())
                else:
                    ops += float(F.linear(z, torch.ones_like(layer.weight)).sum())
                inp = spikes
            per_step.append(ops / len(x))
    return per_step


@pytest.mark.parametrize("timesteps", [[1, 5, 12]])
def test_synops_match_a_brute_force_count(timesteps: list[int]) -> None:
    net = lenet_like()
    x = torch.rand(6, 1, 8, 8)
    snn = convert(net, x, ConvertConfig(percentile=99.0))
    record = simulate(snn, (x, torch.zeros(6, dtype=torch.long)), timesteps=timesteps)
    per_step = brute_force_synops(snn, x, timesteps[-1])
    cumulative = [sum(per_step[:t]) for t in timesteps]
    assert record.synops == pytest.approx(cumulative, rel=1e-12)
    assert record.synops[-1] > 0
    # the total is the sum of the per-layer counts
    for k in range(len(timesteps)):
        assert record.synops[k] == pytest.approx(sum(v[k] for v in record.synops_per_layer.values()))


def test_poisson_input_counts_input_synops_and_no_input_macs() -> None:
    net = lenet_like()
    x = torch.rand(4, 1, 8, 8)
    snn = convert(net, x)
    record = simulate(snn, (x, torch.zeros(4, dtype=torch.long)), timesteps=[2, 8], input="poisson", seed=1)
    assert record.input_macs == [0.0, 0.0]
    assert record.synops_per_layer["input"][-1] > 0
    assert record.synops[-1] == pytest.approx(sum(v[-1] for v in record.synops_per_layer.values()))


def test_simulate_takes_its_config_slice_and_keywords_override_it() -> None:
    from snnergy.config import SimulateConfig

    torch.manual_seed(1)
    net = nn.Sequential(OrderedDict(fc1=nn.Linear(6, 8), relu1=nn.ReLU(), fc2=nn.Linear(8, 3)))
    x = torch.rand(16, 6)
    snn = convert(net, x)
    data = (x, torch.zeros(16, dtype=torch.long))
    by_config = simulate(snn, data, SimulateConfig(timesteps=(2, 8), input="poisson", max_samples=10), seed=3)
    by_keywords = simulate(snn, data, timesteps=[8, 2], input="poisson", max_samples=10, seed=3)
    assert by_config.to_dict() == by_keywords.to_dict()
    assert by_config.timesteps == [2, 8] and by_config.samples == 10 and by_config.input == "poisson"
    overridden = simulate(snn, data, SimulateConfig(timesteps=(2, 8), max_samples=10), timesteps=4)
    assert overridden.timesteps == [1, 2, 4] and overridden.samples == 10


def test_count_snn_from_hand_spike_counts() -> None:
    from snnergy.counting import count_snn

    x = torch.tensor([[1.0, 0.5, 0.0]])
    snn = convert(identity_net(), x, ConvertConfig(percentile=100.0))
    spikes = {"relu1": torch.tensor([[1.0, 0.0, 0.0], [2.0, 1.0, 0.0]])}  # after T = 1, 2
    counts = count_snn(snn, [1, 2], 1, spikes, {"relu1": 3}, inputs=[x])
    assert counts.synops == [2.0, 6.0] and counts.synops_per_layer == {"relu1": [2.0, 6.0]}
    assert counts.input_macs == [6.0, 6.0] and counts.neuron_updates == [5.0, 10.0]
    assert counts.spike_rate == {"relu1": 0.5}
    poisson = count_snn(snn, [1, 2], 1, spikes, {"relu1": 3}, input_counts=torch.tensor([[1.0, 1.0, 0.0]] * 2))
    # Poisson input: 2 input spikes per T, each with fan-out 3 into fc1 (a dense Linear)
    assert poisson.input_macs == [0.0, 0.0] and poisson.synops_per_layer["input"] == [6.0, 6.0]
    assert poisson.synops == [8.0, 12.0]
