"""The network plan: one traced description of a model that every stage reads.

:func:`trace` gives a :class:`NetworkPlan` (stages of weighted layer, folded BatchNorm,
activation and shortcuts, with their geometry). Activations are the registry
:data:`ACTIVATIONS` (a new kind is one entry); unsupported ops get their advice from one table
(:mod:`snnergy.structure.hints`).
"""

from snnergy.structure.activations import ACTIVATIONS, ActivationKind, activation_module_types
from snnergy.structure.geometry import geometry_of, pool_geometry
from snnergy.structure.hints import SUPPORTED_TEXT, function_hint, module_hint
from snnergy.structure.plan import Activation, Branch, NetworkPlan, Stage, branch_of, trace

__all__ = [
    "ACTIVATIONS", "SUPPORTED_TEXT", "Activation", "ActivationKind", "Branch", "NetworkPlan", "Stage",
    "activation_module_types", "branch_of", "function_hint", "geometry_of", "module_hint", "pool_geometry", "trace",
]
