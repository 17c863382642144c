"""Conversion of an ``nn.Sequential``: BN folding, data-based normalization, the spiking chain.

Rate-coded conversion after Rueckauer et al. 2017 (Front. Neurosci. 11:682), as in SNN Toolbox:

1. :func:`check_convertible` accepts an ``nn.Sequential`` (possibly nested) of Conv2d, Linear,
   ReLU, AvgPool2d, BatchNorm1d/2d, Flatten and Dropout, each weighted layer followed by an
   optional BatchNorm then a ReLU, except the last Linear (the logits). Anything else is refused
   with a :class:`~snnergy.errors.ConversionError` naming the layer and what to use instead.
2. :func:`fold_batchnorm` folds each BatchNorm into the layer before it:
   ``W' = (gamma/sigma) W``, ``b' = (gamma/sigma)(b - mu) + beta``, ``sigma = sqrt(var + eps)``
   (SNN Toolbox ``absorb_bn_parameters``; SpikingJelly ``fuse_conv_bn_eval``).
3. :func:`activation_scales` measures lambda_l, the p-th percentile of the non-zero activations
   of each ReLU on calibration data (SNN Toolbox; p = 100 is the maximum of Diehl et al. 2015).
4. :func:`convert_sequential` rescales ``W_l <- W_l lambda_(l-1) / lambda_l`` and ``b_l <- b_l / lambda_l``
   (lambda of the input is 1, the last layer keeps scale 1), so that every normalized activation
   is the DNN's divided by lambda_l and the logits are unchanged. Biases are *not* rescaled like
   weights (REFERENCE.md: a peer doing so lost 10 points on a LeNet). ReLUs become IF neurons
   with threshold 1 (:mod:`snnergy.simulation`). The DNN is never modified.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Iterator

import torch
from torch import Tensor, nn

from snnergy.config import ConvertConfig
from snnergy.errors import ConfigError, ConversionError, DataError
from snnergy.normalization import MAX_VALUES, Percentile
from snnergy.simulation import IFNeuron, SpikingNetwork, SpikingStage

WEIGHTED = (nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
PRE_OPS = (nn.AvgPool2d, nn.Flatten)
DROPPED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
SUPPORTED = (*WEIGHTED, *NORMS, *PRE_OPS, *DROPPED, nn.ReLU)
SUPPORTED_TEXT = "Conv2d, Linear, ReLU, AvgPool2d, BatchNorm1d/2d, Flatten, Dropout"
CALIBRATION_BATCH = 256


def check_convertible(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``(qualified name, module)`` layers of a convertible model, in forward order.

    Args:
        model: An ``nn.Sequential`` (nested Sequentials are flattened; names as
            ``named_modules``, e.g. ``"features.0"``).

    Raises:
        ConversionError: An unsupported layer (the message names it and what to use instead) or
            an unsupported arrangement of layers.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> [name for name, _ in check_convertible(net)]
        ['0', '1', '2']
        >>> check_convertible(nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 2)))
        Traceback (most recent call last):
        ...
        snnergy.errors.ConversionError: layer '1' (Sigmoid) is not supported: use nn.ReLU (an integrate-and-fire rate approximates a ReLU only)
    """
    if not _is_sequential(model):
        raise ConversionError(
            f"model {type(model).__name__} is not an nn.Sequential, so snnergy cannot see its "
            f"forward; give an nn.Sequential (e.g. of an OrderedDict) of {SUPPORTED_TEXT}")
    layers = list(_flatten(model, ""))
    _check_structure(layers)
    return layers


def fold_batchnorm(model: nn.Sequential) -> nn.Sequential:
    """A copy in eval mode with every BatchNorm folded into the Conv2d/Linear before it.

    Folded BatchNorms become ``nn.Identity`` (names and nesting are kept); a weighted layer
    without bias gains one. The arithmetic runs in float64.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2), nn.ReLU(), nn.Linear(2, 2))
        >>> _ = net.eval()
        >>> x = torch.randn(5, 3)
        >>> torch.allclose(fold_batchnorm(net)(x), net(x), atol=1e-6)
        True
    """
    layers = check_convertible(model)
    folded = copy.deepcopy(model).eval()
    modules = dict(folded.named_modules())
    previous = ""
    with torch.no_grad():
        for name, module in layers:
            if isinstance(module, WEIGHTED):
                previous = name
            elif isinstance(module, NORMS):
                _fold(modules[previous], modules[name])
                parent, _, child = name.rpartition(".")
                setattr(folded.get_submodule(parent) if parent else folded, child, nn.Identity())
    return folded


def activation_scales(model: nn.Sequential, calibration: Tensor | Iterable[Any], percentile: float = 99.9,
                      channelwise: bool = False, *, max_values: int = MAX_VALUES) -> dict[str, Tensor]:
    """lambda of each ReLU: the p-th percentile of its non-zero activations (Rueckauer et al. 2017).

    The percentile interpolates linearly between order statistics (NumPy's default) and has no
    size limit. Exact while a layer's values (non-zero ones, or all with ``channelwise``) number
    at most ``max_values``; beyond, every k-th value is kept (k a power of two, deterministic).
    A layer (or a channel) without any non-zero activation gets scale 1.0 (a silent layer).

    Args:
        model: A convertible model (run on a copy in eval mode, on its parameters' device).
        calibration: Inputs ``(N, ...)`` (batched internally) or an iterable of ``x`` or
            ``(x, y)`` batches, e.g. a DataLoader.
        percentile: p in (0, 100]; 100 is the maximum.
        channelwise: One scale per output channel (dim 1) instead of one per layer.
        max_values: Memory bound on the stored values of one layer.

    Returns:
        By ReLU name, float64 scales: a 0-d tensor, or ``(C,)`` when channelwise.

    Example:
        >>> net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1))
        >>> with torch.no_grad():  # relu activations [0, 1, 2, 4]: non-zero [1, 2, 4]
        ...     _ = net[0].weight.fill_(1.0), net[0].bias.zero_()
        >>> x = torch.tensor([[0.0], [1.0], [2.0], [4.0]])
        >>> float(activation_scales(net, x, 100)["1"]), float(activation_scales(net, x, 75)["1"])
        (4.0, 3.0)
    """
    net = copy.deepcopy(model).eval()
    return _calibrate(check_convertible(net), calibration, percentile, channelwise, max_values)[0]


def convert_sequential(model: nn.Module, calibration: Tensor | Iterable[Any],
                       config: ConvertConfig = ConvertConfig()) -> SpikingNetwork:
    """Converts a Sequential ReLU network into a rate-coded spiking chain (a new object).

    Args:
        model: A convertible ``nn.Sequential`` (see :func:`check_convertible`); left untouched.
        calibration: Calibration inputs ``(N, ...)`` or an iterable of ``x`` / ``(x, y)`` batches.
        config: Percentile, channel-wise scales and the neuron reset.

    Returns:
        The :class:`~snnergy.simulation.SpikingNetwork`, on the model's device. Its rate-model
        forward (ReLU in place of IF) gives the DNN's logits up to float error.

    Example:
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> x = torch.rand(32, 2, 2)
        >>> snn = convert_sequential(net, x)
        >>> [stage.name for stage in snn.stages], torch.allclose(snn(x), net(x), atol=1e-5)
        (['1', '3'], True)
    """
    if not 0 < config.percentile <= 100:
        raise ConfigError(f"convert.percentile must be in (0, 100], got {config.percentile}")
    neuron = IFNeuron(threshold=1.0, reset=config.reset)
    folded = fold_batchnorm(model)
    layers = [(n, m) for n, m in check_convertible(folded) if not isinstance(m, DROPPED)]
    scales, silent, input_shape = _calibrate(layers, calibration, config.percentile, config.channelwise)
    stages, pre, current = [], [], None
    lam_in: Tensor = torch.ones((), dtype=torch.float64)  # lambda of the input is 1
    for name, module in layers:
        if isinstance(module, PRE_OPS):
            pre.append((name, copy.deepcopy(module)))
        elif isinstance(module, WEIGHTED):
            current, stage_pre, pre = (name, module), pre, []
        elif isinstance(module, nn.ReLU):
            layer = _normalized(current[1], lam_in, scales[name], current[0])
            stages.append(SpikingStage(current[0], name, _sequential(stage_pre), layer, True))
            lam_in = scales[name]
    last = _normalized(current[1], lam_in, torch.ones((), dtype=torch.float64), current[0])
    stages.append(SpikingStage(current[0], None, _sequential(stage_pre), last, False))
    report = {k: [float(v) for v in s.reshape(-1)] for k, s in scales.items()}
    return SpikingNetwork(stages, input_shape, neuron, report, silent)


# ---------------------------------------------------------------------------- internals


def _is_sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _flatten(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    for child_name, child in module.named_children():
        name = f"{prefix}.{child_name}" if prefix else child_name
        if _is_sequential(child):
            yield from _flatten(child, name)
        elif type(child) in SUPPORTED:
            _check_options(name, child)
            yield name, child
        else:
            raise ConversionError(f"layer '{name}' ({type(child).__name__}) is not supported: {_hint(child)}")


def _hint(module: nn.Module) -> str:
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d)):
        return "use nn.AvgPool2d (max pooling has no exact spiking equivalent)"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "use nn.AvgPool2d with a fixed kernel_size and stride"
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        return "remove it: the readout is the last Linear's logits (its accumulated potential)"
    if type(module).__module__ == "torch.nn.modules.activation":
        return "use nn.ReLU (an integrate-and-fire rate approximates a ReLU only)"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "use nn.Conv2d"
    return (f"snnergy cannot see what a custom module's forward does; give an nn.Sequential of "
            f"{SUPPORTED_TEXT}")


def _check_options(name: str, module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
        raise ConversionError(f"layer '{name}' (Conv2d) uses padding_mode='{module.padding_mode}'; "
                              "use padding_mode='zeros'")
    if isinstance(module, nn.Flatten) and (module.start_dim, module.end_dim) != (1, -1):
        raise ConversionError(f"layer '{name}' (Flatten) must flatten dims 1..-1 (the default), "
                              f"got start_dim={module.start_dim}, end_dim={module.end_dim}")


def _check_structure(layers: list[tuple[str, nn.Module]]) -> None:
    """Weighted [-> BN] -> ReLU -> [AvgPool2d / Flatten]* -> weighted ... -> Linear (logits)."""
    state, weighted = "start", ("", nn.Module())
    for name, module in layers:
        kind = type(module).__name__
        if isinstance(module, DROPPED):
            continue
        if isinstance(module, WEIGHTED):
            if state in ("weighted", "norm"):
                raise ConversionError(f"layer '{name}' ({kind}) follows '{weighted[0]}' without a ReLU "
                                      "between them; add nn.ReLU (only the last Linear has none)")
            state, weighted = "weighted", (name, module)
        elif isinstance(module, NORMS):
            expected = nn.BatchNorm2d if isinstance(weighted[1], nn.Conv2d) else nn.BatchNorm1d
            if state != "weighted" or type(module) is not expected:
                raise ConversionError(f"layer '{name}' ({kind}) must directly follow a Conv2d "
                                      "(BatchNorm2d) or a Linear (BatchNorm1d)")
            out = getattr(weighted[1], "out_channels", None) or weighted[1].out_features
            if module.num_features != out:
                raise ConversionError(f"layer '{name}' ({kind}) normalizes {module.num_features} "
                                      f"channels but '{weighted[0]}' gives {out}")
            if module.running_mean is None or module.running_var is None:
                raise ConversionError(f"layer '{name}' ({kind}) has no running statistics "
                                      "(track_running_stats=False), so it cannot be folded")
            state = "norm"
        elif isinstance(module, nn.ReLU):
            if state not in ("weighted", "norm"):
                raise ConversionError(f"layer '{name}' (ReLU) must follow a Conv2d/Linear or its BatchNorm")
            state = "relu"
        elif state in ("weighted", "norm"):
            raise ConversionError(f"layer '{name}' ({kind}) sits between '{weighted[0]}' and its ReLU; "
                                  "put pooling and flattening after the ReLU")
        else:
            state = "pre" if state != "start" else "start"
    if not isinstance(weighted[1], WEIGHTED):
        raise ConversionError("the model has no Conv2d or Linear layer to convert")
    if state not in ("weighted", "norm") or not isinstance(weighted[1], nn.Linear):
        raise ConversionError(f"the model must end with a Linear layer giving the logits (no ReLU or "
                              f"pooling after it); it ends with '{layers[-1][0]}' "
                              f"({type(layers[-1][1]).__name__})")


def _fold(layer: nn.Module, norm: nn.Module) -> None:
    """Folds BatchNorm ``norm`` into ``layer`` in place (``layer`` belongs to our copy)."""
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


def _batches(calibration: Tensor | Iterable[Any], device: torch.device,
             dtype: torch.dtype) -> Iterator[Tensor]:
    if isinstance(calibration, Tensor):
        for i in range(0, calibration.shape[0], CALIBRATION_BATCH):
            yield calibration[i : i + CALIBRATION_BATCH].to(device=device, dtype=dtype)
        return
    for item in calibration:
        x = item[0] if isinstance(item, (tuple, list)) and item else item
        if not isinstance(x, Tensor):
            raise DataError(f"calibration batches must be tensors or (x, y) pairs, got {type(x).__name__}")
        yield x.to(device=device, dtype=dtype)


def _calibrate(layers: list[tuple[str, nn.Module]], calibration: Tensor | Iterable[Any], percentile: float,
               channelwise: bool, max_values: int = MAX_VALUES,
               ) -> tuple[dict[str, Tensor], tuple[str, ...], tuple[int, ...]]:
    """Scales by ReLU name, silent ReLU names and the input shape (modules in eval mode)."""
    if not 0 < percentile <= 100:
        raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
    param = next(m.weight for _, m in layers if isinstance(m, WEIGHTED))
    normalization = Percentile(percentile, channelwise)
    stores = {name: normalization.accumulator(max_values) for name, m in layers if isinstance(m, nn.ReLU)}
    input_shape = None
    with torch.no_grad():
        for x in _batches(calibration, param.device, param.dtype):
            input_shape = input_shape or tuple(x.shape[1:])
            for name, module in layers:
                try:
                    x = module(x)
                except RuntimeError as err:
                    raise DataError(f"calibration input does not fit layer '{name}': {err}") from None
                if name in stores:
                    stores[name].add(x)
    if input_shape is None:
        raise DataError("calibration data is empty")
    scales = {name: store.percentile(percentile) for name, store in stores.items()}
    silent = tuple(name for name, s in scales.items() if bool(torch.isnan(s).all()))
    return {name: torch.nan_to_num(s, nan=1.0) for name, s in scales.items()}, silent, input_shape


def _normalized(layer: nn.Module, lam_in: Tensor, lam_out: Tensor, name: str) -> nn.Module:
    """A copy of ``layer`` with ``W lambda_in / lambda_out`` and ``b / lambda_out`` (per channel).

    ``lambda_in`` holds one value, one per input feature, or one per channel of the previous
    neurons; a Linear after Flatten sees each channel's scale repeated over its H*W features.
    """
    weight = layer.weight.detach().double()
    out_ch, per_group = weight.shape[0], weight.shape[1]
    groups = getattr(layer, "groups", 1)
    kernel = [1] * (weight.dim() - 2)
    lam_in = lam_in.reshape(-1).to(weight.device)
    if lam_in.numel() == 1:
        weight = weight * lam_in[0]
    else:
        inputs = per_group * groups
        if inputs % lam_in.numel():
            raise ConversionError(f"layer '{name}': its {inputs} inputs do not map onto the "
                                  f"{lam_in.numel()} channels of the previous layer")
        lam_in = lam_in.repeat_interleave(inputs // lam_in.numel())  # flattened (C, H, W) order
        # weight W[o, j] of group g = o // (out_ch / groups) reads input channel g * per_group + j
        per_weight = lam_in.view(groups, 1, per_group).expand(groups, out_ch // groups, per_group)
        weight = weight * per_weight.reshape(out_ch, per_group, *kernel)
    lam_out = lam_out.reshape(-1).to(weight.device)
    weight = weight / lam_out.view(-1, 1, *kernel)
    new = copy.deepcopy(layer)
    with torch.no_grad():
        new.weight.copy_(weight.to(layer.weight.dtype))
        if new.bias is not None:
            new.bias.copy_((layer.bias.detach().double() / lam_out).to(layer.bias.dtype))
    return new


def _sequential(ops: list[tuple[str, nn.Module]]) -> nn.Sequential:
    return nn.Sequential(*[op for _, op in ops])
