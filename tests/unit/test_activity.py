"""Tests for snnergy.activity: the hook-based recorder."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from snnergy.activity import ActivityRecorder, record_activity
from snnergy.errors import ConfigError, SnnergyError
from snnergy.models import lenet


@pytest.fixture
def model() -> nn.Sequential:
    torch.manual_seed(0)
    return lenet((1, 8, 8), 10)


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(4, 1, 8, 8)


def _no_hooks_anywhere(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_records_post_relu_maps_by_name_in_forward_order(model: nn.Sequential, x: torch.Tensor) -> None:
    with ActivityRecorder(model) as recorder:
        out = model(x)
        rec = recorder.record()
    # lenet 8x8: conv3 pad1 keeps 8x8 (16 ch), pool -> 4x4, conv3 pad1 keeps 4x4 (32 ch)
    assert {k: tuple(v.shape) for k, v in rec.activations.items()} == {
        "relu1": (4, 16, 8, 8),
        "relu2": (4, 32, 4, 4),
        "relu3": (4, 120),
        "relu4": (4, 84),
    }
    assert list(rec.activations) == ["relu1", "relu2", "relu3", "relu4"]  # dict order = forward order
    assert rec.layer_inputs == {}  # not asked for
    # the maps are the ReLU outputs: relu4's map fed through fc3 gives the logits
    torch.testing.assert_close(model.fc3(rec.activations["relu4"]), out)
    assert all(bool((a >= 0).all()) for a in rec.activations.values())


def test_records_weighted_layer_inputs(model: nn.Sequential, x: torch.Tensor) -> None:
    with ActivityRecorder(model, activations=False, layer_inputs=True) as recorder:
        model(x)
        rec = recorder.record()
    assert rec.activations == {}
    assert list(rec.layer_inputs) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert torch.equal(rec.layer_inputs["conv1"], x)
    # what fc1 sees is the pooled, flattened relu2 map: 32 x 2 x 2 = 128 features
    relu2 = model.relu2(model.conv2(model.pool1(model.relu1(model.conv1(x)))))
    torch.testing.assert_close(rec.layer_inputs["fc1"], model.pool2(relu2).flatten(1))
    assert rec.layer_inputs["fc1"].shape == (4, 128)


def test_qualified_names_of_nested_modules() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        OrderedDict(block=nn.Sequential(nn.Linear(3, 4), nn.ReLU()), head=nn.Linear(4, 2))
    )
    with ActivityRecorder(net, layer_inputs=True) as recorder:
        net(torch.ones(2, 3))
        rec = recorder.record()
    assert list(rec.activations) == ["block.1"]
    assert list(rec.layer_inputs) == ["block.0", "head"]


def test_hooks_are_removed_by_remove_and_by_exit(model: nn.Sequential, x: torch.Tensor) -> None:
    recorder = ActivityRecorder(model, layer_inputs=True)
    assert not _no_hooks_anywhere(model)
    recorder.remove()
    recorder.remove()  # idempotent
    assert _no_hooks_anywhere(model)
    with ActivityRecorder(model, layer_inputs=True):
        assert not _no_hooks_anywhere(model)
    assert _no_hooks_anywhere(model)
    # a removed recorder records nothing more
    model(x)
    assert recorder.record().activations == {}


def test_hooks_are_removed_when_the_body_raises(model: nn.Sequential) -> None:
    with pytest.raises(RuntimeError):
        with ActivityRecorder(model):
            model(torch.rand(2, 3, 8, 8))  # wrong channel count
    assert _no_hooks_anywhere(model)


def test_nothing_is_written_onto_the_modules(model: nn.Sequential, x: torch.Tensor) -> None:
    before = {name: set(m.__dict__) for name, m in model.named_modules()}
    with ActivityRecorder(model, layer_inputs=True) as recorder:
        model(x)
        during = {name: set(m.__dict__) for name, m in model.named_modules()}
        recorder.record()
    after = {name: set(m.__dict__) for name, m in model.named_modules()}
    assert before == during == after


def test_maps_keep_their_graph_unless_detached(model: nn.Sequential, x: torch.Tensor) -> None:
    with ActivityRecorder(model, layer_inputs=True) as recorder:
        model(x)
        rec = recorder.record()
    assert all(a.requires_grad and a.grad_fn is not None for a in rec.activations.values())
    assert rec.layer_inputs["fc1"].requires_grad
    with ActivityRecorder(model, layer_inputs=True, detach=True) as recorder:
        model(x)
        rec = recorder.record()
    assert not any(a.requires_grad for a in rec.activations.values())
    assert not any(a.requires_grad for a in rec.layer_inputs.values())


def test_record_resets(model: nn.Sequential, x: torch.Tensor) -> None:
    with ActivityRecorder(model) as recorder:
        model(x)
        first = recorder.record()
        assert len(first.activations) == 4
        empty = recorder.record()
        assert empty.activations == {} and empty.layer_inputs == {}
        model(x[:1])  # a new pass after record(): just that pass
        assert recorder.record().activations["relu1"].shape[0] == 1


def test_several_passes_are_concatenated_along_the_batch(model: nn.Sequential, x: torch.Tensor) -> None:
    with ActivityRecorder(model, detach=True) as recorder:
        model(x[:3])
        model(x[3:])
        rec = recorder.record()
    _, whole = record_activity(model, x, layer_inputs=False)
    assert rec.activations["relu3"].shape == (4, 120)  # 3 + 1 samples
    for name in whole.activations:
        torch.testing.assert_close(rec.activations[name], whole.activations[name])


def test_a_module_run_twice_in_one_pass_is_ambiguous() -> None:
    relu = nn.ReLU()
    net = nn.Sequential(nn.Linear(3, 3), relu, nn.Linear(3, 3), relu, nn.Linear(3, 2))
    with ActivityRecorder(net):
        with pytest.raises(SnnergyError, match="module '1' ran twice in one forward pass"):
            net(torch.ones(1, 3))
    assert _no_hooks_anywhere(net)


def test_nothing_to_record_is_a_config_error(model: nn.Sequential) -> None:
    with pytest.raises(ConfigError, match="both False"):
        ActivityRecorder(model, activations=False, layer_inputs=False)
    assert _no_hooks_anywhere(model)


def test_record_activity_runs_one_pass_without_grad(model: nn.Sequential, x: torch.Tensor) -> None:
    model.eval()
    out, rec = record_activity(model, x)
    assert not out.requires_grad
    torch.testing.assert_close(out, model(x))
    assert list(rec.activations) == ["relu1", "relu2", "relu3", "relu4"]
    assert list(rec.layer_inputs) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert not rec.activations["relu1"].requires_grad
    assert _no_hooks_anywhere(model)
    _, rec = record_activity(model, x, layer_inputs=False)
    assert rec.layer_inputs == {}
