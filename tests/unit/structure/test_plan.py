"""The network plan: one traced description, the same for the DNN and its converted SNN."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from snnergy.config import ModelConfig
from snnergy.conversion import convert
from snnergy.errors import ConfigError, ConversionError
from snnergy.models import build_model
from snnergy.structure import trace


def lenet() -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), bn1=nn.BatchNorm2d(4), relu1=nn.ReLU(), pool1=nn.AvgPool2d(2),
        conv2=nn.Conv2d(4, 8, 3), relu2=nn.ReLU(), drop=nn.Dropout(), flatten=nn.Flatten(),
        fc1=nn.Linear(8 * 2 * 2, 10)))


def test_a_lenet_plan_by_hand() -> None:
    # 1x8x8 -> conv1 (pad 1) 4x8x8 -> pool 4x4x4 -> conv2 (3x3) 8x2x2 -> flatten 32 -> fc1 10
    plan = trace(lenet(), (1, 8, 8))
    assert [(s.name, s.neuron.name if s.neuron else None) for s in plan.stages] == [
        ("conv1", "relu1"), ("conv2", "relu2"), ("fc1", None)]
    conv1, conv2, fc1 = (s.main for s in plan.stages)
    assert (conv1.source, conv1.norm, conv1.in_shape, conv1.out_shape) == (None, "bn1", (1, 8, 8), (4, 8, 8))
    assert (conv2.source, conv2.in_shape, conv2.out_shape, len(conv2.pools)) == ("relu1", (4, 4, 4), (8, 2, 2), 1)
    assert conv2.pools[0].kernel_size == (2, 2) and conv2.pools[0].in_shape == (4, 8, 8)
    assert (fc1.source, fc1.in_shape, fc1.pools) == ("relu2", (32,), ())
    assert [type(op).__name__ for op in fc1.pre] == ["Flatten"]  # dropout is a no-op at inference
    assert [g.name for g in plan.weighted] == ["conv1", "conv2", "fc1"]
    assert [a.shape for a in plan.activations] == [(4, 8, 8), (8, 2, 2)]
    assert plan.readout_neurons == 10
    assert [b.name for b in plan.readers("relu1")] == ["conv2"]


def test_tracing_leaves_the_model_as_it_was() -> None:
    net = lenet().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    plan = trace(net, (1, 8, 8))
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN statistics untouched
    assert plan.stages[0].main.layer is not net.conv1  # the folded layer is a copy


def test_residual_shortcuts_are_branches_of_the_plan() -> None:
    model = build_model(ModelConfig("resnet"), (1, 8, 8), 10)
    plan = trace(model, (1, 8, 8))
    shortcuts = {s.name: [(b.name, b.source) for b in s.shortcuts] for s in plan.stages if s.shortcuts}
    # stage 1 keeps the shape (identity); stages 2 and 3 project with a strided 1x1 conv (+ BN)
    assert shortcuts == {
        "stage1.0.conv2": [("identity:stem_relu", "stem_relu")],
        "stage2.0.conv2": [("stage2.0.shortcut.conv", "stage1.0.relu2")],
        "stage3.0.conv2": [("stage3.0.shortcut.conv", "stage2.0.relu2")],
    }
    projection = plan.stages[4].shortcuts[0]
    assert projection.norm == "stage2.0.shortcut.bn" and projection.geometry.stride == (2, 2)
    # 1 stem + 3 x 2 convs + 2 projections + fc, in execution order
    assert len(plan.weighted) == 10 and plan.weighted[-1].name == "fc"


def test_the_converted_network_has_the_same_plan() -> None:
    torch.manual_seed(0)
    for name in ("lenet", "resnet"):
        model = build_model(ModelConfig(name), (1, 8, 8), 10)
        dnn, snn = trace(model, (1, 8, 8)), convert(model, torch.rand(8, 1, 8, 8)).plan()
        assert [s.name for s in snn.stages] == [s.name for s in dnn.stages]
        assert [a.name for a in snn.activations] == [a.name for a in dnn.activations]
        # the same layers in the same order (a block runs conv1, conv2, then its projection)
        assert snn.weighted == dnn.weighted
        for a in dnn.activations:
            assert [b.name for b in snn.readers(a.name)] == [b.name for b in dnn.readers(a.name)]


def test_functional_and_module_forms_give_the_same_geometry() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(2 * 4 * 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.nn.functional.avg_pool2d(torch.relu(self.conv(x)), 2)
            return self.fc(h.view(h.size(0), -1))

    modules = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3, padding=1), relu=nn.ReLU(), pool=nn.AvgPool2d(2),
                                        flatten=nn.Flatten(), fc=nn.Linear(2 * 4 * 4, 3)))
    a, b = trace(Functional(), (1, 8, 8)), trace(modules, (1, 8, 8))
    assert a.weighted == b.weighted
    assert [s.main.pools for s in a.stages] == [s.main.pools for s in b.stages]
    assert a.activations[0].name == "relu" and a.activations[0].kind == "relu"


def test_bad_shapes_and_samples_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="positive sizes"):
        trace(lenet(), (1, 0, 8))
    with pytest.raises(ConfigError, match=r"per-sample input shape \(1, 8, 8\)"):
        trace(lenet(), (1, 8, 8), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ConversionError, match="no Conv2d or Linear"):
        trace(nn.Sequential(nn.Flatten()), (4,))
