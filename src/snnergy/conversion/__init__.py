"""DNN-to-SNN conversion: BN folding, data-based normalization, the spiking network (a copy).

Rate-coded conversion after Rueckauer et al. 2017 (Front. Neurosci. 11:682). :func:`convert`
takes either

- an ``nn.Sequential`` of built-in layers (:mod:`snnergy.conversion.sequential`: Conv2d, Linear,
  ReLU, AvgPool2d, BatchNorm1d/2d, Flatten, Dropout), converted layer by layer as before; or
- any other model that ``torch.fx`` can trace (:mod:`snnergy.conversion.graph`): functional and
  module ReLUs, flatten/view, average pooling, BatchNorm after Conv2d/Linear and residual
  additions, whose branches become :class:`~snnergy.simulation.Shortcut` s with normalization
  scales reconciled across branches.

Either way the DNN is never modified, and anything unsupported raises a
:class:`~snnergy.errors.ConversionError` naming the layer (and, for traced models, the source line).
"""

from __future__ import annotations

from typing import Any, Iterable

from torch import Tensor, nn

from snnergy.config import ConvertConfig
from snnergy.conversion.graph import convert_graph
from snnergy.conversion.sequential import (
    CALIBRATION_BATCH,
    DROPPED,
    MAX_VALUES,
    NORMS,
    PRE_OPS,
    SUPPORTED,
    SUPPORTED_TEXT,
    WEIGHTED,
    activation_scales,
    check_convertible,
    convert_sequential,
    fold_batchnorm,
)
from snnergy.simulation import SpikingNetwork


def convert(model: nn.Module, calibration: Tensor | Iterable[Any],
            config: ConvertConfig = ConvertConfig()) -> SpikingNetwork:
    """Converts a ReLU network into a rate-coded spiking network (a new object).

    A plain ``nn.Sequential`` of built-in layers goes through :func:`convert_sequential` (its
    structure errors name the layer); any other model is traced with torch.fx
    (:func:`convert_graph`), which also handles functional ops and residual additions.

    Args:
        model: The trained DNN; left untouched.
        calibration: Calibration inputs ``(N, ...)`` or an iterable of ``x`` / ``(x, y)`` batches.
        config: Percentile, channel-wise scales and the neuron reset.

    Returns:
        The :class:`~snnergy.simulation.SpikingNetwork`, on the model's device. Its rate-model
        forward (ReLU in place of IF) gives the DNN's logits up to float error.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> x = torch.rand(32, 2, 2)
        >>> snn = convert(net, x)
        >>> [stage.name for stage in snn.stages], torch.allclose(snn(x), net(x), atol=1e-5)
        (['1', '3'], True)
    """
    if _is_plain_sequential(model):
        return convert_sequential(model, calibration, config)
    return convert_graph(model, calibration, config)


def _is_plain_sequential(model: nn.Module) -> bool:
    """An ``nn.Sequential`` (not a subclass with its own forward) of built-in torch.nn layers."""
    if not (isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward):
        return False
    return all(type(m).__module__.startswith("torch.nn.") for m in model.modules())


__all__ = [
    "CALIBRATION_BATCH", "DROPPED", "MAX_VALUES", "NORMS", "PRE_OPS", "SUPPORTED", "SUPPORTED_TEXT",
    "WEIGHTED", "activation_scales", "check_convertible", "convert", "convert_graph",
    "convert_sequential", "fold_batchnorm",
]
