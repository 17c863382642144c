"""QCFS's compiled kernels against the PyTorch expression they replace: the output and both
gradients (input and threshold) to the bit, one threshold or one per channel, float32 and float64,
edge values; the expression itself everywhere else and with ``SNNERGY_KERNELS=off``. Tests that
need the kernels skip with the reason when no C compiler exists."""

from __future__ import annotations

import os

import pytest
import torch

from snnergy import native, qcfs_kernels
from snnergy.layers import QCFS, floor_ste
from snnergy.qcfs_kernels import qcfs, reference

COMPILED = "_QCFSBackward"


@pytest.fixture
def built() -> None:
    """The kernels built (as the first QCFS on a CPU builds them), or the test skipped with the
    reason when they cannot exist here (switched off, no C compiler)."""
    if native.setting() == "off":
        pytest.skip(f"the compiled kernels are switched off ({native.SWITCH}=off)")
    if native.compiler() is None:
        pytest.skip(f"no C compiler '{os.environ.get('CC') or 'cc'}' on PATH: the kernels cannot be built")
    assert qcfs_kernels.prepare(), f"QCFS's kernels must build here: {qcfs_kernels.unavailable_reason()}"


def both(x: torch.Tensor, theta: torch.Tensor, levels: int) -> tuple[list[torch.Tensor], list[torch.Tensor], str]:
    """``qcfs`` and the expression on copies of ``x`` and ``theta``, backward with one random
    output gradient: (output, input gradient, threshold gradient) of each, and qcfs's node name."""
    results = []
    name = ""
    for fn in (qcfs, reference):
        xc, tc = x.clone().requires_grad_(), theta.clone().requires_grad_()
        y = fn(xc, tc, levels)
        torch.manual_seed(1)
        y.backward(torch.randn_like(y))
        assert xc.grad is not None and tc.grad is not None
        results.append([y.detach(), xc.grad, tc.grad])
        name = name or y.grad_fn.name()
    return results[0], results[1], name


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where the other is NaN, equal signs (``-0.0`` is not ``+0.0``)."""
    return (a.shape == b.shape and torch.equal(a.isnan(), b.isnan())
            and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)) and bool((a.signbit() == b.signbit()).all()))


def inputs(shape: tuple[int, ...], dtype: torch.dtype, channelwise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=dtype) * 3
    # zeros of both signs, a huge and a tiny value, exact half steps (theta 1.37, L 8: ties of the
    # floor at k + 0.5), an infinity and a NaN (NaN through clamp, no gradient through it)
    edge = [0.0, -0.0, 1e30, -1e-30, 1.37 / 16, 3 * 1.37 / 16, float("inf"), float("nan")]
    x.view(-1)[: len(edge)] = torch.tensor(edge, dtype=dtype)
    if channelwise:
        theta = (torch.rand(shape[1], dtype=dtype) + 0.5).view(1, -1, *[1] * (len(shape) - 2))
    else:
        theta = torch.tensor(1.37, dtype=dtype)
    return x, theta


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
def test_everything_else_runs_the_expression(x: torch.Tensor, theta: torch.Tensor) -> None:
    ours, expected, node = both(x, theta, 8)
    assert node != COMPILED
    for a, b in zip(ours, expected):
        assert same_bits(a, b)


def test_switched_off_the_kernels_leave_the_expression(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.SWITCH, "off")
    ours, expected, node = both(*inputs((2, 6, 8, 8), torch.float32, False), 8)
    assert node != COMPILED
    for a, b in zip(ours, expected):
        assert same_bits(a, b)
    assert qcfs_kernels.unavailable_reason() == f"{native.SWITCH}=off"
