"""Average pooling folded into the next layer: the same currents as pooling first, and in a
simulation the same spikes and counts as today's (unfolded) path and the reference."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snnergy.config import ConvertConfig, ModelConfig
from snnergy.conversion import convert
from snnergy.models import build_model
from snnergy.simulation import Shortcut, Simulator, SpikingNetwork, SpikingStage, simulate_reference
from snnergy.simulation.folding import BatchedLayer, FoldedLayer, pool_spikes, unfoldable


def binary(rows: int, shape: tuple[int, ...], density: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((rows, *shape), generator=g) < density).double()


# ---------------------------------------------------------------------------- the folded layer


def test_folded_conv_hand_case() -> None:
    # 1 channel 4x4, AvgPool2d(2) -> 2x2, conv 2x2 (no padding) -> one output, weights 1, 2, 3, 4,
    # bias 0.5. Spikes: window (0,0) has 4, (0,1) 2, (1,0) 1, (1,1) 0 -> pooled 1, 0.5, 0.25, 0:
    # current 0.5 + 1*1 + 2*0.5 + 3*0.25 + 4*0 = 3.25. Folded: a 4x4 kernel, each tap w / 4.
    conv = nn.Conv2d(1, 1, 2).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2))
        conv.bias.fill_(0.5)
    x = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.float64)
    folded = FoldedLayer([nn.AvgPool2d(2)], conv, (1, 4, 4))
    assert folded.weight.shape == (1, 1, 4, 4) and folded.conv is not None and folded.conv[0] == (2, 2)
    assert folded(x.view(1, 1, 4, 4)).item() == 3.25


def test_folded_linear_hand_case() -> None:
    # 1 channel 3x3, AvgPool2d(2) keeps the top-left 2x2 window (floor mode drops row and
    # column 2), Flatten, Linear(1 -> 1) weight 4: each of the 4 kept inputs gets 4 / 4 = 1, the
    # other 5 get 0. Spikes at (0,0), (1,1) and (2,2): current 2 (the third is dropped).
    fc = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        fc.weight.fill_(4.0)
    folded = FoldedLayer([nn.AvgPool2d(2), nn.Flatten()], fc, (1, 3, 3))
    assert folded.weight.flatten().tolist() == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert folded(torch.eye(3, dtype=torch.float64).view(1, 1, 3, 3)).item() == 2.0


CASES = {
    # (weightless ops, layer, raw input shape)
    "pool then conv pad 1": ([nn.AvgPool2d(2)], nn.Conv2d(3, 4, 3, padding=1), (3, 8, 8)),
    "pool then conv stride 2, 5x3 kernel": ([nn.AvgPool2d(2)], nn.Conv2d(2, 3, (5, 3), stride=2, padding=(2, 1)),
                                           (2, 18, 14)),
    # 9x7 by 3: rows 9 -> 3 (none dropped), columns 7 -> 2 (column 6 dropped): cropped
    "pool 3 on uneven sizes": ([nn.AvgPool2d(3)], nn.Conv2d(2, 2, 2, padding=1), (2, 9, 7)),
    "two pools then conv": ([nn.AvgPool2d(2), nn.AvgPool2d((1, 2))], nn.Conv2d(1, 2, 2), (1, 8, 8)),
    "grouped conv": ([nn.AvgPool2d(2)], nn.Conv2d(4, 4, 3, padding=1, groups=2), (4, 6, 6)),
    "pool then flatten then linear": ([nn.AvgPool2d(2), nn.Flatten()], nn.Linear(2 * 3 * 3, 4), (2, 7, 7)),
    "two pools then flatten then linear": ([nn.AvgPool2d(2), nn.AvgPool2d(2), nn.Flatten()],
                                           nn.Linear(3 * 2 * 2, 5), (3, 8, 8)),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_folded_layer_equals_pooling_then_the_layer(name: str, channels_last: bool) -> None:
    torch.manual_seed(0)
    pre, layer, shape = CASES[name]
    layer = layer.double()
    x = binary(30, shape)
    folded = FoldedLayer(pre, layer, shape, channels_last)
    given = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    with torch.no_grad():
        dense = layer(nn.Sequential(*pre)(x))
        out = folded(given)
    assert out.shape == dense.shape
    # the same products summed in another order: equal within float64 rounding
    torch.testing.assert_close(out, dense, rtol=0, atol=1e-12)


def test_unfoldable_branches_say_why() -> None:
    # a Flatten alone folds only for channels-last inputs (its columns reordered)
    assert unfoldable([nn.Flatten()], nn.Linear(8, 2), channels_last=True) is None
    assert unfoldable([nn.AvgPool2d(2, stride=1)], nn.Conv2d(1, 1, 1)).startswith("an AvgPool2d whose stride")
    assert unfoldable([nn.AvgPool2d(2)], nn.Linear(4, 2)) == "an AvgPool2d not followed by Flatten before a Linear"
    assert unfoldable([nn.AvgPool2d(2)], nn.Conv2d(1, 1, 3, dilation=2)).startswith("a dilated")
    assert unfoldable([nn.MaxPool2d(2), nn.AvgPool2d(2)], nn.Conv2d(1, 1, 1)).startswith("a MaxPool2d")
    assert unfoldable([nn.ReLU(), nn.AvgPool2d(2)], nn.Conv2d(1, 1, 1)) == "a ReLU before its layer"
    with pytest.raises(ValueError, match="no average pooling to fold"):
        FoldedLayer([], nn.Linear(2, 2), (2,))


# ---------------------------------------------------------------------------- in a simulation


def _vgg_double() -> nn.Sequential:
    """VGG-style blocks with a double pooling (two AvgPool2d in a row) before a conv and before the
    classifier, and odd maps (7x7, 3x3) pooled in floor mode: 28 -> 14 -> 3 -> 1."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.AvgPool2d(2), pool1b=nn.AvgPool2d(1),
        conv2=nn.Conv2d(4, 6, 3, padding=1), relu2=nn.ReLU(), pool2=nn.AvgPool2d(2), pool3=nn.AvgPool2d(2),
        conv3=nn.Conv2d(6, 6, 3, padding=1), relu3=nn.ReLU(), pool4=nn.AvgPool2d(2), pool5=nn.AvgPool2d(1),
        flatten=nn.Flatten(), fc1=nn.Linear(6, 16), relu4=nn.ReLU(), fc2=nn.Linear(16, 10)))


def _lenet() -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.AvgPool2d(2),
        conv2=nn.Conv2d(4, 8, 3, padding=1), relu2=nn.ReLU(), pool2=nn.AvgPool2d(2),
        flatten=nn.Flatten(), fc1=nn.Linear(8 * 7 * 7, 16), relu3=nn.ReLU(), fc2=nn.Linear(16, 10)))


def _max_then_avg() -> nn.Sequential:
    # the max pooling stays a spike-count gate; the average pooling after conv2 folds into fc1
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(4, 8, 3, padding=1), relu2=nn.ReLU(), pool2=nn.AvgPool2d(2),
        flatten=nn.Flatten(), fc1=nn.Linear(8 * 7 * 7, 16), relu3=nn.ReLU(), fc2=nn.Linear(16, 10)))


def _resnet() -> nn.Module:
    model = build_model(ModelConfig("resnet", 0.5), (1, 28, 28), 10).eval()  # pool 7x7 -> fc
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.1, 0.2)
    return model


NETS = {  # (model, branches with a folded layer: the simulator folds into Linear layers only; on a
    # CPU, channels-last spikes are pooled first, folding.pool_spikes, and the Flatten folds)
    "lenet": (_lenet, {"fc1"}),
    "vgg double pooling": (_vgg_double, {"fc1"}),
    "max then average pooling": (_max_then_avg, {"fc1"}),
    "resnet": (_resnet, {"fc"}),
}


def _converted(name: str) -> tuple[SpikingNetwork, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.rand(16, 1, 28, 28)
    return convert(NETS[name][0](), x, ConvertConfig(percentile=99.0)).double(), x.double()


def assert_same_spikes(a, b, readout_folded: bool) -> None:
    """Every count equal; the readout potential too, within rounding when the readout folds a pooling.

    The spike counts (per step, per sample, through each max-pooling gate) are all that SynOps,
    spike rates and the per-layer statistics are computed from.
    """
    assert a.spike_counts.keys() == b.spike_counts.keys() and a.gated_counts.keys() == b.gated_counts.keys()
    for name in a.spike_counts:
        assert torch.equal(a.spike_counts[name], b.spike_counts[name]), name
        assert torch.equal(a.final_counts[name], b.final_counts[name]), name
    for name in a.gated_counts:
        assert torch.equal(a.gated_counts[name], b.gated_counts[name]), name
    assert (a.input_counts is None) == (b.input_counts is None)
    if a.input_counts is not None:
        assert torch.equal(a.input_counts, b.input_counts)
    if readout_folded:
        torch.testing.assert_close(a.potentials, b.potentials, rtol=0, atol=1e-9)
    else:
        assert torch.equal(a.potentials, b.potentials)


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("encoding", ["analog", "poisson"])
def test_folding_keeps_every_spike_and_count(net: str, encoding: str) -> None:
    snn, x = _converted(net)
    steps = [1, 5, 16]
    runs = {}
    for fold in (True, False):
        sim = Simulator(snn, steps, input=encoding, mode="batched", fold=fold)
        runs[fold] = sim.run(x, torch.Generator().manual_seed(1))
        folded = {key[0] for key, value in sim._folded.items() if value.folded is not None}
        assert folded == (NETS[net][1] if fold else set())
    reference = simulate_reference(snn, x, steps, input=encoding, generator=torch.Generator().manual_seed(1))
    readout_folded = snn.stages[-1].name in NETS[net][1]
    assert_same_spikes(runs[True], runs[False], readout_folded)
    assert_same_spikes(runs[True], reference, readout_folded)
    assert all(c[-1].sum() > 0 for c in runs[True].spike_counts.values())  # every layer spikes


def test_folding_a_pooled_shortcut() -> None:
    # conv1 (1 -> 2 channels, 8x8) spikes; conv2 reads them through AvgPool2d(2) (pooled first:
    # a conv), the readout fc reads relu2 through Flatten (channels-last spikes: the columns are
    # reordered instead) and relu1 through a shortcut AvgPool2d(2), Flatten, Linear: both fold
    torch.manual_seed(0)
    s1 = SpikingStage("conv1", "relu1", nn.Sequential(), nn.Conv2d(1, 2, 3, padding=1), True)
    s2 = SpikingStage("conv2", "relu2", nn.Sequential(nn.AvgPool2d(2)), nn.Conv2d(2, 3, 3, padding=1), True)
    s3 = SpikingStage("fc", None, nn.Sequential(nn.Flatten()), nn.Linear(3 * 4 * 4, 4), False,
                      [Shortcut("short", "relu1", nn.Sequential(nn.AvgPool2d(2), nn.Flatten()), nn.Linear(2 * 4 * 4, 4))])
    snn = SpikingNetwork([s1, s2, s3], (1, 8, 8)).double()
    with torch.no_grad():
        for stage in snn.stages:
            stage.layer.weight.abs_()
    x = torch.rand(8, 1, 8, 8, dtype=torch.float64)
    sim = Simulator(snn, [4, 12], input="poisson", mode="batched")
    trace = sim.run(x, torch.Generator().manual_seed(2))
    assert {key[0] for key, value in sim._folded.items() if value.folded is not None} == {"fc", "fc/0"}
    reference = simulate_reference(snn, x, [4, 12], input="poisson", generator=torch.Generator().manual_seed(2))
    assert_same_spikes(trace, reference, readout_folded=True)
    assert trace.spike_counts["relu2"][-1].sum() > 0


# ---------------------------------------------------------------------------- pooling channels-last spikes


@pytest.mark.parametrize("kernel", [2, 3, (2, 1), (1, 3), 7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pool_spikes_equals_avg_pool2d_to_the_bit(kernel, dtype) -> None:
    # spikes are 0 or 1: every partial window sum is a small integer, exact in any order, and the
    # sum is divided by the window's size as avg_pool2d divides it, so the two agree bit for bit;
    # 15x14 maps leave rows/columns that floor mode drops for kernels 2, 3 and 7
    torch.manual_seed(0)
    spikes = (torch.rand(5, 6, 15, 14) < 0.3).to(dtype)
    last = spikes.contiguous(memory_format=torch.channels_last)
    pool = nn.AvgPool2d(kernel)
    fast = pool_spikes([pool], last)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast, F.avg_pool2d(spikes, kernel))
    # contiguous inputs, and other ops, go through the ops themselves
    assert torch.equal(pool_spikes([pool, nn.Flatten()], spikes), F.avg_pool2d(spikes, kernel).flatten(1))


def test_batched_layer_pools_channels_last_spikes_then_folds_the_flatten() -> None:
    # LeNet's fc1: AvgPool2d(2), Flatten, Linear(16*5*5 -> 12); channels-last spikes are pooled
    # (pool_spikes) and the Linear's columns reordered to the channels-last order; contiguous
    # spikes fold the pooling into the Linear (4x its columns); fold=False runs the ops as they are
    torch.manual_seed(1)
    pre, layer = [nn.AvgPool2d(2), nn.Flatten()], nn.Linear(16 * 5 * 5, 12).double()
    spikes = (torch.rand(9, 16, 10, 10) < 0.2).double()
    expected = layer(F.avg_pool2d(spikes, 2).flatten(1))
    last = BatchedLayer(pre, layer, (16, 10, 10), channels_last=True)
    assert last.pools == pre[:1] and last.folded is not None and last.folded.weight.shape == (12, 400)
    contiguous = BatchedLayer(pre, layer, (16, 10, 10), channels_last=False)
    assert contiguous.pools == [] and contiguous.folded.weight.shape == (12, 1600)
    plain = BatchedLayer(pre, layer, (16, 10, 10), channels_last=True, fold=False)
    assert plain.folded is None
    with torch.no_grad():
        torch.testing.assert_close(last(spikes.contiguous(memory_format=torch.channels_last)), expected,
                                   rtol=0, atol=1e-12)
        torch.testing.assert_close(contiguous(spikes), expected, rtol=0, atol=1e-12)
        assert torch.equal(plain(spikes.contiguous(memory_format=torch.channels_last)), expected)


def test_batched_layer_reads_spikes_pooled_already() -> None:
    # pooled=True skips the branch's first pooling: the same currents as pooling the raw spikes
    torch.manual_seed(2)
    spikes = binary(6, (4, 10, 10)).contiguous(memory_format=torch.channels_last)
    pooled = F.avg_pool2d(spikes, 2).contiguous(memory_format=torch.channels_last)
    linear = BatchedLayer([nn.AvgPool2d(2), nn.Flatten()], nn.Linear(4 * 5 * 5, 3).double(), (4, 10, 10), True)
    conv = BatchedLayer([nn.AvgPool2d(2), nn.AvgPool2d(1)], nn.Conv2d(4, 2, 3).double(), (4, 10, 10), True)
    with torch.no_grad():
        for layer in (linear, conv):
            assert layer.first_pool == (2, 2)
            assert torch.equal(layer(pooled, pooled=True), layer(spikes))
    # no pooling first (or contiguous inputs, or nothing folded): nothing to skip
    plain = BatchedLayer([nn.Flatten()], nn.Linear(400, 3).double(), (4, 10, 10), True)
    assert plain.first_pool is None
    assert BatchedLayer([nn.AvgPool2d(2)], nn.Conv2d(4, 2, 3), (4, 10, 10), False).first_pool is None
    assert BatchedLayer([nn.AvgPool2d(2)], nn.Conv2d(4, 2, 3), (4, 10, 10), True, fold=False).first_pool is None
    with pytest.raises(ValueError, match="does not start with a pooling"):
        plain(spikes, pooled=True)


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("mode", ["auto", "batched", "event"])
def test_the_scan_pools_for_the_next_layer_with_the_same_spikes(kernels_built: None, net: str, mode: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # a spiking layer whose spikes only the next layer's first average pooling reads leaves them
    # pooled from its IF scan (kernels.if_scan_pool), chunk after chunk: every count and the
    # paths equal those of the scan that writes raw spikes, and so do the potentials on the
    # batched path; on the event path the pooled inputs' table adds pooled value x weight where
    # the raw table adds weight / k^2 per spike: the same currents to rounding (float64 here).
    # Small chunks (4 groups of 4 samples, 3 chunks each: 16, 16 and 8 steps; auto chooses the
    # paths on the second) also reuse the ring buffers across chunks and groups.
    from snnergy.simulation import kernels, simulator

    snn, x = _converted(net)
    steps = [1, 5, 17, 40]
    calls = []
    scan_pool = kernels.if_scan_pool
    monkeypatch.setattr(kernels, "if_scan_pool", lambda *a, **k: calls.append(a[1].shape) or scan_pool(*a, **k))
    widest = max(math.prod(i) + math.prod(o) for i, o in snn.shapes().values())
    runs = {}
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(simulator.Simulator, "_scan_pooling", lambda self, i, v, choose: None)
        sim = Simulator(snn, steps, mode=mode, max_elements=widest * 4 * 16)  # 4 samples x 16 steps a chunk
        assert sim._chunking(len(x), x.device) == (4, 16)
        runs[fused] = (sim.run(x), dict(sim.paths))
        if fused:  # the same simulator again: its ring buffers hold the last batch's spikes (and
            # its paths are chosen from the first chunk on: event currents round otherwise there)
            assert_same_spikes(sim.run(x), runs[True][0], readout_folded=mode != "batched")
            pooled_tables = {key for key, table in sim._tables.items() if len(key) == 3 and table is not None}
            if mode != "auto":  # auto: the event path where these small nets spike sparsely
                assert bool(pooled_tables) == (mode == "event")
    assert len(calls) > 0
    assert runs[True][1] == runs[False][1]
    assert_same_spikes(runs[True][0], runs[False][0], readout_folded=mode != "batched")
    assert all(c[-1].sum() > 0 for c in runs[True][0].spike_counts.values())  # every layer spikes


def test_a_scan_that_cannot_pool_itself_pools_after(kernels_built: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # where the compiled scan cannot pool (its checks refuse the tensors), the raw spikes are
    # scanned then pooled: the same trace
    from snnergy.simulation import kernels

    snn, x = _converted("lenet")
    fused = Simulator(snn, [4, 9], mode="batched", max_elements=10**5).run(x)
    monkeypatch.setattr(kernels, "scan_pool_compatible", lambda *a, **k: False)
    fallback = Simulator(snn, [4, 9], mode="batched", max_elements=10**5).run(x)
    assert_same_spikes(fused, fallback, readout_folded=False)
