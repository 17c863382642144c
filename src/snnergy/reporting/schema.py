"""The result record's schema, checked when records are read back from ``results.json`` or the store.

A record (docs/design.md) is a JSON object with a ``config`` part and, for a finished configuration, a
``dnn`` and/or an ``snn`` part; a failed one has an ``error`` string instead. :func:`check_records`
checks the types, ranges and list lengths the reports rely on, and that no number is NaN or
infinite (``results.json`` is written with ``allow_nan=False``, so one found there was put there by
something else). Unknown keys are allowed, so that newer records stay readable. Anything wrong is one
:class:`~snnergy.errors.ResultsError` naming the file, the record and the key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from snnergy.errors import ResultsError

Check = tuple[Callable[[Any], bool], str]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _in(low: float, high: float = math.inf) -> Check:
    return (lambda v: _is_number(v) and low <= v <= high,
            f"a number in [{low:g}, {high:g}]" if high < math.inf else f"a number >= {low:g}")


_TEXT: Check = (lambda v: isinstance(v, str) and bool(v), "a non-empty string")
_COUNT: Check = (lambda v: _is_number(v) and not isinstance(v, float) and v >= 0, "an integer >= 0")
_SEED: Check = (lambda v: _is_number(v) and not isinstance(v, float), "an integer")
_FRACTION = _in(0.0, 1.0)
_NONNEG = _in(0.0)
_OPTIONAL_NUMBER: Check = (lambda v: v is None or _is_number(v), "a number or null")
_NAMES: Check = (lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v), "a list of strings")

CONFIG_KEYS: dict[str, Check] = {"dataset": _TEXT, "model": _TEXT, "regularizer": _TEXT, "strength": _NONNEG,
                                 "seed": _SEED}
CONFIG_OPTIONAL: dict[str, Check] = {"activation": _TEXT,
                                     "levels": (lambda v: _COUNT[0](v) and v >= 1, "an integer >= 1"),
                                     "width": (lambda v: _is_number(v) and v > 0, "a number > 0")}
"""Headline model axes (records written before them read as relu, levels 8, width 1)."""
DNN_KEYS: dict[str, Check] = {"accuracy": _FRACTION, "macs_dense": _NONNEG, "macs_effective": _NONNEG}
DNN_OPTIONAL: dict[str, Check] = {"macs_nominal": _NONNEG, "samples": _COUNT, "collapsed": _NAMES,
                                  "accuracy_snn_samples": (lambda v: v is None or _FRACTION[0](v),
                                                           "a number in [0, 1] or null"),
                                  "snn_samples": _COUNT}
SNN_SERIES: dict[str, Check] = {"accuracy": _FRACTION, "synops": _NONNEG, "input_macs": _NONNEG,
                                "neuron_updates": _NONNEG}
_PATHS: Check = (lambda v: isinstance(v, Mapping) and all(p in ("batched", "looped", "event") for p in v.values()),
                  "an object of 'batched', 'looped' or 'event'")
_DENSITIES: Check = (lambda v: isinstance(v, Mapping) and all(_FRACTION[0](d) for d in v.values()),
                     "an object of numbers in [0, 1]")
SNN_OPTIONAL: dict[str, Check] = {"samples": _COUNT, "silent_layers": _NAMES, "input": _TEXT, "paths": _PATHS,
                                  "input_density": _DENSITIES}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Checker:
    """Checks one record; every message starts with ``where`` (file and record number)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, expect: str, value: Any) -> NoReturn:
        raise ResultsError(f"{self.where}: '{path}' must be {expect}, got {_short(value)}")

    def table(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, "an object", value)
        return value

    def key(self, part: Mapping[str, Any], key: str, path: str, check: Check, required: bool = True) -> None:
        if key not in part:
            if required:
                raise ResultsError(f"{self.where}: missing key '{path}.{key}'")
            return
        if not check[0](part[key]):
            self.fail(f"{path}.{key}", check[1], part[key])

    def values(self, part: Any, path: str, check: Check) -> None:
        for name, value in self.table(part, path).items():
            if not check[0](value):
                self.fail(f"{path}.{name}", check[1], value)

    def series(self, value: Any, path: str, check: Check, length: int) -> None:
        if not isinstance(value, list) or len(value) != length:
            self.fail(path, f"a list of {length} values (one per timestep)", value)
        for i, item in enumerate(value):
            if not check[0](item):
                self.fail(f"{path}[{i}]", check[1], item)

    def finite(self, value: Any, path: str) -> None:
        """No NaN or infinity anywhere (iterative: a deep record cannot exhaust the stack)."""
        stack = [(value, path)]
        while stack:
            node, at = stack.pop()
            if isinstance(node, float) and not math.isfinite(node):
                raise ResultsError(f"{self.where}: '{at}' holds {node}, results hold only finite numbers")
            if isinstance(node, Mapping):
                stack.extend((v, f"{at}.{k}") for k, v in node.items())
            elif isinstance(node, list):
                stack.extend((v, f"{at}[{i}]") for i, v in enumerate(node))


def _check_curve(c: _Checker, curve: Mapping[str, Any], steps: list[int], path: str = "snn.curve") -> None:
    """``snn.curve``: increasing integer t ending at the largest T and holding every listed T, and
    its series aligned with them."""
    ts = curve.get("timesteps")
    if not isinstance(ts, list) or not ts or not all(
            _is_number(t) and not isinstance(t, float) and t >= 1 for t in ts) or \
            any(a >= b for a, b in zip(ts, ts[1:])) or ts[-1] != max(steps) or not set(steps) <= set(ts):
        c.fail(f"{path}.timesteps", "increasing integers >= 1 holding every snn.timesteps", ts)
    c.series(curve.get("accuracy"), f"{path}.accuracy", _FRACTION, len(ts))
    c.series(curve.get("synops"), f"{path}.synops", _NONNEG, len(ts))
    for profile, values in c.table(curve.get("energy_j", {}), f"{path}.energy_j").items():
        c.series(values, f"{path}.energy_j.{profile}", _NONNEG, len(ts))


def _check_simulation(c: _Checker, snn: Mapping[str, Any], path: str) -> None:
    """The series of a simulation (``snn``, or one of ``snn.quantized``): the listed T and every list
    aligned with them, the energies by profile and the curve."""
    steps = snn.get("timesteps")
    if not isinstance(steps, list) or not steps or not all(
            _is_number(t) and not isinstance(t, float) and t >= 1 for t in steps):
        c.fail(f"{path}.timesteps", "a non-empty list of integers >= 1", steps)
    for key, check in SNN_SERIES.items():
        c.series(snn.get(key), f"{path}.{key}", check, len(steps))
    for profile, values in c.table(snn.get("energy_j"), f"{path}.energy_j").items():
        c.series(values, f"{path}.energy_j.{profile}", _NONNEG, len(steps))
    for layer, values in c.table(snn.get("synops_per_layer", {}), f"{path}.synops_per_layer").items():
        c.series(values, f"{path}.synops_per_layer.{layer}", _NONNEG, len(steps))
    for profile, parts in c.table(snn.get("energy_breakdown_j", {}), f"{path}.energy_breakdown_j").items():
        for part, values in c.table(parts, f"{path}.energy_breakdown_j.{profile}").items():
            c.series(values, f"{path}.energy_breakdown_j.{profile}.{part}", _NONNEG, len(steps))
    if snn.get("curve") is not None:
        _check_curve(c, c.table(snn["curve"], f"{path}.curve"), steps, f"{path}.curve")


_BITS: Check = (lambda v: _COUNT[0](v) and 2 <= v <= 16, "an integer in [2, 16]")
_CORES: Check = (lambda v: v is None or (_COUNT[0](v) and v >= 1), "an integer >= 1 or null")
CORES_KEYS: dict[str, Check] = {"cores_per_chip": (lambda v: _COUNT[0](v) and v >= 1, "an integer >= 1"),
                                "total_cores": _CORES, "fits": (lambda v: isinstance(v, bool), "true or false"),
                                "binding_layer": _TEXT, "binding": _TEXT}
"""``snn.cores.<chip>``: the mapping's verdict (``total_cores`` null: a stage cannot be mapped)."""


def _check_cores(c: _Checker, cores: Any) -> None:
    """``snn.cores``: by chip, the verdict (:data:`CORES_KEYS`) and per stage its name, cores, binding limit."""
    for chip, mapping in c.table(cores, "snn.cores").items():
        where = f"snn.cores.{chip}"
        mapping = c.table(mapping, where)
        for key, check in CORES_KEYS.items():
            c.key(mapping, key, where, check)
        layers = mapping.get("layers")
        if not isinstance(layers, list):
            c.fail(f"{where}.layers", "a list of stages", layers)
        for i, layer in enumerate(layers):
            layer = c.table(layer, f"{where}.layers[{i}]")
            for key, check in (("name", _TEXT), ("cores", _CORES), ("binding", _TEXT)):
                c.key(layer, key, f"{where}.layers[{i}]", check)


def check_record(record: Any, where: str) -> dict[str, Any]:
    """Checks one result record (see the module docstring); returns it unchanged.

    Args:
        record: The parsed JSON value.
        where: Names the record in messages, e.g. ``"runs/x/results.json: record 3"``.

    Raises:
        ResultsError: The first problem found, naming ``where`` and the key.

    Example:
        >>> check_record({"config": {"dataset": "d", "model": "m", "regularizer": "none", "strength": 0,
        ...                          "seed": 0}, "error": "diverged"}, "r.json: record 0")["error"]
        'diverged'
        >>> check_record({"config": {"dataset": "d"}}, "r.json: record 0")
        Traceback (most recent call last):
        ...
        snnergy.errors.ResultsError: r.json: record 0: missing key 'config.model'
    """
    c = _Checker(where)
    if not isinstance(record, dict):
        c.fail("record", "an object with a 'config' part", record)
    c.finite(record, "record")
    config = c.table(record.get("config"), "config")
    for key, check in CONFIG_KEYS.items():
        c.key(config, key, "config", check)
    for key, check in CONFIG_OPTIONAL.items():
        c.key(config, key, "config", check, required=False)
    if "error" in record:
        c.key(record, "error", "record", (lambda v: isinstance(v, str), "a string"))
        return record
    if "dnn" in record:
        dnn = c.table(record["dnn"], "dnn")
        for key, check in DNN_KEYS.items():
            c.key(dnn, key, "dnn", check)
        for key, check in DNN_OPTIONAL.items():
            c.key(dnn, key, "dnn", check, required=False)
        c.values(dnn.get("sparsity"), "dnn.sparsity", _FRACTION)
        c.values(dnn.get("energy_j"), "dnn.energy_j", _NONNEG)
        for profile, parts in c.table(dnn.get("energy_breakdown_j", {}), "dnn.energy_breakdown_j").items():
            c.values(parts, f"dnn.energy_breakdown_j.{profile}", _NONNEG)
            for key in ("compute", "memory"):
                c.key(parts, key, f"dnn.energy_breakdown_j.{profile}", _NONNEG)
        if "layers" in dnn:
            c.values(dnn["layers"], "dnn.layers", (lambda v: isinstance(v, Mapping), "an object"))
    if record.get("snn") is not None:
        snn = c.table(record["snn"], "snn")
        _check_simulation(c, snn, "snn")
        for key, check in SNN_OPTIONAL.items():
            c.key(snn, key, "snn", check, required=False)
        for bits, variant in c.table(snn.get("quantized", {}), "snn.quantized").items():
            variant = c.table(variant, f"snn.quantized.{bits}")
            c.key(variant, "bits", f"snn.quantized.{bits}", _BITS)
            _check_simulation(c, variant, f"snn.quantized.{bits}")
        if "cores" in snn:
            _check_cores(c, snn["cores"])
        c.values(snn.get("spike_rate", {}), "snn.spike_rate", _OPTIONAL_NUMBER)
        c.values(snn.get("correlation", {}), "snn.correlation", _OPTIONAL_NUMBER)
    return record


def check_records(data: Any, where: str) -> list[dict[str, Any]]:
    """Checks a ``results.json`` document: a list of records; returns it unchanged.

    Example:
        >>> check_records({"config": {}}, "out/results.json")
        Traceback (most recent call last):
        ...
        snnergy.errors.ResultsError: out/results.json: expected a list of result records, found dict
    """
    if not isinstance(data, list):
        raise ResultsError(f"{where}: expected a list of result records, found {type(data).__name__}")
    for i, record in enumerate(data):
        check_record(record, f"{where}: record {i}")
    return data
