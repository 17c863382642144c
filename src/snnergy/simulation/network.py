"""The converted spiking network: its stages, its JSON description and its files.

A :class:`SpikingNetwork` is a chain of :class:`SpikingStage` s (weightless ops, one Conv2d/Linear
layer, then integrate-and-fire neurons, except the last stage: the readout). A stage may also
receive :class:`Shortcut` s (residual branches): the spikes of an earlier stage, or the network
input, through weightless ops and one weighted op (a Conv2d/Linear or a per-channel
:class:`ChannelScale`, the normalized identity); their currents add to the stage's own current
before its neurons (or its readout).
:meth:`SpikingNetwork.to_spec` and :meth:`SpikingNetwork.from_spec` describe it as JSON, checked
key by key, and :func:`save_snn` / :func:`load_snn` write and read it as safetensors weights plus
that spec, never unpickling. The spec keeps the neuron (threshold, reset, initial potential ``v0``)
and which neurons came from trained-threshold activations (``clipped``: their rate model is
``clamp(x, 0, 1)``, the others' ReLU); a network whose weights were quantized
(:func:`snnergy.simulation.quantize.quantize_weights`) also has ``weight_quantization``:
``{"bits": b, "per_channel": bool}`` (absent: float32 weights; any spec version may carry it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from snnergy.checkpoints import load_state_into, load_tensors, read_json, save_tensors, write_json
from snnergy.errors import CheckpointError, ConfigError
from snnergy.simulation.neurons import RESETS, IFNeuron
from snnergy.simulation.spec import (
    BRANCH_LAYERS, F32_MAX, F32_TINY, INT, LAYERS, NUM, OPS, POS, STR, check_field, first_line, is_dict,
    list_of, module_spec, stage_from_spec,
)
from snnergy.simulation.stages import ChannelScale, Shortcut, SpikingStage, gate_max_pool  # noqa: F401 - re-exported
from snnergy.structure import Activation, NetworkPlan, Stage, branch_of

SPEC_FORMAT = "snnergy.snn"
#: Version 2 adds ``stages[i].shortcuts``, version 3 ``neuron.v0`` and ``clipped``; older files are
#: still read (no shortcuts before 2; ``v0 = 0`` and no clipped neurons before 3).
SPEC_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
#: Most elements one sample may hold at the input or at any layer (:func:`load_snn` refuses more):
#: 4e8 bytes in float32, far above any network here (a 224 x 224 x 64 conv output is 3.2e6).
MAX_SAMPLE_ELEMENTS = 10**8


class SpikingNetwork(nn.Module):
    """A converted, rate-coded SNN: stages in order, the last one non-spiking (the readout).

    Args:
        stages: The stages; all but the last spiking, each spiking one with a ``neuron_name``.
        input_shape: Per-sample input shape, e.g. ``(1, 8, 8)``.
        neuron: The IF neuron of every spiking stage.
        scales: Normalization scale lambda of each spiking layer (one value or one per channel),
            by neuron name, for reports.
        silent_layers: Neuron names with no non-zero activation on the calibration data.
        clipped: Neuron names of trained-threshold activations (QCFS, trained clip), converted
            with lambda = theta: their rate model is ``clamp(x, 0, 1)`` (the activation's clip
            at theta, normalized), the others' ``relu(x)``.
        weight_bits: Width of the quantized weights (``None``: float32, not quantized).
        weight_per_channel: Whether the quantized weights have one scale per output channel.
    """

    def __init__(self, stages: Sequence[SpikingStage], input_shape: Sequence[int],
                 neuron: IFNeuron = IFNeuron(), scales: dict[str, list[float]] | None = None,
                 silent_layers: Sequence[str] = (), clipped: Sequence[str] = (),
                 weight_bits: int | None = None, weight_per_channel: bool = False) -> None:
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
        for i, stage in enumerate(stages):
            pools = [j for branch in (stage, *stage.shortcuts) for j, op in enumerate(branch.pre)
                     if isinstance(op, nn.MaxPool2d)]
            if pools and (i == 0 or pools != [0] or any(isinstance(op, nn.MaxPool2d) for c in stage.shortcuts
                                                          for op in c.pre)):
                raise ConfigError(f"stage '{stage.name}': a MaxPool2d must be the first op of a stage's own "
                                  "branch after spiking neurons (it gates their spikes by spike counts)")
        earlier: set[str | None] = {None}
        for stage in stages:
            for shortcut in stage.shortcuts:
                if shortcut.source not in earlier:
                    raise ConfigError(f"stage '{stage.name}': shortcut '{shortcut.name}' reads "
                                      f"'{shortcut.source}', which is not an earlier stage's neurons")
            earlier.add(stage.neuron_name)
        unknown = [name for name in clipped if name not in earlier or name is None]
        if unknown:
            raise ConfigError(f"clipped neurons {unknown} are not neuron names of this network")
        if weight_bits is not None and (isinstance(weight_bits, bool) or not isinstance(weight_bits, int)
                                        or not 2 <= weight_bits <= 16):
            raise ConfigError(f"weight_bits must be None or an integer in [2, 16], got {weight_bits!r}")
        self.stages = nn.ModuleList(stages)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.neuron = neuron
        self.scales = {k: [float(v) for v in vals] for k, vals in (scales or {}).items()}
        self.silent_layers = tuple(silent_layers)
        self.clipped = tuple(clipped)
        self.weight_bits = weight_bits
        self.weight_per_channel = bool(weight_per_channel)

    def forward(self, x: Tensor) -> Tensor:
        """The rate model (ReLU, or ``clamp(x, 0, 1)`` for :attr:`clipped` neurons, in place of IF):
        logits of the normalized DNN for ``x`` ``(B, ...)``."""
        return self.activations(x)[1]

    def activations(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Rate-model activations ``(B, *shape)`` by neuron name (the DNN's / lambda) and logits.

        A neuron's rate model is ``relu(x)``, or ``clamp(x, 0, 1)`` when it is :attr:`clipped`
        (a trained-threshold activation: theta * clamp(x / theta, 0, 1) is its clip at theta;
        QCFS's floor is what ``T = L`` steps reproduce, not the rate limit).
        """
        acts: dict[str, Tensor] = {}
        clipped = set(self.clipped)
        outputs: dict[str | None, Tensor] = {None: x}  # what shortcuts read
        for stage in self.stages:
            x = stage.total_current(x, outputs) if len(stage.shortcuts) else stage(x)
            if stage.spiking:
                x = torch.clamp(x, 0.0, 1.0) if stage.neuron_name in clipped else torch.relu(x)
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

    def plan(self) -> NetworkPlan:
        """The network's :class:`~snnergy.structure.NetworkPlan`: every stage's and shortcut's
        shapes, poolings and layer geometry (what counting reads), from one dummy pass.

        A :class:`ChannelScale` shortcut is an identity branch; the neurons are listed as the
        rate model's activations: ``relu``, or ``clip`` at threshold 1 for :attr:`clipped` ones.
        """
        shapes: dict[str | None, tuple[int, ...]] = {None: tuple(self.input_shape)}
        stages, weighted, previous = [], [], None
        for stage in self.stages:
            main = branch_of(stage.name, previous, list(stage.pre), stage.layer, shapes[previous])
            shortcuts = tuple(branch_of(c.name, c.source, list(c.pre), c.layer, shapes[c.source])
                              for c in stage.shortcuts)
            neuron = None
            if stage.spiking:
                neuron = Activation(stage.neuron_name, "clip", {"threshold": [1.0]}, main.out_shape) \
                    if stage.neuron_name in self.clipped else Activation(stage.neuron_name, "relu", {}, main.out_shape)
                shapes[stage.neuron_name] = main.out_shape
            stages.append(Stage(main, shortcuts, neuron))
            weighted += [b.geometry for b in (main, *shortcuts) if b.geometry is not None]
            previous = stage.neuron_name
        return NetworkPlan(tuple(self.input_shape), tuple(stages), tuple(weighted))

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
            "neuron": {"threshold": float(self.neuron.threshold), "reset": self.neuron.reset,
                       "v0": float(self.neuron.v0)},
            "stages": [{"name": s.name, "neuron_name": s.neuron_name, "spiking": s.spiking,
                        "pre": [module_spec(op, OPS, "op") for op in s.pre],
                        "layer": module_spec(s.layer, LAYERS, "kind"),
                        "shortcuts": [{"name": c.name, "source": c.source,
                                       "pre": [module_spec(op, OPS, "op") for op in c.pre],
                                       "layer": module_spec(c.layer, BRANCH_LAYERS, "kind")}
                                      for c in s.shortcuts]}
                       for s in self.stages],
            "scales": {k: list(v) for k, v in self.scales.items()},
            "silent_layers": list(self.silent_layers),
            "clipped": list(self.clipped),
            **({} if self.weight_bits is None else
               {"weight_quantization": {"bits": int(self.weight_bits), "per_channel": self.weight_per_channel}}),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> SpikingNetwork:
        """Rebuilds the network of :meth:`to_spec` (fresh weights; load them separately).

        Raises:
            CheckpointError: A key is missing or holds a bad value (the message names it).
        """
        if not isinstance(spec, dict):
            raise CheckpointError("snn spec must be a JSON object")
        check_field(spec, "format", "", lambda v: v == SPEC_FORMAT, f"'{SPEC_FORMAT}'")
        version = check_field(spec, "version", "", lambda v: INT[0](v) and v in READABLE_VERSIONS,
                         f"one of {list(READABLE_VERSIONS)}")
        shape = check_field(spec, "input_shape", "", lambda v: list_of(v, POS[0]) and v, "positive ints")
        neuron = check_field(spec, "neuron", "", is_dict, "an object")
        threshold = check_field(neuron, "threshold", "neuron", lambda v: NUM[0](v) and F32_TINY <= v <= F32_MAX,
                           f"a number in [{F32_TINY:.3g}, {F32_MAX:.3g}] (a normal float32)")
        reset = check_field(neuron, "reset", "neuron", lambda v: v in RESETS, f"one of {RESETS}")
        v0, clipped = 0.0, []  # version 1 and 2 networks started at 0 and had ReLU rate models only
        if version >= 3:
            v0 = check_field(neuron, "v0", "neuron", lambda v: NUM[0](v) and 0 <= v < 1, "a number in [0, 1)")
            clipped = check_field(spec, "clipped", "", lambda v: list_of(v, STR[0]), "a string list")
        raw = check_field(spec, "stages", "", lambda v: isinstance(v, list) and v, "a non-empty list")
        stages = [stage_from_spec(s, f"stages[{i}]", version) for i, s in enumerate(raw)]
        scales = check_field(spec, "scales", "", lambda v: is_dict(v) and all(
            list_of(x, NUM[0]) for x in v.values()), "an object of number lists")
        silent = check_field(spec, "silent_layers", "", lambda v: list_of(v, STR[0]), "a string list")
        bits, per_channel = None, False
        if spec.get("weight_quantization") is not None:
            quant = check_field(spec, "weight_quantization", "", is_dict, "an object or null")
            bits = check_field(quant, "bits", "weight_quantization", lambda v: INT[0](v) and 2 <= v <= 16,
                               "an integer in [2, 16]")
            per_channel = check_field(quant, "per_channel", "weight_quantization", lambda v: isinstance(v, bool),
                                      "true or false")
        try:
            return cls(stages, shape, IFNeuron(float(threshold), reset, float(v0)), scales, silent, clipped,
                       bits, per_channel)
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
                              f"{first_line(err)}") from None
