"""DNN-to-SNN conversion: BN folding, data-based normalization, the spiking network (a copy).

Rate-coded conversion after Rueckauer et al. 2017 (Front. Neurosci. 11:682). :func:`convert`
reads the model's :class:`~snnergy.structure.NetworkPlan` (:func:`snnergy.structure.trace`:
an ``nn.Sequential`` or any torch.fx-traceable model, residual additions included), so

1. BatchNorm is folded into the Conv2d/Linear before it (the plan holds folded copies;
   ``W' = (gamma/sigma) W``, ``b' = (gamma/sigma)(b - mu) + beta``);
2. lambda_l, the p-th percentile of each activation layer's non-zero activations on calibration
   data, is measured on the un-normalized network (:mod:`snnergy.conversion.calibration`), whose
   logits are checked against the model's first;
3. each branch is normalized by its source's and its neurons' scales
   (:mod:`snnergy.conversion.network`) and activations become IF neurons with threshold 1.

The DNN is never modified; anything the plan cannot describe raises a
:class:`~snnergy.errors.ConversionError` naming the layer (and, for traced code, the source line)
and what to use instead.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from snnergy.config import ConvertConfig
from snnergy.conversion.calibration import CALIBRATION_BATCH, MAX_VALUES, batches, measure_scales
from snnergy.conversion.network import build_network, normalized_layer
from snnergy.errors import ConversionError, DataError
from snnergy.simulation import IFNeuron, SpikingNetwork
from snnergy.structure import NetworkPlan, trace

#: Tolerance of the check that the un-normalized network reproduces the model's logits.
_CHECK_RTOL = 1e-3


def convert(model: nn.Module, calibration: Tensor | Iterable[Any],
            config: ConvertConfig = ConvertConfig()) -> SpikingNetwork:
    """Converts a ReLU network into a rate-coded spiking network (a new object).

    Args:
        model: The trained DNN (any model :func:`snnergy.structure.trace` describes); left untouched.
        calibration: Calibration inputs ``(N, ...)`` or an iterable of ``x`` / ``(x, y)`` batches.
        config: Percentile, channel-wise scales and the neuron reset.

    Returns:
        The :class:`~snnergy.simulation.SpikingNetwork`, on the model's device. Its rate-model
        forward (ReLU in place of IF) gives the DNN's logits up to float error.

    Example:
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> x = torch.rand(32, 2, 2)
        >>> snn = convert(net, x)
        >>> [stage.name for stage in snn.stages], torch.allclose(snn(x), net(x), atol=1e-5)
        (['1', '3'], True)
    """
    plan, raw, inputs = _calibrated_plan(model, calibration)
    scales, silent = measure_scales(raw, inputs, config)
    neuron = IFNeuron(threshold=1.0, reset=config.reset)
    snn = build_network(plan, scales, neuron)
    return SpikingNetwork(snn.stages, snn.input_shape, neuron,
                          {k: [float(v) for v in s.reshape(-1)] for k, s in scales.items()}, silent)


def activation_scales(model: nn.Module, calibration: Tensor | Iterable[Any], percentile: float = 99.9,
                      channelwise: bool = False, *, max_values: int = MAX_VALUES) -> dict[str, Tensor]:
    """lambda of each activation layer: the p-th percentile of its non-zero activations.

    The percentile interpolates linearly between order statistics (NumPy's default) and has no
    size limit. Exact while a layer's values (non-zero ones, or all with ``channelwise``) number
    at most ``max_values``; beyond, every k-th value is kept (k a power of two, deterministic).
    A layer (or a channel) without any non-zero activation gets scale 1.0 (a silent layer).

    Args:
        model: A convertible model (left untouched).
        calibration: Inputs ``(N, ...)`` (batched internally) or an iterable of ``x`` or
            ``(x, y)`` batches, e.g. a DataLoader.
        percentile: p in (0, 100]; 100 is the maximum.
        channelwise: One scale per output channel (dim 1) instead of one per layer.
        max_values: Memory bound on the stored values of one layer.

    Returns:
        By activation name, float64 scales: a 0-d tensor, or ``(C,)`` when channelwise.

    Example:
        >>> net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1))
        >>> with torch.no_grad():  # relu activations [0, 1, 2, 4]: non-zero [1, 2, 4]
        ...     _ = net[0].weight.fill_(1.0), net[0].bias.zero_()
        >>> x = torch.tensor([[0.0], [1.0], [2.0], [4.0]])
        >>> float(activation_scales(net, x, 100)["1"]), float(activation_scales(net, x, 75)["1"])
        (4.0, 3.0)
    """
    config = ConvertConfig(percentile=percentile, channelwise=channelwise)  # validates
    _, raw, inputs = _calibrated_plan(model, calibration)
    return measure_scales(raw, inputs, config, max_values)[0]


def fold_batchnorm(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """A copy in eval mode with every BatchNorm folded into the Conv2d/Linear before it.

    Folded BatchNorms become ``nn.Identity`` (names and nesting are kept); a weighted layer
    without bias gains one. The arithmetic runs in float64.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2), nn.ReLU(), nn.Linear(2, 2))
        >>> _ = net.eval()
        >>> x = torch.randn(5, 3)
        >>> folded = fold_batchnorm(net, (3,))
        >>> folded[1], torch.allclose(folded(x), net(x), atol=1e-6)
        (Identity(), True)
    """
    plan = trace(model, input_shape)
    folded = copy.deepcopy(model).eval()
    for branch in (b for stage in plan.stages for b in stage.branches):
        if branch.norm is None:
            continue
        with torch.no_grad():
            target = folded.get_submodule(branch.name)
            target.weight.copy_(branch.layer.weight)
            if target.bias is None:
                target.bias = nn.Parameter(branch.layer.bias.detach().clone())
            else:
                target.bias.copy_(branch.layer.bias)
        parent, _, child = branch.norm.rpartition(".")
        setattr(folded.get_submodule(parent) if parent else folded, child, nn.Identity())
    return folded


def _calibrated_plan(model: nn.Module, calibration: Tensor | Iterable[Any]
                     ) -> tuple[NetworkPlan, SpikingNetwork, Iterable[Tensor]]:
    """The plan (traced on the first calibration batch), the un-normalized network (its logits
    checked against the model's) and every calibration batch."""
    param = next((p for p in model.parameters()), None)
    if param is None:
        raise ConversionError(f"model {type(model).__name__} has no Conv2d or Linear layer to convert")
    stream = batches(calibration, param.device, param.dtype)
    first = next(stream, None)
    if first is None:
        raise DataError("calibration data is empty")
    net = copy.deepcopy(model).eval()
    plan = trace(net, tuple(first.shape[1:]), first[:2])
    raw = build_network(plan, {}, IFNeuron())
    with torch.no_grad():
        try:
            ours = raw(first)
        except RuntimeError as err:
            raise DataError(f"calibration batch of shape {tuple(first.shape)} does not fit the model: {err}") from None
        _check_logits(ours, net(first))
    return plan, raw, _chain([first], stream)


def _chain(*parts: Iterable[Tensor]) -> Iterable[Tensor]:
    for part in parts:
        yield from part


def _check_logits(ours: Tensor, theirs: Any) -> None:
    if not isinstance(theirs, Tensor) or theirs.shape != ours.shape:
        raise ConversionError("the converted graph does not reproduce the model's output shape; "
                              "report this model to snnergy")
    tolerance = _CHECK_RTOL * (1.0 + float(theirs.abs().max()))
    if not torch.allclose(ours, theirs, rtol=_CHECK_RTOL, atol=tolerance):
        raise ConversionError(
            f"the converted graph (BN folded, before normalization) differs from the model's "
            f"logits by up to {float((ours - theirs).abs().max()):.3g}; an op was mapped wrongly, "
            "report this model to snnergy")


__all__ = [
    "CALIBRATION_BATCH", "MAX_VALUES", "activation_scales", "convert", "fold_batchnorm", "normalized_layer",
]
