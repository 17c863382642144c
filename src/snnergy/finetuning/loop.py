"""The fine-tuning loop: a converted SNN trained through its own IF neurons for T steps.

:func:`finetune` unrolls the network (:class:`~snnergy.finetuning.UnrolledNetwork`), trains its
weights and per-layer thresholds with Adam on

    loss = cross_entropy(readout potential at T / T, label) + strength * SynOps per sample,

the SynOps counted over the T steps with counting's exact fan-out (so ``strength`` is a price per
synaptic operation of the T-step inference), and returns the thresholds folded back into a plain
:class:`~snnergy.simulation.SpikingNetwork`. The simulator, not this loop, judges the result's
accuracy and SynOps. SNN-in-the-loop training with a surrogate gradient after conversion follows
Rathi et al. (ICLR 2020, "Enabling deep spiking neural networks with hybrid conversion and spike
timing dependent backpropagation"); the surrogate is Fang et al.'s arctan (ICCV 2021).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F
from tqdm.auto import tqdm

from snnergy.config import FinetuneConfig
from snnergy.errors import ConfigError, DataError, TrainingError
from snnergy.simulation import SpikingNetwork

from snnergy.finetuning.unroll import UnrolledNetwork


@dataclass(frozen=True)
class FinetuneEpoch:
    """One epoch of fine-tuning, averaged over its samples.

    Attributes:
        epoch: 1-based.
        loss: Cross-entropy plus ``strength`` x SynOps.
        task_loss: The cross-entropy of the readout at T.
        synops: SynOps per sample over the T steps (of the unrolled network during the epoch).
        train_accuracy: Readout accuracy at T on the epoch's samples.
        seconds: Wall time of the epoch.
    """

    epoch: int
    loss: float
    task_loss: float
    synops: float
    train_accuracy: float
    seconds: float


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns.

    Attributes:
        snn: The fine-tuned network, thresholds folded into the weights (threshold and ``v0`` as
            in the input network): ``simulate`` runs it.
        history: One :class:`FinetuneEpoch` per epoch.
        thresholds: Each spiking layer's trained threshold (relative to the neuron's), by neuron name.
        timesteps: T of the unrolled network.
    """

    snn: SpikingNetwork
    history: list[FinetuneEpoch]
    thresholds: dict[str, float]
    timesteps: int

    def summary(self) -> dict[str, Any]:
        """The last epoch and the thresholds, JSON-ready (``results.json``'s ``snn.finetune``)."""
        last = asdict(self.history[-1]) if self.history else {}
        return {"timesteps": self.timesteps, "epochs": len(self.history),
                **{k: last[k] for k in ("loss", "task_loss", "synops", "train_accuracy") if k in last},
                "thresholds": dict(self.thresholds)}


def finetune(snn: SpikingNetwork, data: tuple[Tensor, Tensor], config: FinetuneConfig, *,
             batch_size: int = 64, input: str = "analog", seed: int = 0,
             device: str | torch.device = "cpu", progress: bool = False) -> FinetuneResult:
    """Fine-tunes ``snn`` through its IF neurons for ``config.timesteps`` steps (module docstring).

    Args:
        snn: A converted network; it is not modified.
        data: Training ``(inputs, labels)``; each epoch draws ``config.train_limit`` of them (all
            when ``None``) in a seeded random order.
        config: T, epochs, learning rate, SynOps strength, samples per epoch, surrogate slope.
        batch_size: Samples per step.
        input: ``"analog"`` or ``"poisson"`` (as the simulation will run it).
        seed: Seeds the sample order and the Poisson draws.
        device: Where to train; the result lives where ``snn`` did.
        progress: Show a progress bar.

    Returns:
        The :class:`FinetuneResult`.

    Raises:
        ConfigError: ``config.timesteps`` is 0 (no fine-tuning asked for).
        DataError: No training samples, or inputs and labels of different lengths.
        TrainingError: The loss became NaN or infinite.

    Example:
        >>> from torch import nn
        >>> from snnergy.simulation import SpikingStage
        >>> torch.manual_seed(0) and None
        >>> stages = [SpikingStage("fc1", "relu1", nn.Sequential(), nn.Linear(2, 8), True),
        ...           SpikingStage("fc2", None, nn.Sequential(), nn.Linear(8, 2), False)]
        >>> snn = SpikingNetwork(stages, (2,))
        >>> x = torch.rand(32, 2); y = (x[:, 0] > x[:, 1]).long()
        >>> result = finetune(snn, (x, y), FinetuneConfig(timesteps=4, epochs=2, lr=1e-2), batch_size=16)
        >>> len(result.history), sorted(result.thresholds), isinstance(result.snn, SpikingNetwork)
        (2, ['relu1'], True)
    """
    if config.timesteps < 1:
        raise ConfigError("finetune.timesteps must be >= 1 to fine-tune (0 means no fine-tuning)")
    inputs, labels = data
    if len(inputs) != len(labels) or len(inputs) == 0:
        raise DataError(f"fine-tuning needs training samples with one label each, got {len(inputs)} "
                        f"inputs and {len(labels)} labels")
    device = torch.device(device)
    home = next(snn.parameters()).device
    net = UnrolledNetwork(snn, config.timesteps, slope=config.slope, input=input).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    order = torch.Generator().manual_seed(seed)
    draws = torch.Generator(device=device).manual_seed(seed) if input == "poisson" else None
    per_epoch = len(inputs) if config.train_limit is None else min(config.train_limit, len(inputs))
    history: list[FinetuneEpoch] = []
    with tqdm(total=config.epochs * per_epoch, disable=not progress, unit="sample", desc="finetune") as bar:
        for epoch in range(1, config.epochs + 1):
            start = time.perf_counter()
            picked = torch.randperm(len(inputs), generator=order)[:per_epoch]
            totals = {"loss": 0.0, "task_loss": 0.0, "synops": 0.0, "correct": 0.0}
            for first in range(0, per_epoch, batch_size):
                index = picked[first : first + batch_size]
                x, y = inputs[index].to(device), labels[index].to(device)
                out = net(x, draws)
                task = F.cross_entropy(out.logits, y)
                synops = out.synops.mean()
                loss = task + config.strength * synops
                if not torch.isfinite(loss):
                    raise TrainingError(f"fine-tuning diverged at epoch {epoch}: loss {float(loss.detach())}; "
                                        f"lower finetune.lr ({config.lr:g}) or finetune.strength ({config.strength:g})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                n = len(index)
                totals["loss"] += float(loss.detach()) * n
                totals["task_loss"] += float(task.detach()) * n
                totals["synops"] += float(synops.detach()) * n
                totals["correct"] += float((out.logits.argmax(1) == y).sum())
                bar.update(n)
            history.append(FinetuneEpoch(epoch, totals["loss"] / per_epoch, totals["task_loss"] / per_epoch,
                                         totals["synops"] / per_epoch, totals["correct"] / per_epoch,
                                         time.perf_counter() - start))
    base = float(snn.neuron.threshold)
    thresholds = {name: value / base for name, value in net.thresholds().items()}
    if not all(math.isfinite(v) and v > 0 for v in thresholds.values()):
        raise TrainingError(f"fine-tuning gave non-finite thresholds {thresholds}; lower finetune.lr")
    return FinetuneResult(net.to_snn().to(home), history, thresholds, config.timesteps)


__all__ = ["FinetuneEpoch", "FinetuneResult", "finetune"]
