"""The walk of a traced graph: pre-activations as sums of terms, ordered into stages.

A :class:`Walker` classifies each node (activation, sum, Conv2d/Linear, BatchNorm, weightless
op...), reads every activation's input (and the output) as a sum of :class:`Term` s, and orders
the activations into the stages of a chain with shortcuts (:meth:`Walker.stages`). Activations
come from the registry :data:`~snnergy.structure.activations.ACTIVATIONS`, hints for everything
else from :mod:`snnergy.structure.hints`. :func:`snnergy.structure.trace` turns the result into
a :class:`~snnergy.structure.plan.NetworkPlan`.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from snnergy.errors import ConversionError
from snnergy.pooling import AvgPool2d as CompiledAvgPool2d
from snnergy.structure.activations import ActivationKind, kind_of_function, kind_of_method, kind_of_module
from snnergy.structure.hints import function_hint, module_hint
from snnergy.structure.tracing import function_name, trace_graph, user_line

DROPPED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
"""Modules that are no-ops at inference."""
WEIGHTED = (nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_DROP_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d)
_FLATTEN_FUNCTIONS = (torch.flatten, torch.reshape)
_POOL_FUNCTIONS = (F.avg_pool2d, F.adaptive_avg_pool2d)
#: Pooling modules by exact type (snnergy's compiled AvgPool2d pools as nn.AvgPool2d does, to the bit).
_POOL_MODULES = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, CompiledAvgPool2d)
_MAX_POOL_FUNCTIONS = (F.max_pool2d, torch.max_pool2d)
_MAX_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_METHODS = {"add": "add", "add_": "add", "contiguous": "drop",
            "flatten": "flatten", "view": "flatten", "reshape": "flatten", "mean": "mean"}
_NORM_FOR = {nn.BatchNorm2d: nn.Conv2d, nn.BatchNorm1d: nn.Linear}
_AVG_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                  "divisor_override")


@dataclass
class Term:
    """One summand of a pre-activation: ``layer(pre(source))`` (``layer`` None: identity)."""

    source: fx.Node | None  # an activation node; None: the network input
    pre: list[nn.Module]
    layer: nn.Module | None = None
    node: fx.Node | None = None  # the weighted layer's node
    out: fx.Node | None = None  # the node whose value this term is (for shapes)


@dataclass
class StageTerms:
    """A stage: its neurons (an activation node; None: the readout), own term and shortcut terms."""

    neuron: fx.Node | None
    main: Term
    shortcuts: list[Term] = field(default_factory=list)


class Walker:
    """Reads pre-activations off a traced graph and orders them into stages."""

    def __init__(self, graph_module: fx.GraphModule, values: dict[fx.Node, Any], model: nn.Module) -> None:
        self.model = model
        self.traces: dict[str, str | None] | None = None
        self.modules = dict(graph_module.named_modules())
        self.graph = graph_module.graph
        self.values = values
        self.order = {node: i for i, node in enumerate(self.graph.nodes)}

    def activation(self, node: fx.Node) -> ActivationKind | None:
        """The registered activation kind ``node`` computes, else None."""
        if node.op == "call_module":
            return kind_of_module(self.modules[node.target])
        if node.op == "call_function":
            return kind_of_function(node.target)
        if node.op == "call_method":
            return kind_of_method(str(node.target))
        return None

    def kind(self, node: fx.Node) -> str:
        """input, activation (any registered kind), add, weighted, norm, drop, flatten, pool, maxpool,
        mean or other."""
        if node.op == "placeholder":
            return "input"
        if self.activation(node) is not None:
            return "activation"
        if node.op == "call_module":
            module = self.modules[node.target]
            kind = type(module)
            if kind in WEIGHTED:
                return "weighted"
            if kind in _NORM_FOR:
                return "norm"
            if kind in DROPPED:
                return "drop"
            if kind is nn.Flatten:
                return "flatten"
            if kind in _POOL_MODULES:
                return "pool"
            if kind is nn.MaxPool2d:
                return "maxpool"
            return "other"
        if node.op == "call_function":
            target = node.target
            if target in _ADD_FUNCTIONS:
                return "add"
            if target in _DROP_FUNCTIONS:
                return "drop"
            if target in _FLATTEN_FUNCTIONS:
                return "flatten"
            if target in _POOL_FUNCTIONS:
                return "pool"
            if target in _MAX_POOL_FUNCTIONS:
                return "maxpool"
            if target is torch.mean:
                return "mean"
            return "other"
        if node.op == "call_method":
            return _METHODS.get(str(node.target), "other")
        return "other"

    # -- errors

    def error(self, node: fx.Node, problem: str) -> ConversionError:
        return ConversionError(f"{self.describe(node)} {problem}")

    def describe(self, node: fx.Node) -> str:
        """``module 'layer1.conv' (Conv2d)`` or ``op 'mul' (operator.mul) in module ...`` + line."""
        if node.op == "call_module":
            what = f"module '{node.target}' ({type(self.modules[node.target]).__name__})"
        elif node.op == "call_function":
            what = f"op '{node.name}' ({function_name(node.target)})"
        elif node.op == "call_method":
            what = f"op '{node.name}' (Tensor.{node.target})"
        else:
            what = f"'{node.name}'"
        stack = node.meta.get("nn_module_stack") or {}
        if node.op != "call_module" and stack:
            path, kind = list(stack.values())[-1]
            kind_name = kind.__name__ if isinstance(kind, type) else str(kind).rsplit(".", 1)[-1]
            what += f" in module '{path}' ({kind_name})"
        return what + user_line(self.stack_trace(node))

    def stack_trace(self, node: fx.Node) -> str | None:
        """The node's stack trace, from a second trace that records them (made on first need)."""
        if self.traces is None:
            graph = trace_graph(self.model, stack_traces=True).graph
            self.traces = {n.name: n.stack_trace for n in graph.nodes}
        return self.traces.get(node.name)

    def unsupported(self, node: fx.Node) -> ConversionError:
        if node.op == "call_module":
            hint = module_hint(self.modules[node.target])
        else:
            hint = function_hint(node.target)
        return self.error(node, f"is not supported: {hint}")

    # -- pre-activations

    def terms(self, node: fx.Node) -> list[Term]:
        """The summands of the pre-activation ``node`` (a ReLU's input or the output)."""
        kind = self.kind(node)
        if kind in ("activation", "input"):
            return [Term(node if kind == "activation" else None, [], out=node)]
        if kind == "add":
            self.single_use(node)
            args = self.add_operands(node)
            return [t for arg in args for t in self.terms(arg)]
        if kind == "drop":
            self.check_drop(node)
            return self.terms(node.args[0])
        if kind == "weighted":
            self.single_use(node)
            return [self.weighted(node)]
        if kind == "norm":
            self.single_use(node)
            return [self.folded(node)]
        if kind in ("pool", "flatten", "mean", "maxpool"):
            source, pre = self.path(node, node)
            return [Term(source, pre, out=node)]
        raise self.unsupported(node)

    def add_operands(self, node: fx.Node) -> list[fx.Node]:
        args = list(node.args[:2])
        alpha = node.kwargs.get("alpha", node.args[2] if len(node.args) > 2 else 1)
        if alpha != 1 or len(args) != 2 or set(node.kwargs) - {"alpha"}:
            raise self.error(node, "is not a plain sum of two tensors (alpha and out= are not supported)")
        for arg in args:
            if not isinstance(arg, fx.Node) or not isinstance(self.values.get(arg), Tensor):
                raise self.error(node, f"adds the constant {arg!r}: a bias belongs in a Conv2d/Linear; "
                                       "only sums of two branches are supported")
        return args

    def single_use(self, node: fx.Node) -> None:
        if len(node.users) != 1:
            users = ", ".join(f"'{u.name}'" for u in node.users)
            raise self.error(node, f"is used by {len(node.users)} ops ({users}); a value before its ReLU "
                                   "may feed only one ReLU, sum or the output")

    def weighted(self, node: fx.Node) -> Term:
        layer = copy.deepcopy(self.modules[node.target])
        check_options(str(node.target), layer)
        source, pre = self.path(node.args[0], node)
        return Term(source, pre, layer, node, node)

    def folded(self, node: fx.Node) -> Term:
        norm = self.modules[node.target]
        inner = self.check_norm(node)
        self.single_use(inner)
        term = self.weighted(inner)
        with torch.no_grad():
            fold_norm(term.layer, norm)
        term.out = node
        return term

    def check_norm(self, node: fx.Node) -> fx.Node:
        """The weighted layer a BatchNorm ``node`` folds into (its placement, size and statistics checked)."""
        norm = self.modules[node.target]
        inner = node.args[0] if node.args else None
        expected = _NORM_FOR[type(norm)]
        if not isinstance(inner, fx.Node) or self.kind(inner) != "weighted" or \
                type(self.modules[inner.target]) is not expected:
            raise self.error(node, "must directly follow a Conv2d (BatchNorm2d) or a Linear (BatchNorm1d): "
                                   "it is folded into that layer's weights")
        layer = self.modules[inner.target]
        out = getattr(layer, "out_channels", None) or layer.out_features
        if norm.num_features != out:
            raise self.error(node, f"normalizes {norm.num_features} channels but '{inner.target}' gives {out}")
        if norm.running_mean is None or norm.running_var is None:
            raise self.error(node, "has no running statistics (track_running_stats=False), so it "
                                   "cannot be folded")
        return inner

    def check_modules(self) -> None:
        """Checks every module call in forward order before anything runs: its type, its options
        and, for a BatchNorm, what it folds into (so a layer the plan cannot take is named even
        when it would also break the forward pass)."""
        for node in self.graph.nodes:
            if node.op != "call_module":
                continue
            kind = self.kind(node)
            if kind == "other":
                raise self.unsupported(node)
            check_options(str(node.target), self.modules[node.target])
            if kind == "norm":
                self.check_norm(node)

    def path(self, node: Any, consumer: fx.Node) -> tuple[fx.Node | None, list[nn.Module]]:
        """Source (a ReLU node, None: input) and weightless ops from it to ``node``, in order."""
        ops: list[nn.Module] = []
        while True:
            if not isinstance(node, fx.Node):
                raise self.error(consumer, f"reads {node!r}, not a tensor of the graph")
            kind = self.kind(node)
            if kind == "activation":
                return node, ops[::-1]
            if kind == "input":
                return None, ops[::-1]
            if kind == "drop":
                self.check_drop(node)
            elif kind in ("pool", "flatten", "mean", "maxpool"):
                ops.extend(reversed(self.weightless(node)))
            elif kind in ("weighted", "norm", "add"):
                raise self.error(consumer, f"reads {self.describe(node)} without a ReLU in between; only "
                                           "spikes (an activation's output or the input) can feed a layer, "
                                           "through pooling and flattening: put pooling and flattening "
                                           "after the ReLU")
            else:
                raise self.unsupported(node)
            node = node.args[0]

    def bound(self, node: fx.Node, names: tuple[str, ...]) -> dict[str, Any]:
        """The call's arguments by name, graph values (e.g. ``x.size(3)``) made concrete."""
        args = dict(zip(names, node.args)) | dict(node.kwargs)
        return {k: fx.node.map_arg(v, lambda n: self.values[n]) if k != "input" else v
                for k, v in args.items()}

    def check_drop(self, node: fx.Node) -> None:
        if node.op == "call_function":
            args = self.bound(node, ("input", "p", "training", "inplace"))
            if args.get("training", True):
                raise self.error(node, "drops values at inference (training=True); pass "
                                       "training=self.training")

    def weightless(self, node: fx.Node) -> list[nn.Module]:
        """The modules (AvgPool2d, Flatten) computing ``node`` from its input; checked on values."""
        source, out = self.values.get(node.args[0]), self.values.get(node)
        if not isinstance(source, Tensor) or not isinstance(out, Tensor):
            raise self.error(node, "does not map a tensor to a tensor")
        kind = self.kind(node)
        if node.op == "call_module":
            check_options(str(node.target), self.modules[node.target])
        if kind == "flatten":
            if out.shape == source.shape:
                return []
            if out.dim() == 2 and out.shape[0] == source.shape[0] and out.shape[1] == source[0].numel():
                return [nn.Flatten()]
            raise self.error(node, f"reshapes {tuple(source.shape[1:])} to {tuple(out.shape[1:])} per "
                                   "sample; only flattening to (batch, features) is supported")
        ops = self.max_pool_ops(node) if kind == "maxpool" else self.pool_ops(node, kind, source)
        with torch.no_grad():
            mapped = source
            for op in ops:
                mapped = op(mapped)
        exact = out.is_meta or torch.allclose(mapped, out, rtol=1e-5, atol=1e-6)  # meta: a model sized, not run
        if mapped.shape != out.shape or not exact:
            raise self.error(node, f"could not be mapped onto nn.{type(ops[0]).__name__} exactly")
        return ops

    def max_pool_ops(self, node: fx.Node) -> list[nn.Module]:
        """``[nn.MaxPool2d]`` of a max-pooling module or ``F.max_pool2d`` call, checked
        (:func:`check_max_pool`)."""
        if node.op == "call_module":
            return [copy.deepcopy(self.modules[node.target])]
        args = self.bound(node, _MAX_POOL_ARGS)
        args.pop("input", None)
        try:
            pool = nn.MaxPool2d(**args)
        except (TypeError, ValueError) as err:
            raise self.error(node, f"has arguments nn.MaxPool2d does not take: {err}") from None
        problem = max_pool_problem(pool)
        if problem is not None:
            raise self.error(node, f"is not supported: {MAX_POOL_ADVICE}, got {problem}")
        return [pool]

    def pool_ops(self, node: fx.Node, kind: str, source: Tensor) -> list[nn.Module]:
        if source.dim() != 4:
            raise self.error(node, f"pools a {source.dim()}-d tensor; average pooling needs (B, C, H, W)")
        height, width = source.shape[2:]
        if kind == "mean":
            args = self.bound(node, ("input", "dim", "keepdim"))
            dims = args.get("dim")
            dims = tuple(sorted(int(d) % 4 for d in dims)) if isinstance(dims, (tuple, list)) else dims
            if dims != (2, 3) or args.get("dtype") is not None:
                raise self.error(node, "averages over other dimensions than (2, 3); only global average "
                                       "pooling over height and width is supported")
            return [nn.AvgPool2d((height, width))] + ([] if args.get("keepdim") else [nn.Flatten()])
        if node.op == "call_module":
            module = self.modules[node.target]
            if type(module) is CompiledAvgPool2d:  # the plan holds torch's module: the same op
                return [module.plain()]
            if isinstance(module, nn.AvgPool2d):
                return [copy.deepcopy(module)]
            return [self.adaptive(node, module.output_size, height, width)]
        if node.target is F.adaptive_avg_pool2d:
            args = self.bound(node, ("input", "output_size"))
            return [self.adaptive(node, args.get("output_size"), height, width)]
        args = self.bound(node, _AVG_POOL_ARGS)
        args.pop("input", None)
        try:
            return [nn.AvgPool2d(**args)]
        except (TypeError, ValueError) as err:
            raise self.error(node, f"has arguments nn.AvgPool2d does not take: {err}") from None

    def adaptive(self, node: fx.Node, size: Any, height: int, width: int) -> nn.AvgPool2d:
        out_h, out_w = (size, size) if not isinstance(size, (tuple, list)) else size
        out_h, out_w = out_h or height, out_w or width
        if height % out_h or width % out_w:
            raise self.error(node, f"adaptively pools {height}x{width} to {out_h}x{out_w}, which has "
                                   "windows of unequal sizes; use an output size that divides the input")
        kernel = (height // out_h, width // out_w)
        return nn.AvgPool2d(kernel, kernel)

    # -- stages

    def stages(self) -> list[StageTerms]:
        """Stages in execution order: one per activation, then the readout (the output)."""
        output = next(n for n in self.graph.nodes if n.op == "output")
        result = output.args[0]
        if not isinstance(result, fx.Node) or not isinstance(self.values.get(result), Tensor):
            raise self.error(output, f"returns {type(self.values.get(result, result)).__name__}; "
                                     "the model must return one tensor of logits")
        if not any(self.kind(n) == "weighted" for n in self.graph.nodes):
            raise ConversionError("the model has no Conv2d or Linear layer to convert")
        readout = self.terms(result)
        if not any(isinstance(t.layer, nn.Linear) for t in readout):
            raise ConversionError(
                f"the model must end with a Linear layer giving the logits (no activation or pooling "
                f"after it: its accumulated potential is the readout); it ends with {self.describe(result)}")
        pre_activations: dict[fx.Node, list[Term]] = {}
        todo = [t.source for t in readout if t.source is not None]
        while todo:
            relu = todo.pop()
            if relu in pre_activations:
                continue
            if not relu.args or not isinstance(relu.args[0], fx.Node):
                raise self.error(relu, "has no tensor input")
            terms = self.terms(relu.args[0])
            if not any(t.layer is not None for t in terms):
                raise self.error(relu, "must follow a Conv2d/Linear or its BatchNorm (its input is the "
                                       "current of a weighted layer; pooling and flattening go after it)")
            pre_activations[relu] = terms
            todo.extend(t.source for t in terms if t.source is not None)
        neurons = sorted(pre_activations, key=self.order.__getitem__)
        stages, previous = [], None
        for neuron, terms in [*((n, pre_activations[n]) for n in neurons), (None, readout)]:
            main = next((t for t in terms if t.layer is not None and t.source is previous), None)
            if main is None:
                where = self.describe(neuron) if neuron is not None else "the output"
                before = f"'{previous.name}'" if previous is not None else "the input"
                raise ConversionError(
                    f"{where} has no Conv2d/Linear reading the previous ReLU layer ({before}); snnergy "
                    "converts a chain of layers, each reading the one before, plus shortcut branches "
                    "(identity, pooling or one Conv2d/Linear) from earlier layers")
            stages.append(StageTerms(neuron, main, [t for t in terms if t is not main]))
            previous = neuron
        return stages


def check_options(name: str, module: nn.Module) -> None:
    """Refuses options of supported layer types that a plan cannot represent."""
    if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
        raise ConversionError(f"layer '{name}' (Conv2d) uses padding_mode='{module.padding_mode}'; "
                              "use padding_mode='zeros'")
    if isinstance(module, nn.MaxPool2d):
        check_max_pool(name, module)
    if isinstance(module, nn.Flatten) and (module.start_dim, module.end_dim) != (1, -1):
        raise ConversionError(f"layer '{name}' (Flatten) must flatten dims 1..-1 (the default), "
                              f"got start_dim={module.start_dim}, end_dim={module.end_dim}")


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)  # type: ignore[return-value]


def max_pool_problem(module: nn.MaxPool2d) -> str | None:
    """Why the spiking gate cannot take this max pooling, or ``None``: its windows must tile the
    map (kernel = stride, no padding, no dilation, no ceil mode) and it returns values only.

    Example:
        >>> max_pool_problem(nn.MaxPool2d(2)) is None
        True
        >>> max_pool_problem(nn.MaxPool2d(3, stride=2))
        'kernel_size=3, stride=2, padding=0, dilation=1, ceil_mode=False, return_indices=False'
    """
    kernel = _pair(module.kernel_size)
    stride = _pair(module.stride) if module.stride else kernel
    if kernel != stride or _pair(module.padding) != (0, 0) or _pair(module.dilation) != (1, 1) \
            or module.ceil_mode or module.return_indices:
        return (f"kernel_size={module.kernel_size}, stride={module.stride}, padding={module.padding}, "
                f"dilation={module.dilation}, ceil_mode={module.ceil_mode}, return_indices={module.return_indices}")
    return None


MAX_POOL_ADVICE = ("use AvgPool2d (average pooling), or max pooling with kernel_size = stride, no padding, "
                   "dilation or ceil_mode (non-overlapping windows: its spikes are gated by spike counts)")


def check_max_pool(name: str, module: nn.MaxPool2d) -> None:
    """Refuses a max pooling :func:`max_pool_problem` names, with :data:`MAX_POOL_ADVICE`.

    Example:
        >>> check_max_pool("pool", nn.MaxPool2d(3, stride=1))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        snnergy.errors.ConversionError: module 'pool' (MaxPool2d) is not supported: use AvgPool2d ..., got kernel_size=3, stride=1, ...
    """
    problem = max_pool_problem(module)
    if problem is not None:
        raise ConversionError(f"module '{name}' (MaxPool2d) is not supported: {MAX_POOL_ADVICE}, got {problem}")


def fold_norm(layer: nn.Module, norm: nn.Module) -> None:
    """Folds BatchNorm ``norm`` into ``layer`` in place, in float64 (``layer`` must be a copy).

    ``W' = (gamma/sigma) W``, ``b' = (gamma/sigma)(b - mu) + beta``, ``sigma = sqrt(var + eps)``
    (SNN Toolbox ``absorb_bn_parameters``; SpikingJelly ``fuse_conv_bn_eval``). A layer without
    bias gains one.
    """
    dtype = layer.weight.dtype
    sigma = torch.sqrt(norm.running_var.double() + norm.eps)
    gamma = norm.weight.double() if norm.weight is not None else torch.ones_like(sigma)
    beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(sigma)
    scale = gamma / sigma
    weight = layer.weight.double() * scale.view(-1, *[1] * (layer.weight.dim() - 1))
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(sigma)
    layer.weight.copy_(weight.to(dtype))
    new_bias = (scale * (bias - norm.running_mean.double()) + beta).to(dtype)
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias)
    else:
        layer.bias.copy_(new_bias)
