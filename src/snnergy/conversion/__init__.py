"""DNN-to-SNN conversion: BN folding, data-based normalization, the spiking network (a copy).

Rate-coded conversion after Rueckauer et al. 2017 (Front. Neurosci. 11:682). :func:`convert`
reads the model's :class:`~snnergy.structure.NetworkPlan` (:func:`snnergy.structure.trace`:
an ``nn.Sequential`` or any torch.fx-traceable model, residual additions included), so

1. BatchNorm is folded into the Conv2d/Linear before it (the plan holds folded copies;
   ``W' = (gamma/sigma) W``, ``b' = (gamma/sigma)(b - mu) + beta``);
2. lambda_l of a trained-threshold activation (QCFS, trained clip: its plan parameters hold
   ``threshold``) is its theta_l, one value or one per channel, no data needed; lambda_l of any
   other activation (ReLU) is the p-th percentile of its non-zero activations on calibration
   data, measured on the network's rate model (BN folded, trained thresholds normalized;
   :mod:`snnergy.conversion.calibration`), whose logits are checked against the model's first
   (with each trained threshold's clip at theta in place of the activation: the rate limit);
3. each branch is normalized by its source's and its neurons' scales
   (:mod:`snnergy.conversion.network`) and activations become IF neurons with threshold 1,
   starting at ``v0`` (``convert.v0``; by default 1/2 when the net has trained thresholds, else 0:
   Bu et al., ICLR 2022; Hao et al., ICLR 2023).

A net whose activations all carry a threshold needs no calibration data
(``convert(model, input_shape=(C, H, W))``); each layer of a mixed net takes its own way.

The DNN is never modified; anything the plan cannot describe raises a
:class:`~snnergy.errors.ConversionError` naming the layer (and, for traced code, the source line)
and what to use instead.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Iterator

import torch
from torch import Tensor, nn

from snnergy.config import ConvertConfig
from snnergy.conversion.calibration import (
    CALIBRATION_BATCH, MAX_VALUES, batches, measure_scales, rate_reference, trained_scales,
)
from snnergy.conversion.network import build_network, normalized_layer
from snnergy.errors import ConfigError, ConversionError, DataError
from snnergy.simulation import IFNeuron, SpikingNetwork, quantize_weights
from snnergy.structure import NetworkPlan, trace

#: Tolerance of the check that the un-normalized network reproduces the model's logits.
_CHECK_RTOL = 1e-3
#: ``convert.v0`` when it is ``None`` and the net has trained-threshold activations: half the
#: threshold (Bu et al., ICLR 2022: with the shift 1/2 of QCFS the expected conversion error is
#: zero; Hao et al., ICLR 2023). Percentile-ReLU nets start at 0 (Rueckauer et al. 2017).
TRAINED_V0 = 0.5


def convert(model: nn.Module, calibration: Tensor | Iterable[Any] | None = None,
            config: ConvertConfig = ConvertConfig(), *,
            input_shape: tuple[int, ...] | None = None) -> SpikingNetwork:
    """Converts a ReLU / trained-threshold network into a rate-coded spiking network (a new object).

    Args:
        model: The trained DNN (any model :func:`snnergy.structure.trace` describes); left untouched.
        calibration: Calibration inputs ``(N, ...)`` or an iterable of ``x`` / ``(x, y)`` batches;
            ``None`` when every activation carries its threshold (QCFS, trained clip).
        config: Percentile and channel-wise scales (of the ReLU layers), the neuron reset, the
            initial potential ``v0`` and the optional weight quantization (``weight_bits``, applied
            to the normalized network: :func:`snnergy.simulation.quantize.quantize_weights`).
        input_shape: The per-sample input shape, needed without calibration data (with it, it
            must agree with the data).

    Returns:
        The :class:`~snnergy.simulation.SpikingNetwork`, on the model's device. Its rate-model
        forward (ReLU, or the clip at 1 for trained thresholds, in place of IF) gives the DNN's
        logits up to float error (for QCFS: those of the DNN with its clip at theta in place of
        the quantized activation).

    Raises:
        ConfigError: No calibration data and no ``input_shape``, or both and they disagree.
        DataError: No (or empty) calibration data while some activation (ReLU) needs it.
        ConversionError: Anything the plan cannot describe.

    Example:
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> x = torch.rand(32, 2, 2)
        >>> snn = convert(net, x)
        >>> [stage.name for stage in snn.stages], torch.allclose(snn(x), net(x), atol=1e-5)
        (['1', '3'], True)
        >>> from snnergy.layers import QCFS
        >>> qnet = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), QCFS(levels=4, threshold=2.0), nn.Linear(8, 3))
        >>> qsnn = convert(qnet, input_shape=(2, 2))  # lambda = theta: no data needed
        >>> qsnn.scales, qsnn.neuron.v0, qsnn.clipped
        ({'2': [2.0]}, 0.5, ('2',))
    """
    plan, raw, inputs = _calibrated_plan(model, calibration, input_shape)
    fixed = trained_scales(plan)
    measured, silent = measure_scales(raw, inputs, config)
    scales = {name: fixed[name] if name in fixed else measured[name]
              for name in (a.name for a in plan.activations)}
    v0 = config.v0 if config.v0 is not None else (TRAINED_V0 if fixed else 0.0)
    neuron = IFNeuron(threshold=1.0, reset=config.reset, v0=v0)
    snn = build_network(plan, scales, neuron, raw.clipped)
    snn = SpikingNetwork(snn.stages, snn.input_shape, neuron,
                         {k: [float(v) for v in s.reshape(-1)] for k, s in scales.items()}, silent,
                         raw.clipped)
    if config.weight_bits is not None:  # after normalization: the weights the chip would hold
        snn = quantize_weights(snn, config.weight_bits, config.weight_per_channel)
    return snn


def activation_scales(model: nn.Module, calibration: Tensor | Iterable[Any], percentile: float = 99.9,
                      channelwise: bool = False, *, max_values: int = MAX_VALUES) -> dict[str, Tensor]:
    """lambda of each activation layer, as :func:`convert` takes it: theta for a trained-threshold
    activation, else the p-th percentile of its non-zero activations.

    The percentile interpolates linearly between order statistics (NumPy's default) and has no
    size limit. Exact while a layer's values (non-zero ones, or all with ``channelwise``) number
    at most ``max_values``; beyond, every k-th value is kept (k a power of two, deterministic).
    A layer (or a channel) without any non-zero activation gets scale 1.0 (a silent layer).

    Args:
        model: A convertible model (left untouched).
        calibration: Inputs ``(N, ...)`` (batched internally) or an iterable of ``x`` or
            ``(x, y)`` batches, e.g. a DataLoader.
        percentile: p in (0, 100]; 100 is the maximum.
        channelwise: One scale per output channel (dim 1) instead of one per layer.
        max_values: Memory bound on the stored values of one layer.

    Returns:
        By activation name, float64 scales: a 0-d tensor, or ``(C,)`` when channelwise (a
        trained threshold: its ``(1,)`` or ``(C,)`` theta).

    Example:
        >>> net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1))
        >>> with torch.no_grad():  # relu activations [0, 1, 2, 4]: non-zero [1, 2, 4]
        ...     _ = net[0].weight.fill_(1.0), net[0].bias.zero_()
        >>> x = torch.tensor([[0.0], [1.0], [2.0], [4.0]])
        >>> float(activation_scales(net, x, 100)["1"]), float(activation_scales(net, x, 75)["1"])
        (4.0, 3.0)
    """
    config = ConvertConfig(percentile=percentile, channelwise=channelwise)  # validates
    plan, raw, inputs = _calibrated_plan(model, calibration)
    return {**measure_scales(raw, inputs, config, max_values)[0], **trained_scales(plan)}


def fold_batchnorm(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """A copy in eval mode with every BatchNorm folded into the Conv2d/Linear before it.

    Folded BatchNorms become ``nn.Identity`` (names and nesting are kept); a weighted layer
    without bias gains one. The arithmetic runs in float64.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2), nn.ReLU(), nn.Linear(2, 2))
        >>> _ = net.eval()
        >>> x = torch.randn(5, 3)
        >>> folded = fold_batchnorm(net, (3,))
        >>> folded[1], torch.allclose(folded(x), net(x), atol=1e-6)
        (Identity(), True)
    """
    plan = trace(model, input_shape)
    folded = copy.deepcopy(model).eval()
    for branch in (b for stage in plan.stages for b in stage.branches):
        if branch.norm is None:
            continue
        with torch.no_grad():
            target = folded.get_submodule(branch.name)
            target.weight.copy_(branch.layer.weight)
            if target.bias is None:
                target.bias = nn.Parameter(branch.layer.bias.detach().clone())
            else:
                target.bias.copy_(branch.layer.bias)
        parent, _, child = branch.norm.rpartition(".")
        setattr(folded.get_submodule(parent) if parent else folded, child, nn.Identity())
    return folded


def _calibrated_plan(model: nn.Module, calibration: Tensor | Iterable[Any] | None,
                     input_shape: tuple[int, ...] | None = None
                     ) -> tuple[NetworkPlan, SpikingNetwork, Iterable[Tensor]]:
    """The plan (traced on the first calibration batch), the rate-model network with only the
    trained thresholds normalized (its logits checked against the model's, trained thresholds
    as their clip) and every calibration batch.

    Without calibration data the plan is traced (and the logits checked) on two deterministic
    uniform samples of ``input_shape``, and a ReLU layer (which needs data) is refused.
    """
    param = next((p for p in model.parameters()), None)
    if param is None:
        raise ConversionError(f"model {type(model).__name__} has no Conv2d or Linear layer to convert")
    shape = None if input_shape is None else tuple(int(d) for d in input_shape)
    stream: Iterator[Tensor] = iter(())
    if calibration is None:
        if shape is None:
            raise ConfigError("convert: without calibration data give the per-sample input shape, "
                              "e.g. convert(model, input_shape=(1, 28, 28))")
        first = torch.rand((2, *shape), generator=torch.Generator().manual_seed(0)).to(param.device, param.dtype)
    else:
        stream = batches(calibration, param.device, param.dtype)
        first = next(stream, None)
        if first is None:
            raise DataError("calibration data is empty")
        if shape is not None and shape != tuple(first.shape[1:]):
            raise ConfigError(f"convert: input_shape={shape} disagrees with the calibration data's "
                              f"per-sample shape {tuple(first.shape[1:])}")
    net = copy.deepcopy(model).eval()
    plan = trace(net, tuple(first.shape[1:]), first[:2])
    fixed = trained_scales(plan)
    if calibration is None:
        needs = [a.name for a in plan.activations if a.name not in fixed]
        if needs:
            raise DataError(f"convert: activations {needs} ({', '.join(sorted({a.kind for a in plan.activations if a.name in needs}))}) "
                            "take their scale from calibration data (a percentile); give calibration data, "
                            "or use trained-threshold activations (qcfs, clip) throughout")
    raw = build_network(plan, fixed, IFNeuron(), tuple(fixed))
    with torch.no_grad():
        try:
            ours = raw(first)
        except RuntimeError as err:
            raise DataError(f"calibration batch of shape {tuple(first.shape)} does not fit the model: {err}") from None
        _check_logits(ours, rate_reference(net)(first))
    return plan, raw, _chain([first] if calibration is not None else [], stream)


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
            f"the converted graph (BN folded, before normalization; trained thresholds as their clip) "
            f"differs from the model's "
            f"logits by up to {float((ours - theirs).abs().max()):.3g}; an op was mapped wrongly, "
            "report this model to snnergy")


__all__ = [
    "CALIBRATION_BATCH", "MAX_VALUES", "TRAINED_V0", "activation_scales", "convert", "fold_batchnorm",
    "normalized_layer",
]
