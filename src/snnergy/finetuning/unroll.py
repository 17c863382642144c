"""A differentiable copy of a converted spiking network, unrolled for T steps.

:class:`UnrolledNetwork` runs a :class:`~snnergy.simulation.SpikingNetwork` exactly as the
simulator does (:mod:`snnergy.simulation.simulator`): the same currents (the analog first stage's
once, its shortcuts added in order), the same integrate-and-fire update (integrate, fire when
``v >= theta``, reset by subtraction or to zero), the same initial potential ``v0 * theta`` and
the same readout (the last stage's currents summed over the steps), with Poisson input drawn as
:func:`~snnergy.simulation.encode_poisson` draws it. What it adds:

- **a surrogate gradient**: the forward spike is the Heaviside step ``H(v - theta)``; its
  derivative in the backward pass is the arctan surrogate of Fang et al. (ICCV 2021,
  "Incorporating learnable membrane time constant to enhance learning of spiking neural
  networks"; SpikingJelly's ``surrogate.ATan``), ``alpha / 2 / (1 + (pi / 2 * alpha * x)**2)``
  with ``x = v - theta`` (:func:`spike`);
- **trainable thresholds**, one per spiking layer: ``theta_l = threshold * exp(rho_l)``, positive
  for every ``rho_l``, with ``rho_l = 0`` at the start (exactly the converted network);
- **its own SynOps**: per sample, the sum over spiking layers of each neuron's spikes over the T
  steps times its exact fan-out into every branch that reads it, counting's
  :func:`~snnergy.counting.readers_fanout` on the network plan (docs/design.md, "Definitions");
  differentiable through the spikes.

:meth:`UnrolledNetwork.to_snn` folds the thresholds back into the weights (a layer whose neurons
fire at ``theta_l`` is the layer whose every incoming current, its own and its shortcuts', is
divided by ``exp(rho_l)``), so the result is a plain ``SpikingNetwork`` that the simulator runs and
judges.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from snnergy.counting import readers_fanout
from snnergy.errors import ConfigError
from snnergy.simulation import INPUTS, SpikingNetwork, encode_poisson
from snnergy.simulation.simulator import prepare_input

#: The arctan surrogate's ``alpha`` by default (SpikingJelly's ``surrogate.ATan(alpha=2.0)``).
DEFAULT_SLOPE = 2.0


class _ArctanSpike(torch.autograd.Function):
    """``H(x)`` forward (1 where ``x >= 0``), the arctan surrogate's derivative backward."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        alpha = ctx.alpha
        return grad * (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2), None


def spike(x: Tensor, slope: float = DEFAULT_SLOPE) -> Tensor:
    """Heaviside step of ``x = v - theta`` with the arctan surrogate gradient (Fang et al. 2021).

    Forward: 1.0 where ``x >= 0`` (``v - theta >= 0`` exactly when ``v >= theta``, the simulator's
    test), else 0.0. Backward: ``slope / 2 / (1 + (pi / 2 * slope * x)**2)``, the derivative of
    ``arctan(pi / 2 * slope * x) / pi + 1/2``, so ``slope / 2`` at the threshold.

    Example:
        >>> x = torch.tensor([-0.5, 0.0, 0.25], requires_grad=True)
        >>> s = spike(x)
        >>> s.tolist()
        [0.0, 1.0, 1.0]
        >>> s.sum().backward()
        >>> [round(g, 4) for g in x.grad.tolist()]  # 1 / (1 + (pi x)**2) with slope 2
        [0.2884, 1.0, 0.6185]
    """
    return _ArctanSpike.apply(x, float(slope))


@dataclass
class UnrolledOutput:
    """One batch through the unrolled network.

    Attributes:
        potential: ``(B, classes)`` readout potential summed over steps 1..T (the simulator's).
        logits: ``potential / T``: the readout on the DNN's logit scale (what the loss reads).
        spikes: By neuron name, ``(B, *shape)`` spikes of each neuron over the T steps.
        synops: ``(B,)`` SynOps of each sample over the T steps (docs/design.md's definition).
    """

    potential: Tensor
    logits: Tensor
    spikes: dict[str, Tensor]
    synops: Tensor


class UnrolledNetwork(nn.Module):
    """A converted SNN unrolled for ``timesteps`` steps, trainable end to end (module docstring).

    Args:
        snn: The converted network; it is copied (the original is untouched) and its copy's
            weights are trained.
        timesteps: T, the steps of every forward pass.
        slope: The surrogate's ``alpha`` (:func:`spike`).
        input: ``"analog"`` (the image as a constant current) or ``"poisson"``.

    Example:
        >>> from snnergy.simulation import SpikingStage
        >>> stage1 = SpikingStage("fc1", "relu1", nn.Sequential(), nn.Linear(1, 2, bias=False), True)
        >>> stage2 = SpikingStage("fc2", None, nn.Sequential(), nn.Linear(2, 1, bias=False), False)
        >>> snn = SpikingNetwork([stage1, stage2], (1,))
        >>> with torch.no_grad():  # currents 0.4 and 1.0 per step: 2 and 5 spikes in 5 steps
        ...     _ = stage1.layer.weight.copy_(torch.tensor([[0.4], [1.0]])), stage2.layer.weight.fill_(1.0)
        >>> out = UnrolledNetwork(snn, 5)(torch.ones(1, 1))
        >>> out.spikes["relu1"].tolist(), out.synops.tolist(), out.potential.tolist()
        ([[2.0, 5.0]], [7.0], [[7.0]])
    """

    def __init__(self, snn: SpikingNetwork, timesteps: int, *, slope: float = DEFAULT_SLOPE,
                 input: str = "analog") -> None:
        super().__init__()
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
            raise ConfigError(f"the unrolled network needs timesteps >= 1, got {timesteps!r}")
        if input not in INPUTS:
            raise ConfigError(f"unknown simulation input '{input}'; allowed: {', '.join(INPUTS)}")
        gated = [s.name for s in snn.stages if s.gate is not None]
        if gated:
            raise ConfigError(
                f"SNN fine-tuning does not support max pooling (spike-count gating) yet: stage(s) {', '.join(gated)}; "
                "use average pooling, or simulate the converted SNN without fine-tuning"
            )
        self.snn = copy.deepcopy(snn)
        self.timesteps = int(timesteps)
        self.slope = float(slope)
        self.input = input
        self.names = [s.neuron_name for s in self.snn.stages if s.spiking]
        param = next(self.snn.parameters())
        #: ``rho_l`` of each spiking layer, in stage order: ``theta_l = threshold * exp(rho_l)``.
        self.log_thresholds = nn.Parameter(torch.zeros(len(self.names), dtype=param.dtype, device=param.device))
        plan = self.snn.plan()
        for i, activation in enumerate(plan.activations):
            fanout = readers_fanout(plan.readers(activation.name), tuple(activation.shape))
            self.register_buffer(f"fanout_{i}", fanout.to(device=param.device, dtype=param.dtype), persistent=False)
        input_fanout = readers_fanout(plan.readers(None), tuple(self.snn.input_shape))
        self.register_buffer("fanout_input", input_fanout.to(device=param.device, dtype=param.dtype),
                             persistent=False)

    def thresholds(self) -> dict[str, float]:
        """Each spiking layer's threshold ``theta_l`` now, by neuron name."""
        base = float(self.snn.neuron.threshold)
        return {name: base * float(s) for name, s in zip(self.names, torch.exp(self.log_thresholds.detach()))}

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> UnrolledOutput:
        """Runs the batch ``x`` ``(B, *input_shape)`` for T steps (Poisson input drawn with ``generator``)."""
        x = prepare_input(self.snn, x)
        steps, batch = self.timesteps, x.shape[0]
        neuron = self.snn.neuron
        analog = self.input == "analog"
        train = None if analog else encode_poisson(x, steps, generator)
        outputs: dict[str | None, Tensor] = {None: x if analog else train}
        inputs = outputs[None]
        scales = torch.exp(self.log_thresholds)
        spikes: dict[str, Tensor] = {}
        synops = x.new_zeros(batch)
        if train is not None:
            synops = synops + _weighted(train.sum(0), self.fanout_input)
        potential: Tensor | float = 0.0
        layer = 0
        for i, stage in enumerate(self.snn.stages):
            static = i == 0 and analog  # the analog first stage: the same current at every step
            if static:
                current = stage.total_current(x, {None: x}) if len(stage.shortcuts) else stage(x)
            else:
                current = _over_steps(stage, inputs)
                for shortcut in stage.shortcuts:
                    source = outputs[shortcut.source]
                    current = current + (shortcut(source) if shortcut.source is None and analog
                                         else _over_steps(shortcut, source))
            if not stage.spiking:
                for t in range(steps):  # summed step by step, as the simulator adds them
                    potential = potential + (current if static else current[t])
                continue
            scale = scales[layer]
            theta = neuron.threshold * scale
            v = neuron.initial(current if static else current[0]) * scale
            train_l = []
            for t in range(steps):
                v = v + (current if static else current[t])
                s = spike(v - theta, self.slope)
                v = v - s * theta if neuron.reset == "subtract" else v * (1.0 - s)
                train_l.append(s)
            inputs = outputs[stage.neuron_name] = torch.stack(train_l)
            counts = spikes[stage.neuron_name] = inputs.sum(0)
            synops = synops + _weighted(counts, getattr(self, f"fanout_{layer}"))
            layer += 1
        assert isinstance(potential, Tensor)
        return UnrolledOutput(potential, potential / steps, spikes, synops)

    def to_snn(self) -> SpikingNetwork:
        """A plain :class:`~snnergy.simulation.SpikingNetwork` spiking as this one does: each
        layer's incoming weights and biases (its own and its shortcuts') divided by
        ``exp(rho_l)``, the neuron unchanged; ``scales`` (lambda, for reports) multiplied by it."""
        net = copy.deepcopy(self.snn)
        scales = torch.exp(self.log_thresholds.detach())
        spiking = [s for s in net.stages if s.spiking]
        with torch.no_grad():
            for stage, scale in zip(spiking, scales):
                for layer in [stage.layer, *(c.layer for c in stage.shortcuts)]:
                    for name in ("weight", "bias"):
                        tensor = getattr(layer, name, None)
                        if tensor is not None:
                            tensor.div_(scale)
                if stage.neuron_name in net.scales:
                    net.scales[stage.neuron_name] = [v * float(scale) for v in net.scales[stage.neuron_name]]
        for p in net.parameters():
            p.requires_grad_(True)
            p.grad = None
        return net


def _over_steps(module: nn.Module, inputs: Tensor) -> Tensor:
    """``module`` on every step of ``inputs`` ``(T, B, ...)`` in one call: ``(T, B, ...)`` out."""
    out = module(inputs.reshape(-1, *inputs.shape[2:]))
    return out.reshape(inputs.shape[0], inputs.shape[1], *out.shape[1:])


def _weighted(counts: Tensor, fanout: Tensor) -> Tensor:
    """Per sample, ``sum_i counts[b, i] * fanout[i]`` for ``counts`` ``(B, *shape)``."""
    return (counts * fanout).flatten(1).sum(1)


__all__ = ["DEFAULT_SLOPE", "UnrolledNetwork", "UnrolledOutput", "spike"]
