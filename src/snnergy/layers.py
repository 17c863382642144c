"""Trained-threshold activations: the layers a low-latency SNN is trained with.

- :class:`QCFS`, quantization-clip-floor-shift (Bu et al., ICLR 2022, "Optimal ANN-SNN Conversion
  for High-accuracy and Ultra-low-latency Spiking Neural Networks"):
  ``h(x) = theta * clip(floor(x * L / theta + 1/2) / L, 0, 1)``, the floor passed straight through
  in the backward pass, ``theta`` trained per layer (or per channel), ``L`` quantization levels.
- :class:`TrainedClip`, a trained clipping bound (Ho & Chang, DAC 2021, "TCL"):
  ``h(x) = clamp(x, 0, theta)``.

Both carry their own conversion scale: the converted SNN's threshold is ``theta`` (no percentile).
Their registry entries (:data:`snnergy.structure.ACTIVATIONS` ``qcfs`` and ``clip``) read
``threshold`` (a list: one value, or one per channel) and, for QCFS, ``levels`` off the module.

Building and starting them:

- :func:`make_activation` is the one factory from a name (``relu``, ``qcfs``, ``clip``; the
  names of :data:`snnergy.config.ACTIVATION_NAMES`) to a module; :func:`swap_activations` returns
  a copy of any model with each ``nn.ReLU`` module replaced by it, under the same name (the
  registry models use it, and so can user models).
- :func:`initial_threshold` and :func:`initialize_thresholds` start ``theta`` from data: the
  :data:`THRESHOLD_PERCENTILE`-th percentile of the positive part of each layer's input on one
  batch, i.e. the scale the percentile converter would give the ReLU layer in its place
  (Rueckauer et al. 2017, "Conversion of continuous-valued deep networks to efficient
  event-driven networks", whose robust normalization takes the 99.9th percentile).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from snnergy.errors import ConfigError
from snnergy.normalization import nonzero_percentile
from snnergy.threshold_kernels import clip, qcfs

THRESHOLD_PERCENTILE = 99.9
"""Percentile of a layer's positive inputs that ``theta`` starts at (Rueckauer et al. 2017's
robust normalization; the converter's default ``convert.percentile``)."""


def floor_ste(x: Tensor) -> Tensor:
    """``floor(x)`` forward, identity backward (the straight-through estimator).

    Example:
        >>> x = torch.tensor([0.4, 1.6], requires_grad=True)
        >>> y = floor_ste(x); y.sum().backward()
        >>> y.tolist(), x.grad.tolist()
        ([0.0, 1.0], [1.0, 1.0])
    """
    return x + (torch.floor(x) - x).detach()


class _TrainedThreshold(nn.Module):
    """A trainable positive threshold per layer (``channels=None``) or per channel (dim 1)."""

    def __init__(self, threshold: float = 1.0, channels: int | None = None) -> None:
        super().__init__()
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
            raise ConfigError(f"an activation threshold must be a finite number > 0, got {threshold!r}")
        if channels is not None and (not isinstance(channels, int) or channels < 1):
            raise ConfigError(f"channels must be a positive integer or None, got {channels!r}")
        self.channelwise = channels is not None
        self.threshold = nn.Parameter(torch.full((channels or 1,), float(threshold)))

    def theta(self, x: Tensor) -> Tensor:
        """The threshold broadcast to ``x`` ``(B, C, ...)``."""
        if not self.channelwise:
            return self.threshold[0]
        return self.threshold.view(1, -1, *[1] * (x.dim() - 2))

    def extra_repr(self) -> str:
        values = self.threshold.detach().reshape(-1)
        shown = f"{float(values[0]):.4g}" if values.numel() == 1 else f"{values.numel()} channels"
        return f"threshold={shown}"


class QCFS(_TrainedThreshold):
    """Quantization-clip-floor-shift activation (Bu et al., ICLR 2022), ``L`` levels.

    Args:
        levels: Quantization levels ``L`` (the SNN reaches the ANN's output after about ``L`` steps).
        threshold: Initial ``theta``.
        channels: One ``theta`` per channel (dim 1) instead of one per layer.

    Example:
        >>> act = QCFS(levels=4, threshold=2.0)
        >>> act(torch.tensor([-1.0, 0.2, 0.3, 1.0, 5.0])).tolist()  # steps of theta / L = 0.5
        [0.0, 0.0, 0.5, 1.0, 2.0]
    """

    def __init__(self, levels: int = 8, threshold: float = 1.0, channels: int | None = None) -> None:
        super().__init__(threshold, channels)
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ConfigError(f"QCFS levels must be an integer >= 1, got {levels!r}")
        self.levels = levels

    def forward(self, x: Tensor) -> Tensor:
        # theta * clamp(floor_ste(x * L / theta + 0.5) / L, 0, 1): on a CPU one compiled pass each
        # way, the same values and gradients to the bit (snnergy.threshold_kernels)
        return qcfs(x, self.theta(x), self.levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, {super().extra_repr()}"


class TrainedClip(_TrainedThreshold):
    """A trained clipping bound (Ho & Chang, DAC 2021): ``clamp(x, 0, theta)``.

    Example:
        >>> TrainedClip(threshold=2.0)(torch.tensor([-1.0, 1.5, 3.0])).tolist()
        [0.0, 1.5, 2.0]
    """

    def forward(self, x: Tensor) -> Tensor:
        # minimum(relu(x), theta): on a CPU one compiled pass each way, the same values and
        # gradients to the bit (snnergy.threshold_kernels)
        return clip(x, self.theta(x))


def threshold_parameters(module: nn.Module | None) -> dict[str, object]:
    """``threshold`` (a list of floats) of a trained-threshold module, and ``levels`` for QCFS.

    A module on the ``meta`` device (a model sized before it is allocated) has no values yet:
    its thresholds read NaN.
    """
    if not isinstance(module, _TrainedThreshold):
        return {}
    values = module.threshold.detach().reshape(-1)
    threshold = [math.nan] * values.numel() if values.is_meta else [float(v) for v in values.cpu()]
    out: dict[str, object] = {"threshold": threshold}
    if isinstance(module, QCFS):
        out["levels"] = module.levels
    return out


TRAINED_THRESHOLDS: dict[str, type[_TrainedThreshold]] = {"qcfs": QCFS, "clip": TrainedClip}
"""Activation names with a trained threshold and their module types."""


def is_trained_threshold(module: nn.Module) -> bool:
    """Whether ``module`` carries a trained threshold (:class:`QCFS`, :class:`TrainedClip`).

    Example:
        >>> is_trained_threshold(QCFS()), is_trained_threshold(nn.ReLU())
        (True, False)
    """
    return isinstance(module, _TrainedThreshold)


def make_activation(activation: str = "relu", levels: int = 8, channels: int | None = None) -> nn.Module:
    """The activation module called ``activation``: the one factory of every model's activations.

    Args:
        activation: ``"relu"``, ``"qcfs"`` or ``"clip"``.
        levels: QCFS levels ``L`` (other activations ignore it).
        channels: One threshold per channel (trained thresholds only; ``None``: one per layer).

    Raises:
        ConfigError: An unknown name, or bad levels/channels.

    Example:
        >>> make_activation("qcfs", levels=4)
        QCFS(levels=4, threshold=1)
        >>> make_activation("relu")
        ReLU()
    """
    if activation == "relu":
        return nn.ReLU()
    if activation == "qcfs":
        return QCFS(levels=levels, channels=channels)
    if activation == "clip":
        return TrainedClip(channels=channels)
    raise ConfigError(f"unknown activation {activation!r}; allowed: relu, {', '.join(TRAINED_THRESHOLDS)}")


def swap_activations(
    model: nn.Module,
    activation: str,
    levels: int = 8,
    channelwise: bool = False,
    input_shape: tuple[int, ...] | None = None,
) -> nn.Module:
    """A copy of ``model`` with every ``nn.ReLU`` *module* replaced by ``activation``, same names.

    Only ReLU modules are swapped: a functional ``F.relu(x)`` / ``x.relu()`` call in ``forward``
    cannot be replaced from outside (write it as an ``nn.ReLU`` module to train its threshold).
    The copy's thresholds start at 1; :func:`initialize_thresholds` (which ``snnergy`` training
    runs before its first step) starts them from data.

    Args:
        model: Any module (left untouched).
        activation: ``"relu"`` (the copy is then plain), ``"qcfs"`` or ``"clip"``.
        levels: QCFS levels ``L``.
        channelwise: One threshold per channel (dim 1 of the ReLU's input); needs ``input_shape``,
            whose dummy forward pass gives each layer's channel count.
        input_shape: Per-sample input shape, for ``channelwise``.

    Raises:
        ConfigError: ``model`` has no ``nn.ReLU`` module (e.g. only functional calls), an
            unknown activation, or ``channelwise`` without ``input_shape``.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> swap_activations(net, "qcfs", levels=4)[1]
        QCFS(levels=4, threshold=1)
        >>> swap_activations(net, "clip", channelwise=True, input_shape=(4,))[1].threshold.shape
        torch.Size([3])
    """
    make_activation(activation, levels)  # fail on a bad name or levels before copying
    names = [name for name, m in model.named_modules() if type(m) is nn.ReLU]
    if not names:
        raise ConfigError(
            f"{type(model).__name__} has no nn.ReLU module to swap for {activation!r}: functional relu "
            "calls (F.relu, torch.relu, x.relu()) cannot be swapped; use nn.ReLU modules"
        )
    channels: dict[str, int | None] = dict.fromkeys(names)
    if channelwise and activation != "relu":
        if input_shape is None:
            raise ConfigError("swap_activations: channelwise thresholds need input_shape (channel counts)")
        channels = _relu_channels(model, names, tuple(input_shape))
    out = copy.deepcopy(model)
    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, leaf, make_activation(activation, levels, channels[name]))
    return out


def _relu_channels(model: nn.Module, names: list[str], input_shape: tuple[int, ...]) -> dict[str, int | None]:
    """Dim 1 of each named ReLU's input, by a dummy forward pass in eval mode (no BN update)."""
    found: dict[str, int | None] = {}
    handles = [model.get_submodule(n).register_forward_pre_hook(
        lambda m, args, n=n: found.__setitem__(n, int(args[0].shape[1]))) for n in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parameter = next(model.parameters(), None)
            model(torch.zeros(1, *input_shape, device=parameter.device if parameter is not None else None))
    except RuntimeError as err:
        raise ConfigError(f"swap_activations: input shape {input_shape} does not fit the model: {err}") from None
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    unused = [n for n in names if n not in found]
    if unused:
        raise ConfigError(f"swap_activations: ReLU module(s) {unused} are not used by forward")
    return found  # type: ignore[return-value]


def initial_threshold(inputs: Tensor, channels: int | None = None,
                      percentile: float = THRESHOLD_PERCENTILE) -> Tensor:
    """``theta`` from a layer's recorded input ``(B, C, ...)``: a percentile of its positive values.

    The :data:`THRESHOLD_PERCENTILE`-th percentile of ``relu(inputs)``'s non-zero values
    (:func:`snnergy.normalization.nonzero_percentile`, the converter's definition), over the
    layer, or per channel (dim 1) when ``channels`` is given. A layer (channel) with no positive
    input keeps 1.0 (a channel: the layer's value when it has one).

    Args:
        inputs: The input the activation received.
        channels: ``None`` (one value) or the channel count (one value per channel).
        percentile: In (0, 100].

    Returns:
        float32 ``(1,)`` or ``(channels,)``, every value > 0.

    Example:
        >>> initial_threshold(torch.tensor([[-3.0, 0.0, 1.0, 2.0, 4.0]]), percentile=75).tolist()  # of 1, 2, 4
        [3.0]
        >>> initial_threshold(torch.tensor([[[1.0, 2.0], [-1.0, -2.0]]]), channels=2, percentile=100).tolist()
        [2.0, 2.0]
    """
    positive = torch.relu(inputs.detach().float())
    layer = nonzero_percentile(positive, percentile)
    layer = layer if bool(torch.isfinite(layer)) and float(layer) > 0 else torch.ones((), dtype=layer.dtype)
    if channels is None:
        return layer.reshape(1).float()
    if positive.dim() < 2 or positive.shape[1] != channels:
        raise ConfigError(f"initial_threshold: input of shape {tuple(inputs.shape)} has no {channels} channels (dim 1)")
    per_channel = nonzero_percentile(positive, percentile, channelwise=True)
    ok = torch.isfinite(per_channel) & (per_channel > 0)
    return torch.where(ok, per_channel, layer.to(per_channel.dtype)).float()


@torch.no_grad()
def initialize_thresholds(model: nn.Module, x: Tensor, names: Iterable[str] | None = None,
                          percentile: float = THRESHOLD_PERCENTILE) -> dict[str, list[float]]:
    """Starts each trained threshold from data: one forward pass of ``x``, layer by layer.

    A forward pre-hook sets each layer's ``theta`` (:func:`initial_threshold` of the input it
    receives) just before the layer runs, so every later layer sees its predecessors' new
    thresholds. The model's mode is kept; its buffers (BatchNorm running statistics) and torch's
    random state are restored afterwards, so the pass leaves nothing but the thresholds behind.

    Args:
        model: A model with trained-threshold modules.
        x: A batch (e.g. the first training batch), on the model's device.
        names: Module names to initialize (``None``: every trained-threshold module).
        percentile: In (0, 100].

    Returns:
        The thresholds set, by module name.

    Example:
        >>> net = nn.Sequential(nn.Linear(1, 1), TrainedClip())
        >>> _ = net[0].weight.data.fill_(2.0), net[0].bias.data.zero_()
        >>> initialize_thresholds(net, torch.tensor([[1.0], [3.0]]), percentile=100)  # max of 2, 6
        {'1': [6.0]}
    """
    wanted = set(names) if names is not None else None
    modules = [(n, m) for n, m in model.named_modules()
               if is_trained_threshold(m) and (wanted is None or n in wanted)]
    found: dict[str, list[float]] = {}

    def hook(name: str, module: _TrainedThreshold):
        def set_theta(_: nn.Module, args: tuple[Tensor, ...]) -> None:
            channels = module.threshold.numel() if module.channelwise else None
            theta = initial_threshold(args[0], channels, percentile)
            module.threshold.copy_(theta.to(module.threshold))
            found[name] = [float(v) for v in theta]
        return set_theta

    handles = [m.register_forward_pre_hook(hook(n, m)) for n, m in modules]
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()] if x.is_cuda else []
    try:
        with torch.random.fork_rng(devices=devices):  # dropout draws are given back
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for k, v in model.named_buffers():
            v.copy_(buffers[k])
    return found
