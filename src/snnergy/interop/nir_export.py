"""NIR export and import of a converted network (the Neuromorphic Intermediate Representation).

NIR (Pedersen et al. 2024, Nature Communications 15:8122; package ``nir``) describes a spiking
network as a graph of nodes with their parameters. :func:`export_nir` writes a
:class:`~snnergy.simulation.SpikingNetwork` as the chain

    Input -> [AvgPool2d | SumPool2d | Flatten]* -> Conv2d | Affine | Linear -> IF -> ... -> Affine -> Output

with the data-based normalization and any BatchNorm already folded into the weights (the network's
weights are the normalized ones). A residual shortcut is one more branch into its stage's IF node
(or ``Output``): pooling/flatten nodes and a Conv2d/Affine/Linear node, or a ``Scale`` node for an
identity shortcut, read from an earlier IF node or the input; NIR sums the inputs of a node with
several incoming edges. :func:`import_nir` reads the same subset back.

How snnergy's semantics map onto NIR's:

- **IF neurons.** NIR's IF integrates ``dv/dt = r I`` and, on a spike, sets ``v`` to ``v_reset``.
  snnergy's neurons integrate one step ``v += I`` (``r = 1``, time step 1), fire when
  ``v >= v_threshold`` and by default reset *by subtraction* (``v -= v_threshold``), which NIR's IF
  cannot express. The export writes every IF with ``r = 1``, ``v_threshold`` = the network's
  threshold, ``v_reset = 0`` and the metadata ``{"snnergy_reset": "subtract" | "zero"}``: a reader
  that ignores the metadata simulates reset to zero. :func:`import_nir` honours that metadata and
  otherwise resets to zero (``v_reset`` must then be 0). The cost of reset to zero, measured on
  converted LeNets, is documented in README's NIR section; NIR writes ``v > v_threshold`` where
  snnergy fires at equality too, which matters only for potentials exactly on the threshold.
- **Initial potential.** NIR's IF has no initial-potential field. snnergy's neurons start at
  ``v0 * v_threshold`` (``convert.v0``: 1/2 for trained-threshold nets, Bu et al., ICLR 2022):
  the export writes ``v0`` (the fraction) as the metadata ``{"snnergy_v0": v0}`` of every IF node
  and of the graph; :func:`import_nir` honours it (0 when absent), other readers ignore it and
  start at 0 (which costs a trained-threshold net accuracy at low T).
- **Readout.** The last weighted node feeds ``Output`` directly: the output is that layer's
  current at each step, and snnergy's prediction is the argmax of its sum over steps. An ``I``
  (integrator) node before ``Output`` is accepted on import, its ``r`` folded into the weights.
- **Thresholds and resistances on import** may differ from 1 per layer or per channel: a neuron
  with ``r`` and ``v_threshold`` fires exactly like one with threshold 1 fed ``I r / v_threshold``,
  so that factor is folded into the weighted layer before it (it must be uniform over H and W).

Example:
    >>> from torch import nn
    >>> from snnergy.simulation import SpikingNetwork, SpikingStage
    >>> from snnergy.interop import import_nir
    >>> import tempfile, pathlib
    >>> snn = SpikingNetwork([SpikingStage("fc1", "if1", nn.Sequential(nn.Flatten()), nn.Linear(4, 3), True),
    ...                       SpikingStage("fc2", None, nn.Sequential(), nn.Linear(3, 2), False)], (1, 2, 2))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "net.nir"
    >>> sorted(export_nir(snn, path).nodes)
    ['fc1', 'fc1.pre0', 'fc2', 'if1', 'input', 'output']
    >>> [stage.name for stage in import_nir(path).stages]
    ['fc1', 'fc2']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from snnergy._version import __version__
from snnergy.errors import CheckpointError, ConfigError, ConversionError
from snnergy.simulation import ChannelScale, SpikingNetwork

#: Metadata key of each IF node holding snnergy's reset rule.
RESET_KEY = "snnergy_reset"
#: Metadata key of each IF node (and the graph) holding the initial potential, a fraction of the threshold.
V0_KEY = "snnergy_v0"
INPUT_NODE, OUTPUT_NODE = "input", "output"
#: How average pooling is written: ``"avg"`` (``AvgPool2d`` nodes) or ``"sum"`` (``SumPool2d`` with
#: the 1/(kh kw) folded into the next weighted node: the readers built on nirtorch map no AvgPool2d).
POOLINGS = ("avg", "sum")
#: How flattening is written: ``"sample"`` (``Flatten(start_dim=0)`` over one sample's shape, NIR's
#: types) or ``"batch"`` (``Flatten(start_dim=1)`` over ``(1, C, H, W)``: torch readers apply the
#: node to batched tensors, and ``start_dim=0`` would fold the batch into the features).
FLATTENS = ("sample", "batch")
#: ``export_nir(..., reader=...)`` / ``snnergy export-nir --for``: the options each reader needs.
#: ``nir`` is snnergy's own subset (exact round trip, NIR's types checked).
#: sinabs 3.1.3 reads ``Flatten.start_dim`` per sample (it adds 1 for the batch, ``sinabs/nir.py``);
#: norse and snnTorch apply it to batched tensors (issue 15: snnTorch flattens the batch).
READERS: dict[str, dict[str, str]] = {
    "nir": {"pooling": "avg", "flatten": "sample"},
    "sinabs": {"pooling": "sum", "flatten": "sample"},
    "norse": {"pooling": "sum", "flatten": "batch"},
    "snntorch": {"pooling": "sum", "flatten": "batch"},
}


def export_nir(snn: SpikingNetwork, path: str | Path | None = None, *, reader: str | None = None,
               pooling: str | None = None, flatten: str | None = None) -> Any:
    """Describes ``snn`` as a NIR graph and writes it to ``path`` (HDF5, NIR's file format).

    A residual shortcut becomes a second branch into its stage's IF node (or ``Output``): NIR sums
    the inputs of a node with several incoming edges. Its weighted op is a Conv2d / Affine /
    Linear node, or a ``Scale`` node for an identity shortcut (:class:`~snnergy.simulation.ChannelScale`).

    Args:
        snn: A converted network (:func:`snnergy.convert`).
        path: The ``.nir`` file to write; ``None`` only builds the graph.
        reader: A preset of :data:`READERS` (``nir``, ``sinabs``, ``norse``, ``snntorch``; ``None``:
            ``nir``); ``pooling`` and ``flatten`` override it.
        pooling: ``"avg"`` or ``"sum"`` (:data:`POOLINGS`); ``"sum"`` writes each average pooling as
            ``SumPool2d`` and multiplies the next weighted node's weights (not its bias) by
            1/(kh kw): the same function (exact for power-of-two windows, e.g. 2x2).
        flatten: ``"sample"`` or ``"batch"`` (:data:`FLATTENS`); ``"batch"`` writes
            ``Flatten(start_dim=1)`` over ``(1, *shape)`` and the graph is built without NIR's type
            check (which reads the batch as a feature dimension).

    Returns:
        The ``nir.NIRGraph`` (nodes named after the stages, neuron layers and shortcuts).

    Raises:
        ConversionError: The network holds something NIR's subset here cannot express (an
            AvgPool2d with ``ceil_mode``, or with ``count_include_pad=False`` and padding).
        ConfigError: The optional package ``nir`` is not installed, or an unknown ``reader``,
            ``pooling`` or ``flatten``.
    """
    if reader is not None and reader not in READERS:
        raise ConfigError(f"unknown NIR reader '{reader}'; known: {', '.join(READERS)}")
    options = dict(READERS[reader or "nir"])
    options.update({k: v for k, v in {"pooling": pooling, "flatten": flatten}.items() if v is not None})
    if options["pooling"] not in POOLINGS or options["flatten"] not in FLATTENS:
        raise ConfigError(f"NIR export: pooling must be one of {POOLINGS} and flatten one of {FLATTENS}, "
                          f"got {options['pooling']!r}, {options['flatten']!r}")
    nir = load_nir()
    names = _NameTable()
    names.take(INPUT_NODE)
    names.take(OUTPUT_NODE)
    nodes: dict[str, Any] = {INPUT_NODE: nir.Input(input_type=np.array(snn.input_shape))}
    edges: list[tuple[str, str]] = []
    param = next(snn.parameters())
    x = torch.zeros((1, *snn.input_shape), dtype=param.dtype, device=param.device)
    produced: dict[str | None, tuple[str, torch.Tensor]] = {None: (INPUT_NODE, x)}  # source -> (node, dummy)

    def branch(source: str, x: torch.Tensor, pre: nn.Sequential, layer: nn.Module, prefix: str,
               layer_name: str) -> tuple[str, torch.Tensor]:
        """Adds ``pre`` ops then ``layer`` after node ``source``; returns the layer's node and output."""
        factor = 1.0  # average poolings written as sums: their 1/(kh kw), folded into the layer
        for j, op in enumerate(pre):
            name = names.take(f"{prefix}.pre{j}")
            nodes[name] = _export_op(nir, op, tuple(x.shape[1:]), f"{prefix}.pre[{j}]", options)
            if options["pooling"] == "sum" and type(op) is nn.AvgPool2d and op.divisor_override is None:
                kh, kw = _pair(op.kernel_size)
                factor /= kh * kw
            edges.append((source, name))
            source, x = name, op(x)
        name = names.take(layer_name)
        nodes[name] = _export_layer(nir, _scaled(layer, factor), tuple(x.shape[1:]))
        edges.append((source, name))
        return name, layer(x)

    with torch.no_grad():
        node, x = produced[None]
        for stage in snn.stages:
            main, y = branch(node, x, stage.pre, stage.layer, stage.name, stage.name)
            shape = tuple(y.shape[1:])
            target = names.take(stage.neuron_name) if stage.spiking else OUTPUT_NODE
            edges.append((main, target))
            for k, shortcut in enumerate(getattr(stage, "shortcuts", ())):
                source, value = produced[shortcut.source]
                last, _ = branch(source, value, shortcut.pre, shortcut.layer, f"{stage.name}.shortcut{k}",
                                 shortcut.name)
                edges.append((last, target))
            if stage.spiking:
                ones = np.ones(shape, dtype=np.float32)
                nodes[target] = nir.IF(r=ones, v_threshold=ones * np.float32(snn.neuron.threshold),
                                       v_reset=np.zeros_like(ones),
                                       metadata={RESET_KEY: snn.neuron.reset, V0_KEY: float(snn.neuron.v0)})
                produced[stage.neuron_name] = (target, torch.relu(y))
            node, x = target, y
    nodes[OUTPUT_NODE] = nir.Output(output_type=np.array(shape))
    metadata = {"generator": f"snnergy {__version__}",
                "readout": "the output is the last layer's current at each step; the prediction is "
                           "the argmax of its sum over steps",
                RESET_KEY: snn.neuron.reset, V0_KEY: float(snn.neuron.v0)}
    metadata["snnergy_export"] = f"pooling={options['pooling']}, flatten={options['flatten']}"
    try:
        graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=options["flatten"] == "sample")
    except (ValueError, TypeError, AssertionError) as err:
        raise ConversionError(f"NIR rejects the exported graph: {err}") from None
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        nir.write(str(path), graph)
    return graph

# ---------------------------------------------------------------------------- export helpers


class _NameTable:
    """Unique NIR node names (HDF5 group names: no '/')."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, name: str) -> str:
        base = name.replace("/", "_")
        candidate, k = base, 1
        while candidate in self.used:
            k += 1
            candidate = f"{base}_{k}"
        self.used.add(candidate)
        return candidate


def _pair(value: Any) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (int(value), int(value))


def _scaled(layer: nn.Module, factor: float) -> nn.Module:
    """``layer`` with its weights (not its bias) times ``factor`` (a copy; the layer itself when 1)."""
    if factor == 1.0:
        return layer
    import copy

    scaled = copy.deepcopy(layer)
    with torch.no_grad():
        scaled.weight.mul_(factor)
    return scaled


def _export_op(nir: Any, op: nn.Module, shape: tuple[int, ...], where: str,
               options: dict[str, str] | None = None) -> Any:
    options = options or READERS["nir"]
    if type(op) is nn.Flatten:
        if (op.start_dim, op.end_dim) != (1, -1):
            raise ConversionError(f"'{where}' (Flatten) must flatten dims 1..-1 for NIR export")
        if options["flatten"] == "batch":
            return nir.Flatten(input_type=np.array((1, *shape)), start_dim=1, end_dim=-1)
        return nir.Flatten(input_type=np.array(shape), start_dim=0, end_dim=-1)
    if type(op) is nn.AvgPool2d:
        kernel, stride, padding = _pair(op.kernel_size), _pair(op.stride or op.kernel_size), _pair(op.padding)
        if op.ceil_mode:
            raise ConversionError(f"'{where}' (AvgPool2d) uses ceil_mode=True, which NIR's pooling cannot express")
        if any(padding) and not op.count_include_pad:
            raise ConversionError(f"'{where}' (AvgPool2d) pads with count_include_pad=False, which NIR's "
                                  "pooling cannot express")
        args = {"kernel_size": np.array(kernel), "stride": np.array(stride), "padding": np.array(padding)}
        if op.divisor_override == 1 or (options["pooling"] == "sum" and op.divisor_override is None):
            return nir.SumPool2d(**args)  # a plain sum (or an average whose 1/(kh kw) the next layer takes)
        if op.divisor_override is not None:
            raise ConversionError(f"'{where}' (AvgPool2d) has divisor_override={op.divisor_override}; "
                                  "NIR export supports none or 1 (SumPool2d)")
        return nir.AvgPool2d(**args)
    if type(op) is nn.MaxPool2d:
        raise ConversionError(f"'{where}' (MaxPool2d) cannot be exported: NIR has no max pooling node, and "
                              "snnergy's spike-count gating (a stateful gate) has no NIR counterpart; train the "
                              "model with AvgPool2d (e.g. lenet instead of lenet-max) to export it")
    raise ConversionError(f"'{where}' ({type(op).__name__}) has no NIR counterpart here")


def _export_layer(nir: Any, layer: nn.Module, shape: tuple[int, ...]) -> Any:
    weight = layer.weight.detach().cpu().numpy().astype(np.float32)
    if isinstance(layer, ChannelScale):  # NIR's Scale holds one factor per element
        per_channel = weight.reshape(-1, *[1] * (len(shape) - 1))
        return nir.Scale(scale=np.ascontiguousarray(np.broadcast_to(per_channel, shape), dtype=np.float32))
    bias = None if layer.bias is None else layer.bias.detach().cpu().numpy().astype(np.float32)
    if isinstance(layer, nn.Linear):
        return nir.Linear(weight=weight) if bias is None else nir.Affine(weight=weight, bias=bias)
    padding = layer.padding if isinstance(layer.padding, str) else _pair(layer.padding)
    return nir.Conv2d(input_shape=tuple(shape[1:]), weight=weight, stride=_pair(layer.stride),
                      padding=padding, dilation=_pair(layer.dilation), groups=int(layer.groups),
                      bias=np.zeros(weight.shape[0], dtype=np.float32) if bias is None else bias)


# ---------------------------------------------------------------------------- the optional package


def load_nir() -> Any:
    """The ``nir`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        import nir
    except ImportError:
        raise ConfigError("NIR export and import need the optional package 'nir': "
                          "pip install 'snnergy[nir]'") from None
    return nir


def read_nir(nir: Any, path: str | Path) -> Any:
    """``nir.read`` with one :class:`CheckpointError` for a missing, hostile or truncated file.

    NIR's type check is off: graphs of torch readers carry a batch in some types (``Flatten`` over
    ``(1, C, H, W)``), and :func:`~snnergy.interop.import_nir` checks every shape itself."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: NIR file not found")
    try:
        try:
            return nir.read(str(path), type_check=False)
        except TypeError:  # nir before 1.0.5 has no type_check (and checks no types on read)
            return nir.read(str(path))
    except Exception as err:  # h5py and nir raise many types on hostile or truncated files
        raise CheckpointError(f"{path}: not a readable NIR file ({type(err).__name__}: {err})") from None


__all__ = ["FLATTENS", "INPUT_NODE", "OUTPUT_NODE", "POOLINGS", "READERS", "RESET_KEY", "V0_KEY", "export_nir", "load_nir", "read_nir"]
