"""The fused penalties' compiled kernels against the PyTorch operations they replace: element-wise
results (gradients, block maxima, counts, order statistics) to the bit, sums to rounding, the
``SNNERGY_KERNELS`` switch, and the penalties with the kernels off equal to the reference to the bit
where they were. Tests that need the kernels skip with the reason when no C compiler exists."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from snnergy import native
from snnergy.normalization import block_count, select_percentile
from snnergy.records import ActivityRecord
from snnergy.regularizers import activity_penalty, compiled

SRC = Path(__file__).resolve().parents[3] / "src"
DTYPES = [torch.float32, torch.float64]


@pytest.fixture
def built(native_buildable: None) -> None:
    """The kernels built (as the first fused penalty builds them), or the test skipped with the
    reason when they cannot exist here (switched off, no C compiler)."""
    assert compiled.prepare(), f"the compiled kernels must build here: {compiled.unavailable_reason()}"


def maps(dtype: torch.dtype, signed: bool, shape: tuple[int, ...] = (5, 3, 7, 9)) -> torch.Tensor:
    """A map with zeros (a ReLU's, or signed), ties (rounded to quarters) and n = 189 per sample
    (not a multiple of the 8 lanes: the tail loops run too)."""
    torch.manual_seed(3)
    a = (torch.randn(*shape, dtype=dtype) * 4).round() / 4
    return a if signed else torch.relu(a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("signed", [False, True])
def test_row_sums_are_the_sums_of_the_terms(built: None, dtype: torch.dtype, signed: bool) -> None:
    a = maps(dtype, signed)
    flat = a.reshape(a.shape[0], -1)
    m = flat.abs()
    # every map's sums as layer_values reads them (transformed-l1: all three), (3, B)
    sums = compiled.layer_values(1, [a], [not signed], torch.tensor([189]), torch.zeros(1, dtype=dtype), 1.0,
                                 None).stats[0].t()
    # |a| and a^2 of quarters (|a| <= 16: squares on a grid of 1/16, a lane's 8 of them below 2**12)
    # and their sums are exact in the map's dtype and in float64: to the bit
    assert torch.equal(sums[0], m.double().sum(1)) and torch.equal(sums[1], m.double().square().sum(1))
    # m / (1 + m) rounds in the map's dtype, as the PyTorch path does; a lane adds 8 such terms in
    # that dtype (7 roundings of u, relative, each sum of non-negative terms), then the partial sums
    # add in float64 (189 values: fewer than 189 roundings of 2**-53)
    terms = (m / (1.0 + m)).double()
    u = torch.finfo(dtype).eps / 2
    torch.testing.assert_close(sums[2], terms.sum(1), rtol=7 * u + 189 * 2.0**-53, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("signed", [False, True])
def test_gradients_are_the_pytorch_expressions_to_the_bit(built: None, dtype: torch.dtype, signed: bool) -> None:
    # the same operations in the same order, no fused multiply-add: the same bits, with the
    # per-sample factors layer_grads computed (returned with coefficients=True)
    a = maps(dtype, signed)
    sizes, floors, row = torch.tensor([189]), torch.zeros(1, dtype=dtype), [1] * (a.dim() - 1)

    def grad_and_factors(kind: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        computed = compiled.layer_values(kind, [a], [not signed], sizes, floors, 1.0, None)
        grads, factors = compiled.layer_grads(kind, [a], [not signed], sizes, 1.0, None, computed, 0.75, [True], True)
        return grads[0], factors[0, 0].view(-1, *row), factors[0, 1].view(-1, *row)

    got, k1, k2 = grad_and_factors(2)  # hoyer
    hoyer = a.sgn() * k1 + a * k2 if signed else a * k2 + k1
    assert torch.equal(got, hoyer)
    got, k, _ = grad_and_factors(1)  # transformed-l1
    d = 1.0 + a.abs()
    tl1 = (a.sgn() * k) / (d * d) if signed else k / (d * d)
    assert torch.equal(got, tl1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_values_and_gradients_by_hand(built: None, dtype: torch.dtype) -> None:
    # two layers, B = 2: a ReLU map a (n = 3; its second sample silent) and a signed map b (n = 2),
    # layer weights (1, 2); the backward pass gets g = 3, so each sample's factor is r = g w / B:
    # 3/2 for a, 3 for b
    a = torch.tensor([[0.0, 3.0, 4.0], [0.0, 0.0, 0.0]], dtype=dtype)
    b = torch.tensor([[1.0, -2.0], [0.0, 2.0]], dtype=dtype)
    sizes, floors, weights = torch.tensor([3, 2]), torch.zeros(2, dtype=dtype), (1.0, 2.0)

    def run(kind: int) -> tuple[compiled.LayerValues, list]:
        got = compiled.layer_values(kind, [a, b], [True, False], sizes, floors, 1.0, weights)
        assert got is not None
        return got, compiled.layer_grads(kind, [a, b], [True, False], sizes, 1.0, weights, got, 3.0, [True, True])[0]

    # l2 (kind 0): a: 25/3 and 0, mean 25/6; b: 5/2 and 4/2, mean 9/4; total 25/6 + 2 * 9/4.
    # Gradient 2 x r / n: a (3/2) 2/3 = a, b 3 * 2/2 = 3 b
    got, grads = run(0)
    torch.testing.assert_close(got.values, torch.tensor([[25 / 3, 0.0], [2.5, 2.0]], dtype=dtype))
    torch.testing.assert_close(got.total, torch.tensor(25 / 6 + 4.5, dtype=dtype))
    torch.testing.assert_close(grads[0], a)
    torch.testing.assert_close(grads[1], 3 * b)
    # hoyer (kind 2): S1 / (sqrt(n) sqrt(S2)): a: 7 / (sqrt 3 * 5) and 0 (silent); b: 3 / sqrt(10)
    # and 2 / (sqrt 2 * 2). Gradient r (sgn(x) / (sqrt(n) sqrt(S2)) - v x / S2); a ReLU map leaves
    # out sgn(x) (its zeros get r c1: the ReLU's backward zeroes them), a silent sample gets 0
    got, grads = run(2)
    v_a, v_b = 7 / (3**0.5 * 5), [3 / 10**0.5, 2 / (2**0.5 * 2)]
    torch.testing.assert_close(got.values, torch.tensor([[v_a, 0.0], v_b], dtype=dtype))
    torch.testing.assert_close(got.total, torch.tensor(v_a / 2 + 2 * sum(v_b) / 2, dtype=dtype))
    expected_a = 1.5 * (1 / (3**0.5 * 5) - v_a * a[0] / 25)
    torch.testing.assert_close(grads[0], torch.stack([expected_a, torch.zeros(3, dtype=dtype)]))
    s2 = torch.tensor([[5.0], [4.0]], dtype=dtype)
    expected_b = 3 * (b.sgn() / (2**0.5 * s2.sqrt()) - torch.tensor([[v_b[0]], [v_b[1]]], dtype=dtype) * b / s2)
    torch.testing.assert_close(grads[1], expected_b)
    # l2 of a sample with an infinity: NaN, the total NaN, and that sample's factor 0 (its finite
    # values get 0, the infinity inf * 0 = NaN, as the reference's gradient through its where)
    c = b.clone()
    c[1, 0] = math.inf
    got = compiled.layer_values(0, [c], [False], sizes[1:], floors[1:], 1.0, None)
    assert math.isnan(got.values[0, 1].item()) and math.isnan(got.total.item())
    grad = compiled.layer_grads(0, [c], [False], sizes[1:], 1.0, None, got, 1.0, [True])[0][0]
    assert math.isnan(grad[1, 0].item()) and grad[1, 1].item() == 0.0 and torch.equal(grad[0], b[0] * (2 * 0.5 / 2))
    # Hoyer whose unscaled sum of squares is below the floor (or overflows): None, the caller scales
    tiny = torch.full((1, 2), torch.finfo(dtype).tiny, dtype=dtype)
    assert compiled.layer_values(2, [tiny], [True], sizes[1:], torch.full((1,), 2 * torch.finfo(dtype).tiny, dtype=dtype),
                                 1.0, None) is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("shape", [(5, 3, 7, 9), (64, 6, 28, 28), (2, 16411)])
def test_energy_layers_select_as_select_percentile(built: None, dtype: torch.dtype, signed: bool,
                                                  shape: tuple[int, ...]) -> None:
    # per map, the block maxima, count and NaN flag of one pass, and the order statistics selected
    # after it, are select_percentile's selection: the same status, values and weight, and
    # positions holding those values (among ties any); (64, 6, 28, 28) and (2, 16411) are blocked,
    # the latter with a tail; q = 1e-4 takes the smallest non-zero magnitudes (k near the count).
    # Each call also takes a second, small map after the first (its maxima after the first's)
    a = maps(dtype, signed, shape)
    small = maps(dtype, signed, (shape[0], 5))
    flat = a.reshape(-1)
    magnitudes = flat.abs()
    f, g = torch.rand(shape[1:], dtype=dtype), torch.rand(5, dtype=dtype)
    blocks = [block_count(flat.numel()), 0]
    for q in (1.0, 0.999, 0.5, 1e-4):
        reference = select_percentile(magnitudes, q)
        found = compiled.energy_layers([a, small], [not signed] * 2, blocks, [f, g], [None, None], None, q)
        ours, second = found.layers
        assert found.total is None and found.values is None
        assert ours.count == int((a != 0).sum()) and not ours.nan and ours.found and reference.status == "ok"
        assert ours.weight == reference.weight
        maxima = found.block_maxima(0)
        assert (maxima is None and reference.blocks is None) or torch.equal(maxima, reference.blocks)
        assert found.block_maxima(1) is None
        picked = torch.tensor(ours.values, dtype=dtype)
        assert torch.equal(picked, reference.values) and torch.equal(magnitudes[list(ours.positions)], picked)
        theirs = select_percentile(small.reshape(-1).abs(), q)
        assert second.count == int((small != 0).sum()) and torch.equal(torch.tensor(second.values, dtype=dtype),
                                                                      theirs.values)
    # with both scales: each value as energy_pass gives it, and their sum in layer order; the
    # same from energy_values
    found = compiled.energy_layers([a, small], [not signed] * 2, blocks, [f, g], [1.5, 0.5], None, 0.5)
    values = [compiled.energy_pass(m, not signed, 0, s, w, None, count=False)[3] for m, w, s in ((a, f, 1.5), (small, g, 0.5))]
    assert torch.equal(found.values[0], values[0]) and torch.equal(found.values[1], values[1])
    assert torch.equal(found.total, values[0] + values[1])
    again, total = compiled.energy_values([a, small], [not signed] * 2, [f, g], [1.5, 0.5], None)
    assert torch.equal(again, found.values) and torch.equal(total, found.total)
    a.view(-1)[3] = math.nan  # a NaN: no selection, as select_percentile's "nan"
    ours = compiled.energy_layers([a], [not signed], blocks[:1], [f], [None], None, 0.5).layers[0]
    assert ours.nan and not ours.found and select_percentile(a.reshape(-1).abs(), 0.5).status == "nan"
    silent = compiled.energy_layers([torch.zeros_like(a)], [True], blocks[:1], [f], [None], None, 0.5).layers[0]
    assert silent.count == 0 and not silent.found


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_nan_is_found_and_the_values_are_the_terms_summed(built: None, dtype: torch.dtype) -> None:
    a = maps(dtype, False)
    f = torch.rand(a.shape[1:], dtype=dtype)
    scale, eps = 1.25, 0.1
    flat, ff = a.reshape(5, -1).double(), f.reshape(-1).double()
    n = flat.shape[1]
    # synops: sum f min(a, lambda) / lambda; macs: sum f a / (a + eps lambda); the count: sum f [a != 0]
    cases = [(None, False, (flat.clamp(max=scale) * ff).sum(1) / scale),
             (eps, False, (ff * flat / (flat + eps * scale)).sum(1)),
             (None, True, ((flat != 0).double() * ff).sum(1))]
    for e, indicator, expected in cases:
        _, count, nan, value = compiled.energy_pass(a, True, 0, scale, f, e, indicator=indicator)
        assert count == int((a != 0).sum()) and not nan
        torch.testing.assert_close(value, expected.to(dtype), rtol=4 * (n + 4) * torch.finfo(dtype).eps, atol=0)
    a.view(-1)[17] = math.nan
    assert compiled.energy_pass(a, True, 0, None, f, None)[2]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("signed", [False, True])
def test_energy_grad_is_the_pytorch_path_to_the_bit(built: None, dtype: torch.dtype, signed: bool) -> None:
    a = maps(dtype, signed) * 1.7
    f = torch.rand(a.shape[1:], dtype=dtype)
    grad = torch.rand(5, dtype=dtype)
    row = grad.view(-1, *[1] * (a.dim() - 1))
    scale, eps = 1.75, 0.1
    # synops (fused_energy._synops_backward): (grad / lambda) * f where a / lambda <= 1
    expected = torch.where(a / scale <= 1.0, (row / scale) * f, 0.0)
    ours, moment = compiled.energy_grad(a, not signed, scale, f, None, grad)
    assert torch.equal(ours, expected)
    assert moment == pytest.approx((expected.double() * a.double()).sum().item(), rel=1e-12)
    # macs (fused_energy._macs_backward): ((grad * eps) / mu) * f [* sgn(x)] / (|x| / mu + eps)^2
    expected = (row * eps / scale) * f
    if signed:
        expected = expected * a.sgn()
    expected = expected / (a.abs() / scale + eps).square()
    assert torch.equal(compiled.energy_grad(a, not signed, scale, f, eps, grad)[0], expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [None, 0.1])
def test_energy_grads_give_each_layers_gradient_through_the_scale_to_the_bit(built: None, dtype: torch.dtype,
                                                                             eps) -> None:
    # one call for four maps (the second not needed; the first and third with the gradient through
    # the scale at two, resp. one, order statistics, the third signed; the fourth without): each
    # is energy_grad's of that map alone, plus what fused_energy._add_scale_gradient adds, to the bit
    from snnergy.regularizers.fused_energy import _add_scale_gradient, _Layer

    a = [maps(dtype, False) * 1.7, maps(dtype, True, (5, 16)), maps(dtype, True, (5, 84)), maps(dtype, False, (5, 8))]
    f = [torch.rand(m.shape[1:], dtype=dtype) for m in a]
    nonnegative = [True, False, False, True]
    scales, grad = [1.75, 0.5, 2.25, 1.0], torch.rand(5, dtype=torch.float64)
    flat = [m.reshape(-1) for m in a]
    top = [int(flat[0].argmax()), 17, int(flat[2].abs().argmax())]
    through = [(0.75, 0.25, (top[0], top[1])), None, (1.5, 0.0, (top[2],)), None]
    grads = compiled.energy_grads(a, nonnegative, scales, f, eps, grad, [True, False, True, True], through)
    assert grads[1] is None
    for i in (0, 2, 3):
        alone, moment = compiled.energy_grad(a[i], nonnegative[i], scales[i], f[i], eps, grad)
        if through[i] is not None:
            factor, weight, positions = through[i]
            layer = _Layer(scales[i], factor, weight, torch.tensor(positions), ())
            _add_scale_gradient(alone, a[i], layer, -moment / scales[i], nonnegative[i])
        assert torch.equal(grads[i], alone)


def test_the_rate_limit_is_the_float32_quotient_test() -> None:
    # x <= limit exactly where float32(x / lambda) <= 1: at the limit, one float32 above it, and
    # around lambda, for scales over many binades
    torch.manual_seed(0)
    for _ in range(300):
        scale = float(torch.tensor(torch.rand(()).item() * 10.0 ** torch.randint(-6, 6, ()).item(), dtype=torch.float32))
        limit = compiled.rate_limit(scale)
        x = torch.cat([torch.tensor([limit, scale]), torch.nextafter(torch.tensor([limit]), torch.tensor([math.inf])),
                       torch.tensor(scale) * (1 + (torch.rand(200) - 0.5) * 1e-6)]).float()
        assert torch.equal(x / torch.tensor(scale, dtype=torch.float32) <= 1.0, x <= limit)
    assert compiled.rate_limit(0.0) == 0.0 and compiled.rate_limit(math.inf) == 0.0


def test_usable_needs_contiguous_cpu_float_maps(built: None) -> None:
    a = torch.rand(4, 6)
    assert compiled.usable([a, torch.rand(3, 2)])
    assert not compiled.usable([a.t()])  # not contiguous
    assert not compiled.usable([a.half()]) and not compiled.usable([a, a.double()])


OFF = """
    from dataclasses import replace
    from snnergy.records import ActivityRecord
    from snnergy.regularizers import REGULARIZERS, activity_penalty, compiled
    torch.manual_seed(0)
    maps = {"a": torch.relu(torch.randn(3, 2, 4, 4)), "b": torch.randn(3, 7)}
    for name in ("l1", "l2", "hoyer", "hoyer-square", "transformed-l1"):
        fast = activity_penalty(ActivityRecord(maps), name)
        reference = replace(REGULARIZERS.get(name), fast=False).penalty(ActivityRecord(maps))
        assert name in ("hoyer", "hoyer-square") or torch.equal(fast, reference), name
    assert not compiled.usable([maps["b"]])
    print("off ok")
"""


def test_off_takes_the_pytorch_path_the_reference_to_the_bit(tmp_path: Path) -> None:
    # SNNERGY_KERNELS=off: never built; l1, l2 and transformed-l1 then equal the reference to the bit
    script = tmp_path / "script.py"
    script.write_text("import sys\nsys.path.insert(0, sys.argv[1])\nimport torch\n" + textwrap.dedent(OFF))
    env = {**os.environ, "SNNERGY_KERNELS": "off", "SNNERGY_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script), str(SRC)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "off ok" in done.stdout and compiled.BUILD_MESSAGE not in done.stderr
    assert not (tmp_path / "cache").exists()


def test_the_fused_penalties_with_and_without_the_kernels_agree(built: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # in this process: the same record through the compiled path and, switched off, the PyTorch
    # path: values to rounding (test_fused.value_rtol's bound), gradients to rounding
    torch.manual_seed(1)
    base = [torch.randn(4, 3, 6, 6), torch.randn(4, 20)]
    for name in ("l2", "hoyer", "hoyer-square", "transformed-l1"):
        results = []
        for mode in ("auto", "off"):
            monkeypatch.setenv(native.SWITCH, mode)
            leaves = [b.clone().requires_grad_(True) for b in base]
            value = activity_penalty(ActivityRecord({"r": torch.relu(leaves[0]), "s": leaves[1]}), name)
            value.backward()
            results.append((value.detach(), [leaf.grad for leaf in leaves]))
        torch.testing.assert_close(results[0][0], results[1][0], rtol=2 * (2 * 109 + 11) * 2.0**-24, atol=0)
        for ours, theirs in zip(results[0][1], results[1][1]):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["synops", "macs"])
def test_energy_penalties_without_the_kernels_are_the_reference_to_the_bit(name: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # SNNERGY_KERNELS=off in this process: the fused energy-aware path runs the reference's own
    # operations (values and running scales to the bit, batch after batch; relu1's 64 x 4704 values
    # take the blocks, capped rates found from them and from the tail)
    from snnergy.activity import ActivityRecorder
    from snnergy.models import lenet
    from snnergy.regularizers import PenaltyOptions, bind_penalty

    monkeypatch.setenv(native.SWITCH, "off")
    torch.manual_seed(0)
    model = lenet((1, 28, 28), 10)
    options = PenaltyOptions(percentile=90.0)
    fast, reference = (bind_penalty(name, model, (1, 28, 28), options, fast=f) for f in (True, False))
    for _ in range(2):
        with ActivityRecorder(model, layer_inputs=True) as recorder:
            model(torch.rand(64, 1, 28, 28))
            record = recorder.record()
        assert torch.equal(fast(record), reference(record))
        assert all(torch.equal(fast.state_dict()[k], reference.state_dict()[k]) for k in reference.state_dict())


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_count_is_the_number_of_zeros(built: None, dtype: torch.dtype) -> None:
    a = maps(dtype, True)  # signed, with ties and zeros; 5 x 189 values (tails)
    a.view(-1)[:4] = torch.tensor([0.0, -0.0, float("nan"), float("inf")], dtype=dtype)
    # the zeros of both signs count, the NaN and the infinity do not: (a == 0).sum()
    assert compiled.zero_count(a) == int((a == 0).sum())
    assert compiled.zero_count(a[:0]) == 0
