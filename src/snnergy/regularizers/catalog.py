"""The regularizer registry, :data:`REGULARIZERS`, and the two calls that use it.

Every entry is a :class:`~snnergy.regularizers.bound.RegularizerEntry` (one registry type, one
kind of entry): the per-layer regularizers as
:class:`~snnergy.regularizers.bound.LayerwiseRegularizer` (reference function and fast kernel),
the model-aware ``synops`` and ``macs`` as their own entries. The registry is filled here, where
it is defined, from the entries' modules; nothing else adds to it on import.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from torch import Tensor, nn

from snnergy.errors import ConfigError
from snnergy.records import ActivityRecord
from snnergy.registry import Registry
from snnergy.regularizers.bound import BoundPenalty, LayerwiseRegularizer, PenaltyOptions, RegularizerEntry
from snnergy.regularizers.energy_aware import MacsRegularizer, SynOpsRegularizer
from snnergy.regularizers.fused import (
    HOYER_KERNEL,
    HOYER_SQUARE_KERNEL,
    L1_KERNEL,
    L2_KERNEL,
    TRANSFORMED_L1_KERNEL,
)
from snnergy.regularizers.layerwise import hoyer, hoyer_square, l1, l2, no_penalty, transformed_l1

REGULARIZERS: Registry[RegularizerEntry] = Registry("regularizer")
"""Every regularizer by name. Per-layer entries are callable on one map (their reference
function); every entry binds to a model (:func:`bind_penalty`)."""

REGULARIZERS.add("none", LayerwiseRegularizer(no_penalty))
REGULARIZERS.add("l1", LayerwiseRegularizer(l1, L1_KERNEL))
REGULARIZERS.add("l2", LayerwiseRegularizer(l2, L2_KERNEL))
REGULARIZERS.add("hoyer", LayerwiseRegularizer(hoyer, HOYER_KERNEL))
REGULARIZERS.add("hoyer-square", LayerwiseRegularizer(hoyer_square, HOYER_SQUARE_KERNEL))
REGULARIZERS.add("transformed-l1", LayerwiseRegularizer(transformed_l1, TRANSFORMED_L1_KERNEL))
REGULARIZERS.add("synops", SynOpsRegularizer())
REGULARIZERS.add("macs", MacsRegularizer())


def is_model_aware(entry: object) -> bool:
    """Whether a registry entry needs the model's structure (``synops``, ``macs``).

    Example:
        >>> is_model_aware(REGULARIZERS.get("l1")), is_model_aware(REGULARIZERS.get("macs"))
        (False, True)
    """
    return bool(getattr(entry, "model_aware", False))


def _entry(name: str) -> RegularizerEntry:
    """The entry called ``name``; a plain per-layer function ``f(a) -> Tensor`` registered as it is
    counts as ``LayerwiseRegularizer(f)`` (its reference, no fast path)."""
    entry = REGULARIZERS.get(name)
    if callable(getattr(entry, "bind", None)):
        return entry
    if callable(entry):
        return LayerwiseRegularizer(entry)
    raise ConfigError(f"regularizer '{name}' is registered as a {type(entry).__name__}, which is neither a "
                      f"regularizer entry nor a per-layer function")


def activity_penalty(
    record: ActivityRecord, name: str, layer_weights: Sequence[float] | None = None
) -> Tensor:
    """The activity penalty of a forward pass: batch mean per layer, weighted sum over layers.

    The registered entry's :meth:`~snnergy.regularizers.bound.LayerwiseRegularizer.penalty`
    (its fast path where it has one).

    Args:
        record: Maps of the pass; only ``record.activations`` (in forward order) is used.
        name: Regularizer name in :data:`REGULARIZERS`.
        layer_weights: One finite, non-negative weight per activation layer, in forward order
            (``None``: all 1).

    Returns:
        A scalar tensor (0 when the record holds no activation map), differentiable when the
        maps carry a graph.

    Raises:
        ConfigError: Unknown regularizer (listing the known names), a model-aware one (bind it
            with :func:`bind_penalty` instead), or ``layer_weights`` of the wrong length (naming
            both counts) or with a negative or non-finite entry.

    Example:
        >>> import torch
        >>> rec = ActivityRecord({"relu1": torch.tensor([[0.0, 3.0, 4.0]]),
        ...                       "relu2": torch.tensor([[1.0], [3.0]])})
        >>> activity_penalty(rec, "l1")  # 7/3 + (1 + 3)/2
        tensor(4.3333)
        >>> activity_penalty(rec, "l1", layer_weights=[0.0, 0.5])  # 0.5 * 2
        tensor(1.)
    """
    entry = _entry(name)
    if is_model_aware(entry) or not isinstance(entry, LayerwiseRegularizer):
        raise ConfigError(
            f"regularizer '{name}' depends on the model's structure (fan-out, normalization "
            "scales): bind it once with bind_penalty(name, model, input_shape, options) and call "
            "the bound penalty on each record"
        )
    return entry.penalty(record, layer_weights)


def bind_penalty(
    name: str,
    model: nn.Module,
    input_shape: tuple[int, ...],
    options: PenaltyOptions = PenaltyOptions(),
    *,
    fast: bool = True,
) -> BoundPenalty:
    """Binds regularizer ``name`` to ``model``: the training loop's penalty, per record.

    Args:
        name: Name in :data:`REGULARIZERS`.
        model: The network that will be trained (read once, by a dummy forward pass, for the
            model-aware penalties; nothing is written onto it).
        input_shape: Per-sample input shape, e.g. ``(1, 8, 8)``.
        options: Scales, budget, profile, timesteps and layer weights.
        fast: Compute with the entry's fast path where it has one (the default); ``False``: the
            reference (plain operations and autograd), the same values.

    Returns:
        A :class:`~snnergy.regularizers.bound.BoundPenalty`; for ``synops`` and ``macs`` it keeps
        running scale estimates, updated at every call (so call it once per training batch).

    Raises:
        ConfigError: Unknown name; a budget, profile or ``timesteps`` given to a per-layer
            regularizer; layer weights given to a model-aware one; or what the entry's ``bind``
            refuses (e.g. a model whose structure it cannot count).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> type(bind_penalty("l1", net, (4,))).__name__, type(bind_penalty("synops", net, (4,))).__name__
        ('LayerwisePenalty', 'SynOpsPenalty')
        >>> bind_penalty("synops", net, (4,), fast=False).fast
        False
    """
    entry = _entry(name)
    if not fast:
        entry = replace(entry, fast=False)  # type: ignore[type-var]
    if is_model_aware(entry):
        if options.layer_weights is not None:
            raise ConfigError(
                f"train.layer_weights applies to the per-layer regularizers; '{name}' weights "
                "every input by its exact fan-out already"
            )
        return entry.bind(model, tuple(input_shape), options)
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
    return entry.bind(model, tuple(input_shape), options)
