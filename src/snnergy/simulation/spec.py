"""The JSON description of a converted network, checked key by key: every value is validated
against a table of (predicate, what it expects) before a module is built, so a damaged or hostile
spec is one clear error naming the key."""

from __future__ import annotations

import math
import reprlib
from typing import Any, Callable

import torch
from torch import nn

from snnergy.errors import CheckpointError, ConfigError
from snnergy.simulation.stages import ChannelScale, Shortcut, SpikingStage


# A spec check is (predicate, what it expects); ops and layers are rebuilt from these tables.
# Integers stay within int32 (sizes, kernels, dims); torch would overflow on larger ones.
_MAX_INT = 2**31 - 1
F32_MAX = float(torch.finfo(torch.float32).max)
F32_TINY = float(torch.finfo(torch.float32).tiny)
_BOOL = (lambda v: isinstance(v, bool), "true or false")
INT = (lambda v: isinstance(v, int) and not isinstance(v, bool) and abs(v) <= _MAX_INT, "an int32 integer")
POS = (lambda v: INT[0](v) and v > 0, "a positive int32 integer")
_PAIR = (lambda v: isinstance(v, list) and len(v) == 2 and all(INT[0](i) and i >= 0 for i in v),
         "a pair of non-negative int32 integers")
_PADDING = (lambda v: v in ("same", "valid") or _PAIR[0](v), "a pair of integers, 'same' or 'valid'")
STR = (lambda v: isinstance(v, str) and bool(v), "a non-empty string")
NUM = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), "a number")
OPS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "avg_pool2d": (nn.AvgPool2d, {"kernel_size": _PAIR, "stride": _PAIR, "padding": _PAIR, "ceil_mode": _BOOL,
                                  "count_include_pad": _BOOL,
                                  "divisor_override": (lambda v: v is None or POS[0](v), "null or > 0")}),
    "flatten": (nn.Flatten, {"start_dim": INT, "end_dim": INT}),
    "max_pool2d": (nn.MaxPool2d, {"kernel_size": _PAIR, "stride": _PAIR}),
}
LAYERS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "conv2d": (nn.Conv2d, {"in_channels": POS, "out_channels": POS, "kernel_size": _PAIR, "stride": _PAIR,
                           "padding": _PADDING, "dilation": _PAIR, "groups": POS, "bias": _BOOL}),
    "linear": (nn.Linear, {"in_features": POS, "out_features": POS, "bias": _BOOL}),
}
BRANCH_LAYERS = {**LAYERS, "scale": (ChannelScale, {"features": POS})}


def module_spec(module: nn.Module, table: dict[str, Any], tag: str) -> dict[str, Any]:
    """``{tag: kind, argument: value...}`` of an op or layer, as its constructor takes them."""
    kind = next((k for k, (cls, _) in table.items() if type(module) is cls), None)
    if kind is None:
        raise ConfigError(f"unsupported {tag} {type(module).__name__} in a spiking stage")
    spec: dict[str, Any] = {tag: kind}
    for key, check in table[kind][1].items():
        value = getattr(module, key)
        if key == "bias":
            value = value is not None
        elif check in (_PAIR, _PADDING) and not isinstance(value, str):
            value = [int(i) for i in value] if isinstance(value, (tuple, list)) else [int(value)] * 2
        spec[key] = value
    return spec


def _module_from_spec(d: Any, where: str, table: dict[str, Any], tag: str) -> nn.Module:
    kind = check_field(d, tag, where, lambda v: v in table, f"one of {list(table)}")
    cls, schema = table[kind]
    kwargs = {k: check_field(d, k, where, *check) for k, check in schema.items()}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, RuntimeError, OverflowError) as err:
        raise CheckpointError(f"snn spec: '{where}' is not a valid {kind}: {first_line(err)}") from None


def stage_from_spec(d: Any, where: str, version: int) -> SpikingStage:
    name = check_field(d, "name", where, *STR)
    neuron_name = check_field(d, "neuron_name", where, lambda v: v is None or STR[0](v), "a string or null")
    spiking = check_field(d, "spiking", where, *_BOOL)
    pre = _pre_from_spec(d, where)
    layer = check_field(d, "layer", where, is_dict, "an object")
    layer = _module_from_spec(layer, f"{where}.layer", LAYERS, "kind")
    shortcuts = []
    if version >= 2:  # version 1 had no shortcuts
        raw = check_field(d, "shortcuts", where, lambda v: isinstance(v, list), "a list")
        for j, c in enumerate(raw):
            at = f"{where}.shortcuts[{j}]"
            branch = check_field(c, "layer", at, is_dict, "an object")
            shortcuts.append(Shortcut(check_field(c, "name", at, *STR),
                                      check_field(c, "source", at, lambda v: v is None or STR[0](v), "a string or null"),
                                      _pre_from_spec(c, at), _module_from_spec(branch, f"{at}.layer", BRANCH_LAYERS, "kind")))
    return SpikingStage(name, neuron_name, pre, layer, spiking, shortcuts)


def _pre_from_spec(d: Any, where: str) -> nn.Sequential:
    ops = check_field(d, "pre", where, lambda v: isinstance(v, list), "a list")
    return nn.Sequential(*[_module_from_spec(o, f"{where}.pre[{j}]", OPS, "op") for j, o in enumerate(ops)])


def check_field(d: Any, key: str, where: str, check: Callable[[Any], Any], expect: str) -> Any:
    path = f"{where}.{key}" if where else key
    if not is_dict(d):
        raise CheckpointError(f"snn spec: '{where}' must be an object")
    if key not in d:
        raise CheckpointError(f"snn spec: missing key '{path}'")
    try:
        ok = check(d[key])
    except (TypeError, OverflowError):  # `v in table` of a list or dict; math.isfinite(10**400)
        ok = False
    if not ok:
        raise CheckpointError(f"snn spec: key '{path}' must be {expect}, got {reprlib.repr(d[key])}")
    return d[key]


def is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def list_of(v: Any, check: Callable[[Any], bool]) -> bool:
    return isinstance(v, list) and all(check(i) for i in v)


def first_line(err: Exception) -> str:
    """The first line of an exception's message (torch appends C++ stack traces to some)."""
    return (str(err).splitlines() or [type(err).__name__])[0]
