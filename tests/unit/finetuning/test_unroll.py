"""The unrolled network spikes as the simulator does, counts SynOps as counting does, and its
surrogate gradient reaches every weight and threshold; folding the thresholds keeps the spikes."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from snnergy.config import ConvertConfig
from snnergy.conversion import convert
from snnergy.counting import count_snn
from snnergy.errors import ConfigError
from snnergy.finetuning import UnrolledNetwork, spike
from snnergy.simulation import SpikingNetwork, SpikingStage, simulate_batch

T = 5


def digits_lenet() -> nn.Sequential:
    """LeNet on the digits' 1x8x8 input: two 3x3 convolutions with average pooling, two linear layers."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.AvgPool2d(2),
        conv2=nn.Conv2d(4, 8, 3, padding=1), relu2=nn.ReLU(), pool2=nn.AvgPool2d(2),
        flatten=nn.Flatten(), fc1=nn.Linear(32, 16), relu3=nn.ReLU(), fc2=nn.Linear(16, 10)))


class Residual(nn.Module):
    """A residual block (identity shortcut) between two linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(16, 12), nn.Linear(12, 12), nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x.flatten(1)))
        h = torch.relu(self.fc2(h) + h)
        return self.fc3(h)


def converted(model: nn.Module, shape: tuple[int, ...], v0: float, seed: int = 0) -> tuple[SpikingNetwork, torch.Tensor]:
    torch.manual_seed(seed)
    x = torch.rand(64, *shape)
    snn = convert(model.eval(), x, ConvertConfig(percentile=99.0, v0=v0)).double()
    return snn, x.double()


@pytest.mark.parametrize("v0", [0.0, 0.5])
@pytest.mark.parametrize("build,shape", [(digits_lenet, (1, 8, 8)), (Residual, (1, 4, 4))], ids=["lenet", "residual"])
def test_forward_equals_the_simulator(build, shape, v0: float) -> None:
    torch.manual_seed(1)
    snn, x = converted(build(), shape, v0)
    trace = simulate_batch(snn, x, [T])
    out = UnrolledNetwork(snn, T)(x)
    # float64 on both sides, the same currents and IF arithmetic: spike counts per neuron and the
    # readout potential are equal exactly, so the predictions are too
    assert set(out.spikes) == set(trace.final_counts)
    for name, counts in trace.final_counts.items():
        assert counts.sum() > 0, f"{name} never spiked: the test would compare nothing"
        assert torch.equal(out.spikes[name].detach(), counts), name
    assert torch.equal(out.potential.detach(), trace.potentials[-1])
    assert torch.equal(out.potential.argmax(1), trace.potentials[-1].argmax(1))
    assert torch.allclose(out.logits, out.potential / T)


def test_poisson_forward_equals_the_simulator_with_the_same_draws() -> None:
    torch.manual_seed(2)
    snn, x = converted(digits_lenet(), (1, 8, 8), 0.0)
    trace = simulate_batch(snn, x, [T], input="poisson", generator=torch.Generator().manual_seed(7))
    out = UnrolledNetwork(snn, T, input="poisson")(x, torch.Generator().manual_seed(7))
    for name, counts in trace.final_counts.items():
        assert torch.equal(out.spikes[name].detach(), counts), name
    assert torch.equal(out.potential.detach(), trace.potentials[-1])
    neurons = {k: v[0].numel() for k, v in trace.final_counts.items()}
    counted = count_snn(snn, [T], len(x), trace.spike_counts, neurons, input_counts=trace.input_counts)
    assert out.synops.mean().item() == pytest.approx(counted.synops[0], rel=1e-12)  # input spikes included


@pytest.mark.parametrize("v0", [0.0, 0.5])
def test_synops_equal_countings(v0: float) -> None:
    snn, x = converted(digits_lenet(), (1, 8, 8), v0)
    trace = simulate_batch(snn, x, [T])
    out = UnrolledNetwork(snn, T)(x)
    neurons = {k: v[0].numel() for k, v in trace.final_counts.items()}
    counted = count_snn(snn, [T], len(x), trace.spike_counts, neurons, inputs=[x])
    assert out.synops.mean().item() == pytest.approx(counted.synops[0], rel=1e-12)


def tiny() -> SpikingNetwork:
    """1 input -> 2 neurons -> 3 readout units, no biases."""
    stages = [SpikingStage("fc1", "relu1", nn.Sequential(), nn.Linear(1, 2, bias=False), True),
              SpikingStage("fc2", None, nn.Sequential(), nn.Linear(2, 3, bias=False), False)]
    snn = SpikingNetwork(stages, (1,))
    with torch.no_grad():
        stages[0].layer.weight.copy_(torch.tensor([[0.4], [0.75]]))
        stages[1].layer.weight.fill_(1.0)
    return snn


def test_synops_by_hand() -> None:
    # input 1.0, currents 0.4 and 0.75 per step, threshold 1, reset by subtraction, v0 = 0, T = 5:
    #   neuron 0: v = 0.4, 0.8, 1.2 -> spike (0.2), 0.6, 1.0 -> spike (0.0): 2 spikes
    #   neuron 1: v = 0.75, 1.5 -> spike (0.5), 1.25 -> spike (0.25), 1.0 -> spike (0), 0.75: 3 spikes
    # each spike reaches the 3 readout units: SynOps = (2 + 3) x 3 = 15 per sample
    out = UnrolledNetwork(tiny(), 5)(torch.ones(2, 1))
    assert out.spikes["relu1"].tolist() == [[2.0, 3.0], [2.0, 3.0]]
    assert out.synops.tolist() == [15.0, 15.0]
    assert out.potential.tolist() == [[5.0] * 3] * 2  # readout: every spike adds 1 to each unit


def test_spike_forward_is_heaviside_and_backward_the_arctan_surrogate() -> None:
    x = torch.tensor([-1.0, -1e-12, 0.0, 0.5], requires_grad=True)
    assert spike(x, 4.0).tolist() == [0.0, 0.0, 1.0, 1.0]
    spike(x, 4.0).sum().backward()
    # d/dx [arctan(pi/2 alpha x)/pi + 1/2] = alpha/2 / (1 + (pi/2 alpha x)^2), alpha = 4: 2 / (1 + (2 pi x)^2)
    expected = [2 / (1 + (2 * math.pi * v) ** 2) for v in (-1.0, -1e-12, 0.0, 0.5)]
    assert x.grad.tolist() == pytest.approx(expected, rel=1e-6)


def test_gradients_reach_weights_and_thresholds() -> None:
    snn, x = converted(digits_lenet(), (1, 8, 8), 0.5)
    net = UnrolledNetwork(snn, T)
    out = net(x)
    loss = nn.functional.cross_entropy(out.logits, torch.arange(len(x)) % 10) + 1e-4 * out.synops.mean()
    loss.backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    assert "log_thresholds" in grads and len(grads) == 1 + 2 * 4  # 4 layers' weight and bias
    for name, grad in grads.items():
        assert grad is not None and torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name
    assert (grads["log_thresholds"] != 0).all()  # every layer's threshold, not only some


def test_thresholds_stay_positive_and_fold_into_the_weights() -> None:
    snn, x = converted(Residual(), (1, 4, 4), 0.5)
    net = UnrolledNetwork(snn, T)
    with torch.no_grad():
        net.log_thresholds.copy_(torch.tensor([0.3, -5.0], dtype=torch.float64))
    thresholds = net.thresholds()
    # theta = exp(rho) > 0 whatever rho: exp(0.3) = 1.3499, exp(-5) = 0.0067
    assert thresholds == pytest.approx({k: v for k, v in zip(thresholds, (math.exp(0.3), math.exp(-5.0)))})
    out = net(x)
    folded = net.to_snn()
    trace = simulate_batch(folded, x, [T])
    # the simulator (threshold 1) on the folded weights spikes as the unrolled network at theta
    for name, counts in trace.final_counts.items():
        assert torch.equal(out.spikes[name].detach(), counts), name
    assert torch.allclose(out.potential.detach(), trace.potentials[-1], rtol=1e-12)
    assert folded.neuron == snn.neuron
    name = snn.stages[1].neuron_name
    assert folded.scales[name] == pytest.approx([snn.scales[name][0] * math.exp(-5.0)])
    assert snn.stages[0].layer.weight.grad is None  # the input network is untouched


@pytest.mark.parametrize("kwargs,message", [
    ({"timesteps": 0}, "timesteps >= 1"),
    ({"timesteps": 4, "input": "rate"}, "unknown simulation input 'rate'"),
])
def test_bad_arguments_are_one_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        UnrolledNetwork(tiny(), **kwargs)


def test_max_pooling_is_refused_by_name() -> None:
    # the simulator gates max-pooled spikes by running spike counts; the unrolled copy does not (yet)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        flatten=nn.Flatten(), fc1=nn.Linear(64, 10)))
    snn, _ = converted(model, (1, 8, 8), 0.0)
    with pytest.raises(ConfigError, match="does not support max pooling.*fc1"):
        UnrolledNetwork(snn, 4)
