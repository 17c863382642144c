"""Calibration: lambda_l of each activation layer, from the activation itself or from data.

- A trained-threshold activation (an activation of the plan whose ``parameters`` hold
  ``threshold``: QCFS, Bu et al., ICLR 2022; trained clip, Ho & Chang, DAC 2021) carries its own
  scale: lambda_l = theta_l (one value or one per channel, :func:`trained_scales`), no data needed.
  Its SNN neurons fire at most once per step, so their rate saturates at 1 = theta / lambda: the
  activation's own clip.
- Any other activation (ReLU) is measured: :func:`measure_scales` runs the network's rate model
  (BatchNorm folded, trained thresholds already normalized, ReLU in place of IF neurons) over
  calibration batches and takes, per layer, the p-th percentile of its non-zero activations (SNN
  Toolbox, Rueckauer et al. 2017; p = 100 is the maximum of Diehl et al. 2015), per layer or per
  output channel, with :class:`snnergy.normalization.Percentile`: the same strategy the
  energy-aware penalties use.

:func:`rate_reference` is the DNN the rate model must reproduce: the model with every
trained-threshold activation replaced by its clip at theta (QCFS's floor is not a rate: ``T = L``
steps reproduce it, the rate limit is the clip).
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch
from torch import Tensor, nn

from snnergy.config import ConvertConfig
from snnergy.data import input_batches
from snnergy.errors import DataError
from snnergy.normalization import MAX_VALUES, Percentile
from snnergy.simulation import SpikingNetwork
from snnergy.structure import NetworkPlan
from snnergy.structure.activations import kind_of_module

CALIBRATION_BATCH = 256


def batches(calibration: Tensor | Iterable[Any], device: torch.device, dtype: torch.dtype) -> Iterator[Tensor]:
    """Calibration inputs as batches on ``device``: a tensor in chunks of ``CALIBRATION_BATCH``,
    or an iterable of ``x`` / ``(x, y)`` batches (e.g. a DataLoader)."""
    for x in input_batches(calibration, CALIBRATION_BATCH):
        yield x.to(device=device, dtype=dtype)


def trained_scales(plan: NetworkPlan) -> dict[str, Tensor]:
    """lambda = theta of every activation whose parameters hold a ``threshold`` (float64, ``(1,)``
    or ``(C,)``), by activation name; activations without one (ReLU) are absent.

    Example:
        >>> from collections import OrderedDict
        >>> from snnergy.layers import QCFS
        >>> from snnergy.structure import trace
        >>> net = nn.Sequential(OrderedDict(fc1=nn.Linear(2, 3), q1=QCFS(4, 2.5), fc2=nn.Linear(3, 2),
        ...                                 relu=nn.ReLU(), fc3=nn.Linear(2, 1)))
        >>> {k: v.tolist() for k, v in trained_scales(trace(net, (2,))).items()}
        {'q1': [2.5]}
    """
    return {a.name: torch.tensor(a.parameters["threshold"], dtype=torch.float64).reshape(-1)
            for a in plan.activations if "threshold" in a.parameters}


class ClipAt(nn.Module):
    """``clamp(x, 0, theta)``, theta one value or one per channel (dim 1): the rate limit of a
    trained-threshold activation.

    Example:
        >>> ClipAt([2.0])(torch.tensor([[-1.0, 1.0, 3.0]])).tolist()
        [[0.0, 1.0, 2.0]]
    """

    def __init__(self, threshold: list[float]) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.tensor(threshold))

    def forward(self, x: Tensor) -> Tensor:
        theta = self.threshold.to(dtype=x.dtype, device=x.device)
        if theta.numel() > 1:
            theta = theta.view(1, -1, *[1] * (x.dim() - 2))
        return torch.minimum(torch.relu(x), theta)


def rate_reference(model: nn.Module) -> nn.Module:
    """``model`` (modified in place: pass a copy) with every trained-threshold activation module
    replaced by :class:`ClipAt` its threshold: the function the SNN's rates approach.

    Example:
        >>> from snnergy.layers import QCFS
        >>> net = rate_reference(nn.Sequential(nn.Linear(1, 1), QCFS(levels=2, threshold=1.0)))
        >>> type(net[1]).__name__
        'ClipAt'
    """
    for name, module in list(model.named_modules(remove_duplicate=False)):  # every alias
        kind = kind_of_module(module)
        threshold = kind.parameters(module).get("threshold") if kind is not None else None
        if threshold is None or not name:
            continue
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, ClipAt(list(threshold)))
    return model


def measure_scales(raw: SpikingNetwork, inputs: Iterable[Tensor], config: ConvertConfig,
                   max_values: int = MAX_VALUES) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    """Measured scales by activation name (float64; ``(C,)`` when channel-wise) and the silent layers.

    Only the neurons that are not :attr:`~snnergy.simulation.SpikingNetwork.clipped` (trained
    thresholds keep theta) are measured. A layer (or channel) without any non-zero activation gets
    scale 1.0 and, when the whole layer is silent, is listed in the second value; a clipped layer
    is listed when it is zero on every calibration input (none are listed without inputs).
    """
    normalization = Percentile(config.percentile, config.channelwise)
    clipped = set(raw.clipped)
    stores = {s.neuron_name: normalization.accumulator(max_values)
              for s in raw.stages if s.neuron_name is not None and s.neuron_name not in clipped}
    active = dict.fromkeys(clipped, False)
    seen = False
    with torch.no_grad():
        for x in inputs:
            try:
                acts, _ = raw.activations(x)
            except RuntimeError as err:
                raise DataError(f"calibration batch of shape {tuple(x.shape)} does not fit the model: {err}") from None
            seen = True
            for name, act in acts.items():
                if name in stores:
                    stores[name].add(act)
                elif not active[name]:
                    active[name] = bool((act != 0).any())
    scales = {name: store.scale() for name, store in stores.items()}
    silent = [name for name, s in scales.items() if bool(torch.isnan(s).all())]
    silent += [name for name, on in active.items() if seen and not on]
    order = [s.neuron_name for s in raw.stages]
    return ({name: torch.nan_to_num(s, nan=1.0) for name, s in scales.items()},
            tuple(sorted(silent, key=order.index)))
