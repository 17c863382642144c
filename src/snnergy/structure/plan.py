"""The network plan: one description of a network, read by every stage.

:func:`trace` walks a model once (torch.fx; an ``nn.Sequential`` traces too) and returns a
:class:`NetworkPlan`: the stages in execution order, each a weighted layer (BatchNorm folded into
a copy), the activation after it (its registered kind and parameters; ``None`` for the readout)
and the shortcut branches added into its current, with every shape, pooling and layer geometry.
Model checks, conversion, activity recording, the energy-aware regularizers and counting all
read this plan instead of walking the model themselves; a model the plan cannot describe is
refused once, here, with the op, its source line and what to use instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.fx as fx
from torch import Tensor, nn

from snnergy.errors import ConfigError, ConversionError
from snnergy.records import LayerGeometry, PoolGeometry
from snnergy.structure.geometry import geometry_of, pool_geometry
from snnergy.structure.tracing import run_graph, trace_graph
from snnergy.structure.walk import StageTerms, Term, Walker, check_max_pool


@dataclass(frozen=True, eq=False)
class Activation:
    """One activation layer: the neurons of the converted SNN.

    Attributes:
        name: The module's qualified name (the key of ``ActivityRecord.activations``), or the
            graph node's name for a functional call or a module run more than once.
        kind: Its key in :data:`~snnergy.structure.activations.ACTIVATIONS`.
        parameters: The kind's parameters read off the module (empty for ReLU; ``threshold`` and
            ``levels`` for trained thresholds).
        shape: Per-sample output shape.
    """

    name: str
    kind: str
    parameters: Mapping[str, Any]
    shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Branch:
    """One term of a stage's current: ``layer(pre(source))``.

    Attributes:
        name: The weighted layer's name, or ``identity:<source>`` for an identity shortcut.
        source: The activation it reads (``None``: the network input).
        pre: Weightless ops from the source to the layer (``nn.AvgPool2d``, ``nn.Flatten``), in order.
        layer: A copy of the Conv2d/Linear with any BatchNorm after it folded in; ``None`` for an
            identity branch.
        norm: Name of the folded BatchNorm, if any.
        source_shape: Per-sample shape of the source.
        in_shape: Per-sample shape after ``pre`` (the layer's input).
        out_shape: Per-sample shape of the branch's value.
        pools: Geometry of each average pooling in ``pre``, in order.
        geometry: The weighted layer's geometry (``None`` for an identity branch).
        gate: Geometry of a max pooling right after the source (``pre[0]``, kernel = stride), which
            the SNN computes by spike-count gating (:func:`snnergy.simulation.gate_max_pool`);
            ``None`` without one.
    """

    name: str
    source: str | None
    pre: tuple[nn.Module, ...]
    layer: nn.Module | None
    norm: str | None
    source_shape: tuple[int, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    pools: tuple[PoolGeometry, ...]
    geometry: LayerGeometry | None
    gate: PoolGeometry | None = None


@dataclass(frozen=True, eq=False)
class Stage:
    """A weighted layer reading the previous stage's neurons, its shortcuts and its neurons.

    Attributes:
        main: The branch reading the previous stage's neurons (the input for the first stage).
        shortcuts: Other branches summed into the same current (residual connections).
        neuron: The activation after the sum; ``None`` for the readout (the last stage).
    """

    main: Branch
    shortcuts: tuple[Branch, ...]
    neuron: Activation | None

    @property
    def name(self) -> str:
        """The main weighted layer's name."""
        return self.main.name

    @property
    def branches(self) -> tuple[Branch, ...]:
        """The main branch, then the shortcuts."""
        return (self.main, *self.shortcuts)


@dataclass(frozen=True, eq=False)
class NetworkPlan:
    """A network as snnergy sees it: stages of weighted layer, shortcuts and activation.

    Attributes:
        input_shape: Per-sample input shape.
        stages: In execution order; the last one is the readout.
        weighted: The geometry of every weighted layer (main and shortcut), in execution order.
    """

    input_shape: tuple[int, ...]
    stages: tuple[Stage, ...]
    weighted: tuple[LayerGeometry, ...]

    @property
    def activations(self) -> tuple[Activation, ...]:
        """Every activation (a spiking layer after conversion), in execution order."""
        return tuple(s.neuron for s in self.stages if s.neuron is not None)

    @property
    def readout_neurons(self) -> int:
        """Output elements of the readout layer (updated every step of the SNN)."""
        return math.prod(self.stages[-1].main.out_shape)

    def readers(self, source: str | None) -> tuple[Branch, ...]:
        """Every branch that reads ``source`` (an activation name; ``None``: the input)."""
        return tuple(b for s in self.stages for b in s.branches if b.source == source)


def trace(model: nn.Module, input_shape: tuple[int, ...], sample: Tensor | None = None) -> NetworkPlan:
    """Walks ``model`` once and returns its :class:`NetworkPlan`.

    The model runs once, in eval mode without gradients, on ``sample`` (default: two
    deterministic uniform samples); every submodule's mode is restored and the model is not
    modified (BatchNorms are folded into copies).

    Args:
        model: Any model torch.fx can trace into supported layers (see
            :data:`~snnergy.structure.hints.SUPPORTED_TEXT`); an ``nn.Sequential`` traces too.
        input_shape: Per-sample input shape, e.g. ``(1, 8, 8)``.
        sample: A batch to run (calibration data gives better checks of the pooling mapping).

    Returns:
        The plan.

    Raises:
        ConversionError: An unsupported op or arrangement (naming the op, its source line where
            torch.fx records it, and what to use instead).
        ConfigError: The forward fails on this input shape.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        ...                     nn.Flatten(), nn.Linear(8, 3))
        >>> plan = trace(net, (1, 4, 4))
        >>> [(s.name, s.neuron.name if s.neuron else None, len(s.main.pools)) for s in plan.stages]
        [('0', '1', 0), ('4', None, 1)]
        >>> plan.activations[0].shape, plan.readout_neurons
        ((2, 4, 4), 3)
    """
    input_shape = tuple(int(d) for d in input_shape)
    if not input_shape or min(input_shape) < 1:
        raise ConfigError(f"input shape must be per-sample positive sizes, got {input_shape}")
    graph_module = trace_graph(model)
    walker = Walker(graph_module, {}, model)
    walker.check_modules()
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        if sample is None:
            sample = _sample(model, input_shape)
        elif tuple(sample.shape[1:]) != input_shape:
            raise ConfigError(f"a sample of shape {tuple(sample.shape)} does not have the per-sample "
                              f"input shape {input_shape}")
        values = run_graph(graph_module, sample)
        walker.values = values
        stage_terms = walker.stages()
    finally:
        for module, training in modes.items():
            module.training = training
    return _plan(stage_terms, walker, values, input_shape)


def _sample(model: nn.Module, input_shape: tuple[int, ...]) -> Tensor:
    first = next((t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((2, *input_shape), generator=generator)
    if first is not None:
        x = x.to(device=first.device, dtype=first.dtype)
    return x


def _plan(stage_terms: list[StageTerms], walker: Walker, values: dict[fx.Node, Any],
          input_shape: tuple[int, ...]) -> NetworkPlan:
    names = _names(stage_terms)

    def shape(node: fx.Node | None) -> tuple[int, ...]:
        value = values[node] if node is not None else None
        return tuple(int(d) for d in value.shape[1:]) if isinstance(value, Tensor) else input_shape

    def branch(term: Term) -> Branch:
        source = names[id(term.source)] if term.source is not None else None
        if term.layer is None:
            return branch_of(f"identity:{source or 'input'}", source, term.pre, None, shape(term.source))
        norm = str(term.out.target) if term.out is not term.node and term.out.op == "call_module" else None
        return branch_of(names[id(term.node)], source, term.pre, term.layer, shape(term.source),
                         shape(term.node), norm)

    stages = []
    for terms in stage_terms:
        neuron = None
        if terms.neuron is not None:
            kind = walker.activation(terms.neuron)
            module = walker.modules.get(terms.neuron.target) if terms.neuron.op == "call_module" else None
            neuron = Activation(names[id(terms.neuron)], kind.name, dict(kind.parameters(module)),
                                shape(terms.neuron))
        stages.append(Stage(branch(terms.main), tuple(branch(t) for t in terms.shortcuts), neuron))
    order = walker.order
    weighted = sorted(((t.node, b) for terms, s in zip(stage_terms, stages)
                       for t, b in zip([terms.main, *terms.shortcuts], s.branches) if t.node is not None),
                      key=lambda pair: order[pair[0]])
    return NetworkPlan(input_shape, tuple(stages), tuple(b.geometry for _, b in weighted))


def branch_of(name: str, source: str | None, pre: Sequence[nn.Module], layer: nn.Module | None,
              source_shape: tuple[int, ...], out_shape: tuple[int, ...] | None = None,
              norm: str | None = None) -> Branch:
    """A :class:`Branch` with its shapes and geometries, read by one dummy pass through ``pre``
    (and ``layer`` when ``out_shape`` is not given). A ``layer`` that is not a Conv2d/Linear (e.g.
    a converted network's per-channel scale) makes an identity branch.

    Example:
        >>> b = branch_of("fc", "relu", [nn.AvgPool2d(2), nn.Flatten()], nn.Linear(8, 3), (2, 4, 4))
        >>> b.in_shape, b.out_shape, len(b.pools), b.geometry.kind
        ((8,), (3,), 1, 'linear')
    """
    pools, x, gate = [], torch.zeros((1, *source_shape)), None
    with torch.no_grad():
        for i, op in enumerate(pre):
            if isinstance(op, nn.AvgPool2d):
                pools.append(pool_geometry(op, tuple(x.shape[1:])))
            if isinstance(op, nn.MaxPool2d):
                gate = _gate_of(name, source, i, op, tuple(int(d) for d in x.shape[1:]))
            x = op(x)
        in_shape = tuple(int(d) for d in x.shape[1:])
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            return Branch(name, source, tuple(pre), layer, None, source_shape, in_shape, in_shape, tuple(pools), None,
                          gate)
        if out_shape is None:
            param = layer.weight
            out_shape = tuple(int(d) for d in layer(x.to(device=param.device, dtype=param.dtype)).shape[1:])
    geometry = geometry_of(layer, name, in_shape, out_shape)
    return Branch(name, source, tuple(pre), layer, norm, source_shape, in_shape, out_shape, tuple(pools), geometry,
                  gate)


def _gate_of(name: str, source: str | None, index: int, pool: nn.MaxPool2d,
             in_shape: tuple[int, ...]) -> PoolGeometry:
    """The :class:`PoolGeometry` of a branch's max pooling, which must come first, right after
    an activation (its gate reads the neurons' spike counts)."""
    if source is None or index != 0:
        where = "the network input" if source is None else "another op"
        raise ConversionError(f"the max pooling before '{name}' reads {where}; snnergy converts max pooling "
                              "right after a ReLU only (its spikes are gated by the neurons' spike counts): "
                              "put it first after the ReLU")
    check_max_pool(name, pool)
    kernel = (pool.kernel_size, pool.kernel_size) if isinstance(pool.kernel_size, int) else tuple(pool.kernel_size)
    if len(in_shape) != 3:
        raise ConversionError(f"the max pooling before '{name}' reads a {len(in_shape) + 1}-d tensor; it needs (B, C, H, W)")
    return PoolGeometry(in_shape, kernel, kernel)


def _names(stage_terms: list[StageTerms]) -> dict[int, str]:
    """Names by ``id(node)``: a module's qualified name where it runs once, else the node name."""
    nodes = [p.neuron for p in stage_terms if p.neuron is not None]
    nodes += [t.node for p in stage_terms for t in [p.main, *p.shortcuts] if t.node is not None]
    targets = [n.target for n in nodes if n.op == "call_module"]
    names = {}
    for n in nodes:
        unique = n.op == "call_module" and targets.count(n.target) == 1
        names[id(n)] = str(n.target) if unique else n.name
    return names
