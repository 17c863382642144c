"""Integrate-and-fire neurons, Poisson encoding, the simulator (fast path vs reference), I/O."""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snnergy.config import ConvertConfig, SimulateConfig
from snnergy.conversion import convert
from snnergy.errors import CheckpointError, ConfigError, DataError
from snnergy.simulation import (
    IFNeuron,
    Simulator,
    SpikingNetwork,
    SpikingStage,
    encode_poisson,
    if_step,
    load_snn,
    run_simulation,
    save_snn,
    simulate_batch,
    simulate_reference,
)

TIMESTEPS = [1, 3, 8, 20]


# ---------------------------------------------------------------------------- small networks


def mlp() -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        flatten=nn.Flatten(), fc1=nn.Linear(64, 32), relu1=nn.ReLU(),
        fc2=nn.Linear(32, 16), relu2=nn.ReLU(), fc3=nn.Linear(16, 10)))


def lenet() -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.AvgPool2d(2),
        conv2=nn.Conv2d(4, 8, 3, padding=1), relu2=nn.ReLU(), pool2=nn.AvgPool2d(2),
        flatten=nn.Flatten(), fc1=nn.Linear(32, 16), relu3=nn.ReLU(), drop=nn.Dropout(0.2),
        fc2=nn.Linear(16, 10)))


def vgg_bn() -> nn.Sequential:
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), bn1=nn.BatchNorm2d(4), relu1=nn.ReLU(),
        conv2=nn.Conv2d(4, 4, 3, padding=1, bias=False), bn2=nn.BatchNorm2d(4), relu2=nn.ReLU(),
        pool1=nn.AvgPool2d(2), conv3=nn.Conv2d(4, 8, 3, padding=1), bn3=nn.BatchNorm2d(8),
        relu3=nn.ReLU(), pool2=nn.AvgPool2d(2), flatten=nn.Flatten(), fc1=nn.Linear(32, 16),
        bn4=nn.BatchNorm1d(16), relu4=nn.ReLU(), fc2=nn.Linear(16, 10)))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return net


NETS = {"mlp": mlp, "lenet": lenet, "vgg_bn": vgg_bn}


def converted(name: str, dtype: torch.dtype = torch.float64) -> tuple[SpikingNetwork, torch.Tensor]:
    """A converted random net and inputs in [0, 1]; data-based normalization makes layers spike."""
    torch.manual_seed(0)
    x = torch.rand(24, 1, 8, 8)
    snn = convert(NETS[name](), x, ConvertConfig(percentile=99.0))
    return snn.to(dtype), x.to(dtype)


def tiny_snn(w1: float = 0.4) -> SpikingNetwork:
    """1 input -> 1 IF neuron (weight w1, no bias) -> 1 readout unit (weight 1)."""
    stage1 = SpikingStage("fc1", "relu1", nn.Sequential(), nn.Linear(1, 1, bias=False), True)
    stage2 = SpikingStage("fc2", None, nn.Sequential(), nn.Linear(1, 1, bias=False), False)
    with torch.no_grad():
        stage1.layer.weight.fill_(w1)
        stage2.layer.weight.fill_(1.0)
    return SpikingNetwork([stage1, stage2], (1,))


def assert_same_trace(a, b) -> None:
    assert torch.equal(a.potentials, b.potentials)
    assert a.spike_counts.keys() == b.spike_counts.keys()
    for name in a.spike_counts:
        assert torch.equal(a.spike_counts[name], b.spike_counts[name]), name
        assert torch.equal(a.final_counts[name], b.final_counts[name]), name
    if a.input_counts is None:
        assert b.input_counts is None
    else:
        assert torch.equal(a.input_counts, b.input_counts)


# ---------------------------------------------------------------------------- neurons, encoding


def test_if_neuron_hand_case_subtractive_reset() -> None:
    # 0.4 per step, threshold 1: v = 0.4, 0.8, 1.2 -> 0.2, 0.6, 1.0 -> 0: spikes at steps 3 and 5
    v, spikes, potentials = torch.zeros(1, dtype=torch.float64), [], []
    for _ in range(5):
        s, v = if_step(torch.tensor([0.4], dtype=torch.float64), v, IFNeuron())
        spikes.append(s.item())
        potentials.append(v.item())
    assert spikes == [0, 0, 1, 0, 1]
    assert potentials == pytest.approx([0.4, 0.8, 0.2, 0.6, 0.0], abs=1e-12)


def test_if_neuron_hand_case_reset_to_zero() -> None:
    # 0.4 per step, reset to zero: v = 0.4, 0.8, 1.2 -> 0, 0.4, 0.8: one spike (the 0.2 surplus is lost)
    neuron, v, spikes = IFNeuron(reset="zero"), torch.zeros(1), []
    for _ in range(5):
        s, v = neuron(torch.tensor([0.4]), v)
        spikes.append(s.item())
    assert spikes == [0, 0, 1, 0, 0]
    assert v.item() == pytest.approx(0.8)


def test_if_neuron_fires_at_most_once_per_step_and_keeps_negative_potential() -> None:
    # 2.5 in one step: one spike, 1.5 left; then -3: no spike, v = -1.5 (no floor)
    s, v = if_step(torch.tensor([2.5]), torch.zeros(1), IFNeuron())
    assert (s.item(), v.item()) == (1.0, 1.5)
    s, v = if_step(torch.tensor([-3.0]), v, IFNeuron())
    assert (s.item(), v.item()) == (0.0, -1.5)


@pytest.mark.parametrize("kwargs", [{"reset": "modulo"}, {"threshold": 0.0}, {"threshold": math.inf}])
def test_if_neuron_refuses_bad_parameters(kwargs) -> None:
    with pytest.raises(ConfigError):
        IFNeuron(**kwargs)


def test_encode_poisson_probabilities_and_seed() -> None:
    x = torch.tensor([[0.0, 1.0, 1.7, -0.3, 0.3]])
    spikes = encode_poisson(x, 2000, torch.Generator().manual_seed(0))
    assert spikes.shape == (2000, 1, 5)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    rates = spikes.mean(0)[0]
    assert rates[:4].tolist() == [0.0, 1.0, 1.0, 0.0]  # p clamped to [0, 1]
    assert abs(rates[4].item() - 0.3) < 0.05  # 2000 draws: std ~0.01
    again = encode_poisson(x, 2000, torch.Generator().manual_seed(0))
    assert torch.equal(spikes, again)


# ---------------------------------------------------------------------------- simulator


def test_hand_network_counts_and_readout() -> None:
    # neuron gets 0.4/step: spikes at steps 3, 5 (and 8, 10); readout weight 1 sums the spikes.
    # Batch of 2 samples (x = 1 and x = 0): counts summed over the batch = the first sample's.
    trace = simulate_batch(tiny_snn(), torch.tensor([[1.0], [0.0]]), [1, 3, 5, 10])
    assert trace.spike_counts["relu1"].flatten().tolist() == [0, 1, 2, 4]
    assert trace.potentials[:, 0, 0].tolist() == [0, 1, 2, 4]
    assert trace.potentials[:, 1, 0].tolist() == [0, 0, 0, 0]
    assert trace.final_counts["relu1"].flatten().tolist() == [4, 0]
    assert trace.input_counts is None


def test_hand_network_poisson_input_all_ones() -> None:
    # p = 1: an input spike every step; weight 0.4 -> same spikes as the analog case above
    g = torch.Generator().manual_seed(0)
    trace = simulate_batch(tiny_snn(), torch.ones(3, 1), [1, 5], input="poisson", generator=g)
    assert trace.input_counts.flatten().tolist() == [3, 15]  # 3 samples x 1 and x 5 steps
    assert trace.spike_counts["relu1"].flatten().tolist() == [0, 6]  # 3 samples x 2 spikes


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("encoding", ["analog", "poisson"])
@pytest.mark.parametrize("mode", ["batched", "looped", "event"])
def test_fast_path_equals_reference_exactly(net: str, encoding: str, mode: str) -> None:
    # float64: a batched call on (T*B, ...) may round differently from B-sized calls in the last
    # bit, and the event path adds the same products in another order; float64 makes a spike
    # flip from that practically impossible (see simulate_batch).
    snn, x = converted(net)
    fast = simulate_batch(snn, x, TIMESTEPS, input=encoding, mode=mode,
                          generator=torch.Generator().manual_seed(3))
    ref = simulate_reference(snn, x, TIMESTEPS, input=encoding, generator=torch.Generator().manual_seed(3))
    assert_same_trace(fast, ref)
    assert all(c[-1].sum() > 0 for c in fast.spike_counts.values())  # every layer spikes
    assert fast.potentials.shape == (4, 24, 10)


@pytest.mark.parametrize("net", NETS)
def test_looped_mode_equals_reference_in_float32(net: str) -> None:
    # looped mode and the reference make the same (B, ...)-sized layer calls: bitwise equal
    snn, x = converted(net, torch.float32)
    fast = simulate_batch(snn, x, TIMESTEPS, mode="looped")
    assert_same_trace(fast, simulate_reference(snn, x, TIMESTEPS))


@pytest.mark.parametrize("mode", ["batched", "event"])
def test_time_chunking_bounds_memory_and_keeps_spikes(mode: str) -> None:
    # conv1 holds 1*8*8 inputs + 4*8*8 outputs = 320 values per sample and step, the widest
    # stage. A budget of 24 x 320 x 7 = 53760 values takes CHUNK_STEPS = 16 steps first, then
    # 53760 // (16 x 320) = 10 samples: groups of 10, 10 and 4 samples, chunks of 16 and 4 steps.
    # A budget of 5 x 320 allows 5 steps of 1 sample: 24 groups, chunks of 5 steps.
    snn, x = converted("lenet")
    for budget, chunking in ((24 * 320 * 7, (10, 16)), (5 * 320, (1, 5))):
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        sim = Simulator(snn, TIMESTEPS, input="poisson", mode=mode, max_elements=budget)
        assert sim._chunking(24, x.device) == chunking
        assert_same_trace(sim.run(x, g1), simulate_reference(snn, x, TIMESTEPS, input="poisson", generator=g2))


def test_auto_mode_records_a_path_per_stage() -> None:
    snn, x = converted("lenet")
    sim = Simulator(snn, [5], input="poisson", mode="auto")
    sim.run(x, torch.Generator().manual_seed(0))
    assert list(sim.paths) == ["conv1", "conv2", "fc1", "fc2"]
    assert set(sim.paths.values()) <= {"batched", "looped", "event"}
    assert set(sim.density) == set(sim.paths) and all(0 <= d <= 1 for d in sim.density.values())
    assert not hasattr(snn.stages[0], "plan")


def test_simulator_refuses_bad_arguments() -> None:
    snn, x = converted("mlp")
    with pytest.raises(ConfigError, match="timesteps"):
        simulate_batch(snn, x, [0, 3])
    with pytest.raises(ConfigError, match="input"):
        simulate_batch(snn, x, [3], input="rate")
    with pytest.raises(ConfigError, match="mode"):
        simulate_batch(snn, x, [3], mode="fast")
    with pytest.raises(DataError, match=r"\(1, 4, 4\)"):
        simulate_batch(snn, torch.rand(2, 1, 4, 4), [3])


# ---------------------------------------------------------------------------- run_simulation


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """A 16-32-32-4 MLP trained 80 full-batch steps on a random linear teacher (4 classes)."""
    torch.manual_seed(0)
    x = torch.rand(600, 16)
    y = ((x - 0.5) @ torch.randn(16, 4)).argmax(1)  # centred, so the classes are balanced
    net = nn.Sequential(OrderedDict(fc1=nn.Linear(16, 32), relu1=nn.ReLU(), fc2=nn.Linear(32, 32),
                                    relu2=nn.ReLU(), fc3=nn.Linear(32, 4)))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(80):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[:400]), y[:400]).backward()
        opt.step()
    return net, x[:400], x[400:]


def test_snn_predictions_approach_the_dnn(trained) -> None:
    net, train_x, test_x = trained
    with torch.no_grad():
        dnn_pred = net(test_x).argmax(1)
    assert dnn_pred.bincount().max() < 100  # no class holds half the samples: not a trivial task
    snn = convert(net, train_x)
    config = SimulateConfig(timesteps=(1, 10, 50, 200))
    result = run_simulation(snn, (test_x, dnn_pred), config)  # accuracy vs DNN = agreement
    assert result.timesteps == [1, 10, 50, 200]
    assert len(result.accuracy) == len(result.correct) == 4
    assert result.samples == 200
    assert result.accuracy[-1] >= 0.95
    assert result.accuracy[0] < 0.5 < result.accuracy[1] <= result.accuracy[2]  # rises with T
    assert result.neurons == {"relu1": 32, "relu2": 32}
    assert set(result.paths) == {"fc1", "fc2", "fc3"}
    for name, counts in result.spike_counts.items():
        assert counts.shape == (4, 32) and counts.dtype == torch.float64
        assert bool((counts.diff(dim=0) >= 0).all()), name  # cumulative: non-decreasing in T
        assert 0.9 < result.correlation[name] <= 1.0
    assert result.input_counts is None


def test_run_simulation_data_forms_and_max_samples(trained) -> None:
    net, train_x, test_x = trained
    snn = convert(net, train_x)
    labels = torch.zeros(200, dtype=torch.long)
    config = SimulateConfig(timesteps=(4, 2), max_samples=150)
    pair = run_simulation(snn, (test_x, labels), config)
    loader = run_simulation(snn, DataLoader(TensorDataset(test_x, labels), batch_size=64), config,
                            max_elements=300)  # tiny budget: batches split into sub-batches
    assert pair.samples == loader.samples == 150
    assert pair.timesteps == [2, 4]
    assert pair.correct == loader.correct
    for name in pair.spike_counts:
        assert torch.equal(pair.spike_counts[name], loader.spike_counts[name])


def test_run_simulation_poisson_is_seeded(trained) -> None:
    net, train_x, test_x = trained
    snn = convert(net, train_x)
    data, config = (test_x[:50], torch.zeros(50, dtype=torch.long)), SimulateConfig((5,), "poisson")
    a, b = run_simulation(snn, data, config, seed=1), run_simulation(snn, data, config, seed=1)
    c = run_simulation(snn, data, config, seed=2)
    assert torch.equal(a.input_counts, b.input_counts) and a.input_counts.shape == (1, 16)
    assert torch.equal(a.spike_counts["relu1"], b.spike_counts["relu1"])
    assert not torch.equal(a.input_counts, c.input_counts)


def test_run_simulation_refuses_empty_data(trained) -> None:
    net, train_x, _ = trained
    with pytest.raises(DataError, match="no samples"):
        run_simulation(convert(net, train_x), (torch.zeros(0, 16), torch.zeros(0)), SimulateConfig())


# ---------------------------------------------------------------------------- spec, save, load


def test_save_load_round_trip_gives_identical_simulation(tmp_path) -> None:
    snn, x = converted("vgg_bn", torch.float32)
    save_snn(snn, tmp_path)
    loaded = load_snn(tmp_path)
    assert json.loads((tmp_path / "snn.json").read_text()) == snn.to_spec()
    assert loaded.scales == snn.scales and loaded.neuron == snn.neuron
    assert_same_trace(simulate_batch(snn, x, TIMESTEPS, mode="looped"),
                      simulate_batch(loaded, x, TIMESTEPS, mode="looped"))


def test_load_refuses_truncated_spec_and_missing_weights(tmp_path) -> None:
    snn, _ = converted("mlp", torch.float32)
    save_snn(snn, tmp_path)
    spec = tmp_path / "snn.json"
    text = spec.read_text()
    spec.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="snn.json"):
        load_snn(tmp_path)
    spec.write_text(text)
    (tmp_path / "snn.safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights file not found"):
        load_snn(tmp_path)


def test_spec_errors_name_the_key(tmp_path) -> None:
    snn, _ = converted("lenet", torch.float32)
    spec = snn.to_spec()
    del spec["stages"][1]["layer"]["kernel_size"]
    with pytest.raises(CheckpointError, match=r"stages\[1\]\.layer\.kernel_size"):
        SpikingNetwork.from_spec(spec)
    spec = snn.to_spec()
    spec["neuron"]["reset"] = "modulo"
    with pytest.raises(CheckpointError, match=r"neuron\.reset"):
        SpikingNetwork.from_spec(spec)
    spec = snn.to_spec()
    spec["stages"][0]["layer"]["out_channels"] = 5  # weights no longer fit
    save_snn(snn, tmp_path)
    (tmp_path / "snn.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match="shape"):
        load_snn(tmp_path)
