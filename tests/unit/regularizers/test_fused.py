"""The per-layer fused kernels in float64 against the reference, call after call (issue 18)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from snnergy.records import ActivityRecord
from snnergy.regularizers import REGULARIZERS, activity_penalty

FAST = ["l1", "l2", "hoyer", "hoyer-square", "transformed-l1"]


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
    # equal to the bit; gradients to float64 rounding.
    torch.manual_seed(0)
    for trial in range(2):
        maps = [torch.randn(4, 3, 6, 6, dtype=torch.float64), torch.randn(4, 9, dtype=torch.float64) * (trial + 1)]
        maps[1][2] = 0.0  # a silent sample
        value, reference, ours, theirs = _both(maps, name)
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
