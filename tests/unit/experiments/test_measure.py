"""`measure` counts exactly the data it is given (regressions found against NeuroBench)."""

from __future__ import annotations

import torch
from torch import nn

from snnergy.experiments.measure import measure


def test_the_geometry_probe_sample_is_not_counted() -> None:
    # Linear(1 -> 2) with weight 0 and bias 1, ReLU, Linear(2 -> 3). Every input gives the hidden
    # layer (1, 1), so the second layer always sees 2 non-zero inputs x 3 outputs = 6 MACs per sample.
    # The first layer's input is the data: x = 0 for both samples -> 0 effective MACs there.
    # Before the fix the all-zero probe sample of the geometry pass was recorded with the first batch:
    # its 6 MACs were added to the 2 x 6 of the data and divided by the 2 data samples.
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 3))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.fill_(1.0)
    x = torch.zeros(2, 1)
    record = measure(net, (x, torch.zeros(2, dtype=torch.long)), profiles=["cmos45-fp32"])
    assert record.layers["0"].macs_effective == 0.0
    assert record.layers["2"].macs_effective == 6.0  # not (2 x 6 + 6) / 2 = 9
    assert record.macs_effective == 6.0
    assert record.layers["2"].input_density == 1.0
    assert record.sparsity["1"] == 0.0
    assert record.samples == 2


def test_effective_macs_and_sparsity_follow_the_data_hand_case() -> None:
    # Inputs of 1 and 0: layer one fires only for x != 0 (weight 1, bias 0): hidden (1, 1) or (0, 0).
    # Second layer: 6 MACs for the x = 1 sample, 0 for x = 0 -> mean 3 per sample.
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 3))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
    record = measure(net, (torch.tensor([[1.0], [0.0]]), torch.zeros(2, dtype=torch.long)), profiles=["cmos45-fp32"])
    assert record.layers["0"].macs_effective == 1.0  # one non-zero input x 2 outputs / 2 samples
    assert record.layers["2"].macs_effective == 3.0
    assert record.sparsity["1"] == 0.5
