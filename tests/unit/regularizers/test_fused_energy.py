"""The energy-aware fused paths in float64 against the reference, batch after batch (issue 18)."""

from __future__ import annotations

import pytest
import torch

from snnergy.activity import ActivityRecorder
from snnergy.models import lenet
from snnergy.regularizers import PenaltyOptions, bind_penalty


@pytest.mark.parametrize("name", ["synops", "macs"])
def test_fast_path_equals_the_reference_in_float64_with_capped_rates(name: str) -> None:
    # percentile 50: half of each layer's non-zero activations lie above its scale, so synops caps
    # many rates; batches of 32, 8 and 32 samples. Running scales equal to the bit, values to
    # rounding (the compiled kernels sum in another order: test_energy_aware.energy_value_rtol's
    # bound, 2 (n + 12) u with n = 4704 values per sample), parameter gradients to float64 rounding.
    torch.manual_seed(0)
    model = lenet((1, 28, 28), 10).double()
    options = PenaltyOptions(percentile=50.0)
    fast, reference = (bind_penalty(name, model, (1, 28, 28), options, fast=f) for f in (True, False))
    for size in (32, 8, 32):
        x = torch.rand(size, 1, 28, 28, dtype=torch.float64)
        results = []
        for penalty in (fast, reference):
            model.zero_grad()
            with ActivityRecorder(model, layer_inputs=True) as recorder:
                logits = model(x)
                record = recorder.record()
            value = penalty(record)
            (logits.square().mean() + 1e-3 * value).backward()
            results.append((value.detach(), [p.grad.clone() for p in model.parameters()]))
        u = torch.finfo(torch.float64).eps / 2
        torch.testing.assert_close(results[0][0], results[1][0], rtol=2 * (4704 + 12) * u, atol=0)
        assert all(torch.equal(fast.state_dict()[k], reference.state_dict()[k]) for k in reference.state_dict())
        for ours, theirs in zip(results[0][1], results[1][1]):
            torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-14)


def test_one_lerp_over_the_layers_gives_each_layer_its_own_lerp() -> None:
    # the fast path interpolates every layer's batch percentile in one torch.lerp over (L,) float64
    # tensors; the reference calls it on 0-d tensors. 64 layers take the vectorized loop (the
    # first 2 x vector width elements) and the scalar tail: the same bits as 64 0-d calls
    torch.manual_seed(0)
    below = torch.rand(64, dtype=torch.float64) * 10
    above = below + torch.rand(64, dtype=torch.float64) * 10
    weights = torch.rand(64, dtype=torch.float64)
    together = torch.lerp(below, above, weights)
    alone = torch.stack([torch.lerp(b, a, w) for b, a, w in zip(below, above, weights)])
    assert torch.equal(together, alone)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rated_synops_has_autograds_gradients_to_the_bit(dtype: torch.dtype) -> None:
    # fused_energy._Rated against the expression it replaced, (h.reshape(B, -1) @ f) / theta
    # through autograd: the value, h's gradient (mv's outer product) and theta's (div's term,
    # summed over the batch) equal to the bit
    from snnergy.regularizers.fused_energy import _Rated

    torch.manual_seed(0)
    h0 = torch.rand(7, 3, 5, 5, dtype=dtype)
    f, theta0, weights = torch.rand(75, dtype=dtype), torch.tensor([1.7], dtype=dtype), torch.randn(7, dtype=dtype)
    results = []
    for ours in (True, False):
        h, theta = h0.clone().requires_grad_(True), theta0.clone().requires_grad_(True)
        value = _Rated.apply(h, theta.reshape(()), f) if ours else (h.reshape(7, -1) @ f) / theta.reshape(())
        (value * weights).sum().backward()
        results.append((value.detach(), h.grad, theta.grad))
    assert all(torch.equal(a, b) for a, b in zip(*results))
