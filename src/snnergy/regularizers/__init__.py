"""Activity regularizers: the training penalties, per layer or aware of the model's energy.

Two kinds share one registry, :data:`REGULARIZERS`:

- per-layer penalties (``none``, ``l1``, ``l2``, ``hoyer``, ``hoyer-square``,
  ``transformed-l1``): pure functions of one activation map, ``(B, ...) -> (B,)``, combined by
  :func:`activity_penalty` (:mod:`snnergy.regularizers.layerwise` documents the convention);
- energy-aware penalties (``synops``: the converted SNN's expected SynOps or energy; ``macs``: the
  DNN's effective MACs on zero-skipping hardware), which need the model's structure
  (:mod:`snnergy.regularizers.energy_aware` documents the formulas).

:func:`bind_penalty` binds either kind to a model once, before training, and returns
``penalty(record) -> scalar``; this is what the training loop calls on each batch.

This package imports :mod:`snnergy.counting` (for the exact fan-outs that SynOps and MACs are
counted with) and :mod:`snnergy.energy` (for profiles); both import only records, registry and
errors, so data still flows one way.
"""

from snnergy.regularizers.layerwise import (
    REGULARIZERS,
    TL1_BETA,
    Regularizer,
    activity_penalty,
    hoyer,
    hoyer_square,
    is_model_aware,
    l1,
    l2,
    no_penalty,
    transformed_l1,
)
from snnergy.regularizers import fused as _fused  # noqa: F401  (fills layerwise.FAST_PENALTIES)
from snnergy.regularizers.bound import BoundPenalty, LayerwisePenalty, PenaltyOptions, bind_penalty
from snnergy.regularizers.energy_aware import MacsPenalty, MacsRegularizer, SynOpsPenalty, SynOpsRegularizer
from snnergy.regularizers.estimates import (
    MACS_EPS,
    budget_excess,
    expected_synops,
    nonzero_percentile,
    scale_with_gradient,
    smooth_macs,
    update_scale,
)
from snnergy.regularizers.structure import ModelStructure, SpikingLayer, trace_structure

__all__ = [
    "MACS_EPS", "REGULARIZERS", "TL1_BETA", "BoundPenalty", "LayerwisePenalty", "MacsPenalty",
    "MacsRegularizer", "ModelStructure", "PenaltyOptions", "Regularizer", "SpikingLayer",
    "SynOpsPenalty", "SynOpsRegularizer", "activity_penalty", "bind_penalty", "budget_excess",
    "expected_synops", "hoyer", "hoyer_square", "is_model_aware", "l1", "l2", "no_penalty",
    "nonzero_percentile", "scale_with_gradient", "smooth_macs", "trace_structure", "transformed_l1", "update_scale",
]
