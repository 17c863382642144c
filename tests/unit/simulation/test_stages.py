"""Max pooling in the SNN: spike-count gating on every path, its files, and where it is refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnergy
from snnergy.errors import ConfigError, ConversionError
from snnergy.simulation import (SpikingNetwork, SpikingStage, load_snn, save_snn, simulate_batch,
                                simulate_reference)
from snnergy.simulation.events import unsupported
from snnergy.simulation.stages import gate_max_pool


def maxpool_snn(dtype: torch.dtype = torch.float64) -> tuple[SpikingNetwork, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(24, 16), nn.ReLU(),
                        nn.Linear(16, 5)).to(dtype).eval()
    x = torch.rand(40, 1, 8, 8, dtype=dtype)
    return snnergy.convert(net, calibration=x), x


@pytest.mark.parametrize("mode", ["batched", "looped", "event", "auto"])
def test_every_path_gives_the_reference_spikes_through_max_pooling(mode: str) -> None:
    # small max_elements: several chunks of steps and groups of samples, so the gate's counts carry over
    snn, x = maxpool_snn()
    ref = simulate_reference(snn, x[:12], [3, 17, 40])
    got = simulate_batch(snn, x[:12], [3, 17, 40], mode=mode, max_elements=2000)
    for name in ref.spike_counts:
        assert torch.equal(ref.spike_counts[name], got.spike_counts[name]), name
    assert set(ref.gated_counts) == {"3", "7"}
    for name in ref.gated_counts:
        assert torch.equal(ref.gated_counts[name], got.gated_counts[name]), name
        # what passes a window is at most what its neurons fired
    assert float(ref.gated_counts["3"][-1].sum()) < float(ref.spike_counts["1"][-1].sum())
    torch.testing.assert_close(ref.potentials, got.potentials, rtol=1e-12, atol=1e-12)


def test_the_gated_rate_tends_to_the_max_of_the_rates() -> None:
    # one window, constant currents 0.3, 0.7, 0.5, 0.1: after 1000 steps the window has passed
    # floor-ish 0.7 * 1000 spikes (the leader's), not their union (an OR would pass ~ all 1000)
    rates = torch.tensor([0.3, 0.7, 0.5, 0.1], dtype=torch.float64)
    v = torch.zeros(4, dtype=torch.float64)
    spikes = []
    for _ in range(1000):
        v += rates
        s = (v >= 1).double()
        v -= s
        spikes.append(s)
    train = torch.stack(spikes).view(1000, 1, 1, 2, 2)
    pooled, passed = gate_max_pool(nn.MaxPool2d(2), train, torch.zeros(1, 1, 2, 2, dtype=torch.float64))
    assert float(pooled.sum()) == pytest.approx(700, abs=1)
    assert float(passed.sum()) == float(pooled.sum())


def test_max_pooling_snn_saves_and_loads(tmp_path) -> None:
    snn, x = maxpool_snn(torch.float32)
    save_snn(snn, tmp_path)
    again = load_snn(tmp_path)
    assert isinstance(again.stages[1].gate, nn.MaxPool2d)
    a, b = simulate_reference(snn, x[:4], [8]), simulate_reference(again, x[:4], [8])
    assert all(torch.equal(a.spike_counts[k], b.spike_counts[k]) for k in a.spike_counts)


def test_where_max_pooling_is_refused() -> None:
    snn, _ = maxpool_snn()
    assert "MaxPool2d" in unsupported(snn.stages[1], need_kernels=False)  # no event table: batched
    # in a network built by hand: only first in a stage's own branch after spiking neurons
    fc = nn.Linear(4, 2)
    with pytest.raises(ConfigError, match="a MaxPool2d must be the first op"):
        SpikingNetwork([SpikingStage("fc", None, nn.Sequential(nn.MaxPool2d(2), nn.Flatten()), fc, False)], (1, 4, 4))
    # in the plan: overlapping windows, the network input, after another op
    with pytest.raises(ConversionError, match=r"module '2' \(MaxPool2d\) is not supported: use AvgPool2d"):
        snnergy.convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2, stride=1), nn.Flatten(),
                                      nn.Linear(2, 2)), torch.rand(4, 1, 4, 4))
    with pytest.raises(ConversionError, match="reads the network input"):
        snnergy.convert(nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Flatten(),
                                      nn.Linear(8, 2)), torch.rand(4, 1, 4, 4))
    with pytest.raises(ConversionError, match="reads another op"):
        snnergy.convert(nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.AvgPool2d(1), nn.MaxPool2d(2), nn.Flatten(),
                                      nn.Linear(8, 2)), torch.rand(4, 1, 4, 4))


class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv(x)), 2), 1))


def test_functional_max_pooling_converts_like_the_module() -> None:
    torch.manual_seed(0)
    model = _Functional().eval()
    x = torch.rand(16, 1, 4, 4)
    snn = snnergy.convert(model, x)
    assert isinstance(snn.stages[1].gate, nn.MaxPool2d) and snn.stages[1].gate.kernel_size == 2
    # the rate model is the normalized DNN: its logits are the DNN's (the readout is not normalized)
    torch.testing.assert_close(snn(x), model(x), rtol=1e-5, atol=1e-5)
