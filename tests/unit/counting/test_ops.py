"""Tests of snnergy.counting: fan-out maps, MAC counts, SynOps fan-out, geometries, sparsity."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snnergy.counting import (
    dense_macs,
    effective_macs,
    fanout_map,
    geometry_of,
    layer_geometries,
    neuron_fanout,
    nominal_macs,
    pool_geometry,
    sparsity_counts,
    weighted_events,
)
from snnergy.errors import ConfigError, SnnergyError
from snnergy.records import LayerGeometry, PoolGeometry


def conv_geom(c_in, hw, c_out, k, s=1, p=0, d=1, g=1, name="conv") -> LayerGeometry:
    """Geometry of Conv2d(c_in, c_out, k, s, p, d, g) on a (c_in, *hw) input (k, s, p, d pairs)."""
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    k, s, p, d = pair(k), pair(s), pair(p), pair(d)
    out_hw = tuple((n + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i, n in enumerate(hw))
    return LayerGeometry(name, "conv2d", (c_in, *hw), (c_out, *out_hw), k, s, p, d, g)


def brute_taps(geom: LayerGeometry) -> torch.Tensor:
    """Flat input index of every MAC that touches a real (unpadded) input, by explicit loops."""
    c_in, h, w = geom.in_shape
    c_out, h_out, w_out = geom.out_shape
    cin_g, cout_g = c_in // geom.groups, c_out // geom.groups
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
        geom.kernel_size, geom.stride, geom.padding, geom.dilation
    )
    taps = []
    for oc in range(c_out):
        group = oc // cout_g
        for ic in range(group * cin_g, (group + 1) * cin_g):
            positions = itertools.product(range(h_out), range(w_out), range(kh), range(kw))
            for oy, ox, ky, kx in positions:
                iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
                if 0 <= iy < h and 0 <= ix < w:
                    taps.append((ic * h + iy) * w + ix)
    return torch.tensor(taps, dtype=torch.long)


def brute_fanout(geom: LayerGeometry) -> torch.Tensor:
    counts = torch.bincount(brute_taps(geom), minlength=math.prod(geom.in_shape))
    return counts.reshape(geom.in_shape).double()


def neurobench_macs(geom: LayerGeometry, inputs: torch.Tensor, weight: torch.Tensor):
    """NeuroBench's effective MACs: run the layer on binarized inputs and binarized weights."""
    x, wb = (inputs != 0).double(), (weight != 0).double()
    if geom.kind == "linear":
        return F.linear(x, wb).flatten(1).sum(1)
    out = F.conv2d(
        x, wb, stride=geom.stride, padding=geom.padding, dilation=geom.dilation, groups=geom.groups
    )
    return out.flatten(1).sum(1)


def conv_weight(geom: LayerGeometry, generator: torch.Generator) -> torch.Tensor:
    c_in, c_out = geom.in_shape[0], geom.out_shape[0]
    # randn is never exactly 0 in practice; the test below zeroes weights on purpose.
    shape = (c_out, c_in // geom.groups, *geom.kernel_size)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def all_conv_configs():
    """Kernels 1..4, strides 1..3, padding 0..2, dilation 1..2, groups 1/2, odd/even sizes."""
    for k, s, p, d, g, hw in itertools.product(
        range(1, 5), range(1, 4), range(3), range(1, 3), (1, 2), ((5, 6), (7, 4))
    ):
        kernel, stride = (k, 1 + (k % 3)), (s, 1 + (s + 1) % 3)  # non-square as well
        geom = conv_geom(2, hw, 4, kernel, stride, p, d, g)
        if min(geom.out_shape[1:]) >= 1:
            yield geom


# ---------------------------------------------------------------- hand-derived cases


def test_conv_3x3_pad1_hand_case():
    # 3x3 input, 3x3 kernel, padding 1, stride 1, 1 -> 1 channel, output 3x3.
    # Centre: in all 9 windows -> 9; edge: 2 rows x 3 cols of outputs -> 6; corner 2 x 2 -> 4.
    geom = conv_geom(1, (3, 3), 1, 3, p=1)
    assert fanout_map(geom)[0].tolist() == [[4, 6, 4], [6, 9, 6], [4, 6, 4]]
    # dense = 4 corners x 4 + 4 edges x 6 + centre 9 = 16 + 24 + 9 = 49
    assert dense_macs(geom) == 49
    # nominal = 1 x 3 x 3 outputs x 1 x 3 x 3 taps = 81 (the padded taps counted)
    assert nominal_macs(geom) == 81


def test_stride_larger_than_kernel_leaves_zero_fanout():
    # 4x4 input, kernel 1, stride 2: outputs read inputs (0,0), (0,2), (2,0), (2,2) only.
    geom = conv_geom(1, (4, 4), 1, 1, s=2)
    expected = torch.zeros(4, 4, dtype=torch.float64)
    expected[::2, ::2] = 1
    assert torch.equal(fanout_map(geom)[0], expected)
    assert dense_macs(geom) == nominal_macs(geom) == 4  # 2x2 outputs x 1 tap


def test_tail_rows_dropped_by_floor_division_get_zero():
    # 5x5 input, kernel 2, stride 2: output 2x2 covers rows/cols 0..3; row 4 and col 4 are unread.
    geom = conv_geom(1, (5, 5), 1, 2, s=2)
    fan = fanout_map(geom)[0]
    assert fan[:4, :4].eq(1).all() and fan[4].eq(0).all() and fan[:, 4].eq(0).all()
    assert dense_macs(geom) == 16  # 2 x 2 outputs x 2 x 2 taps, none padded


def test_dilation_hand_case():
    # 5x5 input, 3x3 kernel, dilation 2: one output reading rows/cols {0, 2, 4} -> 9 inputs at 1.
    geom = conv_geom(1, (5, 5), 1, 3, d=2)
    expected = torch.zeros(5, 5, dtype=torch.float64)
    expected[::2, ::2] = 1
    assert torch.equal(fanout_map(geom)[0], expected)


def test_groups_hand_case():
    # 4 -> 6 channels, kernel 1, groups 2: each input channel feeds the 3 outputs of its group.
    geom = conv_geom(4, (2, 2), 6, 1, g=2)
    assert fanout_map(geom).eq(3).all()
    assert dense_macs(geom) == nominal_macs(geom) == 4 * 4 * 3  # 16 inputs x 3


def test_linear_hand_case():
    geom = LayerGeometry("fc", "linear", (4,), (3,))
    assert fanout_map(geom).tolist() == [3.0, 3.0, 3.0, 3.0]  # every input feeds 3 outputs
    assert dense_macs(geom) == nominal_macs(geom) == 12  # 4 x 3
    inputs = torch.tensor([[0.0, 1.5, 0.0, -2.0], [0.0, 0.0, 0.0, 0.0]])
    # sample 0: 2 non-zero inputs (sign does not matter) x 3 = 6; sample 1: none.
    assert effective_macs(geom, inputs).tolist() == [6.0, 0.0]


def test_weighted_events_counts_spikes():
    # fan-out [4, 6]; events: 3 spikes on neuron 0 -> 12, plus 1 on neuron 1 -> 18
    events = torch.tensor([[3, 0], [3, 1]])
    assert weighted_events(torch.tensor([4.0, 6.0]), events).tolist() == [12.0, 18.0]


def test_sparsity_counts_hand_case():
    act = torch.tensor([[[0.0, 2.0], [0.0, -0.0]], [[1.0, 0.0], [3.0, 4.0]]])
    assert sparsity_counts(act) == (4, 8)  # -0.0 is an exact zero too


# ---------------------------------------------------------------- brute force and NeuroBench


def test_fanout_map_matches_brute_force_for_many_configs():
    configs = list(all_conv_configs())
    assert len(configs) > 200
    for geom in configs:
        assert torch.equal(fanout_map(geom), brute_fanout(geom)), geom
        assert dense_macs(geom) == len(brute_taps(geom)), geom


def test_effective_macs_matches_brute_force_and_neurobench():
    gen = torch.Generator().manual_seed(0)
    for geom in list(all_conv_configs())[::7]:
        inputs = torch.randn(3, *geom.in_shape, generator=gen, dtype=torch.float64)
        inputs[torch.rand(inputs.shape, generator=gen) < 0.6] = 0.0
        taps = brute_taps(geom)
        brute = (inputs != 0).flatten(1)[:, taps].sum(1).double()
        ours = effective_macs(geom, inputs)
        assert torch.equal(ours, brute), geom
        # No weight is exactly zero: NeuroBench's binarized re-run gives the same count.
        assert torch.equal(ours, neurobench_macs(geom, inputs, conv_weight(geom, gen))), geom


def test_neurobench_also_skips_zero_weights():
    # Zeroing weights lowers NeuroBench's count by exactly the products with a non-zero input
    # and a zero weight; ours counts activations only and does not change.
    gen = torch.Generator().manual_seed(1)
    geom = conv_geom(2, (6, 5), 4, 3, s=1, p=1, g=2)
    inputs = torch.randn(2, *geom.in_shape, generator=gen, dtype=torch.float64)
    inputs[torch.rand(inputs.shape, generator=gen) < 0.5] = 0.0
    weight = conv_weight(geom, gen)
    weight[torch.rand(weight.shape, generator=gen) < 0.4] = 0.0
    skipped = F.conv2d(
        (inputs != 0).double(), (weight == 0).double(), padding=geom.padding, groups=geom.groups
    ).flatten(1).sum(1)
    assert skipped.min() > 0
    nb = neurobench_macs(geom, inputs, weight)
    assert torch.equal(effective_macs(geom, inputs), nb + skipped)


def test_linear_effective_macs_matches_neurobench():
    gen = torch.Generator().manual_seed(2)
    geom = LayerGeometry("fc", "linear", (10,), (7,))
    inputs = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    inputs[torch.rand(inputs.shape, generator=gen) < 0.5] = 0.0
    weight = torch.randn(7, 10, generator=gen, dtype=torch.float64)
    ours = effective_macs(geom, inputs)
    assert torch.equal(ours, (inputs != 0).sum(1).double() * 7)  # non-zero inputs x 7 outputs
    assert torch.equal(ours, neurobench_macs(geom, inputs, weight))


def test_fanout_map_returns_a_copy():
    geom = conv_geom(1, (3, 3), 1, 3, p=1)
    fanout_map(geom).zero_()
    assert fanout_map(geom)[0, 1, 1] == 9  # the cached map is untouched


def test_inconsistent_geometry_and_inputs_are_refused():
    with pytest.raises(ConfigError, match="'bad'"):
        fanout_map(LayerGeometry("bad", "conv2d", (1, 5, 5), (1, 4, 4), (3, 3)))  # 5-3+1 = 3, not 4
    with pytest.raises(ConfigError, match="'conv'"):
        effective_macs(conv_geom(1, (3, 3), 1, 3, p=1), torch.ones(2, 1, 3, 4))
    with pytest.raises(ConfigError, match="do not match"):
        weighted_events(torch.ones(3), torch.ones(2, 4))


# ---------------------------------------------------------------- neuron fan-out (SynOps)


def test_neuron_fanout_through_2x2_pool_hand_case():
    # neurons (1, 6, 6) -> AvgPool 2x2 stride 2 -> (1, 3, 3) -> conv 3x3 pad 1 (fan-out 4/6/9 map).
    # Non-overlapping windows: every neuron has the fan-out of its one pooled position.
    conv = conv_geom(1, (3, 3), 1, 3, p=1)
    fan = neuron_fanout(conv, [PoolGeometry((1, 6, 6), (2, 2), (2, 2))], (1, 6, 6))[0]
    assert fan[0, 0] == 4 and fan[1, 1] == 4  # pooled corner (0, 0)
    assert fan[2, 3] == 9  # pooled centre (1, 1)
    assert fan[0, 5] == 4 and fan[3, 0] == 6  # pooled corner (0, 2), pooled edge (1, 0)
    expected = fanout_map(conv)[0].repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(fan, expected)


def brute_pooled_fanout(next_fan: torch.Tensor, pool: PoolGeometry) -> torch.Tensor:
    """Sum over the pooled positions whose window contains a neuron, by explicit loops."""
    c, h, w = pool.in_shape
    (kh, kw), (sh, sw), (ph, pw) = pool.kernel_size, pool.stride, pool.padding
    out = torch.zeros(c, h, w, dtype=torch.float64)
    _, h_out, w_out = next_fan.shape
    for ch, oy, ox in itertools.product(range(c), range(h_out), range(w_out)):
        for ky, kx in itertools.product(range(kh), range(kw)):
            iy, ix = oy * sh - ph + ky, ox * sw - pw + kx
            if 0 <= iy < h and 0 <= ix < w:
                out[ch, iy, ix] += next_fan[ch, oy, ox]
    return out


@pytest.mark.parametrize("padding", [(0, 0), (1, 1)])
def test_neuron_fanout_overlapping_pool_matches_brute_force(padding):
    # 3x3 windows with stride 2 overlap: a neuron on a shared row/column feeds 2 (or 4) pooled
    # positions, and its fan-out is the sum of theirs.
    pool = PoolGeometry((2, 7, 7), (3, 3), (2, 2), padding)
    pooled = 3 + padding[0]  # (7 + 2p - 3) // 2 + 1
    conv = conv_geom(2, (pooled, pooled), 3, 2, p=1, g=1)
    brute = brute_pooled_fanout(fanout_map(conv), pool)
    assert torch.equal(neuron_fanout(conv, [pool], (2, 7, 7)), brute)


def test_neuron_fanout_overlapping_pool_hand_case():
    # (1, 5, 5) -> AvgPool 3x3 stride 2 -> (1, 2, 2) -> flatten -> Linear(4, 10): fan-out 10 per
    # pooled position. Neuron (2, 2) sits in all 4 windows -> 40; (0, 0) in one -> 10;
    # (0, 2) in the two top windows -> 20.
    fc = LayerGeometry("fc", "linear", (4,), (10,))
    fan = neuron_fanout(fc, [PoolGeometry((1, 5, 5), (3, 3), (2, 2))], (1, 5, 5))[0]
    assert (fan[2, 2], fan[0, 0], fan[0, 2]) == (40, 10, 20)


def test_neuron_fanout_flatten_to_linear():
    # (3, 2, 2) neurons flattened into Linear(12, 7): every neuron feeds 7 outputs.
    fc = LayerGeometry("fc", "linear", (12,), (7,))
    fan = neuron_fanout(fc, [], (3, 2, 2))
    assert fan.shape == (3, 2, 2) and fan.eq(7).all()


def test_neuron_fanout_two_pools_then_linear():
    # (1, 8, 8) -> pool 2 -> (1, 4, 4) -> pool 2 -> (1, 2, 2) -> Linear(4, 5): each neuron 5.
    fc = LayerGeometry("fc", "linear", (4,), (5,))
    pools = [PoolGeometry((1, 8, 8), (2, 2), (2, 2)), PoolGeometry((1, 4, 4), (2, 2), (2, 2))]
    assert neuron_fanout(fc, pools, (1, 8, 8)).eq(5).all()


def test_neuron_fanout_shape_mismatch_is_refused():
    fc = LayerGeometry("fc", "linear", (12,), (7,))
    with pytest.raises(ConfigError, match="'fc'"):
        neuron_fanout(fc, [], (3, 2, 3))
    with pytest.raises(ConfigError, match="'fc'"):
        neuron_fanout(fc, [PoolGeometry((1, 4, 4), (2, 2), (2, 2))], (1, 4, 4))  # 4 != 12


# ---------------------------------------------------------------- modules -> geometries


def test_layer_geometries_small_sequential():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(64, 10),
    )
    model.train()
    stats = model[1].running_mean.clone()
    geoms = layer_geometries(model, (1, 8, 8))
    assert [(g.name, g.kind, g.in_shape, g.out_shape) for g in geoms] == [
        ("0", "conv2d", (1, 8, 8), (4, 8, 8)),
        ("5", "linear", (64,), (10,)),  # 4 channels x 4 x 4 after the 2x2 pool
    ]
    assert geoms[0].padding == (1, 1) and geoms[0].kernel_size == (3, 3)
    assert all(m.training for m in model.modules())  # train mode restored
    assert torch.equal(model[1].running_mean, stats)  # no statistics update
    assert not model[0]._forward_hooks and not model[5]._forward_hooks  # hooks removed
    # nominal 4*8*8 outputs x 9 taps = 2304; dense excludes the padded taps of the border.
    assert nominal_macs(geoms[0]) == 2304 and dense_macs(geoms[0]) < 2304


def test_layer_geometries_eval_mode_kept():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
    assert layer_geometries(model, (2, 2))[0].in_shape == (4,)
    assert not model.training


def test_layer_geometries_refuses_bad_shape_and_unsupported_layers():
    with pytest.raises(ConfigError, match=r"\(1, 1, 5, 5\)"):
        layer_geometries(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), (1, 5, 5))
    with pytest.raises(SnnergyError, match="'0' \\(Conv1d\\)"):
        layer_geometries(nn.Sequential(nn.Conv1d(1, 2, 3)), (1, 8))


def test_geometry_of_modules():
    conv = nn.Conv2d(2, 4, 3, stride=2, padding="valid", dilation=1, groups=2)
    geom = geometry_of(conv, "c", (2, 9, 9), (4, 4, 4))
    assert (geom.kernel_size, geom.stride, geom.padding, geom.groups) == ((3, 3), (2, 2), (0, 0), 2)
    same = geometry_of(nn.Conv2d(1, 1, 5, padding="same"), "s", (1, 6, 6), (1, 6, 6))
    assert same.padding == (2, 2)
    with pytest.raises(SnnergyError, match="'r'.*ReLU"):
        geometry_of(nn.ReLU(), "r", (4,), (4,))
    with pytest.raises(SnnergyError, match="padding_mode='reflect'"):
        reflect = nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")
        geometry_of(reflect, "p", (1, 4, 4), (1, 4, 4))
    with pytest.raises(SnnergyError, match="unevenly"):
        geometry_of(nn.Conv2d(1, 1, 2, padding="same"), "e", (1, 4, 4), (1, 4, 4))
    with pytest.raises(ConfigError, match="'fc'"):
        geometry_of(nn.Linear(4, 3), "fc", (5,), (3,))


def test_pool_geometry():
    assert pool_geometry(nn.AvgPool2d(2), (3, 6, 6)) == PoolGeometry((3, 6, 6), (2, 2), (2, 2))
    assert pool_geometry(nn.AvgPool2d(3, 2, 1), (1, 7, 7)).padding == (1, 1)
    assert pool_geometry(nn.AvgPool2d(2, ceil_mode=True), (1, 4, 4)).stride == (2, 2)  # no change
    with pytest.raises(SnnergyError, match="ceil_mode"):
        pool_geometry(nn.AvgPool2d(2, ceil_mode=True), (1, 5, 5))  # adds a partial window
    with pytest.raises(SnnergyError, match="MaxPool2d"):
        pool_geometry(nn.MaxPool2d(2), (1, 4, 4))  # type: ignore[arg-type]
