"""Binding a regularizer to a model: one call before training gives ``penalty(record) -> scalar``.

Per-layer regularizers need nothing of the model; the model-aware ones (``synops``, ``macs``)
need its structure (fan-outs, which activation feeds which layer) and keep running statistics.
:func:`bind_penalty` hides the difference: the training loop binds once and then calls the bound
penalty on the :class:`~snnergy.records.ActivityRecord` of every batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from snnergy.config import ConvertConfig, TrainConfig
from snnergy.errors import ConfigError
from snnergy.records import ActivityRecord
from snnergy.regularizers.layerwise import REGULARIZERS, activity_penalty, is_model_aware


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


@runtime_checkable
class BoundPenalty(Protocol):
    """A penalty bound to one model: call it on each batch's record for a scalar tensor."""

    @property
    def needs_layer_inputs(self) -> bool:
        """Whether the record must hold weighted layers' inputs (``layer_inputs=True``)."""
        ...

    def __call__(self, record: ActivityRecord) -> Tensor: ...


@dataclass(frozen=True)
class LayerwisePenalty:
    """A per-layer regularizer as a bound penalty: :func:`activity_penalty` on each record."""

    name: str
    layer_weights: tuple[float, ...] | None = None

    @property
    def needs_layer_inputs(self) -> bool:
        return False

    def __call__(self, record: ActivityRecord) -> Tensor:
        return activity_penalty(record, self.name, self.layer_weights)


def bind_penalty(
    name: str,
    model: nn.Module,
    input_shape: tuple[int, ...],
    options: PenaltyOptions = PenaltyOptions(),
) -> BoundPenalty:
    """Binds regularizer ``name`` to ``model``: the training loop's penalty, per record.

    Args:
        name: Name in :data:`~snnergy.regularizers.REGULARIZERS`.
        model: The network that will be trained (read once, by a dummy forward pass, for the
            model-aware penalties; nothing is written onto it).
        input_shape: Per-sample input shape, e.g. ``(1, 8, 8)``.
        options: Scales, budget, profile, timesteps and layer weights.

    Returns:
        A :class:`BoundPenalty`; for ``synops`` and ``macs`` it keeps running scale estimates,
        updated at every call (so call it once per training batch).

    Raises:
        ConfigError: Unknown name; a budget, profile or ``timesteps`` given to a per-layer
            regularizer; layer weights given to a model-aware one; or what the entry's ``bind``
            refuses (e.g. a model whose structure it cannot count).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> bind_penalty("l1", net, (4,))
        LayerwisePenalty(name='l1', layer_weights=None)
        >>> type(bind_penalty("synops", net, (4,))).__name__
        'SynOpsPenalty'
    """
    entry = REGULARIZERS.get(name)
    if is_model_aware(entry):
        if options.layer_weights is not None:
            raise ConfigError(
                f"train.layer_weights applies to the per-layer regularizers; '{name}' weights "
                "every input by its exact fan-out already"
            )
        return entry.bind(model, tuple(input_shape), options)  # type: ignore[attr-defined, no-any-return]
    unused = [
        key
        for key, is_set in (
            ("train.budget", options.budget is not None),
            ("train.penalty_profile", options.profile is not None),
            ("train.penalty_timesteps", options.timesteps != 1),
        )
        if is_set
    ]
    if unused:
        model_aware = [n for n in REGULARIZERS.names() if is_model_aware(REGULARIZERS.get(n))]
        raise ConfigError(
            f"{', '.join(unused)} only apply to the energy-aware regularizers "
            f"({', '.join(model_aware)}), not to '{name}'; unset them"
        )
    return LayerwisePenalty(name, options.layer_weights)
