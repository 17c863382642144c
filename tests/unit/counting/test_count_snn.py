"""SNN counting through max pooling (spike-count gating), derived by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import snnergy
from snnergy.simulation import SpikingNetwork, SpikingStage


def gated_net() -> SpikingNetwork:
    """Input (1, 2, 2) -> 1x1 conv (weight 1, bias 0: current = input) -> IF -> MaxPool2d(2) ->
    Flatten -> Linear(1, 3) (the readout): the pooled position feeds 3 outputs."""
    conv = nn.Conv2d(1, 1, 1)
    fc = nn.Linear(1, 3)
    with torch.no_grad():
        conv.weight.fill_(1.0), conv.bias.zero_(), fc.weight.fill_(1.0), fc.bias.zero_()
    stage1 = SpikingStage("conv1", "relu1", nn.Sequential(), conv, True)
    stage2 = SpikingStage("fc1", None, nn.Sequential(nn.MaxPool2d(2), nn.Flatten()), fc, False)
    return SpikingNetwork([stage1, stage2], (1, 2, 2))


@pytest.mark.parametrize("mode", ["batched", "looped"])
def test_synops_through_max_pooling_count_the_spikes_that_pass_the_gate(mode: str) -> None:
    # Currents 0.5, 0.25, 0, 1 (threshold 1, reset by subtraction, v0 = 0):
    #   neuron 0 spikes at steps 2, 4; neuron 1 at step 4; neuron 2 never; neuron 3 at every step.
    # Counts after steps 1..4: [0,0,0,1], [1,0,0,2], [1,0,0,3], [2,1,0,4]: neuron 3 leads at every
    # step, so the window passes its 4 spikes and blocks the other 3.
    # A spike that passes costs the pooled position's fan-out (3); a blocked one costs nothing:
    #   SynOps = 1 x 3 = 3 at T = 1, 2 x 3 = 6 at T = 2, 4 x 3 = 12 at T = 4
    #   (21 if every spike cost its fan-out: (2 + 1 + 0 + 4) x 3).
    # Input MACs: 3 non-zero inputs x fan-out 1 = 3; neuron updates (4 neurons + 3 readout) x T.
    x = torch.tensor([[[[0.5, 0.25], [0.0, 1.0]]]])
    from snnergy.simulation import simulate_batch

    assert simulate_batch(gated_net(), x, [1, 2, 4], mode=mode).gated_counts["fc1"].sum((1, 2, 3)).tolist() == [1, 2, 4]
    record = snnergy.simulate(gated_net(), (x, torch.tensor([0])), timesteps=[1, 2, 4])
    assert record.synops == [3.0, 6.0, 12.0]
    assert record.synops_per_layer == {"relu1": [3.0, 6.0, 12.0]}
    assert record.input_macs == [3.0, 3.0, 3.0]
    assert record.neuron_updates == [7.0, 14.0, 28.0]
    assert record.spike_rate["relu1"] == pytest.approx(7 / 16)  # 7 spikes of 4 neurons in 4 steps


def test_a_tie_passes_the_first_neuron_of_the_window() -> None:
    # Currents 1, 1, 0, 0: neurons 0 and 1 spike at every step with equal counts; the gate picks the
    # first of the window (row-major), so 1 spike per step passes: 4 x 3 = 12 SynOps at T = 4 (not 24),
    # and the readout gets 1 per step: potentials 4, 4, 4 (weights 1) after 4 steps.
    x = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    record = snnergy.simulate(gated_net(), (x, torch.tensor([0])), timesteps=[4])
    assert record.synops == [12.0]
    from snnergy.simulation import simulate_reference

    trace = simulate_reference(gated_net(), x, [4])
    assert trace.potentials.flatten().tolist() == [4.0, 4.0, 4.0]
    assert trace.gated_counts["fc1"].flatten().tolist() == [4.0, 0.0, 0.0, 0.0]
