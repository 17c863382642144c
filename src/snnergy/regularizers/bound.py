"""What a regularizer is: a registry entry that binds to a model and gives ``penalty(record)``.

Every entry of :data:`~snnergy.regularizers.REGULARIZERS` is a :class:`RegularizerEntry`: a
frozen dataclass whose ``bind(model, input_shape, options)`` returns a :class:`BoundPenalty`.
Per-layer regularizers (:class:`LayerwiseRegularizer`) need nothing of the model; the
model-aware ones (``synops``, ``macs``, :mod:`snnergy.regularizers.energy_aware`) need its
structure (fan-outs, which activation feeds which layer) and keep running statistics. The
training loop binds once (:func:`~snnergy.regularizers.bind_penalty`) and then calls the bound
penalty on the :class:`~snnergy.records.ActivityRecord` of every batch.

Reference and fast path. Each entry computes its penalty with plain tensor operations
differentiated by autograd (the reference) and, where it pays, with a fast path of the same value
(one autograd node, closed-form gradient: :mod:`snnergy.regularizers.fused`,
:mod:`snnergy.regularizers.fused_energy`). The entry's ``fast`` field chooses, explicitly; it is
``True`` in the registry, and ``dataclasses.replace(entry, fast=False)`` (or
``bind_penalty(..., fast=False)``) gives the reference. Where the fast path cannot take an input
(maps of different batch sizes, per-channel scales, maps of 2**24 values or more) the reference
computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor, nn

from snnergy.config import ConvertConfig, TrainConfig
from snnergy.errors import ConfigError
from snnergy.normalization import Percentile
from snnergy.records import ActivityRecord
from snnergy.regularizers.fused import Kernel, fused_penalty, stackable
from snnergy.regularizers.layerwise import Regularizer


@dataclass(frozen=True)
class PenaltyOptions:
    """How a penalty is bound: what model-aware penalties measure, and the layer weights.

    Attributes:
        percentile: The normalization percentile the converter will use (``convert.percentile``,
            checked by :class:`~snnergy.config.ConvertConfig`);
            ``synops`` divides each layer by a running estimate of it, ``macs`` scales its
            smooth count by it.
        channelwise: One scale per channel, as ``convert.channelwise`` (``synops`` only).
        budget: Penalize only what exceeds this value per sample, in the penalty's unit
            (``None``: penalize the whole value). Model-aware penalties only.
        profile: Energy profile name: the value becomes joules per sample on it (``None``:
            operation counts). Model-aware penalties only.
        timesteps: ``synops``: the value counts a T-step inference (SynOps of T steps, or the
            energy of a T-step inference with ``profile``); 1 gives SynOps per timestep.
        layer_weights: One weight per activation layer (per-layer regularizers only).

    Raises:
        ConfigError: A value out of range (the message names the config key).

    Example:
        >>> PenaltyOptions(budget=2e6).timesteps
        1
    """

    percentile: float = 99.9
    channelwise: bool = False
    budget: float | None = None
    profile: str | None = None
    timesteps: int = 1
    layer_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.budget is not None and not (math.isfinite(self.budget) and self.budget >= 0):
            raise ConfigError(f"train.budget must be a finite number >= 0 or unset, got {self.budget}")
        if isinstance(self.timesteps, bool) or not isinstance(self.timesteps, int) or self.timesteps < 1:
            raise ConfigError(f"train.penalty_timesteps must be an integer >= 1, got {self.timesteps!r}")

    @classmethod
    def from_configs(cls, train: TrainConfig, convert: ConvertConfig | None = None) -> PenaltyOptions:
        """The options a training run implies: its penalty fields and the converter's scales.

        Example:
            >>> PenaltyOptions.from_configs(TrainConfig(budget=5.0), ConvertConfig(percentile=100)).percentile
            100.0
        """
        convert = convert or ConvertConfig()
        return cls(
            percentile=float(convert.percentile),
            channelwise=convert.channelwise,
            budget=train.budget,
            profile=train.penalty_profile,
            timesteps=train.penalty_timesteps,
            layer_weights=train.layer_weights,
        )

    @property
    def normalization(self) -> Percentile:
        """The converter's normalization: ``Percentile(percentile, channelwise)``.

        Example:
            >>> PenaltyOptions(percentile=99.0, channelwise=True).normalization
            Percentile(q=99.0, channelwise=True)
        """
        return Percentile(self.percentile, self.channelwise)


@runtime_checkable
class BoundPenalty(Protocol):
    """A penalty bound to one model: call it on each batch's record for a scalar tensor."""

    @property
    def needs_layer_inputs(self) -> bool:
        """Whether the record must hold weighted layers' inputs (``layer_inputs=True``)."""
        ...

    def __call__(self, record: ActivityRecord) -> Tensor: ...


class RegularizerEntry(Protocol):
    """A registry entry: a frozen dataclass that binds to a model (see the module docstring).

    Attributes:
        model_aware: Whether it needs the model's structure (then ``layer_weights`` does not
            apply, and it cannot be computed from a record alone).
        fast: Compute with the fast path where there is one (``False``: the reference).
    """

    model_aware: ClassVar[bool]
    fast: bool

    def bind(self, model: nn.Module, input_shape: tuple[int, ...], options: PenaltyOptions = ...) -> BoundPenalty:
        """The penalty for ``model`` (per-sample input shape ``input_shape``)."""
        ...


@dataclass(frozen=True)
class LayerwiseRegularizer:
    """Registry entry of a per-layer regularizer: a reference function and its optional kernel.

    Attributes:
        reference: ``(B, ...)`` map -> ``(B,)`` per-sample penalty, differentiated by autograd
            (:mod:`snnergy.regularizers.layerwise` states the convention).
        kernel: The same penalty in one autograd node (:mod:`snnergy.regularizers.fused`);
            ``None``: there is no fast path.
        fast: Use ``kernel`` when there is one and the maps can be stacked (one batch size,
            dtype and device); ``False``: always the reference.

    Example:
        >>> from snnergy.regularizers.layerwise import l1
        >>> from snnergy.regularizers.fused import L1_KERNEL
        >>> rec = ActivityRecord({"relu1": torch.tensor([[0.0, 3.0, 4.0]]), "relu2": torch.tensor([[1.0]])})
        >>> fast, reference = LayerwiseRegularizer(l1, L1_KERNEL), LayerwiseRegularizer(l1, L1_KERNEL, fast=False)
        >>> fast.penalty(rec), reference.penalty(rec)  # 7/3 + 1, to the bit on both paths
        (tensor(3.3333), tensor(3.3333))
        >>> fast(torch.tensor([[0.0, 3.0, 4.0]]))  # the reference function, per sample
        tensor([2.3333])
    """

    reference: Regularizer
    kernel: Kernel | None = None
    fast: bool = True
    model_aware: ClassVar[bool] = False

    def __call__(self, a: Tensor) -> Tensor:
        """The per-sample penalty ``(B,)`` of one map (the reference function)."""
        return self.reference(a)

    def penalty(self, record: ActivityRecord, layer_weights: Sequence[float] | None = None) -> Tensor:
        """The activity penalty of a forward pass: batch mean per layer, weighted sum over layers.

        Args:
            record: Maps of the pass; only ``record.activations`` (in forward order) is used.
            layer_weights: One finite, non-negative weight per activation layer, in forward
                order (``None``: all 1).

        Returns:
            A scalar tensor (0 when the record holds no activation map), differentiable when
            the maps carry a graph.

        Raises:
            ConfigError: ``layer_weights`` of the wrong length (naming both counts) or with a
                negative or non-finite entry.
        """
        maps = list(record.activations.values())
        weights = [1.0] * len(maps) if layer_weights is None else list(layer_weights)
        if len(weights) != len(maps):
            raise ConfigError(
                f"layer_weights has {len(weights)} entries but the model has {len(maps)} "
                f"activation layers ({', '.join(record.activations) or 'none'})"
            )
        for i, w in enumerate(weights):
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ConfigError(f"layer_weights[{i}] must be a finite number >= 0, got {w!r}")
        if not maps:
            return torch.zeros(())
        if self.fast and self.kernel is not None and stackable(maps):
            return fused_penalty(self.kernel, maps, layer_weights)
        total = sum(w * self.reference(a).mean() for w, a in zip(weights, maps))
        return total  # type: ignore[return-value]

    def bind(self, model: nn.Module, input_shape: tuple[int, ...],
             options: PenaltyOptions = PenaltyOptions()) -> LayerwisePenalty:
        """The bound penalty (the model is not read: a per-layer penalty needs only the maps)."""
        return LayerwisePenalty(self, options.layer_weights)


@dataclass(frozen=True)
class LayerwisePenalty:
    """A per-layer regularizer as a bound penalty: :meth:`LayerwiseRegularizer.penalty` on each record."""

    regularizer: LayerwiseRegularizer
    layer_weights: tuple[float, ...] | None = None

    @property
    def needs_layer_inputs(self) -> bool:
        return False

    def __call__(self, record: ActivityRecord) -> Tensor:
        return self.regularizer.penalty(record, self.layer_weights)
