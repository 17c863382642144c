"""A fused penalty's gradient handed to the compiled activation's backward pass (issue 18):
the same parameter gradients, to the bit, as the gradient map autograd adds."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F

from snnergy.activity import ActivityRecorder
from snnergy.config import ModelConfig
from snnergy.models import build_model
from snnergy.regularizers import bind_penalty, PenaltyOptions
from snnergy.regularizers.compiled import usable
from snnergy.regularizers.fused import HOYER_KERNEL, fused_penalty, handing_off
from snnergy.threshold_kernels import clip, qcfs


def _backward(loss: torch.Tensor, hand: bool) -> None:
    """``loss.backward()``, inside :func:`handing_off` with ``hand``."""
    with handing_off() if hand else contextlib.nullcontext():
        loss.backward()


@pytest.fixture
def built(native_buildable: None) -> None:
    """The penalties' and the activations' kernels built, or the test skipped with the reason."""
    assert usable([torch.zeros(1)])


@pytest.mark.parametrize("activation", ["qcfs", "clip"])
@pytest.mark.parametrize("name", ["l1", "l2", "transformed-l1", "hoyer", "hoyer-square", "synops"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_steps_give_the_same_weights_to_the_bit(built: None, activation: str, name: str,
                                                         dtype: torch.dtype) -> None:
    # three Adam steps of a QCFS (signed path: sgn and |a| in the term) and a trained-clip LeNet
    # (every threshold > 0: the ReLU path), with and without handing off (synops: its trained-
    # threshold layers' term f / theta per position, theta's own gradient unchanged): the thresholds and
    # weights after them equal to the bit (the activation adds the term where autograd would add
    # the map: g + term and term + g are the same float)
    torch.manual_seed(0)
    initial = build_model(ModelConfig(name="lenet", activation=activation, levels=4), (1, 28, 28), 10).to(dtype)
    trained = []
    for hand in (False, True):
        torch.manual_seed(1)
        model = copy.deepcopy(initial).train()
        optimizer = torch.optim.Adam(model.parameters(), 1e-2)
        penalty = bind_penalty(name, model, (1, 28, 28), PenaltyOptions())
        with ActivityRecorder(model, detach=False) as recorder:
            for _ in range(3):
                x, y = torch.rand(16, 1, 28, 28, dtype=dtype), torch.randint(0, 10, (16,))
                loss = F.cross_entropy(model(x), y) + 1e-2 * penalty(recorder.record())
                optimizer.zero_grad()
                _backward(loss, hand)
                optimizer.step()
        trained.append(model.state_dict())
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])


@pytest.mark.parametrize("activation", [qcfs, clip])
def test_the_map_gets_no_gradient_map_and_the_input_the_same_gradient(built: None, activation) -> None:
    # the gradient that reaches the map itself is only the loss's own part when handed off (the
    # activation adds the penalty's), and the input's and threshold's gradients are the same
    torch.manual_seed(2)
    x0, theta0 = torch.randn(5, 3, 4, 4), torch.tensor([0.7])
    seen, grads = [], []
    for hand in (False, True):
        x, theta = x0.clone().requires_grad_(True), theta0.clone().requires_grad_(True)
        a = activation(x, theta.view(()), 4) if activation is qcfs else activation(x, theta.view(()))
        a.register_hook(lambda g: seen.append(g.clone()))
        loss = (a * torch.linspace(0, 1, a.numel()).view_as(a)).sum() + fused_penalty(HOYER_KERNEL, [a], None)
        _backward(loss, hand)
        grads.append((x.grad, theta.grad))
    weights = torch.linspace(0, 1, x0.numel()).view_as(x0)
    assert not torch.equal(seen[0], weights) and torch.equal(seen[1], weights)
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


def test_outside_the_context_autograd_grad_gets_the_map_gradient(built: None) -> None:
    # without handing_off (the default), torch.autograd.grad(penalty, maps) gets the gradient map
    x = torch.randn(4, 6, requires_grad=True)
    a = clip(x, torch.tensor(1.0))
    (grad,) = torch.autograd.grad(fused_penalty(HOYER_KERNEL, [a], None), [a])
    assert grad is not None and grad.abs().sum() > 0


def test_a_map_that_reaches_the_loss_only_through_the_penalty(built: None) -> None:
    # the activation's backward still runs (autograd hands it a zero gradient) and adds the term
    torch.manual_seed(0)
    x0 = torch.randn(4, 6)
    results = []
    for hand in (False, True):
        x, theta = x0.clone().requires_grad_(True), torch.tensor(1.0, requires_grad=True)
        loss = fused_penalty(HOYER_KERNEL, [clip(x, theta)], None)
        _backward(loss, hand)
        results.append((x.grad, theta.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
