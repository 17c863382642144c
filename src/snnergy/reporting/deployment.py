"""Will it fit, and at what accuracy: the report's tables of quantized accuracy and core mapping.

Read from the JSON form of records only (docs/design.md's results schema):

- *Weight quantization* (``snn.quantized``, with ``simulate.quantize``): per configuration, the
  accuracy of the float32 SNN and of each quantized copy at the configuration's *iso-T* (the float32
  SNN's smallest t reaching the report's target, :func:`~snnergy.reporting.curves.smallest_sufficient`;
  its largest T when it never does), and each copy's own smallest sufficient t with its energy there:
  a copy is read exactly as the float32 SNN is (:func:`~snnergy.reporting.curves.snn_curve`).
- *Core mapping* (``snn.cores``): the mapping depends on the network's geometry only, so every
  configuration of one network (the same activation, levels and width, any regularizer) shares it;
  one row per distinct mapping, naming the networks it holds for: the total cores of each chip,
  whether one chip holds them and the stage with the most cores with the limit that binds it; then
  per stage (layer) its cores and binding limit on each chip.

Imports only :mod:`snnergy.reporting.curves`, :mod:`snnergy.reporting.filters` and
:mod:`snnergy.reporting.tables`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import snnergy.reporting.curves as curves
from snnergy.reporting.filters import config_name, model_label, ok_records
from snnergy.reporting.tables import markdown_table

FLOAT = "fp32"
"""The column label of the unquantized (float32) SNN."""


def widths(records: Sequence[Mapping[str, Any]]) -> list[int]:
    """The weight widths the finished records were also simulated at, widest first.

    Example:
        >>> widths([{"config": {}, "dnn": {}, "snn": {"quantized": {"4": {}, "8": {}}}}])
        [8, 4]
    """
    found = {int(bits) for r in ok_records(records) for bits in ((r.get("snn") or {}).get("quantized") or {})}
    return sorted(found, reverse=True)


def accuracy_at(part: Mapping[str, Any], t: int) -> float | None:
    """The accuracy of a simulation (``snn`` or one of ``snn.quantized``) after ``t`` steps, from its
    curve or its listed T; ``None`` where neither holds ``t``.

    Example:
        >>> part = {"timesteps": [2, 4], "accuracy": [0.5, 0.9], "curve": {"timesteps": [1, 2, 3, 4],
        ...         "accuracy": [0.1, 0.5, 0.8, 0.9]}}
        >>> accuracy_at(part, 3), accuracy_at({**part, "curve": None}, 3), accuracy_at(part, 4)
        (0.8, None, 0.9)
    """
    for source in (part.get("curve") or {}, part):
        steps = source.get("timesteps") or []
        if t in steps:
            return float(source["accuracy"][steps.index(t)])
    return None


def quantization_rows(records: Sequence[Mapping[str, Any]], target: float, profile: str,
                      seeds: bool = False) -> list[dict[str, Any]]:
    """Per finished configuration with ``snn.quantized``: ``iso_t`` (the float32 SNN's smallest t
    reaching ``target``, else its largest T, ``iso_note`` saying so), ``acc_<w>`` at ``iso_t`` and
    ``t_<w>`` / ``energy_<w>`` (joules on ``profile``) at each variant's own smallest sufficient t,
    for ``w`` in ``fp32`` and every width of :func:`widths`.

    Args:
        records: Result records (failed ones are skipped).
        target: The accuracy every smallest sufficient t is taken at.
        profile: Energy profile of the energy columns.
        seeds: Name the seed in each row's configuration (several seeds of one configuration).

    Example:
        >>> curve = lambda acc: {"timesteps": [1, 2, 3], "accuracy": acc, "synops": [1.0, 2.0, 3.0],
        ...                      "energy_j": {"p": [1.0, 2.0, 3.0]}}
        >>> snn = {"timesteps": [3], "accuracy": [0.9], "synops": [3.0], "energy_j": {"p": [3.0]},
        ...        "curve": curve([0.5, 0.9, 0.9]),
        ...        "quantized": {"4": {"timesteps": [3], "accuracy": [0.85], "curve": curve([0.4, 0.7, 0.85])}}}
        >>> row = quantization_rows([{"config": {"regularizer": "none"}, "dnn": {}, "snn": snn}], 0.8, "p")[0]
        >>> row["iso_t"], row["acc_fp32"], row["acc_4"], row["t_fp32"], row["t_4"], row["energy_4"]
        (2, 0.9, 0.7, 2, 3, 3.0)
    """
    bits = widths(records)
    rows = []
    for record in ok_records(records):
        snn = record.get("snn") or {}
        if not snn.get("quantized"):
            continue
        variants = {FLOAT: snn, **{str(b): snn["quantized"].get(str(b)) for b in bits}}
        hit = curves.smallest_sufficient(curves.snn_curve(snn, profile), target)
        iso_t = hit.timesteps if hit is not None else snn["timesteps"][-1]
        name = config_name(record) + (f" seed {record['config'].get('seed')}" if seeds else "")
        row: dict[str, Any] = {"configuration": name, "iso_t": iso_t,
                               "iso_note": "" if hit is not None else "fp32 below target: largest T"}
        for key, part in variants.items():
            if not part:
                continue
            own = curves.smallest_sufficient(curves.snn_curve(part, profile), target)
            row[f"acc_{key}"] = accuracy_at(part, iso_t)
            row[f"t_{key}"] = own.timesteps if own is not None else None
            row[f"energy_{key}"] = own.energy_j if own is not None and math.isfinite(own.energy_j) else None
        rows.append(row)
    return rows


def quantization_columns(records: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The columns and headers of the quantization table for the widths the records hold."""
    keys = [FLOAT, *map(str, widths(records))]
    label = {FLOAT: FLOAT, **{str(b): f"int{b}" for b in widths(records)}}
    columns = ["configuration", "iso_t", *[f"acc_{k}" for k in keys], *[f"t_{k}" for k in keys],
               *[f"energy_{k}" for k in keys], "iso_note"]
    headers = ["configuration", "iso-T", *[f"{label[k]} acc at iso-T" for k in keys],
               *[f"{label[k]} t" for k in keys], *[f"{label[k]} energy at its t (J)" for k in keys], "note"]
    return columns, headers


def quantization_section(records: Sequence[Mapping[str, Any]], target: float, profile: str, heading: str = "##",
                         seeds: bool = False) -> list[str]:
    """The report's weight-quantization table (no lines when no record holds ``snn.quantized``)."""
    rows = quantization_rows(records, target, profile, seeds)
    if not rows:
        return []
    per = "per channel" if any(p.get("per_channel") for r in ok_records(records)
                               for p in ((r.get("snn") or {}).get("quantized") or {}).values()) else "per layer"
    columns, headers = quantization_columns(records)
    return [f"{heading} Weight quantization", "",
            f"The converted SNN simulated again with its weights quantized (symmetric, {per}; biases and thresholds "
            f"float): accuracy at each configuration's iso-T (the fp32 SNN's smallest t reaching the target "
            f"{target:.4f}), and each variant's own smallest t reaching it with its energy there (`{profile}`; the "
            "profile's operation costs, whatever the weight width; empty: it never reaches the target).", "",
            markdown_table(rows, columns, headers), ""]


def _networks(records: Sequence[Mapping[str, Any]]) -> list[tuple[list[str], Mapping[str, Any]]]:
    """Distinct ``snn.cores`` mappings among the finished records, each with the network labels
    (model axes) of the records holding it, in first-seen order."""
    found: dict[str, tuple[list[str], Mapping[str, Any]]] = {}
    for record in ok_records(records):
        cores = (record.get("snn") or {}).get("cores")
        if not cores:
            continue
        names, _ = found.setdefault(json.dumps(cores, sort_keys=True), ([], cores))
        label = model_label(record, always=True)
        if label not in names:
            names.append(label)
    return list(found.values())


def _verdict(chip: Mapping[str, Any]) -> str:
    """One chip's cell: ``19/128 fits; conv2 (synaptic memory)``, ``400/152: 3 chips; ...`` or
    ``no: conv1 (fan-in)`` when one neuron's block already breaks a core's limit.

    Example:
        >>> _verdict({"total_cores": 19, "cores_per_chip": 128, "fits": True, "chips": 1,
        ...           "binding_layer": "conv2", "binding": "synaptic memory"})
        '19/128 fits; most: conv2 (synaptic memory)'
        >>> _verdict({"total_cores": None, "cores_per_chip": 128, "fits": False, "chips": None,
        ...           "binding_layer": "conv1", "binding": "fan-in"})
        'does not map: a neuron of conv1 breaks fan-in'
    """
    if chip["total_cores"] is None:
        return f"does not map: a neuron of {chip['binding_layer']} breaks {chip['binding']}"
    fits = "fits" if chip["fits"] else f"does not fit ({chip.get('chips')} chips)"
    if chip["binding"] == "none":
        return f"{chip['total_cores']}/{chip['cores_per_chip']} {fits} (one core per stage)"
    return f"{chip['total_cores']}/{chip['cores_per_chip']} {fits}; most: {chip['binding_layer']} ({chip['binding']})"


def core_rows(records: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """The core-mapping tables' rows: (one per distinct network with a verdict per chip, one per
    network and stage with its cores and binding limit per chip, the chips in order).

    Example:
        >>> cores = {"loihi": {"total_cores": 2, "cores_per_chip": 128, "fits": True, "chips": 1,
        ...                    "binding_layer": "fc1", "binding": "none",
        ...                    "layers": [{"name": "fc1", "cores": 1, "binding": "none"},
        ...                               {"name": "fc2", "cores": 1, "binding": "none"}]}}
        >>> rec = {"config": {"regularizer": "none"}, "dnn": {}, "snn": {"cores": cores}}
        >>> nets, layers, chips = core_rows([rec, {**rec, "config": {"regularizer": "l1", "strength": 0.1}}])
        >>> nets[0]["network"], nets[0]["loihi"], [(r["layer"], r["loihi"]) for r in layers], chips
        ('relu', '2/128 fits (one core per stage)', [('fc1', '1'), ('fc2', '1')], ['loihi'])
    """
    networks = _networks(records)
    chips = list(dict.fromkeys(chip for _, cores in networks for chip in cores))
    summary, layers = [], []
    for names, cores in networks:
        label = ", ".join(names)
        summary.append({"network": label, **{chip: _verdict(cores[chip]) for chip in chips if chip in cores}})
        stages = list(dict.fromkeys(layer["name"] for chip in chips if chip in cores for layer in cores[chip]["layers"]))
        for stage in stages:
            row: dict[str, Any] = {"network": label, "layer": stage}
            for chip in chips:
                layer = next((x for x in (cores.get(chip) or {}).get("layers", []) if x["name"] == stage), None)
                if layer is not None:
                    count = "-" if layer["cores"] is None else str(layer["cores"])
                    row[chip] = count if layer["binding"] == "none" else f"{count} ({layer['binding']})"
            layers.append(row)
    return summary, layers, chips


def core_section(records: Sequence[Mapping[str, Any]], heading: str = "##") -> list[str]:
    """The report's core-mapping tables (no lines when no record holds ``snn.cores``)."""
    summary, layers, chips = core_rows(records)
    if not summary:
        return []
    return [f"{heading} Core mapping", "",
            "Cores of each neuromorphic chip the converted network needs (docs/design.md, \"Core mapping\": each "
            "stage split over cores within the chip's published neurons, fan-in and synaptic memory per core; a "
            "lower bound, not a compiler's placement). The mapping depends on the network's geometry only, so one "
            "row holds for every configuration of the networks named. *most*: the stage with the most cores and "
            "the limit that binds it.", "",
            markdown_table(summary, ["network", *chips]), "",
            "Per stage: cores (the binding limit; `-`: one neuron's inputs already break it, so the network does "
            "not map).", "",
            markdown_table(layers, ["network", "layer", *chips]), ""]


__all__ = ["FLOAT", "accuracy_at", "core_rows", "core_section", "quantization_columns", "quantization_rows",
           "quantization_section", "widths"]
