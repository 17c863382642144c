"""The converted spiking network: its stages, its JSON description and its files.

A :class:`SpikingNetwork` is a chain of :class:`SpikingStage` s (weightless ops, one Conv2d/Linear
layer, then integrate-and-fire neurons, except the last stage: the readout). A stage may also
receive :class:`Shortcut` s (residual branches): the spikes of an earlier stage, or the network
input, through weightless ops and one weighted op (a Conv2d/Linear or a per-channel
:class:`ChannelScale`, the normalized identity); their currents add to the stage's own current
before its neurons (or its readout).
:meth:`SpikingNetwork.to_spec` and :meth:`SpikingNetwork.from_spec` describe it as JSON, checked
key by key, and :func:`save_snn` / :func:`load_snn` write and read it as safetensors weights plus
that spec, never unpickling.
"""

from __future__ import annotations

import math
import reprlib
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from snnergy.checkpoints import load_state_into, load_tensors, read_json, save_tensors, write_json
from snnergy.errors import CheckpointError, ConfigError
from snnergy.simulation.neurons import RESETS, IFNeuron

SPEC_FORMAT = "snnergy.snn"
#: Version 2 adds ``stages[i].shortcuts``; version 1 files (no shortcuts) are still read.
SPEC_VERSION = 2
READABLE_VERSIONS = (1, 2)
#: Most elements one sample may hold at the input or at any layer (:func:`load_snn` refuses more):
#: 4e8 bytes in float32, far above any network here (a 224 x 224 x 64 conv output is 3.2e6).
MAX_SAMPLE_ELEMENTS = 10**8


class ChannelScale(nn.Module):
    """Multiplies each channel (dim 1) by its own weight: a normalized identity branch.

    An identity shortcut of the DNN adds the source activation ``a`` to the sum; after
    normalization the source spikes at rate ``a / lambda_src`` and the sum is divided by
    ``lambda_out``, so the branch carries ``a * lambda_src / lambda_out``: one weight per channel
    (or one for all, ``features=1``). Each input element feeds one output element.

    Args:
        features: Channels (size of dim 1), or 1 for one shared weight.

    Example:
        >>> scale = ChannelScale(2)
        >>> with torch.no_grad():
        ...     _ = scale.weight.copy_(torch.tensor([2.0, 0.5]))
        >>> scale(torch.ones(1, 2, 1, 1)).flatten().tolist()
        [2.0, 0.5]
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = int(features)
        self.weight = nn.Parameter(torch.ones(self.features))

    def forward(self, x: Tensor) -> Tensor:
        """``x * weight`` broadcast over dim 1 of ``x`` ``(B, C, ...)``."""
        return x * self.weight.view(1, -1, *[1] * (x.dim() - 2))

    def extra_repr(self) -> str:
        return f"features={self.features}"


class Shortcut(nn.Module):
    """A residual branch into a stage: an earlier layer's spikes through linear ops.

    Args:
        name: For reports: the DNN module of its weighted op (e.g. ``"layer2.0.shortcut.0"``) or
            ``"identity:<source>"``.
        source: Neuron name of an earlier stage whose spikes feed it, ``None`` for the input.
        pre: Weightless ops before ``layer`` (AvgPool2d, Flatten).
        layer: Conv2d, Linear (BN folded, normalized) or :class:`ChannelScale` (identity).
    """

    def __init__(self, name: str, source: str | None, pre: nn.Sequential,
                 layer: nn.Conv2d | nn.Linear | ChannelScale) -> None:
        super().__init__()
        self.name = name
        self.source = source
        self.pre = pre
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        """The branch's current for the source's output ``x`` ``(B, ...)``."""
        return self.layer(self.pre(x))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, source={self.source!r}"


class SpikingStage(nn.Module):
    """One weighted layer of the SNN with the weightless ops before it and its neurons.

    Args:
        name: The DNN weighted layer's name (e.g. ``"conv2"``).
        neuron_name: The DNN ReLU's name (e.g. ``"relu2"``), ``None`` for the readout.
        pre: Linear, weightless ops between the previous neurons and ``layer`` (AvgPool2d, Flatten).
        layer: The Conv2d or Linear layer (BN folded, weights normalized).
        spiking: Whether IF neurons follow (``False`` only for the last stage, the readout).
        shortcuts: Residual branches whose currents add to ``layer``'s, in this order.
    """

    def __init__(self, name: str, neuron_name: str | None, pre: nn.Sequential,
                 layer: nn.Conv2d | nn.Linear, spiking: bool, shortcuts: Sequence[Shortcut] = ()) -> None:
        super().__init__()
        self.name = name
        self.neuron_name = neuron_name
        self.pre = pre
        self.layer = layer
        self.spiking = spiking
        self.shortcuts = nn.ModuleList(shortcuts)

    def forward(self, x: Tensor) -> Tensor:
        """The current of the stage's own layer for input ``x`` ``(B, ...)`` (shortcuts excluded)."""
        return self.layer(self.pre(x))

    def total_current(self, x: Tensor, outputs: dict[str | None, Tensor]) -> Tensor:
        """Own current plus every shortcut's, each fed ``outputs[shortcut.source]``, in order."""
        current = self(x)
        for shortcut in self.shortcuts:
            current = current + shortcut(outputs[shortcut.source])
        return current

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
        earlier: set[str | None] = {None}
        for stage in stages:
            for shortcut in stage.shortcuts:
                if shortcut.source not in earlier:
                    raise ConfigError(f"stage '{stage.name}': shortcut '{shortcut.name}' reads "
                                      f"'{shortcut.source}', which is not an earlier stage's neurons")
            earlier.add(stage.neuron_name)
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
        acts: dict[str, Tensor] = {}
        outputs: dict[str | None, Tensor] = {None: x}  # what shortcuts read
        for stage in self.stages:
            x = stage.total_current(x, outputs) if len(stage.shortcuts) else stage(x)
            if stage.spiking:
                x = torch.relu(x)
                acts[stage.neuron_name] = x
                outputs[stage.neuron_name] = x
        return acts, x

    def shortcut_sources(self) -> dict[str | None, int]:
        """Index of the last stage whose shortcuts read each source (neuron name, ``None``: input)."""
        last: dict[str | None, int] = {}
        for i, stage in enumerate(self.stages):
            for shortcut in stage.shortcuts:
                last[shortcut.source] = i
        return last

    def shapes(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        """Per stage name: (the layer's per-sample input shape, its output shape)."""
        param = next(self.parameters())
        x = torch.zeros((1, *self.input_shape), dtype=param.dtype, device=param.device)
        out = {}
        outputs: dict[str | None, Tensor] = {None: x}
        with torch.no_grad():
            for stage in self.stages:
                x = stage.pre(x)
                y = stage.layer(x)
                out[stage.name] = (tuple(x.shape[1:]), tuple(y.shape[1:]))
                for shortcut in stage.shortcuts:
                    branch = shortcut(outputs[shortcut.source])
                    if branch.shape != y.shape:
                        raise ConfigError(f"stage '{stage.name}': shortcut '{shortcut.name}' gives "
                                          f"{tuple(branch.shape[1:])}, the layer {tuple(y.shape[1:])}")
                x = y
                outputs[stage.neuron_name] = y
        return out

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready description (weights excluded): rebuild it with :meth:`from_spec`."""
        return {
            "format": SPEC_FORMAT, "version": SPEC_VERSION, "input_shape": list(self.input_shape),
            "neuron": {"threshold": float(self.neuron.threshold), "reset": self.neuron.reset},
            "stages": [{"name": s.name, "neuron_name": s.neuron_name, "spiking": s.spiking,
                        "pre": [_module_spec(op, _OPS, "op") for op in s.pre],
                        "layer": _module_spec(s.layer, _LAYERS, "kind"),
                        "shortcuts": [{"name": c.name, "source": c.source,
                                       "pre": [_module_spec(op, _OPS, "op") for op in c.pre],
                                       "layer": _module_spec(c.layer, _BRANCH_LAYERS, "kind")}
                                      for c in s.shortcuts]}
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
        version = _field(spec, "version", "", lambda v: _INT[0](v) and v in READABLE_VERSIONS,
                         f"one of {list(READABLE_VERSIONS)}")
        shape = _field(spec, "input_shape", "", lambda v: _list_of(v, _POS[0]) and v, "positive ints")
        neuron = _field(spec, "neuron", "", _is_dict, "an object")
        threshold = _field(neuron, "threshold", "neuron", lambda v: _NUM[0](v) and _F32_TINY <= v <= _F32_MAX,
                           f"a number in [{_F32_TINY:.3g}, {_F32_MAX:.3g}] (a normal float32)")
        reset = _field(neuron, "reset", "neuron", lambda v: v in RESETS, f"one of {RESETS}")
        raw = _field(spec, "stages", "", lambda v: isinstance(v, list) and v, "a non-empty list")
        stages = [_stage_from_spec(s, f"stages[{i}]", version) for i, s in enumerate(raw)]
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

    The spec is first built on the ``meta`` device (no memory): a network whose weights need more
    bytes than ``snn.safetensors`` holds, or whose input or layers exceed
    :data:`MAX_SAMPLE_ELEMENTS` per sample, is refused before anything is allocated.

    Raises:
        CheckpointError: A file is missing, malformed, or the weights do not match the spec.
    """
    folder = Path(folder)
    spec_path, weights_path = folder / "snn.json", folder / "snn.safetensors"
    spec = read_json(spec_path)
    try:
        with torch.device("meta"):
            probe = SpikingNetwork.from_spec(spec)
    except CheckpointError as err:
        raise CheckpointError(f"{spec_path}: {err}") from None
    widest = math.prod(probe.input_shape)
    if widest <= MAX_SAMPLE_ELEMENTS:
        shapes = _fitting_shapes(probe, spec_path)  # the spec alone decides the shapes
        widest = max(math.prod(s) for pair in shapes.values() for s in pair)
    if widest > MAX_SAMPLE_ELEMENTS:
        raise CheckpointError(f"{spec_path}: describes {widest} elements per sample at one layer, "
                              f"at most {MAX_SAMPLE_ELEMENTS} are allowed")
    tensors = load_tensors(weights_path)
    needed = sum(t.numel() * t.element_size() for t in probe.state_dict().values())
    if needed > weights_path.stat().st_size:
        raise CheckpointError(f"{spec_path}: describes {needed} bytes of weights, but {weights_path} "
                              f"holds {weights_path.stat().st_size}")
    snn = SpikingNetwork.from_spec(spec)
    load_state_into(snn, tensors, str(folder))
    _fitting_shapes(snn, folder)
    return snn


def _fitting_shapes(snn: SpikingNetwork, where: Path) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """``snn.shapes()``, or a :class:`CheckpointError` naming ``where`` when the layers do not fit."""
    try:
        return snn.shapes()
    except (RuntimeError, IndexError, ValueError, ConfigError) as err:
        raise CheckpointError(f"{where}: layers do not fit input shape {snn.input_shape}: "
                              f"{_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    """The first line of an exception's message (torch appends C++ stack traces to some)."""
    return (str(err).splitlines() or [type(err).__name__])[0]


# A spec check is (predicate, what it expects); ops and layers are rebuilt from these tables.
# Integers stay within int32 (sizes, kernels, dims); torch would overflow on larger ones.
_MAX_INT = 2**31 - 1
_F32_MAX = float(torch.finfo(torch.float32).max)
_F32_TINY = float(torch.finfo(torch.float32).tiny)
_BOOL = (lambda v: isinstance(v, bool), "true or false")
_INT = (lambda v: isinstance(v, int) and not isinstance(v, bool) and abs(v) <= _MAX_INT, "an int32 integer")
_POS = (lambda v: _INT[0](v) and v > 0, "a positive int32 integer")
_PAIR = (lambda v: isinstance(v, list) and len(v) == 2 and all(_INT[0](i) and i >= 0 for i in v),
         "a pair of non-negative int32 integers")
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
_BRANCH_LAYERS = {**_LAYERS, "scale": (ChannelScale, {"features": _POS})}


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
    except (ValueError, TypeError, RuntimeError, OverflowError) as err:
        raise CheckpointError(f"snn spec: '{where}' is not a valid {kind}: {_first_line(err)}") from None


def _stage_from_spec(d: Any, where: str, version: int) -> SpikingStage:
    name = _field(d, "name", where, *_STR)
    neuron_name = _field(d, "neuron_name", where, lambda v: v is None or _STR[0](v), "a string or null")
    spiking = _field(d, "spiking", where, *_BOOL)
    pre = _pre_from_spec(d, where)
    layer = _field(d, "layer", where, _is_dict, "an object")
    layer = _module_from_spec(layer, f"{where}.layer", _LAYERS, "kind")
    shortcuts = []
    if version >= 2:  # version 1 had no shortcuts
        raw = _field(d, "shortcuts", where, lambda v: isinstance(v, list), "a list")
        for j, c in enumerate(raw):
            at = f"{where}.shortcuts[{j}]"
            branch = _field(c, "layer", at, _is_dict, "an object")
            shortcuts.append(Shortcut(_field(c, "name", at, *_STR),
                                      _field(c, "source", at, lambda v: v is None or _STR[0](v), "a string or null"),
                                      _pre_from_spec(c, at), _module_from_spec(branch, f"{at}.layer", _BRANCH_LAYERS, "kind")))
    return SpikingStage(name, neuron_name, pre, layer, spiking, shortcuts)


def _pre_from_spec(d: Any, where: str) -> nn.Sequential:
    ops = _field(d, "pre", where, lambda v: isinstance(v, list), "a list")
    return nn.Sequential(*[_module_from_spec(o, f"{where}.pre[{j}]", _OPS, "op") for j, o in enumerate(ops)])


def _field(d: Any, key: str, where: str, check: Callable[[Any], Any], expect: str) -> Any:
    path = f"{where}.{key}" if where else key
    if not _is_dict(d):
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


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _list_of(v: Any, check: Callable[[Any], bool]) -> bool:
    return isinstance(v, list) and all(check(i) for i in v)
