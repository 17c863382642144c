"""Tests for snnergy.regularizers: hand-derived values, invariances, safe gradients, the penalty."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnergy.activity import ActivityRecorder
from snnergy.errors import ConfigError
from snnergy.models import tiny_mlp
from snnergy.records import ActivityRecord
from snnergy.regularizers import REGULARIZERS, PenaltyOptions, activity_penalty, bind_penalty, is_model_aware

NAMES = REGULARIZERS.names()
LAYER_NAMES = [n for n in NAMES if not is_model_aware(REGULARIZERS.get(n))]  # per-layer functions
SPARSITY = ["hoyer", "hoyer-square"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_registry_names() -> None:
    assert NAMES == ["none", "l1", "l2", "hoyer", "hoyer-square", "transformed-l1", "synops", "macs"]
    assert LAYER_NAMES == NAMES[:6]


# a = [0, 3, 4], n = 3: sum|a| = 7, sum a^2 = 9 + 16 = 25
HAND = {
    "none": 0.0,
    "l1": 7 / 3,  # mean|a| = 7/3
    "l2": 25 / 3,  # mean a^2 = 25/3
    "hoyer": (7 / 3) / math.sqrt(25 / 3),  # = (7/5)/sqrt(3) = 0.8083
    "hoyer-square": 49 / 75,  # (7/3)^2 / (25/3) = 49/75
    "transformed-l1": (0 + 2 * 3 / 4 + 2 * 4 / 5) / 3,  # (beta+1)|a|/(beta+|a|), beta = 1
}


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_hand_derived_values(name: str) -> None:
    a = torch.tensor([[0.0, 3.0, 4.0]], dtype=torch.float64)
    got = REGULARIZERS.get(name)(a)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(HAND[name], rel=1e-12)


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_per_sample_over_conv_shaped_maps(name: str) -> None:
    # the (B, C, H, W) map is flattened per sample: same value as the (B, n) map
    a = torch.rand(3, 2, 4, 4)
    got = REGULARIZERS.get(name)(a)
    assert got.shape == (3,)
    torch.testing.assert_close(got, REGULARIZERS.get(name)(a.reshape(3, -1)))


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_non_negative_on_non_negative_maps(name: str) -> None:
    a = torch.relu(torch.randn(8, 5, 3))
    assert bool((REGULARIZERS.get(name)(a) >= 0).all())


def _assert_finite_gradient(value: torch.Tensor, a: torch.Tensor, name: str) -> None:
    if name == "none":  # constant zeros: no graph, nothing to differentiate
        assert not value.requires_grad
        return
    value.sum().backward()
    assert a.grad is not None and bool(torch.isfinite(a.grad).all())


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_zero_on_silence_with_finite_gradients(name: str) -> None:
    a = torch.zeros(2, 6, requires_grad=True)
    value = REGULARIZERS.get(name)(a)
    assert torch.equal(value, torch.zeros(2))
    _assert_finite_gradient(value, a, name)


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_finite_gradients_on_maps_with_some_zeros(name: str) -> None:
    # one silent sample, one sparse sample, one dense sample
    a = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [1.0, 2.0, 0.5, 3.0]], requires_grad=True)
    _assert_finite_gradient(REGULARIZERS.get(name)(a), a, name)


@pytest.mark.parametrize("name", [n for n in LAYER_NAMES if n != "none"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_activations_give_nan_not_a_masked_number(name: str, bad: float) -> None:
    a = torch.tensor([[1.0, bad, 0.0], [1.0, 2.0, 0.0]])
    value = REGULARIZERS.get(name)(a)
    assert math.isnan(value[0].item())
    assert math.isfinite(value[1].item())  # the other sample is untouched
    assert math.isnan(activity_penalty(ActivityRecord({"relu": a}), name).item())


def test_scale_free_ratios_do_not_underflow() -> None:
    # 1e-30^2 underflows to 0 in float32; the ratios are computed on a / max|a| instead:
    # one non-zero of n = 4 -> hoyer = 1/sqrt(4) = 0.5, hs = 1/4
    a = torch.tensor([[1e-30, 0.0, 0.0, 0.0]])
    assert REGULARIZERS.get("hoyer")(a).item() == pytest.approx(0.5)
    assert REGULARIZERS.get("hoyer-square")(a).item() == pytest.approx(0.25)


def test_sparsity_gradient_pushes_small_activations_down() -> None:
    # Hoyer-type penalties reward concentration: the gradient on the smaller active unit is
    # positive (descent lowers it) and on the largest negative (descent raises it)
    a = torch.tensor([[4.0, 1.0]], requires_grad=True)
    REGULARIZERS.get("hoyer-square")(a).sum().backward()
    assert a.grad is not None and a.grad[0, 1] > 0 > a.grad[0, 0]


maps = st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=1, max_size=12).filter(
    lambda xs: max(xs) > 1e-3
)
scales = st.floats(1e-3, 1e3)


@settings(max_examples=60, deadline=None)
@given(values=maps, c=scales)
def test_hoyer_and_hs_are_scale_invariant(values: list[float], c: float) -> None:
    a = torch.tensor([values], dtype=torch.float64)
    for name in SPARSITY:
        f = REGULARIZERS.get(name)
        assert f(c * a).item() == pytest.approx(f(a).item(), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(values=maps, c=scales)
def test_l1_scales_linearly_and_l2_quadratically(values: list[float], c: float) -> None:
    a = torch.tensor([values], dtype=torch.float64)
    assert REGULARIZERS.get("l1")(c * a).item() == pytest.approx(c * REGULARIZERS.get("l1")(a).item(), rel=1e-9)
    assert REGULARIZERS.get("l2")(c * a).item() == pytest.approx(c**2 * REGULARIZERS.get("l2")(a).item(), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(values=maps)
def test_hoyer_and_hs_bounds(values: list[float]) -> None:
    # 1/sqrt(n) <= hoyer <= 1 and 1/n <= hs <= 1 for a non-silent sample
    n = len(values)
    a = torch.tensor([values], dtype=torch.float64)
    h, hs = REGULARIZERS.get("hoyer")(a).item(), REGULARIZERS.get("hoyer-square")(a).item()
    assert 1 / math.sqrt(n) - 1e-12 <= h <= 1 + 1e-12
    assert 1 / n - 1e-12 <= hs <= 1 + 1e-12
    assert hs == pytest.approx(h**2, rel=1e-9)  # hs = hoyer^2 by definition


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 50), index=st.integers(0, 49), value=st.floats(1e-3, 1e3), level=st.floats(1e-3, 1e3))
def test_bounds_are_reached(n: int, index: int, value: float, level: float) -> None:
    f_h, f_hs = REGULARIZERS.get("hoyer"), REGULARIZERS.get("hoyer-square")
    one = torch.zeros(1, n, dtype=torch.float64)
    one[0, index % n] = value
    # exactly one non-zero: hoyer = (v/n) / sqrt(v^2/n) = 1/sqrt(n); hs = 1/n
    assert f_h(one).item() == pytest.approx(1 / math.sqrt(n), rel=1e-9)
    assert f_hs(one).item() == pytest.approx(1 / n, rel=1e-9)
    # all equal and non-zero: mean|a| = c, mean a^2 = c^2 -> both 1
    flat = torch.full((1, n), level, dtype=torch.float64)
    assert f_h(flat).item() == pytest.approx(1.0, rel=1e-9)
    assert f_hs(flat).item() == pytest.approx(1.0, rel=1e-9)


# ----------------------------------------------------------------------------- activity_penalty


def _record() -> ActivityRecord:
    return ActivityRecord(
        {
            "relu1": torch.tensor([[0.0, 3.0, 4.0], [3.0, 3.0, 3.0]]),  # l1: 7/3 and 3 -> mean 8/3
            "relu2": torch.tensor([[2.0], [0.0]]),  # l1: 2 and 0 -> mean 1
        }
    )


def test_penalty_averages_over_the_batch_and_sums_layers() -> None:
    # 8/3 + 1 = 11/3
    assert activity_penalty(_record(), "l1").item() == pytest.approx(11 / 3)
    # weights 0.5 and 3: 0.5 * 8/3 + 3 * 1 = 13/3
    assert activity_penalty(_record(), "l1", layer_weights=[0.5, 3.0]).item() == pytest.approx(13 / 3)


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_duplicating_the_batch_leaves_the_penalty_unchanged(name: str) -> None:
    rec = _record()
    doubled = ActivityRecord({k: torch.cat([v, v]) for k, v in rec.activations.items()})
    assert activity_penalty(doubled, name).item() == pytest.approx(activity_penalty(rec, name).item())


def test_penalty_is_a_scalar_and_zero_without_maps() -> None:
    assert activity_penalty(_record(), "hoyer").shape == ()
    assert activity_penalty(ActivityRecord(), "l1").item() == 0.0
    assert activity_penalty(_record(), "none").item() == 0.0


def test_wrong_weight_count_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"layer_weights has 3 entries but the model has 2 activation layers \(relu1, relu2\)"):
        activity_penalty(_record(), "l1", layer_weights=[1.0, 1.0, 1.0])


@pytest.mark.parametrize("weight", [-1.0, math.nan, math.inf])
def test_bad_weight_is_a_config_error(weight: float) -> None:
    with pytest.raises(ConfigError, match=r"layer_weights\[1\]"):
        activity_penalty(_record(), "l1", layer_weights=[1.0, weight])


def test_unknown_name_is_a_config_error_listing_known_names() -> None:
    with pytest.raises(ConfigError, match="unknown regularizer 'l0'; known: none, l1, l2, hoyer, hoyer-square, transformed-l1"):
        activity_penalty(_record(), "l0")


# ----------------------------------------------------------------------------- every entry, bound


def _bound_record(model: torch.nn.Module, x: torch.Tensor) -> ActivityRecord:
    with ActivityRecorder(model, layer_inputs=True) as recorder:
        model(x)
        return recorder.record()


def _leaves(record: ActivityRecord) -> ActivityRecord:
    """The record's maps as leaf tensors, so that their gradients can be read."""
    return ActivityRecord(
        {k: v.detach().clone().requires_grad_(True) for k, v in record.activations.items()},
        {k: v.detach().clone().requires_grad_(True) for k, v in record.layer_inputs.items()},
    )


def _leaf_grads(record: ActivityRecord) -> list[torch.Tensor]:
    return [t.grad for t in (*record.activations.values(), *record.layer_inputs.values()) if t.grad is not None]


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_binds_and_is_non_negative_with_finite_gradients(name: str) -> None:
    # every regularizer, per-layer or model-aware, as the training loop uses it
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(8, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3),
    )
    penalty = bind_penalty(name, model, (1, 4, 4))
    record = _leaves(_bound_record(model, torch.rand(4, 1, 4, 4)))
    value = penalty(record)
    assert value.shape == () and value.item() >= 0 and math.isfinite(value.item())
    if name != "none":
        value.backward()
        grads = _leaf_grads(record)
        assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_is_zero_on_silence_with_finite_gradients(name: str) -> None:
    # silence: every activation (and every layer input, the data included) is 0 -> 0 SynOps, 0 MACs
    model = tiny_mlp((1, 4, 4), 3)
    penalty = bind_penalty(name, model, (1, 4, 4), PenaltyOptions())
    real = _bound_record(model, torch.rand(3, 1, 4, 4))
    silent = ActivityRecord(
        {k: torch.zeros_like(v, requires_grad=True) for k, v in real.activations.items()},
        {k: torch.zeros_like(v, requires_grad=True) for k, v in real.layer_inputs.items()},
    )
    value = penalty(silent)
    assert value.item() == 0.0
    if value.requires_grad:
        value.backward()
        assert all(bool(torch.isfinite(g).all()) for g in _leaf_grads(silent))


@pytest.mark.parametrize("name", [n for n in LAYER_NAMES if n != "none"])
def test_gradients_flow_from_the_penalty_to_the_parameters(name: str) -> None:
    model = tiny_mlp((1, 4, 4), 3)
    with ActivityRecorder(model) as recorder:
        model(torch.rand(5, 1, 4, 4))
        penalty = activity_penalty(recorder.record(), name)
    penalty.backward()
    grad = model.fc1.weight.grad
    assert grad is not None and bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0
    assert model.fc2.weight.grad is None  # fc2 comes after the only ReLU: not in the penalty


# ----------------------------------------------------------------------------- the fast path

FAST = ["l1", "l2", "hoyer", "hoyer-square", "transformed-l1"]  # activity_penalty's fused kernels


def _reference(maps: list[torch.Tensor], name: str, weights: list[float] | None = None) -> torch.Tensor:
    """The penalty as the per-sample reference functions and autograd compute it: the registry
    entry with its fast path switched off, through its public call."""
    reference = replace(REGULARIZERS.get(name), fast=False)
    return reference.penalty(ActivityRecord({f"relu{i}": a for i, a in enumerate(maps)}), weights)


def _by_hand(maps: list[torch.Tensor], name: str, weights: list[float] | None = None) -> torch.Tensor:
    """The reference written out: per-sample function, batch mean, weighted layer sum."""
    f = REGULARIZERS.get(name)
    return sum(w * f(a).mean() for w, a in zip(weights or [1.0] * len(maps), maps))  # type: ignore[return-value]


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_reference_path_is_the_per_sample_function_batch_mean_and_layer_sum(name: str) -> None:
    maps = [torch.randn(3, 2, 4, 4), torch.randn(3, 7)]
    assert torch.equal(_reference(maps, name, [0.5, 3.0]), _by_hand(maps, name, [0.5, 3.0]))
    model = tiny_mlp((1, 4, 4), 3)
    bound = bind_penalty(name, model, (1, 4, 4), fast=False)
    record = ActivityRecord({"a": maps[0], "b": maps[1]})
    assert bound.regularizer.fast is False and torch.equal(bound(record), _by_hand(maps, name))


def test_only_the_built_in_per_layer_regularizers_but_none_have_a_fast_path() -> None:
    with_kernel = [n for n in LAYER_NAMES if REGULARIZERS.get(n).kernel is not None]
    assert with_kernel == FAST
    assert all(REGULARIZERS.get(n).fast for n in NAMES)  # the registry's default: fast where it exists


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("weights", [None, [0.5, 3.0]])
def test_fast_penalty_equals_the_reference_on_any_map(name: str, weights: list[float] | None) -> None:
    # leaf maps (no ReLU node): signed values, a silent sample; the same value to the bit (l1; the
    # others within the rounding bound derived in test_fused.value_rtol: n = 32 values per sample,
    # batch 3, float32, 2 (k * 33 + 4 + 3 + 3) u with k = 2 for the Hoyer pair, else 1), and the
    # same gradient up to rounding (closed form instead of autograd's chain)
    base = [torch.randn(3, 2, 4, 4), torch.randn(3, 7)]
    base[0][1] = 0.0
    ours = [a.clone().requires_grad_(True) for a in base]
    theirs = [a.clone().requires_grad_(True) for a in base]
    value = activity_penalty(ActivityRecord({"a": ours[0], "b": ours[1]}), name, weights)
    expected = _reference(theirs, name, weights)
    if name == "l1":
        assert torch.equal(value, expected)
    else:
        u = torch.finfo(torch.float32).eps / 2
        k = 2 if name in ("hoyer", "hoyer-square") else 1
        torch.testing.assert_close(value, expected, rtol=2 * (k * 33 + 4 + 3 + 3) * u, atol=0)
    value.backward()
    expected.backward()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", FAST)
def test_fast_penalty_after_relus_gives_the_reference_parameter_gradients(name: str) -> None:
    # maps recorded at a LeNet's ReLUs: the kernels use |a| = a and leave out sgn(a), which the
    # ReLU's backward makes irrelevant (it zeroes the gradient where a = 0): the parameters get
    # the reference's gradients (l1 and l2: to the bit)
    from snnergy.models import lenet

    model = lenet((1, 8, 8), 10)
    x = torch.rand(5, 1, 8, 8)
    grads = []
    for fast in (True, False):
        model.zero_grad()
        with ActivityRecorder(model) as recorder:
            logits = model(x)
            record = recorder.record()
        penalty = activity_penalty(record, name) if fast else _reference(list(record.activations.values()), name)
        (logits.square().mean() + 0.3 * penalty).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for ours, theirs in zip(*grads):
        if name in ("l1", "l2"):
            assert torch.equal(ours, theirs)
        else:
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-8)


def test_fast_l1_gradient_through_a_relu_by_hand() -> None:
    # x = [-1, 2, 3, 0] -> a = relu(x) = [0, 2, 3, 0]; l1 = mean a = 5/4. d l1 / d a = 1/4 (the
    # kernel's gradient, sgn(a) left out), and the ReLU passes it where x > 0: [0, 1/4, 1/4, 0]
    x = torch.tensor([[-1.0, 2.0, 3.0, 0.0]], requires_grad=True)
    value = activity_penalty(ActivityRecord({"relu": torch.relu(x)}), "l1")
    assert value.item() == pytest.approx(5 / 4)
    value.backward()
    assert x.grad is not None and x.grad.tolist() == [[0.0, 0.25, 0.25, 0.0]]


def test_maps_of_different_batch_sizes_take_the_reference_path() -> None:
    # layer means are per layer: [0, 3, 4] -> 7/3; [[1], [3]] -> 2; sum 13/3 (no common batch to stack)
    rec = ActivityRecord({"relu1": torch.tensor([[0.0, 3.0, 4.0]]), "relu2": torch.tensor([[1.0], [3.0]])})
    assert activity_penalty(rec, "l1").item() == pytest.approx(13 / 3)


def test_a_plain_function_registered_as_it_is_counts_as_its_reference() -> None:
    from snnergy.regularizers import REGULARIZERS, LayerwiseRegularizer, activity_penalty

    def sum_abs(a: torch.Tensor) -> torch.Tensor:
        return a.abs().flatten(1).sum(1)

    REGULARIZERS.add("test-sum-abs", sum_abs)
    try:
        rec = ActivityRecord({"relu1": torch.tensor([[0.0, 3.0, 4.0]]), "relu2": torch.tensor([[1.0]])})
        # batch mean per layer, summed over layers: 7 + 1
        assert activity_penalty(rec, "test-sum-abs").item() == 8.0
        assert activity_penalty(rec, "test-sum-abs") == LayerwiseRegularizer(sum_abs).penalty(rec)
    finally:
        REGULARIZERS.remove("test-sum-abs")
