"""Tests for the energy-aware regularizers ``synops`` and ``macs``: they equal the counts that the
simulator and the DNN measurement report, on nets where the rate approximation is exact."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from snnergy.activity import ActivityRecorder, record_activity
from snnergy.config import ConvertConfig, DataConfig, ExperimentConfig, ModelConfig, SimulateConfig, TrainConfig
from snnergy.conversion import convert
from snnergy.counting import effective_macs, layer_geometries
from snnergy.energy import ENERGY_PROFILES
from snnergy.errors import ConfigError, SnnergyError
from snnergy.experiments import compare, simulate, train
from snnergy.records import ActivityRecord
from snnergy.regularizers import (
    MacsRegularizer,
    PenaltyOptions,
    SynOpsRegularizer,
    activity_penalty,
    bind_penalty,
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
    maxpool = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(ConfigError, match=r"module '2' \(MaxPool2d\) sits between activation '1'"):
        bind_penalty("synops", maxpool, (1, 4, 4))
    bind_penalty("macs", maxpool, (1, 4, 4))  # the DNN's MACs need no spikes: fine
    with pytest.raises(ConfigError, match="activation '1' feeds no weighted layer"):
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


def test_synops_refuses_a_residual_model_it_would_undercount() -> None:
    from snnergy.config import ModelConfig
    from snnergy.errors import ConfigError
    from snnergy.models import build_model
    from snnergy.regularizers import bind_penalty

    resnet = build_model(ModelConfig(name="resnet"), (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="'synops' estimates fan-out along a chain of modules"):
        bind_penalty("synops", resnet, (1, 8, 8))
    bind_penalty("macs", resnet, (1, 8, 8))  # counts each weighted layer's own input: fine on any graph
