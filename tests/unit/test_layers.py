"""Trained-threshold activations: QCFS's quantized forward, the straight-through gradient, theta learning."""

from __future__ import annotations

import pytest
import torch

from snnergy.errors import ConfigError
from snnergy.layers import QCFS, TrainedClip, floor_ste


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
