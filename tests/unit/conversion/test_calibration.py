"""Conversion of trained-threshold nets: lambda = theta (no data), mixed nets, the rate model,
the initial potential, and a trained QCFS net reaching its DNN's accuracy at T = L."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snnergy.config import ConvertConfig, DataConfig
from snnergy.conversion import TRAINED_V0, activation_scales, convert
from snnergy.conversion.calibration import rate_reference
from snnergy.data import load_dataset
from snnergy.errors import ConfigError, DataError
from snnergy.layers import QCFS, TrainedClip
from snnergy.simulation import simulate_batch, simulate_reference


def seq(**layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


def qcfs_net() -> nn.Sequential:
    """Two QCFS layers with known thresholds: 2 (one per layer) and [1/2, 4] (per channel)."""
    torch.manual_seed(0)
    net = seq(flatten=nn.Flatten(), fc1=nn.Linear(4, 3), q1=QCFS(levels=4, threshold=2.0),
              fc2=nn.Linear(3, 2), q2=QCFS(levels=4, channels=2), fc3=nn.Linear(2, 2))
    with torch.no_grad():
        net.q2.threshold.copy_(torch.tensor([0.5, 4.0]))
    return net


def test_lambda_is_theta_by_hand_without_calibration_data() -> None:
    net = qcfs_net()
    snn = convert(net, input_shape=(1, 2, 2))
    assert snn.scales == {"q1": [2.0], "q2": [0.5, 4.0]} and snn.clipped == ("q1", "q2")
    assert snn.neuron.v0 == TRAINED_V0 == 0.5 and snn.neuron.threshold == 1.0
    assert snn.silent_layers == ()  # nothing is known to be silent without data
    fc1, fc2, fc3 = (s.layer for s in snn.stages)
    theta1, theta2 = torch.tensor(2.0, dtype=torch.float64), torch.tensor([0.5, 4.0], dtype=torch.float64)
    w1, w2, w3 = (net.get_submodule(n).weight.detach().double() for n in ("fc1", "fc2", "fc3"))
    b1, b2, b3 = (net.get_submodule(n).bias.detach().double() for n in ("fc1", "fc2", "fc3"))
    # W lambda_in / lambda_out and b / lambda_out; the input's lambda is 1, the readout's 1. The
    # thresholds are powers of two, so the float32 weights are exact: equality.
    assert torch.equal(fc1.weight, (w1 * 1.0 / theta1).float()) and torch.equal(fc1.bias, (b1 / theta1).float())
    assert torch.equal(fc2.weight, (w2 * theta1 / theta2[:, None]).float())  # row o divided by theta2[o]
    assert torch.equal(fc2.bias, (b2 / theta2).float())
    assert torch.equal(fc3.weight, (w3 * theta2[None, :]).float())  # column j times theta2[j]
    assert torch.equal(fc3.bias, b3.float())
    # the same scales with calibration data (none measured: the data only checks the logits)
    with_data = convert(net, torch.rand(16, 1, 2, 2))
    assert with_data.scales == snn.scales
    assert {k: v.tolist() for k, v in activation_scales(net, torch.rand(8, 1, 2, 2)).items()} == \
        {"q1": [2.0], "q2": [0.5, 4.0]}


def test_rate_model_reproduces_the_clip_reference() -> None:
    # QCFS: the rate model (clip at 1 after lambda = theta) gives the logits of the DNN with each
    # QCFS replaced by its clip at theta (its rate limit); a trained clip is that DNN itself
    x = torch.rand(64, 1, 2, 2) * 4 - 1
    net = qcfs_net()
    reference = rate_reference(copy.deepcopy(net).eval())
    assert torch.allclose(convert(net, input_shape=(1, 2, 2))(x), reference(x), atol=1e-5)
    assert not torch.allclose(net(x), reference(x), atol=1e-3)  # the floor differs from the clip
    torch.manual_seed(1)
    clip = seq(flatten=nn.Flatten(), fc1=nn.Linear(4, 6), c1=TrainedClip(0.75, channels=6),
               fc2=nn.Linear(6, 3), c2=TrainedClip(1.5), fc3=nn.Linear(3, 2))
    snn = convert(clip, x)
    assert snn.scales == {"c1": [0.75] * 6, "c2": [1.5]} and snn.clipped == ("c1", "c2")
    assert torch.allclose(snn(x), clip(x), atol=1e-5)
    with torch.no_grad():
        acts, _ = snn.activations(x)
    assert torch.allclose(acts["c1"], clip.c1(clip.fc1(clip.flatten(x))) / 0.75, atol=1e-6)
    assert float(acts["c1"].max()) == 1.0  # saturated at 1 = theta / lambda


@pytest.mark.parametrize("channelwise", [False, True])
def test_mixed_net_each_layer_its_own_way(channelwise: bool) -> None:
    torch.manual_seed(2)
    net = seq(flatten=nn.Flatten(), fc1=nn.Linear(4, 6), q1=QCFS(levels=8, threshold=1.5),
              fc2=nn.Linear(6, 5), relu2=nn.ReLU(), fc3=nn.Linear(5, 2))
    x = torch.rand(200, 1, 2, 2)
    loader = DataLoader(TensorDataset(x, torch.zeros(200)), batch_size=64)
    snn = convert(net, loader, ConvertConfig(percentile=99.0, channelwise=channelwise))
    assert snn.scales["q1"] == [1.5] and snn.clipped == ("q1",)  # theta, one value even channel-wise
    # relu2's lambda: the 99th percentile of its non-zero activations on the rate model, where q1
    # is its clip at theta (numpy's linear interpolation, as normalization.Percentile)
    with torch.no_grad():
        relu2 = torch.relu(net.fc2(torch.clamp(net.fc1(x.flatten(1)), 0.0, 1.5))).double().numpy()
    if channelwise:
        expected = [np.percentile(c[c > 0], 99.0) if (c > 0).any() else 1.0 for c in relu2.T]  # silent: 1
    else:
        expected = [np.percentile(relu2[relu2 > 0], 99.0)]
    assert snn.scales["relu2"] == pytest.approx(expected, rel=1e-6)
    assert snn.neuron.v0 == 0.5  # the net has a trained threshold


def test_calibration_is_optional_only_where_every_activation_has_a_threshold() -> None:
    relu = seq(flatten=nn.Flatten(), fc1=nn.Linear(4, 3), q1=QCFS(), fc2=nn.Linear(3, 3), relu=nn.ReLU(),
               fc3=nn.Linear(3, 2))
    with pytest.raises(DataError, match=r"activations \['relu'\] \(relu\) take their scale from calibration data"):
        convert(relu, input_shape=(1, 2, 2))
    with pytest.raises(ConfigError, match="without calibration data give the per-sample input shape"):
        convert(qcfs_net())
    with pytest.raises(ConfigError, match=r"input_shape=\(4,\) disagrees .* \(1, 2, 2\)"):
        convert(qcfs_net(), torch.rand(4, 1, 2, 2), input_shape=(4,))


def test_v0_config_default_and_explicit() -> None:
    relu = seq(flatten=nn.Flatten(), fc1=nn.Linear(4, 3), relu=nn.ReLU(), fc2=nn.Linear(3, 2))
    x = torch.rand(16, 1, 2, 2)
    assert convert(relu, x).neuron.v0 == 0.0  # percentile ReLU: today's start at 0
    assert convert(relu, x, ConvertConfig(v0=0.25)).neuron.v0 == 0.25
    assert convert(qcfs_net(), None, ConvertConfig(v0=0.0), input_shape=(1, 2, 2)).neuron.v0 == 0.0
    assert convert(qcfs_net(), input_shape=(1, 2, 2)).neuron.v0 == 0.5
    for bad in (1.0, -0.5, float("nan"), "half"):
        with pytest.raises(ConfigError, match=r"convert\.v0 must be a fraction of the threshold in \[0, 1\)"):
            ConvertConfig(v0=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("v0", [0.5, 0.0])
def test_first_layer_spike_counts_at_t_equal_l_are_the_qcfs_levels(v0: float) -> None:
    # Analog input, constant current c = pre / theta per step, threshold 1, start v0: after T
    # steps the count is clip(floor(T c + v0), 0, T) (each step adds c <= 1, a spike removes 1).
    # With v0 = 1/2 and T = L that is QCFS's clip(floor(L pre / theta + 1/2), 0, L) (Bu et al.
    # 2022): counts * theta / L are the DNN's activations exactly; with v0 = 0 the floor of
    # L pre / theta instead. float64 and power-of-two thresholds: the products are exact.
    torch.manual_seed(3)
    levels = 4
    net = seq(flatten=nn.Flatten(), fc1=nn.Linear(4, 3), q1=QCFS(levels, channels=3), fc2=nn.Linear(3, 2)).double()
    with torch.no_grad():
        net.q1.threshold.copy_(torch.tensor([1.0, 2.0, 0.5]))
        net.fc1.weight.mul_(3)
    x = torch.rand(500, 1, 2, 2, dtype=torch.float64) * 2 - 0.5
    snn = convert(net, None, ConvertConfig(v0=v0), input_shape=(1, 2, 2))
    counts = simulate_reference(snn, x, [levels]).final_counts["q1"]
    theta = net.q1.threshold.detach().double()
    with torch.no_grad():
        pre = net.fc1(x.flatten(1))
        expected = torch.clamp(torch.floor(pre * levels / theta + v0), 0, levels)
        if v0 == 0.5:
            assert torch.equal(expected * theta / levels, net.q1(pre))  # the DNN's QCFS itself
    assert torch.equal(counts, expected)
    assert len(set(expected.flatten().tolist())) == levels + 1  # every level 0..L occurs


def test_trained_qcfs_mlp_on_digits_reaches_its_accuracy_at_t_equal_l() -> None:
    # the done-when: a QCFS MLP (L = 4) trained here on the embedded digits data,
    # converted with lambda = theta and v0 = 1/2, is within 1 pp of the DNN at T = L
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide MLP: threads cost more than they give (~3 s on one core)
    try:
        _train_convert_and_compare()
    finally:
        torch.set_num_threads(threads)


def _train_convert_and_compare() -> None:
    torch.manual_seed(0)
    splits = load_dataset(DataConfig(dataset="digits"), seed=0)
    levels = 4
    net = seq(flatten=nn.Flatten(), fc1=nn.Linear(64, 64), q1=QCFS(levels), fc2=nn.Linear(64, 64),
              q2=QCFS(levels), fc3=nn.Linear(64, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = splits.train_x, splits.train_y
    for _ in range(15):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            batch = order[i : i + 64]
            loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        dnn = float((net(splits.test_x).argmax(1) == splits.test_y).float().mean())
    assert dnn > 0.9  # it learned
    snn = convert(net, input_shape=(1, 8, 8))  # no calibration data: lambda = theta
    assert snn.neuron.v0 == 0.5 and set(snn.scales) == {"q1", "q2"}
    trace = simulate_batch(snn, splits.test_x, [levels])
    accuracy = float((trace.potentials[0].argmax(1) == splits.test_y).float().mean())
    assert accuracy >= dnn - 0.01, (accuracy, dnn)
