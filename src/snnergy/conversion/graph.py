"""Conversion of any torch.fx-traceable model: graph walk, residual shortcuts, reconciled scales.

:func:`convert_graph` traces the model with ``torch.fx`` (stack traces recorded, so errors can
name the user's source line), runs the traced graph once on a calibration sample to learn every
value's shape, and walks it back from the output:

- every ReLU (``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()``) is a layer of IF neurons;
- the input of a ReLU (and the output of the model, the readout) is a *pre-activation*: a sum
  (``+``, ``torch.add``, ``x.add``) of terms, each a Conv2d/Linear (with an optional BatchNorm
  after it, folded) that reads a ReLU's output or the input through weightless ops, or such a
  ReLU output / input itself (an identity branch);
- weightless ops are average pooling (``nn.AvgPool2d``, ``F.avg_pool2d``, adaptive average pooling
  and ``x.mean((2, 3))`` when the window is fixed by the shape), flattening (``nn.Flatten``,
  ``torch.flatten``, ``x.view(B, -1)``, ``x.reshape``) and no-ops (Dropout, Identity in eval).

ReLUs are ordered as the graph runs them, and each becomes a :class:`~snnergy.simulation.
SpikingStage` whose own layer is the term reading the previous ReLU (the chain); every other term
is a :class:`~snnergy.simulation.Shortcut` from its source. Normalization (Rueckauer et al. 2017)
is reconciled across branches: a term reading source ``s`` into neurons ``o`` gets weights
``W lambda_s / lambda_o`` and bias ``b / lambda_o``, an identity branch the per-channel factor
``lambda_s / lambda_o`` (:class:`~snnergy.simulation.ChannelScale`), so the summed current is the
DNN's pre-activation divided by ``lambda_o`` in every branch. The scales are measured on the
un-normalized network (the same graph with folded BN), whose logits are checked against the
model's before normalizing.

Anything else (another activation, max pooling, concatenation, a product...) or a model that
torch.fx cannot trace raises a :class:`~snnergy.errors.ConversionError` naming the node and,
where torch.fx recorded it, the user's source line.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
import torch.fx as fx
from torch import Tensor, nn

from snnergy.config import ConvertConfig
from snnergy.conversion.fx_trace import _run, _trace
from snnergy.conversion.fx_walk import _Plan, _Walker
from snnergy.conversion.sequential import _batches, _normalized
from snnergy.errors import ConfigError, ConversionError, DataError
from snnergy.normalization import MAX_VALUES, Percentile
from snnergy.simulation import ChannelScale, IFNeuron, Shortcut, SpikingNetwork, SpikingStage

#: Tolerance of the check that the un-normalized network reproduces the model's logits.
_CHECK_RTOL = 1e-3


def convert_graph(model: nn.Module, calibration: Tensor | Iterable[Any],
                  config: ConvertConfig = ConvertConfig()) -> SpikingNetwork:
    """Converts a torch.fx-traceable ReLU network into a spiking network (a new object).

    Args:
        model: Any ``nn.Module`` whose forward torch.fx can trace (left untouched).
        calibration: Inputs ``(N, ...)`` or an iterable of ``x`` / ``(x, y)`` batches.
        config: Percentile, channel-wise scales and the neuron reset.

    Returns:
        The :class:`~snnergy.simulation.SpikingNetwork`; its rate model gives the DNN's logits.

    Raises:
        ConversionError: The model cannot be traced or holds an unsupported op (named, with the
            source line where torch.fx records it).

    Example:
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc1, self.fc2, self.out = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        ...     def forward(self, x):
        ...         h = torch.relu(self.fc1(x))
        ...         return self.out(torch.relu(self.fc2(h) + h))
        >>> torch.manual_seed(0) and None
        >>> net, x = Block(), torch.rand(16, 4)
        >>> snn = convert_graph(net, x)
        >>> [(s.name, [c.name for c in s.shortcuts]) for s in snn.stages]
        [('fc1', []), ('fc2', ['identity:relu']), ('out', [])]
        >>> torch.allclose(snn(x), net(x), atol=1e-5)
        True
    """
    if not 0 < config.percentile <= 100:
        raise ConfigError(f"convert.percentile must be in (0, 100], got {config.percentile}")
    neuron = IFNeuron(threshold=1.0, reset=config.reset)
    net = copy.deepcopy(model).eval()
    graph_module = _trace(net)
    param = next((p for p in net.parameters()), None)
    if param is None:
        raise ConversionError(f"model {type(model).__name__} has no Conv2d or Linear layer to convert")
    batches = _batches(calibration, param.device, param.dtype)
    first = next(batches, None)
    if first is None:
        raise DataError("calibration data is empty")
    values = _run(graph_module, first[:2])
    walker = _Walker(graph_module, values, net)
    plans = walker.plan()
    names = _names(plans)
    raw = _build(plans, names, {}, values, neuron, tuple(first.shape[1:]))
    normalization = Percentile(config.percentile, config.channelwise)
    stores = {names[id(p.neuron)]: normalization.accumulator(MAX_VALUES) for p in plans if p.neuron is not None}
    with torch.no_grad():
        for i, x in enumerate(_chain([first], batches)):
            try:
                acts, logits = raw.activations(x)
            except RuntimeError as err:
                raise DataError(f"calibration batch of shape {tuple(x.shape)} does not fit the model: {err}") from None
            if i == 0:
                _check_logits(logits, graph_module(x))
            for name, act in acts.items():
                stores[name].add(act)
    scales = {name: store.percentile(config.percentile) for name, store in stores.items()}
    silent = tuple(name for name, s in scales.items() if bool(torch.isnan(s).all()))
    scales = {name: torch.nan_to_num(s, nan=1.0) for name, s in scales.items()}
    snn = _build(plans, names, scales, values, neuron, tuple(first.shape[1:]))
    return SpikingNetwork(snn.stages, snn.input_shape, neuron,
                          {k: [float(v) for v in s.reshape(-1)] for k, s in scales.items()}, silent)


def _chain(*parts: Iterable[Tensor]) -> Iterable[Tensor]:
    for part in parts:
        yield from part


def _check_logits(ours: Tensor, theirs: Any) -> None:
    if not isinstance(theirs, Tensor) or theirs.shape != ours.shape:
        raise ConversionError("the converted graph does not reproduce the model's output shape; "
                              "report this model to snnergy")
    tolerance = _CHECK_RTOL * (1.0 + float(theirs.abs().max()))
    if not torch.allclose(ours, theirs, rtol=_CHECK_RTOL, atol=tolerance):
        raise ConversionError(
            f"the converted graph (BN folded, before normalization) differs from the model's "
            f"logits by up to {float((ours - theirs).abs().max()):.3g}; an op was mapped wrongly, "
            "report this model to snnergy")


def _names(plans: list[_Plan]) -> dict[int, str]:
    """Names by ``id(node)``: a module's qualified name where it runs once, else the node name."""
    nodes = [p.neuron for p in plans if p.neuron is not None]
    nodes += [t.node for p in plans for t in [p.main, *p.shortcuts] if t.node is not None]
    targets = [n.target for n in nodes if n.op == "call_module"]
    names = {}
    for n in nodes:
        unique = n.op == "call_module" and targets.count(n.target) == 1
        names[id(n)] = str(n.target) if unique else n.name
    return names


def _build(plans: list[_Plan], names: dict[int, str], scales: dict[str, Tensor], values: dict[fx.Node, Any],
           neuron: IFNeuron, input_shape: tuple[int, ...]) -> SpikingNetwork:
    """The network with each term normalized by its source's and its neurons' scales (missing: 1)."""
    one = torch.ones((), dtype=torch.float64)

    def scale(node: fx.Node | None) -> Tensor:
        return scales.get(names[id(node)], one) if node is not None else one

    stages = []
    for plan in plans:
        out_name = names[id(plan.neuron)] if plan.neuron is not None else None
        lam_out = scale(plan.neuron)
        main = plan.main
        layer = _normalized(main.layer, scale(main.source), lam_out, names[id(main.node)])
        shortcuts = []
        for term in plan.shortcuts:
            source = names[id(term.source)] if term.source is not None else None
            if term.layer is not None:
                name = names[id(term.node)]
                branch = _normalized(term.layer, scale(term.source), lam_out, name)
            else:
                name = f"identity:{source or 'input'}"
                branch = _identity(scale(term.source), lam_out, values[term.out], name)
                branch = branch.to(device=layer.weight.device, dtype=layer.weight.dtype)
            shortcuts.append(Shortcut(name, source, nn.Sequential(*copy.deepcopy(term.pre)), branch))
        stage_name = names[id(main.node)]
        stages.append(SpikingStage(stage_name, out_name, nn.Sequential(*copy.deepcopy(main.pre)), layer,
                                   plan.neuron is not None, shortcuts))
    try:
        return SpikingNetwork(stages, input_shape, neuron)
    except ConfigError as err:
        raise ConversionError(f"cannot build the spiking network: {err}") from None


def _identity(lam_src: Tensor, lam_out: Tensor, value: Tensor, name: str) -> ChannelScale:
    """The normalized identity branch: ``lambda_src / lambda_out`` per channel of ``value``."""
    channels = value.shape[1] if value.dim() > 1 else 1

    def per_channel(lam: Tensor) -> Tensor:
        lam = lam.reshape(-1)
        if lam.numel() in (1, channels):
            return lam
        if channels % lam.numel():
            raise ConversionError(f"shortcut '{name}': {lam.numel()} scales do not map onto {channels} channels")
        return lam.repeat_interleave(channels // lam.numel())  # flattened (C, H, W) order

    ratio = per_channel(lam_src.double().cpu()) / per_channel(lam_out.double().cpu())
    branch = ChannelScale(ratio.numel())
    with torch.no_grad():
        branch.weight.copy_(ratio.float())
    return branch
