"""The per-layer fused kernels in float64 against the reference, call after call (issue 18)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from snnergy.records import ActivityRecord
from snnergy.regularizers import REGULARIZERS, activity_penalty

FAST = ["l1", "l2", "hoyer", "hoyer-square", "transformed-l1"]
ROUNDED = ["l2", "hoyer", "hoyer-square", "transformed-l1"]  # equal to the reference to rounding


def value_rtol(name: str, n: int, batch: int, dtype: torch.dtype) -> float:
    """How far a fused penalty may lie from the reference, relative (u the unit roundoff).

    All are positive. Each path sums n non-negative terms per sample (the compiled kernels in
    float64, in another order; hoyer and hoyer-square from sum|a| and sum a^2, the reference on
    b = a / max|a|, after one division per term): relative error at most (n + 1) u per sum, to
    first order. ``l2`` and ``transformed-l1`` take one sum; Hoyer-Square takes S1 twice and S2
    once (hoyer less), plus at most 4 rounded operations: k (n + 1) u + 4 u per path, k = 2 for
    the Hoyer pair, else 1. The batch mean (batch terms), a layer weight and the layer sum add
    (batch + 3) u per path. The difference of the two paths is at most the sum of their bounds.
    """
    u = torch.finfo(dtype).eps / 2
    k = 2 if name in ("hoyer", "hoyer-square") else 1
    return 2 * (k * (n + 1) + 4 + batch + 3) * u


def _both(maps: list[torch.Tensor], name: str) -> tuple[torch.Tensor, torch.Tensor, list, list]:
    """(fast value, reference value, fast gradients, reference gradients) of the leaf ``maps``,
    each map passed through a ReLU when ``relu`` (the kernels' ReLU case) by the caller."""
    ours = [a.detach().clone().requires_grad_(True) for a in maps]
    theirs = [a.detach().clone().requires_grad_(True) for a in maps]
    record = ActivityRecord({f"a{i}": torch.relu(a) if i % 2 == 0 else a for i, a in enumerate(ours)})
    value = activity_penalty(record, name)
    reference = replace(REGULARIZERS.get(name), fast=False).penalty(
        ActivityRecord({f"a{i}": torch.relu(a) if i % 2 == 0 else a for i, a in enumerate(theirs)}))
    value.backward()
    reference.backward()
    return value, reference, [a.grad for a in ours], [a.grad for a in theirs]


@pytest.mark.parametrize("name", FAST)
def test_fused_kernels_equal_the_reference_in_float64_call_after_call(name: str) -> None:
    # a ReLU map (the kernels skip |a| and sgn(a)) and a signed map, called twice with other
    # values of the same shapes: nothing of the first call may leak into the second. Values
    # equal to the bit (l1; the others to the rounding bound of value_rtol, n = 108 values per
    # sample); gradients to float64 rounding.
    torch.manual_seed(0)
    for trial in range(2):
        maps = [torch.randn(4, 3, 6, 6, dtype=torch.float64), torch.randn(4, 9, dtype=torch.float64) * (trial + 1)]
        maps[1][2] = 0.0  # a silent sample
        value, reference, ours, theirs = _both(maps, name)
        if name in ROUNDED:
            torch.testing.assert_close(value, reference, rtol=value_rtol(name, 108, 4, torch.float64), atol=0)
        else:
            assert torch.equal(value, reference)
        for g, h in zip(ours, theirs):
            torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-15)


def test_fused_hoyer_gradient_by_hand() -> None:
    # one sample a = [1, 2] (a leaf, signed path), s = max|a| = 2, b = [1/2, 1], n = 2:
    # m1 = 3/4, m2 = (1/4 + 1)/2 = 5/8, hoyer = m1 / sqrt(m2). d/da_i = sgn(a_i)(dv/dm1 + 2|b_i| dv/dm2)/(n s)
    # with dv/dm1 = 1/sqrt(m2) and dv/dm2 = -m1/(2 m2^1.5)
    a = torch.tensor([[1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    value = activity_penalty(ActivityRecord({"a": a}), "hoyer")
    value.backward()
    m1, m2 = 0.75, 0.625
    d1, d2 = 1 / m2**0.5, -m1 / (2 * m2**1.5)
    expected = [(d1 + 2 * b * d2) / (2 * 2) for b in (0.5, 1.0)]
    assert value.item() == pytest.approx(m1 / m2**0.5, rel=1e-15)
    torch.testing.assert_close(a.grad, torch.tensor([expected], dtype=torch.float64), rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", ["hoyer", "hoyer-square"])
@pytest.mark.parametrize("magnitude", [1e30, 1e-30, 1.0])
def test_hoyer_without_the_scale_falls_back_where_squares_overflow_or_underflow(name: str, magnitude: float) -> None:
    # float32: (1e30)^2 overflows and (1e-30)^2 underflows to 0, so sum a^2 is useless there and the
    # call divides by max|a| first, as the reference does; 1.0 takes the unscaled sums. Either way
    # the reference's value (to value_rtol, n = 12) and gradients (float32 rounding: the gradients
    # are of order 1 / magnitude, and where they cancel to 0, in a sample with one non-zero value,
    # both paths leave noise of order u / magnitude, below atol), a ReLU map and a signed one, with
    # a silent sample.
    torch.manual_seed(1)
    maps = [torch.randn(3, 12) * magnitude, torch.randn(3, 2, 3, 2) * magnitude]
    maps[1][0] = 0.0
    value, reference, ours, theirs = _both(maps, name)
    torch.testing.assert_close(value, reference, rtol=value_rtol(name, 12, 3, torch.float32), atol=0)
    for g, h in zip(ours, theirs):
        torch.testing.assert_close(g, h, rtol=1e-5, atol=1e-6 / magnitude)


@pytest.mark.parametrize("name", FAST)
def test_a_nan_activation_gives_a_nan_penalty_on_both_paths(name: str) -> None:
    # a NaN in one sample: the reference scores that sample NaN (never masked), so the penalty is NaN
    maps = [torch.ones(2, 5), torch.ones(2, 3)]
    maps[0][1, 2] = math.nan
    value, reference, _, _ = _both(maps, name)
    assert math.isnan(value.item()) and math.isnan(reference.item())
