"""Trained-threshold activations: QCFS's quantized forward, the straight-through gradient, theta learning."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from snnergy.errors import ConfigError
from snnergy.layers import (
    QCFS,
    TrainedClip,
    floor_ste,
    initial_threshold,
    initialize_thresholds,
    make_activation,
    swap_activations,
)


def test_qcfs_forward_by_hand() -> None:
    # theta 1, L 4: h(x) = clip(floor(4x + 1/2) / 4, 0, 1); 0.12 -> floor(0.98) = 0; 0.13 -> 1/4;
    # 0.6 -> floor(2.9) = 2 -> 0.5; 0.9 -> floor(4.1) = 4 -> 1; 3 -> clipped to 1
    act = QCFS(levels=4, threshold=1.0)
    assert act(torch.tensor([-0.5, 0.12, 0.13, 0.6, 0.9, 3.0])).tolist() == [0.0, 0.0, 0.25, 0.5, 1.0, 1.0]


def test_the_floor_is_straight_through() -> None:
    # inside (0, theta) the gradient with respect to x is that of x * L / theta * theta / L = 1
    act = QCFS(levels=8, threshold=2.0)
    x = torch.tensor([0.3, 1.1, -1.0, 5.0], requires_grad=True)
    act(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 0.0]  # clipped below 0 and above theta: no gradient
    y = torch.tensor([2.7], requires_grad=True)
    floor_ste(y).backward()
    assert y.grad.tolist() == [1.0]


def test_theta_learns_to_cover_the_inputs() -> None:
    # inputs up to 4 with theta 1: the clipped part pulls theta up until it covers them
    torch.manual_seed(0)
    for act in (QCFS(levels=8, threshold=1.0), TrainedClip(threshold=1.0)):
        opt = torch.optim.SGD(act.parameters(), lr=0.05)
        x = torch.rand(256) * 4
        for _ in range(200):
            opt.zero_grad()
            ((act(x) - x) ** 2).mean().backward()
            opt.step()
        theta = float(act.threshold.detach())
        assert 3.5 < theta < 4.5, theta


def test_per_channel_thresholds_broadcast_over_channels() -> None:
    act = QCFS(levels=2, threshold=1.0, channels=2)
    with torch.no_grad():
        act.threshold.copy_(torch.tensor([1.0, 4.0]))
    x = torch.full((1, 2, 2, 2), 2.0)
    # channel 0 clips at 1; channel 1: 4 * clip(floor(2 * 2 / 4 + 1/2) / 2) = 4 * 1/2 = 2
    assert act(x)[0, :, 0, 0].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("kwargs", [{"levels": 0}, {"threshold": -1.0}, {"threshold": float("nan")}, {"channels": 0}])
def test_bad_parameters_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        QCFS(**kwargs)


# --------------------------------------------------------------------------- factory, swap, theta's start


def test_make_activation_is_the_one_factory() -> None:
    assert type(make_activation("relu")) is nn.ReLU
    qcfs = make_activation("qcfs", levels=4, channels=3)
    assert type(qcfs) is QCFS and qcfs.levels == 4 and qcfs.threshold.shape == (3,)
    assert type(make_activation("clip")) is TrainedClip
    with pytest.raises(ConfigError, match="unknown activation 'gelu'"):
        make_activation("gelu")


def test_swap_activations_replaces_every_relu_module_under_its_name() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict([("fc1", nn.Linear(4, 5)), ("act", nn.ReLU()),
                                     ("inner", nn.Sequential(nn.Linear(5, 3), nn.ReLU())), ("out", nn.Linear(3, 2))]))
    swapped = swap_activations(net, "qcfs", levels=4, channelwise=True, input_shape=(4,))
    assert type(net.act) is nn.ReLU  # the original is untouched
    assert type(swapped.act) is QCFS and swapped.act.levels == 4
    assert swapped.act.threshold.shape == (5,) and swapped.inner[1].threshold.shape == (3,)  # channels = dim 1
    # same weights, same names, plus one threshold per swapped layer
    assert torch.equal(swapped.fc1.weight, net.fc1.weight)
    assert set(swapped.state_dict()) == set(net.state_dict()) | {"act.threshold", "inner.1.threshold"}
    assert type(swap_activations(net, "clip").inner[1]) is TrainedClip


def test_swap_activations_refuses_models_without_relu_modules() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.fc(x))

    with pytest.raises(ConfigError, match="Functional has no nn.ReLU module.*functional relu calls"):
        swap_activations(Functional(), "qcfs")
    with pytest.raises(ConfigError, match="channelwise thresholds need input_shape"):
        swap_activations(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), "qcfs", channelwise=True)


def test_initial_threshold_is_a_percentile_of_the_positive_inputs() -> None:
    # positive values 1..1000 (and as many negatives, which are left out): the 99.9th percentile
    # interpolates at rank 0.999 * (1000 - 1) = 998.001 between 999 and 1000: 999.001
    values = torch.cat([torch.arange(1.0, 1001.0), -torch.arange(1.0, 1001.0), torch.zeros(10)])
    theta = initial_threshold(values[torch.randperm(len(values))].reshape(1, -1))
    assert theta.shape == (1,) and theta.item() == pytest.approx(999.001)
    # per channel, the maximum: channel 0 holds 1, 2, 3; channel 1 only negatives and zeros, so
    # it takes the layer's value (3); a layer with no positive input keeps 1
    x = torch.tensor([[[1.0, 2.0], [-1.0, 0.0]], [[3.0, -5.0], [-2.0, 0.0]]])  # (B=2, C=2, 2)
    assert initial_threshold(x, channels=2, percentile=100).tolist() == [3.0, 3.0]
    assert initial_threshold(-x.abs(), percentile=100).tolist() == [1.0]
    with pytest.raises(ConfigError, match="has no 3 channels"):
        initial_threshold(x, channels=3)


def test_initialize_thresholds_goes_layer_by_layer_and_leaves_buffers() -> None:
    # fc1 = 2x, then clip; fc2 = identity, then clip. With theta1 from data (max 2 * 3 = 6) the
    # second layer sees clip(6) = 6 at most: theta2 = 6. Had it used theta1 = 1 (the start),
    # theta2 would be 1: the pre-hook sets each theta before its layer runs.
    net = nn.Sequential(nn.Linear(1, 1), TrainedClip(), nn.BatchNorm1d(1), nn.Linear(1, 1), TrainedClip())
    with torch.no_grad():
        net[0].weight.fill_(2.0), net[0].bias.zero_(), net[3].weight.fill_(1.0), net[3].bias.zero_()
    net[2].eval()  # the BN is the identity here (running mean 0, var 1, eps aside)
    before = {k: v.clone() for k, v in net.named_buffers()}
    found = initialize_thresholds(net, torch.tensor([[1.0], [3.0], [-1.0]]), percentile=100)
    assert found["1"] == [6.0]
    assert found["4"] == pytest.approx([6.0 / (1 + 1e-5) ** 0.5])  # BN divides by sqrt(var + eps)
    assert all(torch.equal(v, before[k]) for k, v in net.named_buffers())
    # only the named ones
    net[1].threshold.data.fill_(1.0)
    assert list(initialize_thresholds(net, torch.tensor([[1.0]]), names=["4"])) == ["4"]
    assert net[1].threshold.item() == 1.0


def test_a_model_on_the_meta_device_has_nan_thresholds() -> None:
    # load_checkpoint sizes the model on the meta device before allocating it: no values to read
    from snnergy.layers import threshold_parameters

    with torch.device("meta"):
        act = QCFS(levels=4, channels=2)
    params = threshold_parameters(act)
    assert params["levels"] == 4 and len(params["threshold"]) == 2
    assert all(v != v for v in params["threshold"])  # NaN
