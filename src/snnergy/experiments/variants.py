"""The parts of an SNN record beyond its float32 simulation: quantized variants and core mappings.

Glue only, for every driver that simulates (``compare``, ``sweep``, ``snnergy simulate``):

- ``snn.quantized``: with ``simulate.quantize`` (e.g. ``[8, 4]``), the converted SNN is copied with
  its weights quantized (:func:`~snnergy.simulation.quantize_weights`; per layer, or per channel with
  ``convert.weight_per_channel``) and simulated by the same :func:`~snnergy.experiments.snn.simulate`
  on the same samples, one record per width holding :data:`QUANTIZED_KEYS` (accuracy at every t,
  SynOps, energy), so the reports read a variant exactly as they read the float32 SNN.
- ``snn.cores``: the network's core mapping on every chip of :data:`snnergy.hardware.CHIPS`
  (:func:`~snnergy.hardware.map_plan` of ``snn.plan()``): total cores, whether one chip holds it, and
  per stage its cores and the limit that binds. The mapping reads the plan's geometry only, so it is
  the same for every weight width (each chip's own ``weight_bits`` sizes its synaptic memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from snnergy.config import ExperimentConfig
from snnergy.data import Data
from snnergy.hardware import CHIPS, NetworkMapping, map_plan
from snnergy.simulation import SpikingNetwork, quantize_weights

from snnergy.experiments.snn import simulate

QUANTIZED_KEYS = ("timesteps", "accuracy", "synops", "input_macs", "neuron_updates", "energy_j",
                  "energy_breakdown_j", "synops_per_layer", "spike_rate", "samples", "curve")
"""The keys of an SNN record a quantized variant keeps (what its accuracy and energy are read from)."""

LAYER_KEYS = ("name", "neurons", "synapses", "fan_in", "cores", "binding")
"""The keys of each stage's mapping kept in ``snn.cores.<chip>.layers``."""


def quantized_records(snn: SpikingNetwork, config: ExperimentConfig, data: Data, device: torch.device | str = "cpu",
                      progress: bool = False) -> dict[str, dict[str, Any]]:
    """``snn.quantized``: by weight width (as a string, a JSON key), the record of ``snn`` simulated
    with its weights quantized to that width; empty when ``config.simulate.quantize`` is.

    Each record holds :data:`QUANTIZED_KEYS` of :func:`~snnergy.experiments.snn.simulate` (the same
    simulate slice, profiles and seed as the float32 record) plus ``bits`` and ``per_channel``.

    Raises:
        ConfigError: ``snn`` is already quantized (``convert.weight_bits``; the config refuses both).
    """
    per_channel = config.convert.weight_per_channel
    records: dict[str, dict[str, Any]] = {}
    for bits in config.simulate.quantize:
        variant = simulate(quantize_weights(snn, bits, per_channel), data, config.simulate, profiles=config.profiles,
                           seed=config.seed, device=device, progress=progress).to_dict()
        records[str(bits)] = {"bits": bits, "per_channel": per_channel, **{k: variant[k] for k in QUANTIZED_KEYS}}
    return records


def mapping_summary(mapping: NetworkMapping) -> dict[str, Any]:
    """One chip's entry of ``snn.cores``: the verdict and per stage :data:`LAYER_KEYS`.

    ``binding`` is the limit binding the stage with the most cores (``binding_layer``), the one that
    decides the count or, where a stage cannot be mapped (``total_cores`` null), the limit one neuron's
    block already breaks.

    Example:
        >>> from torch import nn
        >>> from snnergy.structure import trace
        >>> plan = trace(nn.Sequential(nn.Linear(64, 300), nn.ReLU(), nn.Linear(300, 10)), (64,))
        >>> s = mapping_summary(map_plan(plan, "loihi"))
        >>> s["total_cores"], s["fits"], s["cores_per_chip"], [layer["cores"] for layer in s["layers"]]
        (2, True, 128, [1, 1])
    """
    layers = [{key: getattr(layer, key) for key in LAYER_KEYS} for layer in mapping.layers]
    worst = next(layer for layer in mapping.layers if layer.name == mapping.binding_layer)
    return {"cores_per_chip": mapping.chip.cores_per_chip, "total_cores": mapping.total_cores, "fits": mapping.fits,
            "chips": mapping.chips, "binding_layer": mapping.binding_layer, "binding": worst.binding, "layers": layers}


def core_mappings(snn: SpikingNetwork, chips: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """``snn.cores``: by chip (every registered one unless ``chips`` names some), the network's mapping
    (:func:`mapping_summary`)."""
    plan = snn.plan()
    return {name: mapping_summary(map_plan(plan, name)) for name in (chips or CHIPS.names())}


def snn_extras(snn: SpikingNetwork, config: ExperimentConfig, data: Data, device: torch.device | str = "cpu",
               progress: bool = False) -> dict[str, Any]:
    """The keys added to a record's ``snn`` part: ``cores`` always, ``quantized`` when
    ``simulate.quantize`` lists widths."""
    extras: dict[str, Any] = {"cores": core_mappings(snn)}
    if config.simulate.quantize:
        extras["quantized"] = quantized_records(snn, config, data, device, progress)
    return extras


__all__ = ["LAYER_KEYS", "QUANTIZED_KEYS", "core_mappings", "mapping_summary", "quantized_records", "snn_extras"]
