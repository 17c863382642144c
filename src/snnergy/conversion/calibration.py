"""Calibration: lambda_l of each activation layer, measured on data (Rueckauer et al. 2017).

:func:`measure_scales` runs the un-normalized spiking network's rate model (BatchNorm folded,
ReLU in place of IF neurons) over calibration batches and takes, per activation layer, the p-th
percentile of its non-zero activations (SNN Toolbox; p = 100 is the maximum of Diehl et al.
2015), per layer or per output channel, with :class:`snnergy.normalization.Percentile`: the same
strategy the energy-aware penalties use.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch
from torch import Tensor

from snnergy.config import ConvertConfig
from snnergy.data import input_batches
from snnergy.errors import DataError
from snnergy.normalization import MAX_VALUES, Percentile
from snnergy.simulation import SpikingNetwork

CALIBRATION_BATCH = 256


def batches(calibration: Tensor | Iterable[Any], device: torch.device, dtype: torch.dtype) -> Iterator[Tensor]:
    """Calibration inputs as batches on ``device``: a tensor in chunks of ``CALIBRATION_BATCH``,
    or an iterable of ``x`` / ``(x, y)`` batches (e.g. a DataLoader)."""
    for x in input_batches(calibration, CALIBRATION_BATCH):
        yield x.to(device=device, dtype=dtype)


def measure_scales(raw: SpikingNetwork, inputs: Iterable[Tensor], config: ConvertConfig,
                   max_values: int = MAX_VALUES) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    """Scales by activation name (float64; ``(C,)`` when channel-wise) and the silent layers.

    A layer (or channel) without any non-zero activation gets scale 1.0 and, when the whole layer
    is silent, is listed in the second value.
    """
    normalization = Percentile(config.percentile, config.channelwise)
    stores = {s.neuron_name: normalization.accumulator(max_values) for s in raw.stages if s.neuron_name is not None}
    with torch.no_grad():
        for x in inputs:
            try:
                acts, _ = raw.activations(x)
            except RuntimeError as err:
                raise DataError(f"calibration batch of shape {tuple(x.shape)} does not fit the model: {err}") from None
            for name, act in acts.items():
                stores[name].add(act)
    scales = {name: store.scale() for name, store in stores.items()}
    silent = tuple(name for name, s in scales.items() if bool(torch.isnan(s).all()))
    return {name: torch.nan_to_num(s, nan=1.0) for name, s in scales.items()}, silent
