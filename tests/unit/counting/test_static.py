"""Static counts on NeuroBench's definitions: by hand, and the plan's SNN counts against a real conversion."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnergy.config import ConvertConfig, ModelConfig
from snnergy.conversion import convert
from snnergy.counting.static import (
    connection_sparsity,
    footprint_bytes,
    parameter_count,
    plan_connection_sparsity,
    plan_footprint_bytes,
    plan_neurons,
)
from snnergy.models import build_model
from snnergy.structure import trace


def test_by_hand_with_batchnorm() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, 0, 1, 1] = 1.0  # 1 non-zero of 18 conv weights
        net[4].weight.fill_(1.0)
    net.eval()
    # DNN: conv 18 + BN 2 weights + 2 biases + linear 24 + 3 = 49 parameters; buffers: BN running
    # mean and var 2 + 2 float32, num_batches_tracked 1 int64 (8 bytes): 49*4 + 4*4 + 8 = 220 bytes.
    assert (parameter_count(net), footprint_bytes(net)) == (49, 220)
    # zero weights: 17 of the conv's 18, none of the linear's 24 (BatchNorm is not counted): 17/42
    assert connection_sparsity(net) == 17 / 42
    plan = trace(net, (1, 4, 4))
    # SNN: BN folded into the conv (18 weights + a 2-bias), linear 24 + 3: 47 x 4 = 188 bytes; folding
    # scales each output channel by gamma/sigma (1 here), so the zeros stay: 17/42.
    assert plan_footprint_bytes(plan) == 188 and plan_connection_sparsity(plan) == 17 / 42
    assert plan_neurons(plan) == {"2": 2 * 2 * 2}


@pytest.mark.parametrize("channelwise", [False, True])
def test_plan_counts_equal_the_converted_network(channelwise: bool) -> None:
    # resnet20 at width 0.25: BatchNorm after every conv, identity and conv shortcuts
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="resnet20", width=0.25), (3, 8, 8), 10).eval()
    with torch.no_grad():
        model.stem.weight[0].zero_()  # some zero weights that conversion keeps zero
    snn = convert(model, torch.rand(16, 3, 8, 8), ConvertConfig(channelwise=channelwise))
    plan = trace(model, (3, 8, 8))
    assert plan_footprint_bytes(plan, channelwise) == footprint_bytes(snn)
    weights = [m.weight for m in snn.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros > 0 and plan_connection_sparsity(plan) == zeros
    assert plan_footprint_bytes(plan, channelwise) < footprint_bytes(model)  # BatchNorm folded away
