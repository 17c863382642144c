"""Calibration: lambda_l of each activation layer, measured on data (Rueckauer et al. 2017).

:func:`measure_scales` runs the un-normalized spiking network's rate model (BatchNorm folded,
ReLU in place of IF neurons) over calibration batches and takes, per activation layer, the p-th
percentile of its non-zero activations (SNN Toolbox; p = 100 is the maximum of Diehl et al.
2015), per layer or per output channel.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch
from torch import Tensor

from snnergy.config import ConvertConfig
from snnergy.errors import DataError
from snnergy.simulation import SpikingNetwork

#: Activation values kept per layer for the percentile; beyond, a deterministic subsample.
MAX_VALUES = 2**24
CALIBRATION_BATCH = 256


def batches(calibration: Tensor | Iterable[Any], device: torch.device, dtype: torch.dtype) -> Iterator[Tensor]:
    """Calibration inputs as batches on ``device``: a tensor in chunks, or an iterable of ``x`` /
    ``(x, y)`` batches (e.g. a DataLoader)."""
    if isinstance(calibration, Tensor):
        for i in range(0, calibration.shape[0], CALIBRATION_BATCH):
            yield calibration[i : i + CALIBRATION_BATCH].to(device=device, dtype=dtype)
        return
    for item in calibration:
        x = item[0] if isinstance(item, (tuple, list)) and item else item
        if not isinstance(x, Tensor):
            raise DataError(f"calibration batches must be tensors or (x, y) pairs, got {type(x).__name__}")
        yield x.to(device=device, dtype=dtype)


def measure_scales(raw: SpikingNetwork, inputs: Iterable[Tensor], config: ConvertConfig,
                   max_values: int = MAX_VALUES) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    """Scales by activation name (float64; ``(C,)`` when channel-wise) and the silent layers.

    A layer (or channel) without any non-zero activation gets scale 1.0 and, when the whole layer
    is silent, is listed in the second value.
    """
    stores = {s.neuron_name: ActivationValues(config.channelwise, max_values)
              for s in raw.stages if s.neuron_name is not None}
    with torch.no_grad():
        for x in inputs:
            try:
                acts, _ = raw.activations(x)
            except RuntimeError as err:
                raise DataError(f"calibration batch of shape {tuple(x.shape)} does not fit the model: {err}") from None
            for name, act in acts.items():
                stores[name].add(act)
    scales = {name: store.percentile(config.percentile) for name, store in stores.items()}
    silent = tuple(name for name, s in scales.items() if bool(torch.isnan(s).all()))
    return {name: torch.nan_to_num(s, nan=1.0) for name, s in scales.items()}, silent


class ActivationValues:
    """Activation values of one layer as rows ``(C, n)`` (zeros stored as NaN when channelwise)."""

    def __init__(self, channelwise: bool, max_values: int = MAX_VALUES) -> None:
        self.channelwise, self.max_values = channelwise, max_values
        self.parts: list[Tensor] = []
        self.stride = 1

    def add(self, a: Tensor) -> None:
        if self.channelwise:
            rows = a.detach().transpose(0, 1).reshape(a.shape[1], -1).float().cpu()
            rows = rows.masked_fill(rows == 0, float("nan"))
        else:
            rows = a.detach()[a != 0].reshape(1, -1).float().cpu()
        self.parts.append(rows[:, :: self.stride])
        while sum(p.numel() for p in self.parts) > self.max_values:
            self.parts = [p[:, ::2] for p in self.parts]
            self.stride *= 2

    def percentile(self, q: float) -> Tensor:
        """Per row: the q-th percentile of the non-NaN values, NumPy-style; NaN if none."""
        values = torch.sort(torch.cat(self.parts, dim=1), dim=1).values.double()  # NaN sorts last
        count = (~torch.isnan(values)).sum(dim=1)
        out = torch.full((values.shape[0],), float("nan"), dtype=torch.float64)
        if values.shape[1] > 0:
            last = (count - 1).clamp(min=0)
            pos = q / 100 * last.double()
            low = pos.floor().long()
            v_low = values.gather(1, low[:, None]).squeeze(1)
            v_high = values.gather(1, torch.minimum(low + 1, last)[:, None]).squeeze(1)
            out = (v_low + (pos - low) * (v_high - v_low)).masked_fill(count == 0, float("nan"))
        return out if self.channelwise else out.squeeze(0)
