"""NIR import: a NIR graph of the subset :func:`~snnergy.interop.export_nir` writes, as a network.

The mapping of NIR's semantics onto snnergy's (IF reset, threshold and resistance folding, the
readout) is described in :mod:`snnergy.interop.nir_export`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from snnergy.errors import ConfigError, ConversionError
from snnergy.interop.nir_export import RESET_KEY, V0_KEY, load_nir, read_nir
from snnergy.simulation import RESETS, ChannelScale, IFNeuron, Shortcut, SpikingNetwork, SpikingStage

_PRE_NODES = ("AvgPool2d", "SumPool2d", "Flatten")
_WEIGHTED_NODES = ("Conv2d", "Affine", "Linear")
_KNOWN_NODES = ("Input", "Output", "IF", "I", "Scale", *_PRE_NODES, *_WEIGHTED_NODES)


def import_nir(source: str | Path | Any, reset: str | None = None) -> SpikingNetwork:
    """Builds a :class:`~snnergy.simulation.SpikingNetwork` from a NIR file or ``nir.NIRGraph``.

    Args:
        source: A ``.nir`` file or a ``nir.NIRGraph``.
        reset: The IF neurons' reset, ``"subtract"`` or ``"zero"``, whatever the graph says
            (``None``: the metadata ``snnergy_reset``, else NIR's reset to ``v_reset = 0``). Graphs
            from readers that reset by subtraction but write NIR's reset to zero (sinabs's
            ``IAFSqueeze``) need ``reset="subtract"`` to give their spikes.

    The ``Input`` shape is one sample's, ``(F,)`` or ``(C, H, W)``; a leading batch of 1, as norse
    and sinabs write (``(1, 64)``, ``(1, C, H, W)``), is dropped, and so is a leading 1 on the
    arrays of IF, I and Scale nodes; ``Flatten`` may flatten every per-sample dim (``start_dim``
    0) or every dim after the batch (``start_dim`` 1, NIR's default, as torch readers apply it).

    Accepts the subset :func:`export_nir` writes. Every IF node (and ``Output``, possibly behind an
    ``I`` integrator) sums one or more branches; a branch is pooling/flatten nodes then one weighted
    node (Conv2d, Affine, Linear, or Scale for an identity shortcut), read from ``Input`` or from an
    IF node. The IF nodes must form one chain: each one's main branch (a Conv2d/Affine/Linear)
    reads the previous IF node (the first: ``Input``); its other branches become residual
    shortcuts, which may read any earlier IF node or the input.

    Raises:
        CheckpointError: The file is missing or is not a readable NIR file.
        ConversionError: A node outside the subset, an arrangement snnergy cannot simulate, a
            batch other than 1, or a node whose shape does not fit its input (the message names the
            node).
        ConfigError: ``reset`` is not one of ``"subtract"``, ``"zero"``.
    """
    if reset is not None and reset not in RESETS:
        raise ConfigError(f"import_nir: reset must be one of {', '.join(RESETS)} (or None: the graph's), got {reset!r}")
    nir = load_nir()
    graph = read_nir(nir, source) if isinstance(source, (str, Path)) else source
    if not isinstance(graph, nir.NIRGraph):
        raise ConversionError(f"import_nir needs a path or a nir.NIRGraph, got {type(graph).__name__}")
    return _Importer(graph, reset).network()


class _Importer:
    """Reads a NIR graph junction by junction (IF nodes, then the readout), in chain order."""

    def __init__(self, graph: Any, reset: str | None = None) -> None:
        self.reset = reset
        self.nodes = dict(graph.nodes)
        self.kind = {name: type(node).__name__ for name, node in self.nodes.items()}
        self.incoming: dict[str, list[str]] = {name: [] for name in self.nodes}
        self.outgoing: dict[str, list[str]] = {name: [] for name in self.nodes}
        for edge in graph.edges:
            a, b = (str(v.decode() if isinstance(v, bytes) else v) for v in edge)
            if a not in self.nodes or b not in self.nodes:
                raise ConversionError(f"edge ({a!r}, {b!r}) names a node the graph does not hold")
            self.outgoing[a].append(b)
            self.incoming[b].append(a)
        for name, kind in self.kind.items():
            if kind == "NIRGraph":
                raise ConversionError(f"node '{name}' is a nested NIRGraph; import supports flat graphs only")
            if kind not in _KNOWN_NODES:
                raise ConversionError(f"node '{name}' ({kind}) is not supported here: expected "
                                      f"{', '.join(_KNOWN_NODES)} (IF neurons only)")
        inputs = [n for n, k in self.kind.items() if k == "Input"]
        outputs = [n for n, k in self.kind.items() if k == "Output"]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ConversionError(f"the graph needs exactly one Input and one Output node, got inputs {inputs} "
                                  f"and outputs {outputs}")
        self.input, self.output = inputs[0], outputs[0]
        shape = tuple(int(s) for s in np.asarray(self.nodes[self.input].input_type["input"]).reshape(-1))
        if not shape or min(shape) < 1:
            raise ConversionError(f"node '{self.input}' (Input) has no valid shape: {shape}")
        shape = self._without_batch(shape)
        self.input_shape = shape
        self.shapes: dict[str, tuple[int, ...]] = {self.input: shape}  # output shape of each source
        self.seen: set[str] = set()  # nodes inside branches

    def _without_batch(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """One sample's shape: ``(F,)`` or ``(C, H, W)``; a leading batch (rank 2 or 4) must be 1.

        A rank-2 shape is ``(batch, F)`` when it starts with 1 or when an Affine/Linear node reads
        it with F inputs; otherwise (a flattened ``(H, W)`` image) it is one sample's."""
        rank = len(shape)
        if rank in (1, 3):
            return shape
        readers = [self.nodes[n] for n in self.outgoing[self.input]]
        flat_readers = rank == 2 and any(
            type(r).__name__ in ("Affine", "Linear") and np.asarray(r.weight).ndim == 2
            and np.asarray(r.weight).shape[1] == shape[1] for r in readers)
        if rank == 4 or (rank == 2 and (shape[0] == 1 or flat_readers)):
            if shape[0] != 1:
                raise ConversionError(
                    f"node '{self.input}' (Input) has shape {shape}: a batch of {shape[0]}; snnergy reads one "
                    f"sample's shape, {shape[1:]} (or with a leading batch of 1, {(1, *shape[1:])})")
            return shape[1:]
        if rank == 2:
            return shape
        raise ConversionError(f"node '{self.input}' (Input) has shape {shape}: expected one sample's (F,) or "
                              "(C, H, W), optionally after a batch of 1")

    def network(self) -> SpikingNetwork:
        readout = self.output
        into_output = self.incoming[self.output]
        if len(into_output) == 1 and self.kind[into_output[0]] == "I":
            readout = into_output[0]
            if self.outgoing[readout] != [self.output]:
                raise ConversionError(f"node '{readout}' (I) must feed only '{self.output}'")
        junctions = [n for n, k in self.kind.items() if k == "IF"] + [readout]
        branches = {j: [self._branch(p, j) for p in self.incoming[j]] for j in junctions}
        for name in self.nodes:
            if name not in self.seen and name not in junctions and name != self.input and name != self.output:
                raise ConversionError(f"node '{name}' ({self.kind[name]}) feeds no IF neurons and no Output")
        stages: list[SpikingStage] = []
        resets: dict[str, str] = {}
        starts: dict[str, float] = {}
        current, visited = self.input, {self.input}
        remaining = list(junctions)
        while remaining:
            ready = [j for j in remaining if all(b[0] in visited for b in branches[j])
                     and any(b[0] == current and self.kind[b[2]] in _WEIGHTED_NODES for b in branches[j])]
            if len(ready) != 1:
                raise ConversionError(f"after '{current}' the graph does not continue as one chain of IF layers "
                                      f"(candidates: {ready or 'none'}); snnergy simulates chains with residual "
                                      "shortcuts only")
            junction = ready[0]
            if junction == readout and len(remaining) > 1:
                raise ConversionError(f"'{readout}' is reached before IF nodes {[j for j in remaining if j != readout]}")
            stages.append(self._stage(junction, branches[junction], current, junction == readout))
            if junction != readout:
                resets[junction] = self.reset or _reset_of(self.nodes[junction], junction)
                starts[junction] = _v0_of(self.nodes[junction], junction)
            visited.add(junction)
            remaining.remove(junction)
            current = junction
        if len(set(resets.values())) > 1:
            raise ConversionError(f"IF nodes disagree on the reset rule ({resets}); snnergy uses one for the network")
        reset = next(iter(resets.values()), "subtract")
        if len(set(starts.values())) > 1:
            raise ConversionError(f"IF nodes disagree on the initial potential {V0_KEY} ({starts}); "
                                  "snnergy uses one for the network")
        v0 = next(iter(starts.values()), 0.0)
        if len(self.shapes[readout]) != 1:
            raise ConversionError(f"node '{readout}' (the readout) gives per-sample shape {self.shapes[readout]}; "
                                  "snnergy scores one value per class (a 1-d output)")
        try:
            return SpikingNetwork(stages, self.input_shape, IFNeuron(1.0, reset, v0))
        except ConfigError as err:
            raise ConversionError(f"NIR graph: {err}") from None

    def _branch(self, last: str, junction: str) -> tuple[str, list[str], str]:
        """(source, pre-op nodes in order, weighted node) of the branch ending in ``last``."""
        if self.kind[last] not in _WEIGHTED_NODES + ("Scale",):
            raise ConversionError(f"node '{last}' ({self.kind[last]}) feeds '{junction}' "
                                  f"({self.kind[junction]}): expected a weighted node "
                                  f"({', '.join(_WEIGHTED_NODES)}, or Scale for an identity shortcut)")
        chain, node = [], last
        while True:  # ends: a cycle would need a node feeding two places, refused below
            self.seen.add(node)
            if len(self.outgoing[node]) != 1:
                raise ConversionError(f"node '{node}' ({self.kind[node]}) feeds {self.outgoing[node]}; only IF "
                                      "nodes and the Input may feed several branches")
            before = self.incoming[node]
            if len(before) != 1:
                raise ConversionError(f"node '{node}' ({self.kind[node]}) has {len(before)} inputs; only IF nodes "
                                      "and Output may sum several branches")
            node = before[0]
            if self.kind[node] in ("Input", "IF"):
                return node, chain[::-1], last
            if self.kind[node] not in _PRE_NODES:
                raise ConversionError(f"node '{node}' ({self.kind[node]}) sits inside a branch into "
                                      f"'{junction}': expected {', '.join(_PRE_NODES)} before the weighted node")
            chain.append(node)

    def _stage(self, junction: str, branches: list[tuple[str, list[str], str]], current: str,
               readout: bool) -> SpikingStage:
        main = next(b for b in branches if b[0] == current and self.kind[b[2]] in _WEIGHTED_NODES)
        built = []
        for source, pre_names, layer_name in branches:
            shape = self.shapes[source]
            pre = []
            for name in pre_names:
                op = _import_op(self.nodes[name], name, shape)
                shape = _apply(op, shape, name)
                pre.append(op)
            if self.kind[layer_name] == "Scale":
                layer = _import_scale(self.nodes[layer_name], layer_name, shape)
            else:
                layer = _import_layer(self.nodes[layer_name], layer_name, shape)
            built.append((source, nn.Sequential(*pre), layer, _apply(layer, shape, layer_name), layer_name))
        shapes = {b[3] for b in built}
        if len(shapes) != 1:
            raise ConversionError(f"branches into '{junction}' give different shapes {sorted(shapes)}")
        shape = built[0][3]
        node = self.nodes[junction]
        if self.kind[junction] == "IF":
            factor = _if_factor(node, junction, shape)
        elif self.kind[junction] == "I":
            factor = _factor(node.r, junction, shape, "r")
        else:
            factor = torch.ones(1, dtype=torch.float64)
        for _, _, layer, _, name in built:
            _fold(layer, factor, junction)
        self.shapes[junction] = shape
        own = next(b for b in built if b[4] == main[2])
        shortcuts = [Shortcut(name, None if source == self.input else source, pre, layer)
                     for source, pre, layer, _, name in built if name != own[4]]
        return SpikingStage(main[2], None if readout else junction, own[1], own[2], not readout, shortcuts)


def _ints(value: Any, name: str, what: str) -> tuple[int, ...]:
    array = np.asarray(value).reshape(-1)
    if array.size == 0 or not np.all(np.isfinite(array.astype(np.float64))) or np.any(array != np.round(array)):
        raise ConversionError(f"node '{name}': {what} must hold integers, got {value!r}")
    return tuple(int(v) for v in array)


def _pair_of(value: Any, name: str, what: str) -> tuple[int, int]:
    values = _ints(value, name, what)
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2:
        raise ConversionError(f"node '{name}': {what} must be one or two integers, got {value!r}")
    return values[0], values[1]


def _tensor(value: Any, name: str, what: str, dims: int) -> torch.Tensor:
    array = np.asarray(value)
    if array.ndim != dims or not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
        raise ConversionError(f"node '{name}': {what} must be a finite {dims}-d array, got shape {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _import_op(node: Any, name: str, shape: tuple[int, ...]) -> nn.Module:
    kind = type(node).__name__
    if kind == "Flatten":
        start, end = int(node.start_dim), int(node.end_dim)
        rank = len(shape)
        everything = (start % rank if rank else 0) == 0 and (end % rank if rank else 0) == rank - 1
        after_batch = start == 1 and (end == -1 or end == rank)  # torch readers' batched Flatten
        if not (everything or after_batch):
            raise ConversionError(f"node '{name}' (Flatten) must flatten all of one sample's dims {shape} "
                                  f"(start_dim 0, or 1 after the batch; end_dim -1), got {start}, {end}")
        return nn.Flatten()
    kernel = _pair_of(node.kernel_size, name, "kernel_size")
    stride = _pair_of(node.stride, name, "stride")
    padding = _pair_of(node.padding, name, "padding")
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ConversionError(f"node '{name}' ({kind}): kernel and stride must be >= 1 and padding >= 0")
    return nn.AvgPool2d(kernel, stride, padding, divisor_override=1 if kind == "SumPool2d" else None)


def _import_layer(node: Any, name: str, shape: tuple[int, ...]) -> nn.Module:
    kind = type(node).__name__
    if kind in ("Affine", "Linear"):
        weight = _tensor(node.weight, name, "weight", 2)
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=kind == "Affine")
        with torch.no_grad():
            layer.weight.copy_(weight)
            if kind == "Affine":
                layer.bias.copy_(_bias(node.bias, name, weight.shape[0]))
        return layer
    weight = _tensor(node.weight, name, "weight", 4)
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode()
    if not (isinstance(padding, str) and padding in ("same", "valid")):
        padding = _pair_of(padding, name, "padding")
    groups = _ints(node.groups, name, "groups")[0]
    if groups < 1 or weight.shape[0] % groups:
        raise ConversionError(f"node '{name}' (Conv2d): groups={groups} does not divide {weight.shape[0]} channels")
    try:
        layer = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                          stride=_pair_of(node.stride, name, "stride"), padding=padding,
                          dilation=_pair_of(node.dilation, name, "dilation"), groups=groups)
    except (ValueError, RuntimeError) as err:
        raise ConversionError(f"node '{name}' (Conv2d): {err}") from None
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(_bias(node.bias, name, weight.shape[0]))
    return layer


def _import_scale(node: Any, name: str, shape: tuple[int, ...]) -> ChannelScale:
    """A ``Scale`` node (an identity shortcut) as one weight per channel (uniform over H and W)."""
    weights = _factor(node.scale, name, shape, "scale")
    layer = ChannelScale(weights.numel())
    with torch.no_grad():
        layer.weight.copy_(weights.float())
    return layer


def _bias(value: Any, name: str, size: int) -> torch.Tensor:
    bias = _tensor(value, name, "bias", 1)
    if bias.shape[0] != size:
        raise ConversionError(f"node '{name}': bias has {bias.shape[0]} values for {size} outputs")
    return bias


def _apply(module: nn.Module, shape: tuple[int, ...], name: str) -> tuple[int, ...]:
    """Per-sample output shape of ``module`` on inputs of ``shape`` (a clear error if they do not fit)."""
    try:
        with torch.no_grad():
            return tuple(module(torch.zeros((1, *shape))).shape[1:])
    except RuntimeError as err:
        raise ConversionError(f"node '{name}' does not fit its input of shape {shape}: {err}") from None


def _factor(value: Any, name: str, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """A per-output-channel factor from a per-neuron array ``value`` (uniform over H and W)."""
    array = np.asarray(value, dtype=np.float64)
    if array.size == 1:
        array = np.full(shape, float(array.reshape(-1)[0]))
    if array.ndim == len(shape) + 1 and array.shape[0] == 1:  # a leading batch of 1
        array = array[0]
    if tuple(array.shape) != tuple(shape) or not np.all(np.isfinite(array)):
        raise ConversionError(f"node '{name}': {what} has shape {array.shape}, its input has {shape}")
    per_channel = array.reshape(shape[0], -1)
    if np.any(per_channel != per_channel[:, :1]):
        raise ConversionError(f"node '{name}': {what} varies within a channel; snnergy folds it per channel")
    return torch.from_numpy(per_channel[:, 0].copy())


def _if_factor(node: Any, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    r = _factor(node.r, name, shape, "r")
    threshold = _factor(node.v_threshold, name, shape, "v_threshold")
    if bool((threshold <= 0).any()) or bool((r <= 0).any()):
        raise ConversionError(f"node '{name}' (IF): r and v_threshold must be positive")
    return r / threshold


def _fold(layer: nn.Module, factor: torch.Tensor, name: str) -> None:
    """Scales the layer's output channels by ``factor`` (skipped when it is exactly 1)."""
    if bool((factor == 1).all()):
        return
    if not math.isfinite(float(factor.abs().max())):
        raise ConversionError(f"node '{name}': r / v_threshold is not finite")
    with torch.no_grad():
        view = factor.view(-1, *[1] * (layer.weight.dim() - 1))
        layer.weight.copy_((layer.weight.double() * view).float())
        if getattr(layer, "bias", None) is not None:
            layer.bias.copy_((layer.bias.double() * factor).float())


def _reset_of(node: Any, name: str) -> str:
    metadata = getattr(node, "metadata", None) or {}
    reset = metadata.get(RESET_KEY)
    if isinstance(reset, bytes):
        reset = reset.decode()
    if reset is not None:
        if reset not in RESETS:
            raise ConversionError(f"node '{name}' (IF): metadata {RESET_KEY}={reset!r} is not one of {RESETS}")
        return str(reset)
    if np.any(np.asarray(node.v_reset, dtype=np.float64) != 0):
        raise ConversionError(f"node '{name}' (IF): v_reset must be 0 (snnergy resets to zero or by subtraction)")
    return "zero"

def _v0_of(node: Any, name: str) -> float:
    """The metadata ``snnergy_v0`` (initial potential, a fraction of the threshold), 0 when absent."""
    value = (getattr(node, "metadata", None) or {}).get(V0_KEY, 0.0)
    value = value.item() if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.size == 1) else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConversionError(f"node '{name}' (IF): metadata {V0_KEY}={value!r} must be a number in [0, 1)")
    return float(value)


__all__ = ["import_nir"]
