"""The Python API's call forms: convert with a loader or a tensor, simulate with a loader or a pair."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import snnergy
from snnergy.errors import ConfigError


def model_and_data() -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)).eval()
    x = torch.rand(40, 1, 4, 4)
    return net, x, net(x).argmax(1).detach()


def test_convert_takes_a_loader_or_a_tensor_with_the_same_result() -> None:
    net, x, y = model_and_data()
    loader = DataLoader(TensorDataset(x, y), batch_size=7)
    from_loader = snnergy.convert(net, calibration=loader, percentile=99.9)
    from_tensor = snnergy.convert(net, calibration=x, percentile=99.9)
    assert from_loader.scales == from_tensor.scales
    for a, b in zip(from_loader.parameters(), from_tensor.parameters()):
        assert torch.equal(a, b)


def test_simulate_takes_a_loader_or_a_pair_and_one_largest_t() -> None:
    net, x, y = model_and_data()
    snn = snnergy.convert(net, calibration=x)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    by_loader = snnergy.simulate(snn, loader, timesteps=128)
    by_pair = snnergy.simulate(snn, (x, y), timesteps=128)
    # one integer T reports 1, 2, 4, ..., T, as `snnergy simulate --timesteps T`
    assert by_loader.timesteps == [1, 2, 4, 8, 16, 32, 64, 128]
    loader_record, pair_record = by_loader.to_dict(), by_pair.to_dict()
    # the correlation merges per-batch moments, so batching changes its last bits only
    assert loader_record.pop("correlation") == pytest.approx(pair_record.pop("correlation"), abs=1e-12)
    # the input density that chose each layer's path is measured on the first batch (16 samples
    # or all 64): close, not equal
    loader_density, pair_density = loader_record.pop("input_density"), pair_record.pop("input_density")
    assert loader_density.keys() == pair_density.keys()
    assert all(abs(loader_density[k] - pair_density[k]) < 0.05 for k in pair_density)
    assert loader_record == pair_record
    # the record of docs/design.md: accuracy and SynOps per T, energy per profile per T; labels are
    # the DNN's own predictions, so a faithful conversion approaches accuracy 1 at large T
    assert by_pair.accuracy[-1] >= 0.9 and by_pair.synops[-1] > by_pair.synops[0] > 0
    assert set(by_pair.energy_j) == set(snnergy.ENERGY_PROFILES.names())
    assert all(len(v) == 8 for v in by_pair.energy_j.values())
    with pytest.raises(ConfigError, match="timesteps must be >= 1"):
        snnergy.simulate(snn, (x, y), timesteps=0)
