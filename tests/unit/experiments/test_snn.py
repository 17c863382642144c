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
                # memory term (0 on compute-only profiles): a weight read per MAC and SynOp, state per update
                + (record.synops[k] + record.input_macs[k]) * p.e_weight_read_pj + record.neuron_updates[k] * p.e_state_pj
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


def test_curve_at_every_t_matches_the_listed_t_and_the_hand_spikes() -> None:
    net = identity_net()
    x = torch.tensor([[1.0, 0.5, 0.0]])
    snn = convert(net, x, ConvertConfig(percentile=100.0))
    record = simulate(snn, (x, torch.tensor([0])), timesteps=[1, 2, 4])
    curve = record.curve
    assert curve is not None and curve.timesteps == [1, 2, 3, 4]  # every t up to T_max = 4
    # Spikes after t = 1..4 (neuron 0 every step, neuron 1 at steps 2 and 4): 1, 3, 4, 6; fan-out 2.
    assert curve.synops == [2.0, 6.0, 8.0, 12.0]
    # The every-t SynOps at the listed T are the record's SynOps.
    assert [curve.synops[t - 1] for t in record.timesteps] == record.synops
    assert [curve.accuracy[t - 1] for t in record.timesteps] == record.accuracy
    # fp32 45 nm at t = 3: 8 SynOps x 0.9 pJ + 6 input MACs x 4.6 pJ = 34.8 pJ.
    assert curve.energy_j["cmos45-fp32"][2] == pytest.approx(34.8e-12)
    assert [curve.energy_j["loihi"][t - 1] for t in record.timesteps] == record.energy_j["loihi"]


def test_energy_breakdown_sums_to_the_energy_by_hand() -> None:
    net = identity_net()
    x = torch.tensor([[1.0, 0.5, 0.0]])
    snn = convert(net, x, ConvertConfig(percentile=100.0))
    record = simulate(snn, (x, torch.tensor([0])), timesteps=[1, 2, 4])
    # Loihi at T = 4 (counts derived in test_hand_derived_synops_input_macs_and_energy):
    # input layer 6 MACs x 27.1 = 162.6 pJ; spiking layers 12 SynOps x 27.1 = 325.2 pJ;
    # neuron updates 20 x 81 = 1620 pJ; total 2107.8 pJ.
    parts = record.energy_breakdown_j["loihi"]
    assert parts["input_layer"][-1] == pytest.approx(162.6e-12)
    assert parts["spiking_layers"][-1] == pytest.approx(325.2e-12)
    assert parts["neuron_updates"][-1] == pytest.approx(1620e-12)
    for profile, energy in record.energy_j.items():
        sums = [sum(values) for values in zip(*record.energy_breakdown_j[profile].values())]
        assert sums == pytest.approx(energy, rel=1e-12), profile
    # fp32 45 nm charges no neuron update: its third part is zero at every T.
    assert record.energy_breakdown_j["cmos45-fp32"]["neuron_updates"] == [0.0, 0.0, 0.0]


def test_every_t_simulation_keeps_the_listed_numbers() -> None:
    """The record's listed-T numbers are those of a simulation reporting only the listed T."""
    from snnergy.config import SimulateConfig
    from snnergy.counting import count_snn
    from snnergy.simulation import run_simulation

    torch.manual_seed(1)
    net = nn.Sequential(OrderedDict(fc1=nn.Linear(6, 8), relu1=nn.ReLU(), fc2=nn.Linear(8, 5), relu2=nn.ReLU(),
                                    fc3=nn.Linear(5, 3)))
    x, y = torch.rand(24, 6), torch.randint(0, 3, (24,))
    snn = convert(net, x)
    listed = [2, 5, 16]
    record = simulate(snn, (x, y), timesteps=listed)
    plain = run_simulation(snn, (x, y), SimulateConfig(timesteps=tuple(listed)))
    counts = count_snn(snn, plain.timesteps, plain.samples, plain.spike_counts, plain.neurons, inputs=[x])
    assert record.timesteps == listed and record.accuracy == plain.accuracy
    assert record.synops == counts.synops and record.synops_per_layer == counts.synops_per_layer
    assert record.spike_rate == counts.spike_rate
    assert record.curve is not None and record.curve.timesteps == list(range(1, 17))
    assert [record.curve.synops[t - 1] for t in listed] == record.synops
    # SynOps and energy never decrease with t (spikes only add up)
    assert all(a <= b for a, b in zip(record.curve.synops, record.curve.synops[1:]))


def test_curve_grid_coarsens_only_when_the_counts_would_not_fit() -> None:
    from snnergy.experiments.snn import curve_timesteps

    # 10 neurons x 64 t x 16 B = 10,240 B: fits in a 1 MB budget's eighth (131,072 B)
    assert curve_timesteps([4, 64], neurons=10, max_memory=2**20) == tuple(range(1, 65))
    # 10,000 neurons: 64 t = 10.24 MB > 131,072 B; every 64th step: 1 t x 160 kB, still too much,
    # the stride stops at T_max: the listed T alone
    assert curve_timesteps([4, 64], neurons=10_000, max_memory=2**20) == (4, 64)
    # 1,000 neurons: 16 kB per t, 8 t fit (128,000 B): stride 8, plus the listed 4
    assert curve_timesteps([4, 64], neurons=1_000, max_memory=2**20) == (4, 8, 16, 24, 32, 40, 48, 56, 64)


def test_memory_term_of_the_snn_hand_case() -> None:
    # identity_net as in test_hand_derived_synops_input_macs_and_energy: at T = 1, 2, 4
    # SynOps 2, 6, 12; input MACs 6; neuron updates 5, 10, 20. On cmos45-fp32-sram the memory term is
    # (input MACs + SynOps) weight reads x 5 pJ + neuron updates x 10 pJ (state read + write):
    # T=1: 8 x 5 + 5 x 10 = 90 pJ; T=2: 12 x 5 + 10 x 10 = 160 pJ; T=4: 18 x 5 + 20 x 10 = 290 pJ.
    x = torch.tensor([[1.0, 0.5, 0.0]])
    snn = convert(identity_net(), x, ConvertConfig(percentile=100.0))
    record = simulate(snn, (x, torch.tensor([0])), timesteps=[1, 2, 4], profiles=["cmos45-fp32", "cmos45-fp32-sram"])
    memory = record.energy_breakdown_j["cmos45-fp32-sram"]["memory"]
    assert memory == pytest.approx([90e-12, 160e-12, 290e-12])
    # total at T = 4: compute 38.4 pJ (as cmos45-fp32) + memory 290 pJ = 328.4 pJ
    assert record.energy_j["cmos45-fp32"][-1] == pytest.approx(38.4e-12)
    assert record.energy_j["cmos45-fp32-sram"][-1] == pytest.approx(328.4e-12)
    assert "memory" not in record.energy_breakdown_j["cmos45-fp32"]
