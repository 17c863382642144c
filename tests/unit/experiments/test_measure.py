"""`measure` counts exactly the data it is given (regressions found against NeuroBench)."""

from __future__ import annotations

import pytest
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


def test_accuracy_on_the_samples_the_snn_runs() -> None:
    # A 1-input, 2-class linear model: class 1 when x > 0. Labels make samples 0, 1, 3 correct.
    model = nn.Sequential(nn.Linear(1, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model[0].bias.zero_()
    x = torch.tensor([[1.0], [-1.0], [1.0], [-1.0], [1.0]])
    y = torch.tensor([1, 0, 0, 0, 0])  # predictions 1, 0, 1, 0, 1: correct, correct, wrong, correct, wrong
    whole = measure(model, (x, y))
    assert whole.accuracy == 3 / 5 and whole.accuracy_snn_samples == 3 / 5 and whole.snn_samples == 5
    # the SNN runs on the first 3 samples (simulate.max_samples = 3): 2 of them correct
    first3 = measure(model, (x, y), snn_samples=3)
    assert first3.accuracy == 3 / 5 and first3.accuracy_snn_samples == 2 / 3 and first3.snn_samples == 3
    # across batches of 2: the subset ends inside the second batch
    loader = [(x[:2], y[:2]), (x[2:4], y[2:4]), (x[4:], y[4:])]
    assert measure(model, loader, snn_samples=3).accuracy_snn_samples == 2 / 3
    assert measure(model, loader, snn_samples=100).accuracy_snn_samples == 3 / 5


def test_memory_term_of_the_dnn_hand_case() -> None:
    # Linear 4 -> 3 fed 2 non-zero inputs (x = (1, 0, 2, 0)): 2 x 3 = 6 effective MACs per sample.
    # cmos45-fp32-sram: compute 6 x 4.6 = 27.6 pJ, memory one weight read per effective MAC
    # 6 x 5 pJ = 30 pJ; energy_j is the total 57.6 pJ. cmos45-fp32 keeps 27.6 pJ and no breakdown.
    net = nn.Sequential(nn.Linear(4, 3))
    x = torch.tensor([[1.0, 0.0, 2.0, 0.0]])
    record = measure(net, (x, torch.zeros(1, dtype=torch.long)), profiles=["cmos45-fp32", "cmos45-fp32-sram"])
    assert record.macs_effective == 6.0
    assert record.energy_j["cmos45-fp32"] == pytest.approx(27.6e-12)
    assert record.energy_j["cmos45-fp32-sram"] == pytest.approx(57.6e-12)
    assert list(record.energy_breakdown_j) == ["cmos45-fp32-sram"]
    split = record.energy_breakdown_j["cmos45-fp32-sram"]
    assert split["compute"] == pytest.approx(27.6e-12) and split["memory"] == pytest.approx(30e-12)
    assert record.to_dict()["energy_breakdown_j"] == record.energy_breakdown_j
