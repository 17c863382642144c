"""The converted spiking network: its stages, its JSON description and its files.

A :class:`SpikingNetwork` is a chain of :class:`SpikingStage` s (weightless ops, one Conv2d/Linear
layer, then integrate-and-fire neurons, except the last stage: the readout).
:meth:`SpikingNetwork.to_spec` and :meth:`SpikingNetwork.from_spec` describe it as JSON, checked
key by key, and :func:`save_snn` / :func:`load_snn` write and read it as safetensors weights plus
that spec, never unpickling.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from snnergy.checkpoints import load_state_into, load_tensors, read_json, save_tensors, write_json
from snnergy.errors import CheckpointError, ConfigError
from snnergy.simulation.neurons import RESETS, IFNeuron

SPEC_FORMAT = "snnergy.snn"
SPEC_VERSION = 1


class SpikingStage(nn.Module):
    """One weighted layer of the SNN with the weightless ops before it and its neurons.

    Args:
        name: The DNN weighted layer's name (e.g. ``"conv2"``).
        neuron_name: The DNN ReLU's name (e.g. ``"relu2"``), ``None`` for the readout.
        pre: Linear, weightless ops between the previous neurons and ``layer`` (AvgPool2d, Flatten).
        layer: The Conv2d or Linear layer (BN folded, weights normalized).
        spiking: Whether IF neurons follow (``False`` only for the last stage, the readout).
    """

    def __init__(self, name: str, neuron_name: str | None, pre: nn.Sequential,
                 layer: nn.Conv2d | nn.Linear, spiking: bool) -> None:
        super().__init__()
        self.name = name
        self.neuron_name = neuron_name
        self.pre = pre
        self.layer = layer
        self.spiking = spiking

    def forward(self, x: Tensor) -> Tensor:
        """The stage's input current for input ``x`` ``(B, ...)``."""
        return self.layer(self.pre(x))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, neuron_name={self.neuron_name!r}, spiking={self.spiking}"


class SpikingNetwork(nn.Module):
    """A converted, rate-coded SNN: stages in order, the last one non-spiking (the readout).

    Args:
        stages: The stages; all but the last spiking, each spiking one with a ``neuron_name``.
        input_shape: Per-sample input shape, e.g. ``(1, 8, 8)``.
        neuron: The IF neuron of every spiking stage.
        scales: Normalization scale lambda of each spiking layer (one value or one per channel),
            by neuron name, for reports.
        silent_layers: Neuron names with no non-zero activation on the calibration data.
    """

    def __init__(self, stages: Sequence[SpikingStage], input_shape: Sequence[int],
                 neuron: IFNeuron = IFNeuron(), scales: dict[str, list[float]] | None = None,
                 silent_layers: Sequence[str] = ()) -> None:
        super().__init__()
        if not stages:
            raise ConfigError("a SpikingNetwork needs at least one stage")
        for i, stage in enumerate(stages):
            last = i == len(stages) - 1
            if stage.spiking == last or (stage.neuron_name is None) != last:
                raise ConfigError(f"stage '{stage.name}': every stage but the last must be spiking "
                                  "with a neuron name; the last (readout) must not")
        names = [s.name for s in stages] + [s.neuron_name for s in stages if s.neuron_name]
        if len(set(names)) != len(names):
            raise ConfigError(f"stage and neuron names must be unique, got {names}")
        self.stages = nn.ModuleList(stages)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.neuron = neuron
        self.scales = {k: [float(v) for v in vals] for k, vals in (scales or {}).items()}
        self.silent_layers = tuple(silent_layers)

    def forward(self, x: Tensor) -> Tensor:
        """The rate model (ReLU in place of IF): logits of the normalized DNN for ``x`` ``(B, ...)``."""
        return self.activations(x)[1]

    def activations(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Rate-model activations ``(B, *shape)`` by neuron name (the DNN's / lambda) and logits."""
        acts = {}
        for stage in self.stages:
            x = stage(x)
            if stage.spiking:
                x = torch.relu(x)
                acts[stage.neuron_name] = x
        return acts, x

    def shapes(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        """Per stage name: (the layer's per-sample input shape, its output shape)."""
        param = next(self.parameters())
        x = torch.zeros((1, *self.input_shape), dtype=param.dtype, device=param.device)
        out = {}
        with torch.no_grad():
            for stage in self.stages:
                x = stage.pre(x)
                y = stage.layer(x)
                out[stage.name] = (tuple(x.shape[1:]), tuple(y.shape[1:]))
                x = y
        return out

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready description (weights excluded): rebuild it with :meth:`from_spec`."""
        return {
            "format": SPEC_FORMAT, "version": SPEC_VERSION, "input_shape": list(self.input_shape),
            "neuron": {"threshold": float(self.neuron.threshold), "reset": self.neuron.reset},
            "stages": [{"name": s.name, "neuron_name": s.neuron_name, "spiking": s.spiking,
                        "pre": [_module_spec(op, _OPS, "op") for op in s.pre],
                        "layer": _module_spec(s.layer, _LAYERS, "kind")}
                       for s in self.stages],
            "scales": {k: list(v) for k, v in self.scales.items()},
            "silent_layers": list(self.silent_layers),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> SpikingNetwork:
        """Rebuilds the network of :meth:`to_spec` (fresh weights; load them separately).

        Raises:
            CheckpointError: A key is missing or holds a bad value (the message names it).
        """
        if not isinstance(spec, dict):
            raise CheckpointError("snn spec must be a JSON object")
        _field(spec, "format", "", lambda v: v == SPEC_FORMAT, f"'{SPEC_FORMAT}'")
        _field(spec, "version", "", lambda v: v == SPEC_VERSION, str(SPEC_VERSION))
        shape = _field(spec, "input_shape", "", lambda v: _list_of(v, _POS[0]) and v, "positive ints")
        neuron = _field(spec, "neuron", "", _is_dict, "an object")
        threshold = _field(neuron, "threshold", "neuron", lambda v: _NUM[0](v) and v > 0, "> 0")
        reset = _field(neuron, "reset", "neuron", lambda v: v in RESETS, f"one of {RESETS}")
        raw = _field(spec, "stages", "", lambda v: isinstance(v, list) and v, "a non-empty list")
        stages = [_stage_from_spec(s, f"stages[{i}]") for i, s in enumerate(raw)]
        scales = _field(spec, "scales", "", lambda v: _is_dict(v) and all(
            _list_of(x, _NUM[0]) for x in v.values()), "an object of number lists")
        silent = _field(spec, "silent_layers", "", lambda v: _list_of(v, _STR[0]), "a string list")
        try:
            return cls(stages, shape, IFNeuron(float(threshold), reset), scales, silent)
        except ConfigError as err:
            raise CheckpointError(f"snn spec: {err}") from None


def save_snn(snn: SpikingNetwork, folder: str | Path) -> None:
    """Writes ``folder/snn.safetensors`` (weights) and ``folder/snn.json`` (spec), atomically."""
    folder = Path(folder)
    save_tensors(folder / "snn.safetensors", snn.state_dict())
    write_json(folder / "snn.json", snn.to_spec())


def load_snn(folder: str | Path) -> SpikingNetwork:
    """Reads a network saved by :func:`save_snn` (never unpickles).

    Raises:
        CheckpointError: A file is missing, malformed, or the weights do not match the spec.
    """
    folder = Path(folder)
    spec = read_json(folder / "snn.json")
    try:
        snn = SpikingNetwork.from_spec(spec)
    except CheckpointError as err:
        raise CheckpointError(f"{folder / 'snn.json'}: {err}") from None
    load_state_into(snn, load_tensors(folder / "snn.safetensors"), str(folder))
    try:
        snn.shapes()
    except RuntimeError as err:
        raise CheckpointError(f"{folder}: layers do not fit input shape {snn.input_shape}: {err}")
    return snn


# A spec check is (predicate, what it expects); ops and layers are rebuilt from these tables.
_BOOL = (lambda v: isinstance(v, bool), "true or false")
_INT = (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
_POS = (lambda v: _INT[0](v) and v > 0, "a positive integer")
_PAIR = (lambda v: isinstance(v, list) and len(v) == 2 and all(_INT[0](i) and i >= 0 for i in v),
         "a pair of non-negative integers")
_PADDING = (lambda v: v in ("same", "valid") or _PAIR[0](v), "a pair of integers, 'same' or 'valid'")
_STR = (lambda v: isinstance(v, str) and bool(v), "a non-empty string")
_NUM = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), "a number")
_OPS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "avg_pool2d": (nn.AvgPool2d, {"kernel_size": _PAIR, "stride": _PAIR, "padding": _PAIR, "ceil_mode": _BOOL,
                                  "count_include_pad": _BOOL,
                                  "divisor_override": (lambda v: v is None or _POS[0](v), "null or > 0")}),
    "flatten": (nn.Flatten, {"start_dim": _INT, "end_dim": _INT}),
}
_LAYERS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "conv2d": (nn.Conv2d, {"in_channels": _POS, "out_channels": _POS, "kernel_size": _PAIR, "stride": _PAIR,
                           "padding": _PADDING, "dilation": _PAIR, "groups": _POS, "bias": _BOOL}),
    "linear": (nn.Linear, {"in_features": _POS, "out_features": _POS, "bias": _BOOL}),
}


def _module_spec(module: nn.Module, table: dict[str, Any], tag: str) -> dict[str, Any]:
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
    kind = _field(d, tag, where, lambda v: v in table, f"one of {list(table)}")
    cls, schema = table[kind]
    kwargs = {k: _field(d, k, where, *check) for k, check in schema.items()}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"snn spec: '{where}' is not a valid {kind}: {err}") from None


def _stage_from_spec(d: Any, where: str) -> SpikingStage:
    name = _field(d, "name", where, *_STR)
    neuron_name = _field(d, "neuron_name", where, lambda v: v is None or _STR[0](v), "a string or null")
    spiking = _field(d, "spiking", where, *_BOOL)
    ops = _field(d, "pre", where, lambda v: isinstance(v, list), "a list")
    pre = nn.Sequential(*[_module_from_spec(o, f"{where}.pre[{j}]", _OPS, "op") for j, o in enumerate(ops)])
    layer = _field(d, "layer", where, _is_dict, "an object")
    layer = _module_from_spec(layer, f"{where}.layer", _LAYERS, "kind")
    return SpikingStage(name, neuron_name, pre, layer, spiking)


def _field(d: Any, key: str, where: str, check: Callable[[Any], Any], expect: str) -> Any:
    path = f"{where}.{key}" if where else key
    if not _is_dict(d):
        raise CheckpointError(f"snn spec: '{where}' must be an object")
    if key not in d:
        raise CheckpointError(f"snn spec: missing key '{path}'")
    if not check(d[key]):
        raise CheckpointError(f"snn spec: key '{path}' must be {expect}, got {d[key]!r}")
    return d[key]


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _list_of(v: Any, check: Callable[[Any], bool]) -> bool:
    return isinstance(v, list) and all(check(i) for i in v)
