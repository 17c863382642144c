"""Tests for the energy-aware regularizers ``synops`` and ``macs``: they equal the counts that the
simulator and the DNN measurement report, on nets where the rate approximation is exact."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from snnergy.activity import ActivityRecorder, record_activity
from snnergy.config import ConvertConfig, DataConfig, ExperimentConfig, ModelConfig, SimulateConfig, TrainConfig
from snnergy.conversion import convert
from snnergy.counting import effective_macs, layer_geometries
from snnergy.energy import ENERGY_PROFILES
from snnergy.errors import ConfigError, ConversionError, SnnergyError
from snnergy.experiments import compare, simulate, train
from snnergy.layers import QCFS
from snnergy.normalization import Percentile
from snnergy.records import ActivityRecord
from snnergy.regularizers import (
    MacsRegularizer,
    PenaltyOptions,
    SynOpsRegularizer,
    activity_penalty,
    bind_penalty,
    nonzero_percentile,
    trace_structure,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def hand_net(conv1_weights: tuple[float, float] = (2.0, 2.0)) -> nn.Sequential:
    """A net whose activations are 0 or one value per layer (per channel), on 0/1 inputs.

    conv1 (1x1, 2 channels, weights w) copies the input scaled by w; conv2 (3x3, pad 1) keeps only
    its centre tap, channel to channel (so its map equals conv1's, but each input reaches a 3x3
    window); a 2x2 stride-1 average pooling feeds fc1, whose weights are 0 and biases (1, 0, -1):
    relu3 = (1, 0, 0) whatever the input. fc2 is the readout.
    """
    net = nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(1, 2, 1)),
                ("relu1", nn.ReLU()),
                ("conv2", nn.Conv2d(2, 2, 3, padding=1)),
                ("relu2", nn.ReLU()),
                ("pool", nn.AvgPool2d(2, stride=1)),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(18, 3)),
                ("relu3", nn.ReLU()),
                ("fc2", nn.Linear(3, 2)),
            ]
        )
    )
    with torch.no_grad():
        net.conv1.weight.copy_(torch.tensor(conv1_weights).view(2, 1, 1, 1))
        net.conv1.bias.zero_()
        net.conv2.weight.zero_()
        net.conv2.weight[0, 0, 1, 1] = 1.0
        net.conv2.weight[1, 1, 1, 1] = 1.0
        net.conv2.bias.zero_()
        net.fc1.weight.zero_()
        net.fc1.bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    return net.eval()


def hand_inputs() -> torch.Tensor:
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 0, 1] = x[0, 0, 1, 1] = 1.0  # corner, edge, centre
    x[1, 0, 3, 3] = 1.0  # one corner
    return x


# SynOps of ONE timestep, by hand. Every non-zero activation equals its layer's (channel's) scale
# lambda = max (percentile 100), so each rate a/lambda is 0 or 1, and the IF neurons (threshold 1,
# starting at 0) fire exactly those neurons at t = 1: the rate approximation is exact.
#   relu1 -> conv2 (3x3, pad 1, 2 outputs): fan-out = window count x 2 = corner 8, edge 12, centre 18
#   relu2 -> pool 2x2 stride 1 -> fc1 (3 outputs): fan-out = pooled positions x 3 = 3, 6, 12
#   relu3 -> fc2 (2 outputs): fan-out 2, and only relu3[0] fires
# sample 0 (corner, edge, centre; both channels): 2 x (8+12+18) + 2 x (3+6+12) + 2 = 76 + 42 + 2 = 120
# sample 1 (one corner): 2 x 8 + 2 x 3 + 2 = 24;  per sample: (120 + 24) / 2 = 72
HAND_SYNOPS = 72.0
# first layer (1x1 conv, 2 outputs) on the analog input: 2 MACs per non-zero pixel: (6 + 2) / 2 = 4
HAND_INPUT_MACS = 4.0
# neurons updated every step: relu1 2x4x4 + relu2 2x4x4 + relu3 3 + readout 2 = 69
HAND_NEURONS = 69


def bound_synops(net: nn.Module, channelwise: bool = False, **options) -> object:
    opts = PenaltyOptions(percentile=100.0, channelwise=channelwise, **options)
    return bind_penalty("synops", net, (1, 4, 4), opts)


def record_of(net: nn.Module, x: torch.Tensor, inputs: bool = False) -> ActivityRecord:
    with ActivityRecorder(net, layer_inputs=inputs) as recorder:
        net(x)
        return recorder.record()


@pytest.mark.parametrize("weights,channelwise", [((2.0, 2.0), False), ((2.0, 4.0), True)])
def test_synops_penalty_equals_the_simulators_synops_of_one_step(weights, channelwise) -> None:
    # channel-wise: conv1 scales the channels by 2 and 4, so only per-channel scales give rates in
    # {0, 1}; the converter then uses per-channel scales too
    net, x = hand_net(weights), hand_inputs()
    penalty = bound_synops(net, channelwise)(record_of(net, x))
    snn = convert(net, x, ConvertConfig(percentile=100.0, channelwise=channelwise))
    counted = simulate(snn, (x, torch.zeros(2, dtype=torch.long)), timesteps=[1, 4])
    assert counted.synops[0] == pytest.approx(HAND_SYNOPS)
    assert penalty.item() == pytest.approx(HAND_SYNOPS, rel=1e-6)
    # rates 0 or 1 are exact at every step: T = 4 steps cost 4 x 72
    four = bound_synops(net, channelwise, timesteps=4)(record_of(net, x))
    assert counted.synops[1] == pytest.approx(4 * HAND_SYNOPS)
    assert four.item() == pytest.approx(counted.synops[1], rel=1e-6)


@pytest.mark.parametrize("profile", ["loihi", "cmos45-fp32"])
def test_synops_energy_equals_the_snn_records_energy(profile: str) -> None:
    net, x = hand_net(), hand_inputs()
    snn = convert(net, x, ConvertConfig(percentile=100.0))
    counted = simulate(snn, (x, torch.zeros(2, dtype=torch.long)), timesteps=[1, 4], profiles=[profile])
    p = ENERGY_PROFILES.get(profile)
    for k, steps in enumerate((1, 4)):
        bound = bound_synops(net, profile=profile, timesteps=steps)
        assert bound.needs_layer_inputs
        joules = bound(record_of(net, x, inputs=True)).item()
        # T x SynOps x E_ac + input MACs x E_mac + T x neurons x E_neuron, in pJ
        by_hand = 1e-12 * (steps * HAND_SYNOPS * p.e_ac_pj + HAND_INPUT_MACS * p.e_mac_pj
                           + steps * HAND_NEURONS * p.e_neuron_pj)
        assert joules == pytest.approx(by_hand, rel=1e-6)
        assert joules == pytest.approx(counted.energy_j[profile][k], rel=1e-6)


def test_budget_is_zero_below_and_grows_above() -> None:
    net, x = hand_net(), hand_inputs()
    a = {k: v.detach() for k, v in record_of(net, x).activations.items()}
    # per-sample SynOps per step are 120 and 24 (see HAND_SYNOPS)
    cases = {200.0: 0.0, 120.0: 0.0, 100.0: (20 + 0) / 2, 24.0: (96 + 0) / 2, 0.0: (120 + 24) / 2}
    for budget, expected in cases.items():
        maps = {k: v.detach().clone().requires_grad_(True) for k, v in a.items()}
        value = bound_synops(net, budget=budget)(ActivityRecord(maps))
        assert value.item() == pytest.approx(expected)
        value.backward()
        grad = sum(float(m.grad.abs().sum()) for m in maps.values())
        assert (grad == 0) == (expected == 0)  # no push at all below the budget
    # above the budget the penalty grows with the activity
    more = {k: torch.full_like(v, float(v.max())) for k, v in a.items()}  # every neuron fires
    bound = bound_synops(net, budget=10.0)
    bound(ActivityRecord(dict(a)))  # scales fixed from the original maps (momentum 0.1 from here)
    assert bound.values(ActivityRecord(more)).sum() > bound.values(ActivityRecord(dict(a))).sum()


def test_macs_budget_is_zero_below_and_grows_above() -> None:
    net, x = hand_net(), hand_inputs()
    rec = record_of(net, x, inputs=True)
    exact = sum(effective_macs(g, rec.layer_inputs[g.name]) for g in layer_geometries(net, (1, 4, 4)))
    high = bind_penalty("macs", net, (1, 4, 4), PenaltyOptions(budget=float(exact.max()) + 1))
    assert high(rec).item() == 0.0
    low = [bind_penalty("macs", net, (1, 4, 4), PenaltyOptions(budget=b))(rec).item() for b in (50.0, 10.0, 0.0)]
    assert 0 < low[0] < low[1] < low[2]


def test_macs_penalty_tends_to_effective_macs_as_eps_goes_to_zero() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(3, 4, 3, stride=2),
        nn.ReLU(), nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2),
    ).double()
    x = torch.relu(torch.randn(6, 1, 8, 8, dtype=torch.float64))  # ~half the pixels are 0
    _, rec = record_activity(model, x)
    exact = sum(effective_macs(g, rec.layer_inputs[g.name]) for g in layer_geometries(model, (1, 8, 8))).mean()
    values = [MacsRegularizer(eps=eps).bind(model, (1, 8, 8))(rec).item() for eps in (1.0, 0.1, 1e-3, 1e-9)]
    assert values == sorted(values)  # s(r) = r / (r + eps) grows as eps shrinks
    assert values[-1] == pytest.approx(float(exact), rel=1e-6)
    assert values[0] < float(exact)


def test_macs_counts_the_data_exactly_and_silence_as_the_first_layers_macs() -> None:
    net, x = hand_net(), hand_inputs()
    rec = record_of(net, x, inputs=True)
    silent = ActivityRecord({}, {k: (v if k == "conv1" else torch.zeros_like(v)) for k, v in rec.layer_inputs.items()})
    # only the data is non-zero: 4 first-layer MACs per sample (HAND_INPUT_MACS), no gradient
    assert bind_penalty("macs", net, (1, 4, 4))(silent).item() == pytest.approx(HAND_INPUT_MACS)
    joules = bind_penalty("macs", net, (1, 4, 4), PenaltyOptions(profile="cmos45-fp32"))(silent).item()
    assert joules == pytest.approx(HAND_INPUT_MACS * 4.6e-12)


@pytest.mark.parametrize("name", ["synops", "macs"])
def test_rescaling_activations_does_not_change_the_value(name: str) -> None:
    # both divide by a running percentile, initialized from the first batch: a layer cannot fake
    # a lower count by shrinking its activations (and growing the next layer's weights)
    net, x = hand_net(), hand_inputs()
    rec = record_of(net, x, inputs=True)
    first = next(iter(rec.layer_inputs))
    scaled = ActivityRecord(
        {k: 0.01 * v for k, v in rec.activations.items()},
        {k: (v if k == first else 0.01 * v) for k, v in rec.layer_inputs.items()},
    )
    options = PenaltyOptions(percentile=100.0)
    a = bind_penalty(name, net, (1, 4, 4), options)(rec).item()
    b = bind_penalty(name, net, (1, 4, 4), options)(scaled).item()
    assert b == pytest.approx(a, rel=1e-5)


def test_running_scale_follows_the_percentile_with_momentum() -> None:
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4))
    bound = SynOpsRegularizer(momentum=0.5).bind(net, (2,), PenaltyOptions(percentile=100.0))
    bound(ActivityRecord({"1": torch.tensor([[0.0, 1.0, 2.0]])}))  # first batch: lambda = max = 2
    assert bound.scales["1"].item() == pytest.approx(2.0)
    bound(ActivityRecord({"1": torch.tensor([[4.0, 0.0, 0.0]])}))  # 0.5 x 2 + 0.5 x 4 = 3
    assert bound.scales["1"].item() == pytest.approx(3.0)
    bound(ActivityRecord({"1": torch.zeros(1, 3)}))  # a silent batch keeps the estimate
    assert bound.scales["1"].item() == pytest.approx(3.0)


def test_trace_structure_reads_pools_and_refuses_what_it_cannot_count() -> None:
    s = trace_structure(hand_net(), (1, 4, 4))
    assert [(x.name, x.next_layer.name, len(x.pools)) for x in s.spiking] == [
        ("relu1", "conv2", 0), ("relu2", "fc1", 1), ("relu3", "fc2", 0)]
    assert s.readout_neurons == 2
    # overlapping max pooling (no spike-count gate; MaxPool2d with kernel = stride converts, issue 15)
    maxpool = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2, stride=1), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(ConversionError, match=r"module '2' \(MaxPool2d\) is not supported: use AvgPool2d"):
        bind_penalty("synops", maxpool, (1, 4, 4))
    bind_penalty("macs", maxpool, (1, 4, 4))  # the DNN's MACs need no spikes: fine
    with pytest.raises(ConversionError, match=r"must end with a Linear.*module '1' \(ReLU\)"):
        bind_penalty("synops", nn.Sequential(nn.Linear(2, 2), nn.ReLU()), (2,))


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("l1", PenaltyOptions(budget=1.0), r"train.budget only apply to the energy-aware regularizers \(synops, macs"),
        ("hoyer", PenaltyOptions(profile="loihi", timesteps=4), "train.penalty_profile, train.penalty_timesteps"),
        ("synops", PenaltyOptions(layer_weights=(1.0,)), "layer_weights applies to the per-layer"),
        ("synops", PenaltyOptions(profile="tpu"), "unknown energy profile 'tpu'"),
        ("macs", PenaltyOptions(timesteps=8), "penalty_timesteps applies to synops"),
    ],
)
def test_options_that_do_not_apply_are_config_errors(name, options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        bind_penalty(name, hand_net(), (1, 4, 4), options)


def test_bad_options_and_per_layer_use_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="train.budget must be a finite number >= 0"):
        PenaltyOptions(budget=-1.0)
    with pytest.raises(ConfigError, match="train.penalty_timesteps must be an integer >= 1"):
        PenaltyOptions(timesteps=0)
    rec = ActivityRecord({"relu": torch.ones(1, 3)})
    with pytest.raises(ConfigError, match="regularizer 'synops' depends on the model's structure"):
        activity_penalty(rec, "synops")
    with pytest.raises(SnnergyError, match="no activation map for layer 'relu1'"):
        bind_penalty("synops", hand_net(), (1, 4, 4))(rec)
    with pytest.raises(SnnergyError, match="layer_inputs=True"):
        bind_penalty("macs", hand_net(), (1, 4, 4))(rec)


def blobs(regularizer: str, strength: float, **train_kw) -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(dataset="synthetic-blobs", batch_size=32),
        model=ModelConfig(name="tiny-mlp"),
        train=TrainConfig(epochs=2, lr=1e-2, regularizer=regularizer, strength=strength, **train_kw),
        simulate=SimulateConfig(timesteps=(1, 4)),
        device="cpu",
    )


@pytest.mark.parametrize("name,strength,kw", [("synops", 1e-3, {}), ("macs", 1e-3, {"penalty_profile": "cmos45-fp32", "budget": 1e-9})])
def test_training_with_an_energy_aware_penalty(name: str, strength: float, kw: dict) -> None:
    trained = train(blobs(name, strength, **kw))
    assert all(math.isfinite(h.penalty) and h.penalty >= 0 for h in trained.history)
    assert trained.history[0].penalty > 0


def test_compare_runs_synops_next_to_none() -> None:
    records = compare(blobs("none", 0.0), grid=[("none", 0.0), ("synops", 3e-3)])
    assert [r["config"]["regularizer"] for r in records] == ["none", "synops"]
    assert all("error" not in r for r in records)
    # the synops penalty lowers the converted net's SynOps at the largest T
    assert records[1]["snn"]["synops"][-1] < records[0]["snn"]["synops"][-1]


class Residual(nn.Module):
    """relu1 = 2x on 0/1 inputs; fc2 is zero, so relu2 = relu(fc2(h) + h) = h (an identity shortcut)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.relu1, self.fc2, self.relu2, self.out = (
            nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3))
        with torch.no_grad():
            self.fc1.weight.copy_(2 * torch.eye(2))
            self.fc1.bias.zero_()
            self.fc2.weight.zero_()
            self.fc2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.fc1(x))
        return self.out(self.relu2(self.fc2(h) + h))


def test_synops_counts_residual_shortcuts_as_the_simulator_does() -> None:
    # each relu1 spike fans out into fc2 (2 outputs) and the identity shortcut (1 accumulate): 3;
    # each relu2 spike into out: 3. With scales 2 (percentile 100) every active neuron spikes at
    # t = 1, and relu2 copies relu1: inputs [1, 0] and [1, 1] give 1 and 2 active neurons per
    # layer, so (1 + 2) / 2 x (3 + 3) = 9 SynOps per sample.
    net, x = Residual(), torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    structure = trace_structure(net, (2,))
    assert [[b.name for b in s.readers] for s in structure.spiking] == [["fc2", "identity:relu1"], ["out"]]
    penalty = bind_penalty("synops", net, (2,), PenaltyOptions(percentile=100.0))(record_of(net, x))
    snn = convert(net, x, ConvertConfig(percentile=100.0))
    counted = simulate(snn, (x, torch.zeros(2, dtype=torch.long)), timesteps=[1])
    assert counted.synops[0] == pytest.approx(9.0)
    assert penalty.item() == pytest.approx(9.0, rel=1e-6)


def test_synops_binds_on_the_residual_model_registry_entry() -> None:
    from snnergy.config import ModelConfig
    from snnergy.models import build_model
    from snnergy.regularizers import bind_penalty

    resnet = build_model(ModelConfig(name="resnet"), (1, 8, 8), 10)
    structure = trace_structure(resnet, (1, 8, 8))
    # the stem's neurons feed stage1's first conv and its identity shortcut
    assert [b.name for b in structure.spiking[0].readers] == ["stage1.0.conv1", "identity:stem_relu"]
    bind_penalty("synops", resnet, (1, 8, 8))
    bind_penalty("macs", resnet, (1, 8, 8))  # counts each weighted layer's own input: fine on any graph


# ----------------------------------------------------------------------------- the fast path


def _quantile_of_nonzeros(a: torch.Tensor, q: float) -> torch.Tensor:
    """The reference: torch.quantile of the non-zero magnitudes, in float64."""
    values = a.abs()[a != 0].double()
    return torch.quantile(values, q) if values.numel() else torch.tensor(math.nan, dtype=torch.float64)


@pytest.mark.parametrize("shape", [(3, 7), (2, 3, 5, 5), (64, 6, 28, 28), (5, 7, 31, 31)])
@pytest.mark.parametrize("percentile", [100.0, 99.9, 50.0, 0.01])
def test_nonzero_percentile_is_torch_quantile_of_the_nonzero_values(shape, percentile) -> None:
    # selected, not sorted: (64, 6, 28, 28) and (5, 7, 31, 31) go through the blocks (2**15 values
    # or more; the latter with a tail of 33635 mod 64 = 35 values); rounding makes ties
    a = torch.relu(torch.randn(*shape)).mul(4).round()
    got = nonzero_percentile(a, percentile)
    assert torch.equal(got, _quantile_of_nonzeros(a, percentile / 100))
    rows = a.abs().transpose(0, 1).reshape(a.shape[1], -1).double()  # per channel: nanquantile
    expected = torch.nanquantile(rows.masked_fill(rows == 0, math.nan), percentile / 100, dim=1)
    torch.testing.assert_close(nonzero_percentile(a, percentile, channelwise=True), expected, rtol=0, atol=0,
                               equal_nan=True)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.5]) | st.floats(0.0, 1e3), min_size=1, max_size=40),
       percentile=st.floats(0.01, 100.0))
def test_nonzero_percentile_matches_quantile_on_any_values(values, percentile) -> None:
    a = torch.tensor([values])
    assert torch.equal(nonzero_percentile(a, percentile).isnan(), _quantile_of_nonzeros(a, percentile / 100).isnan())
    if not math.isnan(nonzero_percentile(a, percentile).item()):
        assert torch.equal(nonzero_percentile(a, percentile), _quantile_of_nonzeros(a, percentile / 100))


def test_a_nan_makes_the_percentile_nan() -> None:
    a = torch.ones(1, 40000)
    a[0, 7] = math.nan
    assert math.isnan(nonzero_percentile(a, 99.9).item())


CASES = [
    ("synops", PenaltyOptions(), True),
    ("synops", PenaltyOptions(budget=300.0, timesteps=4), True),
    ("synops", PenaltyOptions(profile="loihi", percentile=100.0), True),
    ("synops", PenaltyOptions(percentile=50.0), False),
    ("synops", PenaltyOptions(budget=300.0, timesteps=4), False),
    ("macs", PenaltyOptions(), True),
    ("macs", PenaltyOptions(profile="cmos45-fp32", budget=1e-9), True),
    ("macs", PenaltyOptions(percentile=99.0), False),
]


def energy_value_rtol(n: int, dtype: torch.dtype) -> float:
    """How far a fused synops/macs penalty may lie from the reference, relative (u: unit roundoff).

    Per sample and layer both sum the same n non-negative terms (ReLU maps): the reference rounds
    each term at most 4 times in the map's dtype and sums them in it (error at most (n + 4) u of
    the sum); the compiled path sums them in float64 (at most (n + 4) u too, u of float64 being
    smaller) and rounds once. The layer sum, the T-step scaling, the pricing and the batch mean add
    a few rounded operations on positive values (8 u, generously). A budget subtracts B first:
    |relu(v - B) - relu(v' - B)| <= |v - v'|, and mean(v) <= penalty + B, so the difference is at
    most rtol (penalty + B): ``assert_close(..., rtol=r, atol=r * B)``.
    """
    u = torch.finfo(dtype).eps / 2
    return 2 * (n + 4 + 8) * u


@pytest.mark.parametrize("name,options,scale_gradient", CASES)
def test_fast_path_equals_the_reference_over_batches(name, options, scale_gradient) -> None:
    # the bound penalty's call (one autograd node, closed-form gradient) against the reference
    # (the entry with fast=False: autograd): the same running scales, to the bit, the same values
    # to rounding (energy_value_rtol, n = 6 x 28 x 28 values per sample at most), batch after batch
    # (a silent sample in the third), and the same parameter gradients up to rounding
    from snnergy.models import lenet

    model = lenet((1, 28, 28), 10)
    regularizer = SynOpsRegularizer if name == "synops" else MacsRegularizer
    fast = regularizer(scale_gradient=scale_gradient).bind(model, (1, 28, 28), options)
    reference = regularizer(scale_gradient=scale_gradient, fast=False).bind(model, (1, 28, 28), options)
    assert fast.fast and not reference.fast
    for batch in range(3):
        x = torch.rand(64, 1, 28, 28)
        if batch == 2:
            x[0] = 0.0
        results = []
        for penalty in (fast, reference):
            model.zero_grad()
            with ActivityRecorder(model, layer_inputs=True) as recorder:
                logits = model(x)
                record = recorder.record()
            value = penalty(record)
            (logits.square().mean() + value / value.detach().abs().clamp(min=1e-30)).backward()
            results.append((value.detach(), [p.grad.clone() for p in model.parameters()]))
        rtol = energy_value_rtol(6 * 28 * 28, torch.float32)
        torch.testing.assert_close(results[0][0], results[1][0], rtol=rtol, atol=rtol * (options.budget or 0.0))
        assert fast.state_dict().keys() == reference.state_dict().keys()
        assert all(torch.equal(fast.state_dict()[k], reference.state_dict()[k]) for k in fast.state_dict())
        for ours, theirs in zip(results[0][1], results[1][1]):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_fast_synops_gradient_by_hand() -> None:
    # Linear(2, 3) -> ReLU -> Linear(3, 4): fan-out 4. One sample a = [0, 1, 2], percentile 100:
    # lambda = max = 2 (first batch), rates 0, 1/2, 1; S = 4 * (0 + 1/2 + 1) = 6.
    # dS/da_i = f / lambda = 2 where the rate is <= 1 (all three); through the scale: lambda has
    # the gradient of b = max = a_2, d lambda / d a_2 = running / b = 1, and
    # dS/d lambda = -sum(f a) / lambda^2 over uncapped rates = -(4 * 1 + 4 * 2) / 4 = -3.
    # So grad = [2, 2, 2 - 3] = [2, 2, -1]; scale invariance: sum a * grad = 0 + 2 - 2 = 0.
    # This is the former behaviour (scale_gradient=True, kept as an option): the -1 pushes the top
    # activation up, which lowers the penalty by coarsening the SNN (issue 14).
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4))
    a = torch.tensor([[0.0, 1.0, 2.0]], requires_grad=True)
    legacy = SynOpsRegularizer(scale_gradient=True).bind(net, (2,), PenaltyOptions(percentile=100.0))
    value = legacy(ActivityRecord({"1": a}))
    assert value.item() == pytest.approx(6.0)
    value.backward()
    assert a.grad is not None
    torch.testing.assert_close(a.grad, torch.tensor([[2.0, 2.0, -1.0]]))
    # The default: lambda is a constant in the backward pass, so dS/da_i = f / lambda = 2 on every
    # uncapped rate (a_2 = lambda: rate 1, not above it), and no activation is pushed up.
    b = torch.tensor([[0.0, 1.0, 2.0]], requires_grad=True)
    value = bind_penalty("synops", net, (2,), PenaltyOptions(percentile=100.0))(ActivityRecord({"1": b}))
    assert value.item() == pytest.approx(6.0)
    value.backward()
    assert b.grad is not None
    torch.testing.assert_close(b.grad, torch.tensor([[2.0, 2.0, 2.0]]))


def test_channelwise_scales_take_the_reference_path() -> None:
    # per-channel scales are not in the fast path: the call is the reference's, value for value
    net, x = hand_net((2.0, 4.0)), hand_inputs()
    fast = bound_synops(net, channelwise=True)
    options = PenaltyOptions(percentile=100.0, channelwise=True)
    reference = bind_penalty("synops", net, (1, 4, 4), options, fast=False)
    assert not fast.fast and not reference.fast
    value = fast(record_of(net, x)).item()
    assert value == reference(record_of(net, x)).item() == pytest.approx(HAND_SYNOPS)


# ----------------------------------------------------------------------------- the scale cannot be gamed (issue 14)


def _penalty_after(calibration: torch.Tensor, percentile: float, fast: bool, scale_gradient: bool = False):
    """A synops penalty on Linear(2, n) -> ReLU -> Linear(n, 3) (fan-out 3) that has seen one batch."""
    net = nn.Sequential(nn.Linear(2, calibration.shape[1]), nn.ReLU(), nn.Linear(calibration.shape[1], 3))
    entry = SynOpsRegularizer(scale_gradient=scale_gradient, fast=fast)
    bound = entry.bind(net, (2,), PenaltyOptions(percentile=percentile))
    bound(ActivityRecord({"1": calibration}))
    return bound


_values = st.one_of(st.just(0.0), st.floats(0.0625, 10.0, width=32))


@settings(max_examples=40, deadline=None)
@given(calibration=st.lists(_values, min_size=16, max_size=16), batch=st.lists(_values, min_size=16, max_size=16),
       raise_by=st.lists(st.floats(0.0, 100.0, width=32), min_size=16, max_size=16),
       percentile=st.sampled_from([100.0, 99.9, 90.0, 50.0]), fast=st.booleans())
def test_raising_top_activations_cannot_lower_the_penalty(calibration, batch, raise_by, percentile, fast) -> None:
    # The converter's lambda (its own accumulator) on a calibration batch; the penalty's scale
    # after that batch is the same number (the batch percentile, the converter's definition).
    calib = torch.tensor(calibration).view(2, 8)
    accumulator = Percentile(percentile).accumulator()
    accumulator.add(calib)
    lam = accumulator.scale()
    assume(not math.isnan(lam.item()))
    bound = _penalty_after(calib, percentile, fast)
    assert bound.scales["1"].item() == pytest.approx(lam.item(), rel=1e-12)
    # Raise the activations above lambda: their normalized spike counts min(a / lambda, 1) stay 1,
    # so the converted SNN fires the same; the penalty must not drop.
    x = torch.tensor(batch).view(2, 8)
    raised = torch.where(x > lam.float(), x + torch.tensor(raise_by).view(2, 8), x)
    assert torch.equal((x.double() / lam).clamp(max=1), (raised.double() / lam).clamp(max=1))
    twin = _penalty_after(calib, percentile, fast)
    a = x.clone().requires_grad_(True)
    before, after = bound(ActivityRecord({"1": a})), twin(ActivityRecord({"1": raised}))
    assert after.item() >= before.item()
    # and no gradient rewards raising any activation: d penalty / d a >= 0, 0 above lambda
    before.backward()
    assert a.grad is not None and bool((a.grad >= 0).all())
    assert bool((a.grad[x > lam.float()] == 0).all())


def test_the_former_scale_gradient_could_lower_the_penalty_by_raising_the_top() -> None:
    # calibration [1, 2, 4], percentile 100: lambda = 4. The batch [1, 2, 4] -> [1, 2, 8] keeps the
    # normalized counts (1/4, 1/2, 1). Fan-out 3: 3 x 1.75 = 5.25 both, with the scale constant.
    # The former behaviour took this batch into the scale first: 0.9 x 4 + 0.1 x 8 = 4.4, and
    # rates 1/4.4, 2/4.4 and 1 (capped): 3 x (3 / 4.4 + 1) = 5.045 < 5.25: raising the top lowered
    # the penalty while the converted SNN (lambda 4) fires exactly as before.
    calib, x, raised = (torch.tensor([[1.0, 2.0, v]]) for v in (4.0, 4.0, 8.0))
    for fast in (True, False):
        now = [_penalty_after(calib, 100.0, fast)(ActivityRecord({"1": m})).item() for m in (x, raised)]
        assert now == pytest.approx([5.25, 5.25])
        former = [_penalty_after(calib, 100.0, fast, scale_gradient=True)(ActivityRecord({"1": m})).item()
                  for m in (x, raised)]
        assert former == pytest.approx([5.25, 3 * (3 / 4.4 + 1)])


def _qcfs_net(threshold: float | list[float]) -> nn.Sequential:
    """x = (1, 0) gives pre-activations z = (0.3, 1.1, 5.0); x = (0, 1) gives (-1, 0.6, 0.7)."""
    channels = None if isinstance(threshold, float) else len(threshold)
    qcfs = QCFS(levels=4, threshold=threshold if isinstance(threshold, float) else 1.0, channels=channels)
    if channels is not None:
        with torch.no_grad():
            qcfs.threshold.copy_(torch.tensor(threshold))
    net = nn.Sequential(OrderedDict([("fc1", nn.Linear(2, 3)), ("q1", qcfs), ("fc2", nn.Linear(3, 4))]))
    with torch.no_grad():
        net.fc1.weight.copy_(torch.tensor([[0.3, -1.0], [1.1, 0.6], [5.0, 0.7]]))
        net.fc1.bias.zero_()
    return net


QCFS_INPUTS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


@pytest.mark.parametrize("threshold", [2.0, [1.0, 2.0, 4.0]])
def test_qcfs_penalty_is_the_snns_synops_at_t_equals_l(threshold) -> None:
    # QCFS (L = 4) outputs h = theta * k / L with k = clip(floor(z L / theta + 1/2), 0, L). Bu et al.
    # (ICLR 2022, Theorem 2): the converted IF neuron (threshold theta, reset by subtraction,
    # v0 = theta / 2) driven by z for T = L steps fires exactly k spikes: its rate per step is
    # k / L = h / theta. Each spike reaches fc2's 4 outputs (fan-out 4).
    # theta = 2:  z = (0.3, 1.1, 5.0): z L / theta + 1/2 = 1.1, 2.7, 10.5 -> k = 1, 2, 4 (clipped)
    #             z = (-1, 0.6, 0.7):                    -1.5, 1.7, 1.9  -> k = 0, 1, 1
    # theta = (1, 2, 4) per channel: 1.7, 2.7, 5.5 -> k = 1, 2, 4;  -3.5, 1.7, 1.2 -> k = 0, 1, 1
    # Either way: SynOps over T = L = 4 steps = 4 x (k summed): 4 x 7 = 28 and 4 x 2 = 8, mean 18;
    # per step: 18 / 4 = 4.5.
    net = _qcfs_net(threshold)
    record = record_of(net, QCFS_INPUTS)
    per_step = bind_penalty("synops", net, (2,))(record)
    at_l = bind_penalty("synops", net, (2,), PenaltyOptions(timesteps=4))(record)
    assert per_step.item() == pytest.approx(4.5)
    assert at_l.item() == pytest.approx(18.0)


def test_qcfs_penalty_differentiates_through_the_live_threshold() -> None:
    # P = 4 x mean_b sum_i k_i / L; with the straight-through floor, d(k / L)/d theta = -z / theta^2
    # where the clip is inactive (z = 5.0: k / L = 2.5 > 1, clipped; z = -1: -0.5 < 0, clipped):
    # theta = 2: dP/d theta = 4 x (-(0.3 + 1.1) / 4 - (0.6 + 0.7) / 4) / 2 = -1.35. Raising theta
    # lowers the rates, as the converted SNN (threshold theta) fires less.
    net = _qcfs_net(2.0)
    bound = bind_penalty("synops", net, (2,))
    bound(record_of(net, QCFS_INPUTS)).backward()
    assert net.q1.threshold.grad is not None
    torch.testing.assert_close(net.q1.threshold.grad, torch.tensor([-1.35]))
    # the bound penalty reads the parameter live: theta = 4 without binding again.
    # z L / theta + 1/2 = 0.8, 1.6, 5.5 -> k = 0, 1, 4;  -0.5, 1.1, 1.2 -> k = 0, 1, 1: (5 + 2) x 4 / 4 / 2
    with torch.no_grad():
        net.q1.threshold.fill_(4.0)
    assert bound(record_of(net, QCFS_INPUTS)).item() == pytest.approx(3.5)
    assert bound.state_dict() == {}  # no running scale: the threshold is the scale


def test_trained_thresholds_take_the_fast_path_and_mix_with_percentile_layers() -> None:
    # q1 (QCFS, theta = 2) feeds fc2 (4 outputs) -> relu2 (percentile 100) -> fc3 (2 outputs).
    # fc2 has zero weights and biases (1, 0, 0, 2): relu2 = (1, 0, 0, 2), lambda = 2, rates 1/2 and 1,
    # fan-out 2: 3 per sample; q1 gives 4.5 x 4 / 4 = 4.5 per step at fan-out 4 (as above). Total 7.5.
    net = _qcfs_net(2.0)
    net.add_module("relu2", nn.ReLU())
    net.add_module("fc3", nn.Linear(4, 2))
    with torch.no_grad():
        net.fc2.weight.zero_()
        net.fc2.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 2.0]))
    options = PenaltyOptions(percentile=100.0)
    fast, reference = (bind_penalty("synops", net, (2,), options, fast=f) for f in (True, False))
    assert fast.fast and not reference.fast
    assert fast.thresholds.keys() == {"q1"}
    grads = []
    for bound in (fast, reference):
        net.zero_grad()
        value = bound(record_of(net, QCFS_INPUTS))
        value.backward()
        assert value.item() == pytest.approx(7.5)
        grads.append([p.grad.clone() if p.grad is not None else None for p in net.parameters()])
    assert grads[0][0] is not None and net.q1.threshold.grad is not None  # fc1 and theta get gradients
    for got, want in zip(*grads):  # the same derivative, theta's included, rounded alike or nearly
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want)
    assert list(fast.state_dict()) == list(reference.state_dict()) == ["relu2"]


def test_per_channel_thresholds_on_the_fast_path_by_hand() -> None:
    # QCFS with one theta per channel on a (B=1, C=2, 2) map, L = 2: theta = (1, 2).
    # pre-activations channel 0: 0.3, 0.8 -> k = floor(0.3 * 2 / 1 + 0.5) = 1, floor(2.1) = 2 -> h = 0.5, 1.0
    # channel 1: 1.0, -1.0 -> k = floor(1 + 0.5) = 1, 0 -> h = 1.0, 0.0
    # rates h / theta: 0.5, 1.0 | 0.5, 0.0; fan-outs f = (1, 2 | 3, 4): 0.5 + 2 + 1.5 + 0 = 4.0
    from snnergy.regularizers.fused_energy import threshold_synops
    from snnergy.regularizers.estimates import expected_synops

    q = QCFS(levels=2, threshold=1.0, channels=2)
    with torch.no_grad():
        q.threshold.copy_(torch.tensor([1.0, 2.0]))
    h = q(torch.tensor([[[0.3, 0.8], [1.0, -1.0]]]))
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    fast = threshold_synops([h], [f], [q.threshold])
    torch.testing.assert_close(fast, torch.tensor([4.0]))
    (d_fast,) = torch.autograd.grad(fast.sum(), q.threshold)
    (d_ref,) = torch.autograd.grad(expected_synops([q(torch.tensor([[[0.3, 0.8], [1.0, -1.0]]]))], [f],
                                                   [q.threshold]).sum(), q.threshold)
    torch.testing.assert_close(d_fast, d_ref)


def test_a_trained_threshold_layer_without_its_threshold_is_a_config_error() -> None:
    from snnergy.regularizers import SynOpsPenalty

    structure = trace_structure(_qcfs_net(2.0), (2,))
    assert [(s.name, s.kind, s.trained_threshold) for s in structure.spiking] == [("q1", "qcfs", True)]
    with pytest.raises(ConfigError, match="no threshold for the trained-threshold layer"):
        SynOpsPenalty(structure, PenaltyOptions(), momentum=0.1)
