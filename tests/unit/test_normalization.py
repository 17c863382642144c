"""Tests for snnergy.normalization: the one percentile, checked once against torch.quantile, and
the same scale for the converter and the energy-aware penalty."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from snnergy.activity import ActivityRecorder
from snnergy.conversion import activation_scales
from snnergy.errors import ConfigError, DataError
from snnergy.normalization import MAX_BATCH_VALUES, Percentile, PercentileAccumulator, nonzero_percentile
from snnergy.regularizers import PenaltyOptions, bind_penalty

ULP = 2.0**-52
"""Relative float64 rounding: the accumulator's ``low + w (high - low)`` and ``torch.lerp`` (which
``torch.quantile`` and the batch percentile use) may round the last bit differently for w >= 0.5."""

QS = [100.0, 99.9, 75.0, 50.0, 0.01]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def quantile_of_nonzeros(a: torch.Tensor, q: float) -> torch.Tensor:
    """The reference: torch.quantile (q in percent) of the non-zero values, in float64; NaN if none."""
    values = a[a != 0].double()
    return torch.quantile(values, q / 100) if values.numel() else torch.tensor(math.nan, dtype=torch.float64)


def per_channel_reference(a: torch.Tensor, q: float) -> torch.Tensor:
    """torch.nanquantile per channel (dim 1), zeros left out."""
    rows = a.transpose(0, 1).reshape(a.shape[1], -1).double()
    return torch.nanquantile(rows.masked_fill(rows == 0, math.nan), q / 100, dim=1)


def accumulated(strategy: Percentile, *batches: torch.Tensor, max_values: int | None = None) -> torch.Tensor:
    acc = strategy.accumulator() if max_values is None else strategy.accumulator(max_values)
    for a in batches:
        acc.add(a)
    return acc.scale()


@pytest.mark.parametrize("q", QS)
def test_per_layer_percentile_is_torch_quantile(q: float) -> None:
    batches = [torch.relu(torch.randn(16, 3, 5, 5)).mul(4).round(), torch.relu(torch.randn(16, 3, 5, 5))]
    both = torch.cat(batches)
    expected = quantile_of_nonzeros(both, q)
    torch.testing.assert_close(accumulated(Percentile(q), *batches), expected, rtol=ULP, atol=0)
    assert torch.equal(Percentile(q).batch_scale(both), expected)  # the batch path: to the bit


@pytest.mark.parametrize("q", QS)
def test_channelwise_percentile_is_torch_nanquantile_per_channel(q: float) -> None:
    a = torch.relu(torch.randn(32, 4, 6, 6)).mul(4).round()
    a[:, 2] = 0.0  # a silent channel: NaN
    expected = per_channel_reference(a, q)
    strategy = Percentile(q, channelwise=True)
    torch.testing.assert_close(accumulated(strategy, a[:20], a[20:]), expected, rtol=ULP, atol=0, equal_nan=True)
    torch.testing.assert_close(strategy.batch_scale(a), expected, rtol=0, atol=0, equal_nan=True)
    assert math.isnan(expected[2].item())


def test_q_100_is_the_maximum_exactly() -> None:
    a = torch.relu(torch.randn(64, 5, 7))
    for strategy in (Percentile(100), Percentile(100, channelwise=True)):
        expected = a.amax() if not strategy.channelwise else a.transpose(0, 1).reshape(5, -1).amax(dim=1)
        assert torch.equal(accumulated(strategy, a), expected.double())
        assert torch.equal(strategy.batch_scale(a), expected.double())


def test_a_silent_layer_is_nan_on_both_paths() -> None:
    silent = torch.zeros(4, 3, 2, 2)
    for strategy in (Percentile(), Percentile(100, channelwise=True)):
        assert bool(accumulated(strategy, silent).isnan().all())
        assert bool(strategy.batch_scale(silent).isnan().all())
    assert accumulated(Percentile(), silent).shape == ()
    assert accumulated(Percentile(channelwise=True), silent).shape == (3,)
    with pytest.raises(DataError, match="no activations were added"):
        PercentileAccumulator().percentile(50)  # nothing added at all: no shape, no scale


@pytest.mark.parametrize("q", [100.0, 99.0, 50.0])
def test_accumulator_subsamples_deterministically_beyond_max_values(q: float) -> None:
    # one batch of n non-zero values, max_values = 1000: every 2**k-th value is kept, the smallest
    # k for which they fit; the result is torch.quantile of that subsample, the same every time
    a = torch.rand(1, 3000) + 0.5
    kept = a.reshape(-1)[::4]  # 3000 -> 1500 -> 750 values
    expected = torch.quantile(kept.double(), q / 100)
    got = accumulated(Percentile(q), a, max_values=1000)
    torch.testing.assert_close(got, expected, rtol=ULP, atol=0)
    assert torch.equal(got, accumulated(Percentile(q), a, max_values=1000))
    # over batches the stride carries on: each later batch is thinned as the earlier ones
    acc = Percentile(q).accumulator(1000)
    for part in a.split(500, dim=1):
        acc.add(part)
    assert acc.stride == 4 and sum(p.numel() for p in acc.parts) == 750


def test_batch_percentile_subsamples_beyond_torch_quantiles_limit() -> None:
    # 2**24 + 4096 non-zero values: every 2nd is kept (ceil(n / 2**24) = 2), then torch.quantile
    a = torch.rand(1, MAX_BATCH_VALUES + 4096) + 0.25
    expected = torch.quantile(a.reshape(-1).double()[::2], 0.999)
    assert torch.equal(Percentile(99.9).batch_scale(a), expected)
    assert torch.equal(nonzero_percentile(a, 99.9), expected)


def test_bad_percentile_is_a_config_error() -> None:
    for q in (0, -1.0, 100.5, math.nan, True):
        with pytest.raises(ConfigError, match="normalization percentile must be in"):
            Percentile(q)


def net_with_pool() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 3),
    )


@pytest.mark.parametrize("q", QS)
@pytest.mark.parametrize("channelwise", [False, True])
def test_the_penalty_batch_scale_is_the_converters_scale(q: float, channelwise: bool) -> None:
    # `synops` promises "the scale the converter will use": on the same activations (one batch of
    # calibration data, the model in eval mode) its batch scale is the converter's, to the last bit
    # of the float64 (the accumulator and torch.lerp may round the interpolation differently).
    # A silent layer or channel is NaN in the batch scale and 1 in the converter's; the penalty
    # counts NaN as 1 too (estimates._broadcast, scale_with_gradient)
    net = net_with_pool().eval()
    x = torch.rand(200, 1, 8, 8)
    converter = activation_scales(net, x, q, channelwise=channelwise)
    penalty = bind_penalty("synops", net, (1, 8, 8), PenaltyOptions(percentile=q, channelwise=channelwise))
    with ActivityRecorder(net) as recorder, torch.no_grad():
        net(x)
        record = recorder.record()
    batch = penalty.batch_scales(record)
    assert batch.keys() == converter.keys() == {"1", "5"}
    for name in converter:
        ours = torch.nan_to_num(batch[name], nan=1.0)
        torch.testing.assert_close(ours, converter[name], rtol=ULP, atol=0)
        if q == 100.0:
            assert torch.equal(ours, converter[name])
    if channelwise:  # some of the 4 conv channels are silent on this net: the NaN case is covered
        assert bool(batch["1"].isnan().any()) or bool(batch["5"].isnan().any())
