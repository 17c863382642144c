"""Identities of operation counting, checked with hypothesis."""

from __future__ import annotations

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from snnergy.counting import dense_macs, effective_macs, fanout_map, nominal_macs, weighted_events
from snnergy.records import LayerGeometry

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def conv_geometries(draw) -> LayerGeometry:
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    out = tuple((n + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i, n in enumerate((h, w)))
    assume(min(out) >= 1)
    return LayerGeometry("conv", "conv2d", (c_in, h, w), (c_out, *out), k, s, p, d, groups)


def random_inputs(shape: tuple[int, ...], seed: int, density: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(shape, generator=gen, dtype=torch.float64)
    return values * (torch.rand(shape, generator=gen) < density)


@SETTINGS
@given(
    in_features=st.integers(1, 16),
    out_features=st.integers(1, 16),
    batch=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    density=st.floats(0.0, 1.0),
)
def test_linear_ops_equal_nonzero_inputs_times_out_width(
    in_features, out_features, batch, seed, density
):
    geom = LayerGeometry("fc", "linear", (in_features,), (out_features,))
    inputs = random_inputs((batch, in_features), seed, density)
    expected = (inputs != 0).sum(1).double() * out_features
    assert torch.equal(effective_macs(geom, inputs), expected)


@SETTINGS
@given(
    geom=conv_geometries(),
    seed=st.integers(0, 2**16),
    a=st.integers(0, 5),
    b=st.integers(0, 5),
)
def test_weighted_events_is_linear_in_events(geom, seed, a, b):
    gen = torch.Generator().manual_seed(seed)
    fan = fanout_map(geom)
    e1 = torch.randint(0, 4, (2, *geom.in_shape), generator=gen)  # spike counts
    e2 = torch.randint(0, 4, (2, *geom.in_shape), generator=gen)
    # Integer counts times integer fan-outs: float64 sums are exact, so equality is exact.
    lhs = weighted_events(fan, a * e1 + b * e2)
    assert torch.equal(lhs, a * weighted_events(fan, e1) + b * weighted_events(fan, e2))


@SETTINGS
@given(geom=conv_geometries(), seed=st.integers(0, 2**16), density=st.floats(0.0, 1.0))
def test_effective_at_most_dense_at_most_nominal(geom, seed, density):
    effective = effective_macs(geom, random_inputs((3, *geom.in_shape), seed, density))
    assert (effective <= dense_macs(geom)).all()
    assert dense_macs(geom) <= nominal_macs(geom)
    if geom.padding == (0, 0):
        assert dense_macs(geom) == nominal_macs(geom)  # no padded tap to exclude


@SETTINGS
@given(geom=conv_geometries())
def test_all_ones_input_gives_dense(geom):
    assert effective_macs(geom, torch.ones(1, *geom.in_shape)).item() == dense_macs(geom)
