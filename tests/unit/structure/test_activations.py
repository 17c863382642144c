"""Activations are one registry: a new kind is one entry, and every stage then reads it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from snnergy.activity import record_activity
from snnergy.layers import QCFS, TrainedClip
from snnergy.structure import ACTIVATIONS, ActivationKind, activation_module_types, trace


class Clip(nn.Module):
    """A stand-in for a trained-threshold activation: ``clamp(x, 0, theta)``."""

    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, self.theta)


@pytest.fixture
def clip_kind() -> Iterator[ActivationKind]:
    kind = ActivationKind("test-clip", (Clip,), parameters=lambda m: {"theta": m.theta})
    ACTIVATIONS.add("test-clip", kind)
    try:
        yield kind
    finally:
        ACTIVATIONS.remove("test-clip")


def net(act: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(fc1=nn.Linear(4, 3), act=act, fc2=nn.Linear(3, 2)))


def test_relu_is_a_registered_kind_in_all_its_forms() -> None:
    assert ACTIVATIONS.names() == ["relu", "qcfs", "clip"]
    assert activation_module_types() == (nn.ReLU, QCFS, TrainedClip)
    kind = ACTIVATIONS.get("relu")
    assert torch.relu in kind.functions and "relu_" in kind.methods


def test_an_unregistered_activation_is_refused_with_a_hint() -> None:
    with pytest.raises(Exception, match=r"'act' \(Clip\)"):
        trace(net(Clip(2.0)), (4,))


def test_one_registry_entry_makes_a_new_kind_known_to_the_plan_and_the_recorder(clip_kind) -> None:
    model = net(Clip(2.0))
    plan = trace(model, (4,))
    (act,) = plan.activations
    assert (act.name, act.kind, dict(act.parameters), act.shape) == ("act", "test-clip", {"theta": 2.0}, (3,))
    _, record = record_activity(model, torch.rand(5, 4))
    assert list(record.activations) == ["act"] and record.activations["act"].max() <= 2.0


def test_trained_thresholds_are_registered_with_their_scale() -> None:
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 3), q=QCFS(levels=4, threshold=2.0, channels=3),
                                      fc2=nn.Linear(3, 3), c=TrainedClip(threshold=0.5), out=nn.Linear(3, 2)))
    q, c = trace(model, (4,)).activations
    assert (q.kind, dict(q.parameters)) == ("qcfs", {"threshold": [2.0, 2.0, 2.0], "levels": 4})
    assert (c.kind, dict(c.parameters)) == ("clip", {"threshold": [0.5]})
