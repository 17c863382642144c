"""The fine-tuning loop: a SynOps penalty lowers the simulator's SynOps, cross-entropy alone keeps
the network's predictions, bad input is one clear error."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from snnergy.config import ConvertConfig, FinetuneConfig
from snnergy.conversion import convert
from snnergy.counting import count_snn
from snnergy.errors import ConfigError, DataError, TrainingError
from snnergy.finetuning import UnrolledNetwork, finetune
from snnergy.simulation import SpikingNetwork, simulate_batch

T = 6


def problem() -> tuple[SpikingNetwork, torch.Tensor, torch.Tensor]:
    """A converted random MLP on 8x8 inputs, labelled with its own SNN's predictions at T (so the
    cross-entropy starts low and the penalty has room to act)."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc1=nn.Linear(64, 32), relu1=nn.ReLU(),
                                      fc2=nn.Linear(32, 16), relu2=nn.ReLU(), fc3=nn.Linear(16, 4)))
    x = torch.rand(128, 1, 8, 8)
    snn = convert(model, x, ConvertConfig(v0=0.5))
    labels = simulate_batch(snn, x, [T]).potentials[-1].argmax(1)
    return snn, x, labels


def simulated_synops(snn: SpikingNetwork, x: torch.Tensor) -> float:
    trace = simulate_batch(snn, x, [T])
    neurons = {k: v[0].numel() for k, v in trace.final_counts.items()}
    return count_snn(snn, [T], len(x), trace.spike_counts, neurons, inputs=[x]).synops[0]


def test_a_synops_penalty_lowers_the_simulators_synops() -> None:
    snn, x, y = problem()
    before = simulated_synops(snn, x)
    # about 470 SynOps per sample here: strength 1e-3 makes the penalty about 0.5 against a
    # cross-entropy of about 1.2, so the loop must trade spikes for loss
    config = FinetuneConfig(timesteps=T, epochs=4, lr=1e-2, strength=1e-3)
    result = finetune(snn, (x, y), config, batch_size=32)
    after = simulated_synops(result.snn, x)
    assert after < 0.8 * before, (before, after)
    assert result.history[-1].synops < result.history[0].synops
    assert simulated_synops(snn, x) == before  # the input network is untouched


def test_without_penalty_the_loop_keeps_the_predictions() -> None:
    snn, x, y = problem()
    result = finetune(snn, (x, y), FinetuneConfig(timesteps=T, epochs=2, lr=1e-3), batch_size=32)
    # labels are the SNN's own predictions at T: cross-entropy alone keeps (most of) them
    predictions = simulate_batch(result.snn, x, [T]).potentials[-1].argmax(1)
    assert (predictions == y).float().mean() >= 0.9
    summary = result.summary()
    assert summary["timesteps"] == T and summary["epochs"] == 2
    assert set(summary["thresholds"]) == {"relu1", "relu2"}
    assert all(v > 0 for v in summary["thresholds"].values())
    assert summary["synops"] == result.history[-1].synops


def test_train_limit_draws_that_many_samples_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    snn, x, y = problem()
    sizes: list[int] = []
    forward = UnrolledNetwork.forward

    def counting(self, inputs, generator=None):
        sizes.append(len(inputs))
        return forward(self, inputs, generator)

    monkeypatch.setattr(UnrolledNetwork, "forward", counting)
    finetune(snn, (x, y), FinetuneConfig(timesteps=2, epochs=2, train_limit=10), batch_size=4)
    assert sizes == [4, 4, 2] * 2  # 10 of the 128 samples per epoch, in batches of 4


def test_bad_input_is_one_clear_error() -> None:
    snn, x, y = problem()
    with pytest.raises(ConfigError, match="finetune.timesteps must be >= 1"):
        finetune(snn, (x, y), FinetuneConfig())
    with pytest.raises(DataError, match="one label each"):
        finetune(snn, (x, y[:3]), FinetuneConfig(timesteps=2))
    with pytest.raises(TrainingError, match="diverged"):
        finetune(snn, (x, y), FinetuneConfig(timesteps=2, strength=1e308), batch_size=32)
    with pytest.raises(ConfigError, match="finetune.epochs must be an integer >= 1"):
        FinetuneConfig(timesteps=2, epochs=0)
