"""snnergy's counts equal NeuroBench's and sinabs's on like-for-like definitions (issue 8).

Skipped unless SpikingJelly, sinabs and NeuroBench are importable (``benchmarks/peers/setup.sh``).
Definitions compared (docs/benchmarks.md has the full list of differences):

* NeuroBench ``Dense`` = snnergy ``macs_dense`` (zero padding and bias excluded, weights all
  counted); NeuroBench ``Effective_MACs + Effective_ACs`` = snnergy ``macs_effective`` on unpruned
  weights (NeuroBench files a layer's operations under ACs when its whole input batch lies in
  {-1, 0, 1}). Counted in float64: NeuroBench sums in the model's dtype.
* sinabs synops hooks (``synops_per_timestep`` x T, pooling corrected) = snnergy SynOps of the
  spiking layers; the analog input layer differs by definition (see the hand example).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

REASON = "the peer benchmark's packages are not installed (bash benchmarks/peers/setup.sh)"
pytest.importorskip("neurobench", reason=REASON)
pytest.importorskip("sinabs", reason=REASON)
pytest.importorskip("spikingjelly", reason=REASON)

from snnergy.config import ConvertConfig, ModelConfig  # noqa: E402
from snnergy.conversion import convert  # noqa: E402
from snnergy.experiments import measure, simulate  # noqa: E402
from snnergy.models import build_model  # noqa: E402
from snnergy.simulation import SpikingNetwork, SpikingStage, simulate_batch  # noqa: E402


def _small_lenet(dtype: torch.dtype = torch.float64) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """An untrained, seeded LeNet for 1x8x8 inputs, and 12 non-negative inputs with some zeros."""
    torch.manual_seed(3)
    model = build_model(ModelConfig(name="lenet"), (1, 8, 8), 10).to(dtype).eval()
    x = torch.rand(12, 1, 8, 8, dtype=dtype)
    x[x < 0.3] = 0.0
    return model, x, torch.randint(0, 10, (12,))


def test_neurobench_hand_example(adapters) -> None:
    # conv 3x3 pad 1 on a 3x3 input: fan-out 4 at corners, 6 at edges, 9 at the centre;
    # dense = 4*4 + 4*6 + 9 = 49 (NeuroBench excludes padding; ptflops' nominal count is 81).
    # Input non-zero at (0,0) and (2,2): effective conv = 4 + 4 = 8. With all-ones weights and
    # bias -0.5 the conv output is > 0 exactly where its window holds a non-zero input: all
    # positions but (0,2) and (2,0), 7 of 9; the Linear(9 -> 2) then does 7*2 = 14 effective and
    # 9*2 = 18 dense MACs. Totals: dense 49 + 18 = 67, effective 8 + 14 = 22.
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(9, 2)).double()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(-0.5)
    x = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]]], dtype=torch.float64)
    y = torch.tensor([0])
    ours = measure(model, (x, y))
    theirs = adapters.neurobench_synops(model, x, y, batch_size=1)
    assert (ours.macs_dense, ours.macs_effective) == (67.0, 22.0)
    assert (theirs.dense, theirs.effective_macs, theirs.effective_acs) == (67.0, 22.0, 0.0)
    assert theirs.layers == {"0": (49.0, 8.0), "3": (18.0, 14.0)}


def test_neurobench_equals_snnergy_on_lenet(adapters) -> None:
    model, x, y = _small_lenet()
    ours = measure(model, (x, y))
    theirs = adapters.neurobench_synops(copy.deepcopy(model), x, y, batch_size=4)
    assert theirs.effective_acs == 0.0  # inputs are not all in {-1, 0, 1}: NeuroBench says MACs
    assert ours.macs_dense == theirs.dense
    per_layer = {name: (c.macs_dense, c.macs_effective) for name, c in ours.layers.items()}
    assert per_layer == theirs.layers
    assert ours.macs_effective == theirs.effective_macs


def _pool_snn() -> SpikingNetwork:
    """Input (1, 2, 2) -> 1x1 conv (weight 1) -> IF (1, 2, 2) -> AvgPool2d(2) -> Linear(1, 3) readout."""
    conv, fc = nn.Conv2d(1, 1, 1), nn.Linear(1, 3)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
        fc.weight.fill_(1.0)
        fc.bias.zero_()
    stages = [SpikingStage("conv1", "relu1", nn.Sequential(), conv, True),
              SpikingStage("fc", None, nn.Sequential(nn.AvgPool2d(2), nn.Flatten()), fc, False)]
    return SpikingNetwork(stages, (1, 2, 2))


def test_sinabs_hand_example_with_pooling(adapters) -> None:
    # Currents 1, 0.5, 0.25, 0 for T = 4: 4, 2, 1 and 0 spikes (v reaches 1.0 exactly: 0.5 + 0.5,
    # 4 * 0.25). Each spike reaches the 3 outputs of the Linear through its pooled position:
    # SynOps = 7 * 3 = 21. sinabs sees the pooled value (spikes / 4) with fan-out 3 and multiplies
    # by the pooling area 4: 21 as well. Its input layer counts the analog values times fan-out 1
    # at every step, 4 * (1 + 0.5 + 0.25) = 7; snnergy's input_macs counts the 3 non-zero inputs
    # once: 3.
    snn = _pool_snn()
    x = torch.tensor([[[[1.0, 0.5], [0.25, 0.0]]]])
    layers, spikes = adapters.sinabs_synops(snn, x, 4)
    assert spikes["relu1"].sum((0, 1)).flatten().tolist() == [4.0, 2.0, 1.0, 0.0]
    assert [(c.layer, c.source, c.sinabs, c.snnergy) for c in layers] == [
        ("conv1", None, 7.0, None), ("fc", "relu1", 21.0, 21.0)]
    record = simulate(snn, (x, torch.tensor([0])), timesteps=[4])
    assert record.synops_per_layer["relu1"] == [21.0]
    assert record.input_macs == [3.0]


@pytest.fixture(scope="module")
def converted() -> tuple[SpikingNetwork, torch.Tensor, torch.Tensor]:
    model, x, y = _small_lenet(torch.float32)
    return convert(model, torch.rand(64, 1, 8, 8), ConvertConfig()), x, y


def test_sinabs_synops_equal_snnergy_on_converted_lenet(adapters, converted) -> None:
    snn, x, y = converted
    steps = 16
    layers, _ = adapters.sinabs_synops(snn, x, steps)
    own = simulate(snn, (x, y), timesteps=[steps]).synops_per_layer
    hidden = [c for c in layers if c.source is not None]
    assert [c.layer for c in hidden] == ["conv2", "fc1", "fc2", "fc3"]
    assert sum(c.sinabs for c in hidden) > 0  # the net does spike
    for c in hidden:  # sinabs averages in float32: equal within its rounding
        assert c.sinabs == pytest.approx(c.snnergy, rel=1e-6)
        assert own[c.source][-1] == pytest.approx(c.sinabs, rel=1e-6)


@pytest.mark.parametrize("peer", ["spikingjelly_single", "spikingjelly_multi", "sinabs"])
def test_peer_networks_reproduce_snnergy_readout(adapters, converted, peer) -> None:
    snn, x, _ = converted
    steps = 16
    ours = simulate_batch(snn, x, [steps], mode="looped").potentials[-1]
    if peer == "sinabs":
        theirs = adapters.run_sinabs(adapters.sinabs_network(snn, len(x)), x, steps)
    elif peer == "spikingjelly_single":
        theirs = adapters.run_spikingjelly_single(adapters.spikingjelly_network(snn, "s"), x, steps)
    else:
        theirs = adapters.run_spikingjelly_multi(adapters.spikingjelly_network(snn, "m"), x, steps)
    # Same spikes; the readout sums the same currents, possibly in another order (float32).
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
    assert torch.equal(theirs.argmax(-1), ours.argmax(-1))


def test_peers_refuse_what_they_cannot_express(adapters) -> None:
    snn = _pool_snn()
    snn.neuron = type(snn.neuron)(1.0, "zero")
    with pytest.raises(adapters.PeerError, match="reset by subtraction"):
        adapters.check_dynamics(snn)
