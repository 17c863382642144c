"""The spiking network built from a network plan, with normalized weights.

Each branch of a stage that reads source ``s`` into neurons ``o`` gets weights
``W lambda_s / lambda_o`` and bias ``b / lambda_o`` (Rueckauer et al. 2017; lambda of the input
is 1, the readout keeps scale 1), an identity branch the per-channel factor ``lambda_s / lambda_o``
(:class:`~snnergy.simulation.ChannelScale`), so that the summed current is the DNN's
pre-activation divided by ``lambda_o`` in every branch. Biases are *not* rescaled like weights
(REFERENCE.md: a peer doing so lost 10 points on a LeNet).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from snnergy.errors import ConfigError, ConversionError
from snnergy.simulation import ChannelScale, IFNeuron, Shortcut, SpikingNetwork, SpikingStage
from snnergy.structure import Branch, NetworkPlan


def build_network(plan: NetworkPlan, scales: dict[str, Tensor], neuron: IFNeuron,
                  clipped: tuple[str, ...] = ()) -> SpikingNetwork:
    """The network with each branch normalized by its source's and its neurons' scales (missing: 1);
    ``clipped`` names the trained-threshold neurons (their rate model clips at 1)."""
    one = torch.ones((), dtype=torch.float64)

    def scale(name: str | None) -> Tensor:
        return scales.get(name, one) if name is not None else one

    stages = []
    for stage in plan.stages:
        out_name = stage.neuron.name if stage.neuron is not None else None
        lam_out = scale(out_name)
        main = stage.main
        layer = normalized_layer(main.layer, scale(main.source), lam_out, main.name)
        shortcuts = []
        for branch in stage.shortcuts:
            if branch.layer is not None:
                module = normalized_layer(branch.layer, scale(branch.source), lam_out, branch.name)
            else:
                module = _identity(scale(branch.source), lam_out, branch)
                module = module.to(device=layer.weight.device, dtype=layer.weight.dtype)
            shortcuts.append(Shortcut(branch.name, branch.source, _pre(branch), module))
        stages.append(SpikingStage(main.name, out_name, _pre(main), layer, stage.neuron is not None, shortcuts))
    try:
        return SpikingNetwork(stages, plan.input_shape, neuron, clipped=clipped)
    except ConfigError as err:
        raise ConversionError(f"cannot build the spiking network: {err}") from None


def _pre(branch: Branch) -> nn.Sequential:
    return nn.Sequential(*copy.deepcopy(list(branch.pre)))


def normalized_layer(layer: nn.Module, lam_in: Tensor, lam_out: Tensor, name: str) -> nn.Module:
    """A copy of ``layer`` with ``W lambda_in / lambda_out`` and ``b / lambda_out`` (per channel).

    ``lambda_in`` holds one value, one per input feature, or one per channel of the previous
    neurons; a Linear after Flatten sees each channel's scale repeated over its H*W features.
    """
    weight = layer.weight.detach().double()
    out_ch, per_group = weight.shape[0], weight.shape[1]
    groups = getattr(layer, "groups", 1)
    kernel = [1] * (weight.dim() - 2)
    lam_in = lam_in.reshape(-1).to(weight.device)
    if lam_in.numel() == 1:
        weight = weight * lam_in[0]
    else:
        inputs = per_group * groups
        if inputs % lam_in.numel():
            raise ConversionError(f"layer '{name}': its {inputs} inputs do not map onto the "
                                  f"{lam_in.numel()} channels of the previous layer")
        lam_in = lam_in.repeat_interleave(inputs // lam_in.numel())  # flattened (C, H, W) order
        # weight W[o, j] of group g = o // (out_ch / groups) reads input channel g * per_group + j
        per_weight = lam_in.view(groups, 1, per_group).expand(groups, out_ch // groups, per_group)
        weight = weight * per_weight.reshape(out_ch, per_group, *kernel)
    lam_out = lam_out.reshape(-1).to(weight.device)
    weight = weight / lam_out.view(-1, 1, *kernel)
    new = copy.deepcopy(layer)
    with torch.no_grad():
        new.weight.copy_(weight.to(layer.weight.dtype))
        if new.bias is not None:
            new.bias.copy_((layer.bias.detach().double() / lam_out).to(layer.bias.dtype))
    return new


def _identity(lam_src: Tensor, lam_out: Tensor, branch: Branch) -> ChannelScale:
    """The normalized identity branch: ``lambda_src / lambda_out`` per channel of its value."""
    channels = branch.out_shape[0] if branch.out_shape else 1

    def per_channel(lam: Tensor) -> Tensor:
        lam = lam.reshape(-1)
        if lam.numel() in (1, channels):
            return lam
        if channels % lam.numel():
            raise ConversionError(f"shortcut '{branch.name}': {lam.numel()} scales do not map onto "
                                  f"{channels} channels")
        return lam.repeat_interleave(channels // lam.numel())  # flattened (C, H, W) order

    ratio = per_channel(lam_src.double().cpu()) / per_channel(lam_out.double().cpu())
    module = ChannelScale(ratio.numel())
    with torch.no_grad():
        module.weight.copy_(ratio.float())
    return module
