"""The activation kinds a network plan understands: one registry entry per kind.

An activation becomes the neurons of the converted SNN. Each kind says how it appears in a
model (module types, functions, tensor methods) and which parameters the converter reads from
it. Adding a kind (e.g. a trained-threshold clip) is one :class:`ActivationKind` registered in
:data:`ACTIVATIONS`; the plan, conversion, activity recording and the regularizers read it here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from snnergy.layers import QCFS, TrainedClip, threshold_parameters
from snnergy.registry import Registry


def _no_parameters(module: nn.Module | None) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class ActivationKind:
    """How one kind of activation appears in a model.

    Attributes:
        name: The registry key (e.g. ``"relu"``).
        modules: Module types that are this activation (exact types: a subclass may change
            ``forward``).
        functions: Functions (``F.relu``, ``torch.relu``...) that are this activation in a traced graph.
        methods: Tensor method names (``x.relu()``) that are this activation.
        parameters: Reads the kind's parameters off a module (the functional form, ``None``,
            has the defaults). A ``threshold`` entry (a list: one value, or one per channel) is the
            activation's own conversion scale (trained thresholds: no percentile).
    """

    name: str
    modules: tuple[type[nn.Module], ...]
    functions: tuple[Callable[..., Any], ...] = ()
    methods: tuple[str, ...] = ()
    parameters: Callable[[nn.Module | None], dict[str, Any]] = field(default=_no_parameters)


ACTIVATIONS: Registry[ActivationKind] = Registry("activation")
"""Every activation kind the plan maps onto spiking neurons."""

ACTIVATIONS.add("relu", ActivationKind(
    "relu", (nn.ReLU,), (F.relu, F.relu_, torch.relu, torch.relu_), ("relu", "relu_")))
# Trained thresholds (snnergy.layers): QCFS (Bu et al., ICLR 2022) and a trained clip (Ho & Chang, DAC 2021)
ACTIVATIONS.add("qcfs", ActivationKind("qcfs", (QCFS,), parameters=threshold_parameters))
ACTIVATIONS.add("clip", ActivationKind("clip", (TrainedClip,), parameters=threshold_parameters))


def activation_module_types() -> tuple[type[nn.Module], ...]:
    """Every module type of every registered kind (what activity recording hooks).

    Example:
        >>> [t.__name__ for t in activation_module_types()]
        ['ReLU', 'QCFS', 'TrainedClip']
    """
    return tuple(t for name in ACTIVATIONS.names() for t in ACTIVATIONS.get(name).modules)


def kind_of_module(module: nn.Module) -> ActivationKind | None:
    """The kind whose module types include ``type(module)`` exactly, else None."""
    return next((k for k in _kinds() if type(module) in k.modules), None)


def kind_of_function(target: Any) -> ActivationKind | None:
    """The kind whose functions include ``target``, else None."""
    return next((k for k in _kinds() if any(target is f for f in k.functions)), None)


def kind_of_method(name: str) -> ActivationKind | None:
    """The kind whose tensor methods include ``name``, else None."""
    return next((k for k in _kinds() if name in k.methods), None)


def _kinds() -> list[ActivationKind]:
    return [ACTIVATIONS.get(name) for name in ACTIVATIONS.names()]
