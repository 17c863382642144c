"""Activity regularizers: the training penalties, per layer or aware of the model's energy.

One registry, :data:`REGULARIZERS` (:mod:`snnergy.regularizers.catalog`), of one entry type
(:class:`RegularizerEntry`: a frozen dataclass with ``bind``):

- per-layer penalties (``none``, ``l1``, ``l2``, ``hoyer``, ``hoyer-square``,
  ``transformed-l1``), each a :class:`LayerwiseRegularizer`: a pure function of one activation
  map, ``(B, ...) -> (B,)`` (:mod:`snnergy.regularizers.layerwise` documents the convention), and
  its fast kernel (:mod:`snnergy.regularizers.fused`), combined over layers by
  :func:`activity_penalty`;
- energy-aware penalties (``synops``: the converted SNN's expected SynOps or energy; ``macs``: the
  DNN's effective MACs on zero-skipping hardware), which need the model's structure
  (:mod:`snnergy.regularizers.energy_aware` documents the formulas).

:func:`bind_penalty` binds either kind to a model once, before training, and returns
``penalty(record) -> scalar``; this is what the training loop calls on each batch. Each entry
has a reference path and, where it pays, a fast path of the same value; its ``fast`` field (or
``bind_penalty(..., fast=False)``) chooses explicitly (:mod:`snnergy.regularizers.bound`).

This package imports :mod:`snnergy.counting` (for the exact fan-outs that SynOps and MACs are
counted with), :mod:`snnergy.energy` (for profiles) and :mod:`snnergy.normalization` (the
converter's scale); they import only records, registry and errors, so data still flows one way.
"""

from snnergy.regularizers.bound import (
    BoundPenalty,
    LayerwisePenalty,
    LayerwiseRegularizer,
    PenaltyOptions,
    RegularizerEntry,
)
from snnergy.regularizers.catalog import REGULARIZERS, activity_penalty, bind_penalty, is_model_aware
from snnergy.regularizers.energy_aware import MacsPenalty, MacsRegularizer, SynOpsPenalty, SynOpsRegularizer
from snnergy.regularizers.fused import handing_off
from snnergy.regularizers.estimates import (
    MACS_EPS,
    budget_excess,
    expected_synops,
    nonzero_percentile,
    scale_with_gradient,
    smooth_macs,
    update_scale,
)
from snnergy.regularizers.layerwise import (
    TL1_BETA,
    Regularizer,
    hoyer,
    hoyer_square,
    l1,
    l2,
    no_penalty,
    transformed_l1,
)
from snnergy.regularizers.structure import ModelStructure, SpikingLayer, trace_structure

__all__ = [
    "MACS_EPS", "REGULARIZERS", "TL1_BETA", "BoundPenalty", "LayerwisePenalty", "LayerwiseRegularizer",
    "MacsPenalty", "MacsRegularizer", "ModelStructure", "PenaltyOptions", "Regularizer", "RegularizerEntry",
    "SpikingLayer", "SynOpsPenalty", "SynOpsRegularizer", "activity_penalty", "bind_penalty", "budget_excess",
    "expected_synops", "handing_off", "hoyer", "hoyer_square", "is_model_aware", "l1", "l2", "no_penalty",
    "nonzero_percentile", "scale_with_gradient", "smooth_macs", "trace_structure", "transformed_l1", "update_scale",
]
