"""The trained-threshold activations' compiled kernels (QCFS, the trained clip) against the PyTorch
expressions they replace: the output and both gradients (input and threshold) to the bit, one
threshold or one per channel, float32 and float64, edge values; the expressions themselves
everywhere else and with ``SNNERGY_KERNELS=off``. Tests that need the kernels skip with the reason
when no C compiler exists."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnergy import native, threshold_kernels
from snnergy.activity import ActivityRecorder
from snnergy.layers import QCFS, TrainedClip, floor_ste
from snnergy.regularizers import activity_penalty, fused
from snnergy.regularizers.fused import is_relu_output
from snnergy.threshold_kernels import clip, clip_reference, qcfs, reference

COMPILED = "_QCFSBackward"
CLIP_COMPILED = "_ClipBackward"


@pytest.fixture
def built(native_buildable: None) -> None:
    """The kernels built (as the first QCFS on a CPU builds them), or the test skipped with the
    reason when they cannot exist here (switched off, no C compiler)."""
    assert threshold_kernels.prepare(), f"the kernels must build here: {threshold_kernels.unavailable_reason()}"


def both(x: torch.Tensor, theta: torch.Tensor, levels: int | None) -> tuple[list[torch.Tensor], list[torch.Tensor],
                                                                         str]:
    """``qcfs`` (``levels``) or ``clip`` (``None``) and its expression on copies of ``x`` and
    ``theta``, backward with one random output gradient: (output, input gradient, threshold
    gradient) of each, and the first one's node name."""
    results = []
    name = ""
    pair = (clip, clip_reference) if levels is None else (qcfs, reference)
    for fn in pair:
        xc, tc = x.clone().requires_grad_(), theta.clone().requires_grad_()
        y = fn(xc, tc) if levels is None else fn(xc, tc, levels)
        torch.manual_seed(1)
        y.backward(torch.randn_like(y))
        assert xc.grad is not None and tc.grad is not None
        results.append([y.detach(), xc.grad, tc.grad])
        name = name or y.grad_fn.name()
    return results[0], results[1], name


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where the other is NaN (whatever its sign bit: PyTorch's vectorized
    ``minimum`` writes NaN as all ones), equal signs elsewhere (``-0.0`` is not ``+0.0``)."""
    nan = a.isnan()
    return (a.shape == b.shape and torch.equal(nan, b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
            and bool((a.signbit() == b.signbit())[~nan].all()))


def inputs(shape: tuple[int, ...], dtype: torch.dtype, channelwise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=dtype) * 3
    # zeros of both signs, a huge and a tiny value, exact half steps (theta 1.37, L 8: ties of the
    # floor at k + 0.5), an infinity and a NaN (NaN through clamp, no gradient through it)
    edge = [0.0, -0.0, 1e30, -1e-30, 1.37 / 16, 3 * 1.37 / 16, float("inf"), float("nan"), 1.37]
    x.view(-1)[: len(edge)] = torch.tensor(edge, dtype=dtype)
    if channelwise:
        theta = (torch.rand(shape[1], dtype=dtype) + 0.5).view(1, -1, *[1] * (len(shape) - 2))
        x[:, 0] = theta[0, 0]  # ties with the threshold: the clip shares the gradient there
    else:
        theta = torch.tensor(1.37, dtype=dtype)  # x = 1.37 above: a tie
    return x, theta


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(4, 6, 28, 28), (64, 120), (3, 16, 5, 5)])
@pytest.mark.parametrize("channelwise", [False, True])
def test_compiled_clip_and_its_gradients_equal_the_expression_to_the_bit(
        built: None, dtype: torch.dtype, shape: tuple[int, ...], channelwise: bool) -> None:
    ours, expected, node = both(*inputs(shape, dtype, channelwise), None)
    assert node == CLIP_COMPILED
    for a, b in zip(ours, expected):
        assert same_bits(a, b)


def test_the_clip_module_runs_the_kernels_and_keeps_its_values(built: None) -> None:
    act = TrainedClip(threshold=2.0)
    x = torch.tensor([[-1.0, 0.5, 2.0, 3.0]], requires_grad=True)
    y = act(x)
    assert y.grad_fn.name() == CLIP_COMPILED
    assert y.tolist() == [[0.0, 0.5, 2.0, 2.0]]
    y.sum().backward()
    # d/dx: 0 below 0 (relu), 1 inside, 1/2 at the tie x = theta (minimum shares it), 0 above
    assert x.grad.tolist() == [[0.0, 1.0, 0.5, 0.0]]
    # d/dtheta: the other half at the tie, 1 where clipped (x = 3): 1.5
    assert act.threshold.grad is not None and act.threshold.grad.tolist() == [1.5]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(4, 6, 28, 28), (64, 120), (3, 16, 5, 5)])
@pytest.mark.parametrize("levels", [1, 4, 8])
@pytest.mark.parametrize("channelwise", [False, True])
def test_compiled_qcfs_and_its_gradients_equal_the_expression_to_the_bit(
        built: None, dtype: torch.dtype, shape: tuple[int, ...], levels: int, channelwise: bool) -> None:
    ours, expected, node = both(*inputs(shape, dtype, channelwise), levels)
    assert node == COMPILED
    for a, b in zip(ours, expected):
        assert same_bits(a, b)


def test_the_module_runs_the_kernels_and_keeps_its_values(built: None) -> None:
    act = QCFS(levels=4, threshold=2.0)
    x = torch.tensor([[-1.0, 0.2, 0.3, 1.0, 5.0]], requires_grad=True)
    y = act(x)
    assert y.grad_fn.name() == COMPILED
    assert y.tolist() == [[0.0, 0.0, 0.5, 1.0, 2.0]]  # steps of theta / L = 0.5
    y.sum().backward()
    # d/dx: 1 inside [0, theta] (straight through), 0 clamped: x = -1 (q < 0) and 5 (q > 1)
    assert x.grad.tolist() == [[0.0, 1.0, 1.0, 1.0, 0.0]]
    # d/dtheta of theta * c, c = (0, 0, 1/4, 1/2, 1), plus -g' (x L / theta) / theta with
    # g' = theta / L inside: -(x / theta) for x = 0.2, 0.3, 1.0: 7/4 - (0.1 + 0.15 + 0.5) = 1.0
    assert act.threshold.grad is not None and abs(float(act.threshold.grad) - 1.0) < 1e-6
    expected = torch.tensor([[-1.0, 0.2, 0.3, 1.0, 5.0]])
    ref = 2.0 * torch.clamp(floor_ste(expected * 4 / 2.0 + 0.5) / 4, 0.0, 1.0)
    assert torch.equal(y.detach(), ref)


@pytest.mark.parametrize("x, theta", [
    (torch.randn(2, 3, 4, 4, dtype=torch.bfloat16), torch.tensor(1.5, dtype=torch.bfloat16)),
    (torch.randn(2, 4, 3, 3).transpose(2, 3), torch.tensor(1.5)),  # not contiguous
    (torch.randn(2, 3, 4), torch.rand(3, 1) + 0.5),  # a threshold not shaped (1, C, ...)
    (torch.randn(2, 3), torch.tensor(1.5, dtype=torch.float64)),  # dtypes differ
])
@pytest.mark.parametrize("levels", [8, None])
def test_everything_else_runs_the_expression(x: torch.Tensor, theta: torch.Tensor, levels: int | None) -> None:
    ours, expected, node = both(x, theta, levels)
    assert node not in (COMPILED, CLIP_COMPILED)
    for a, b in zip(ours, expected):
        assert same_bits(a, b)


@pytest.mark.parametrize("levels", [8, None])
def test_switched_off_the_kernels_leave_the_expression(monkeypatch: pytest.MonkeyPatch, levels: int | None) -> None:
    monkeypatch.setenv(native.SWITCH, "off")
    ours, expected, node = both(*inputs((2, 6, 8, 8), torch.float32, False), levels)
    assert node not in (COMPILED, CLIP_COMPILED)
    for a, b in zip(ours, expected):
        assert same_bits(a, b)
    assert threshold_kernels.unavailable_reason() == f"{native.SWITCH}=off"


@pytest.mark.parametrize("levels", [8, None])
def test_an_output_gradient_in_another_layout_gets_autograds_own_bits(built: None, levels: int | None) -> None:
    # autograd reduces the threshold's terms in the output gradient's memory order (here channels
    # last, as an einsum's backward gives it): the backward then runs the expression itself
    x, theta = inputs((4, 6, 10, 10), torch.float32, True)
    torch.manual_seed(2)
    grad = torch.randn(4, 10, 10, 6).permute(0, 3, 1, 2)
    results = []
    for fn in ((clip, clip_reference) if levels is None else (qcfs, reference)):
        xc, tc = x.clone().requires_grad_(), theta.clone().requires_grad_()
        y = fn(xc, tc) if levels is None else fn(xc, tc, levels)
        y.backward(grad)
        results.append((y.grad_fn.name(), xc.grad, tc.grad))
    assert results[0][0] in (COMPILED, CLIP_COMPILED)
    assert same_bits(results[0][1], results[1][1]) and same_bits(results[0][2], results[1][2])


def test_the_clip_behaves_as_a_relu_for_the_penalties_only_with_positive_thresholds(built: None) -> None:
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    assert is_relu_output(clip(x, torch.tensor(1.5)))
    assert not is_relu_output(clip(x, torch.tensor(-0.5)))  # every output -0.5: |a| is not a
    assert not is_relu_output(clip(x, torch.tensor([1.0, 0.0, 2.0]).view(1, 3, 1, 1)))
    assert not is_relu_output(qcfs(x, torch.tensor(1.5), 8))  # QCFS passes gradient where its output is 0


@pytest.mark.parametrize("regularizer", ["l1", "l2", "hoyer", "hoyer-square", "transformed-l1"])
def test_penalties_on_the_clip_give_the_same_gradients_as_on_a_signed_map(
        built: None, monkeypatch: pytest.MonkeyPatch, regularizer: str) -> None:
    # the relu-like path drops |a| and sgn(a): the penalty's gradient differs only where a = 0,
    # where the clip's backward zeroes it, so every parameter gets the same gradient, to the bit
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), TrainedClip(threshold=1.0, channels=4), nn.Flatten(), nn.Linear(576, 6),
                          TrainedClip(threshold=0.7))
    x = torch.randn(8, 1, 14, 14)
    grads = []
    for relu_like in (True, False):
        if not relu_like:  # the signed path, as for any other map
            monkeypatch.setattr(fused, "is_relu_output", lambda a: False)
        model.zero_grad()
        with ActivityRecorder(model, activations=True, detach=False) as recorder:
            out = model(x)
            loss = out.square().mean() + activity_penalty(recorder.record(), regularizer)
        loss.backward()
        grads.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))
