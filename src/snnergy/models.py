"""Model registry: architectures built only from layers the DNN-to-SNN converter supports.

Every model but the residual ``resnet`` / ``resnet20`` (:class:`ResNet`, whose shortcuts become
residual branches of the plan) is a flat :class:`torch.nn.Sequential` with meaningful child names
(``conv1``, ``relu1``, ``pool1``, ..., ``fc3``). :func:`build_model` checks every model it builds
with :func:`check_supported`, i.e. :func:`snnergy.structure.trace`: the one network plan that
conversion, counting and the regularizers read, with an error naming the offending layer and
what to use instead (max pooling with kernel = stride right after a ReLU is converted by
spike-count gating, ``lenet-max``; other max poolings are refused: use AvgPool2d, as SNN Toolbox
and SpikingJelly recommend; see REFERENCE.md section 2).

The builders write ``nn.ReLU``; :func:`build_model` swaps each for ``config.activation`` (a
trained-threshold ``qcfs`` or ``clip`` module, :func:`snnergy.layers.make_activation`, the one
factory), keeping every child's name (``relu1`` stays ``relu1``).
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from snnergy.config import ModelConfig
from snnergy.errors import ConfigError
from snnergy.layers import swap_activations
from snnergy.pooling import AvgPool2d
from snnergy.registry import Registry
from snnergy.structure import NetworkPlan, trace

ModelBuilder = Callable[[tuple[int, int, int], int, float], nn.Module]
"""``(input_shape (C, H, W), num_classes, width) -> model``."""

MODELS: Registry[ModelBuilder] = Registry("model")


# --------------------------------------------------------------------------- structure check


def check_supported(model: nn.Module, input_shape: tuple[int, ...]) -> NetworkPlan:
    """Checks that the converter can describe ``model``: its :class:`~snnergy.structure.NetworkPlan`.

    Args:
        model: The DNN to check (left untouched).
        input_shape: Per-sample input shape.

    Returns:
        The model's plan.

    Raises:
        ConversionError: Naming the offending layer (by name and type) and what to use instead.

    Example:
        >>> plan = check_supported(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), (4,))
        >>> [a.name for a in plan.activations]
        ['1']
        >>> bad = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(8, 2))
        >>> check_supported(bad, (1, 6, 6))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        snnergy.errors.ConversionError: module '2' (AdaptiveMaxPool2d) is not supported: use nn.MaxPool2d ...
    """
    return trace(model, input_shape)


# --------------------------------------------------------------------------- builders


def _scaled(units: int, width: float) -> int:
    """``units * width`` rounded, at least 1."""
    return max(1, round(units * width))


def _flat_size(layers: list[tuple[str, nn.Module]], input_shape: tuple[int, int, int]) -> int:
    """Features per sample after ``layers``, by a dummy forward (in eval mode: no BN update)."""
    features = nn.Sequential(OrderedDict(layers))
    features.eval()
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, *input_shape))
    except RuntimeError as err:
        raise ConfigError(f"input shape {input_shape} is too small for this model: {err}") from None
    finally:
        features.train()
    return int(out[0].numel())


@MODELS.register("mlp")
def mlp(input_shape: tuple[int, int, int], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """Multilayer perceptron: flatten - fc(256) - relu - fc(128) - relu - fc(classes).

    Args:
        input_shape: Per-sample input shape ``(C, H, W)``.
        num_classes: Number of logits.
        width: Multiplier on the hidden units (rounded, at least 1).

    Example:
        >>> mlp((1, 8, 8), 10).fc1
        Linear(in_features=64, out_features=256, bias=True)
    """
    h1, h2 = _scaled(256, width), _scaled(128, width)
    return nn.Sequential(
        OrderedDict(
            [
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(math.prod(input_shape), h1)),
                ("relu1", nn.ReLU()),
                ("fc2", nn.Linear(h1, h2)),
                ("relu2", nn.ReLU()),
                ("fc3", nn.Linear(h2, num_classes)),
            ]
        )
    )


@MODELS.register("lenet")
def lenet(input_shape: tuple[int, int, int], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """LeNet-5 with ReLU and average pooling, sized from the input.

    Inputs of at least 16x16 use 5x5 kernels (LeCun et al. 1998): the first convolution pads by
    2 when the input is smaller than 32x32 (MNIST's 28x28 then sees LeNet-5's 32x32 field and
    gives 16x5x5 features), while 32x32 inputs (CIFAR-10) run unpadded, also giving 16x5x5.
    Smaller inputs (the 8x8 digits) use 3x3 kernels padded by 1 and 16, 32 channels: with 6 and 16
    the 2x2x16 bottleneck keeps it under 95 % on digits (measured), while 16, 32 reach about 97 %.
    The flatten size comes from a dummy forward pass.

    Args:
        input_shape: Per-sample input shape ``(C, H, W)``.
        num_classes: Number of logits.
        width: Multiplier on channels (6, 16; 16, 32 below 16x16) and hidden units (120, 84),
            rounded, at least 1.

    Example:
        >>> lenet((1, 28, 28), 10).fc1
        Linear(in_features=400, out_features=120, bias=True)
        >>> lenet((1, 8, 8), 10).fc1
        Linear(in_features=128, out_features=120, bias=True)
    """
    channels, height, wide = input_shape
    f1, f2 = _scaled(120, width), _scaled(84, width)
    if min(height, wide) >= 16:
        kernel, pad1, pad2 = 5, (2 if min(height, wide) < 32 else 0), 0
        c1, c2 = _scaled(6, width), _scaled(16, width)
    else:
        kernel, pad1, pad2 = 3, 1, 1
        c1, c2 = _scaled(16, width), _scaled(32, width)
    features: list[tuple[str, nn.Module]] = [
        ("conv1", nn.Conv2d(channels, c1, kernel, padding=pad1)),
        ("relu1", nn.ReLU()),
        ("pool1", AvgPool2d(2)),
        ("conv2", nn.Conv2d(c1, c2, kernel, padding=pad2)),
        ("relu2", nn.ReLU()),
        ("pool2", AvgPool2d(2)),
        ("flatten", nn.Flatten()),
    ]
    flat = _flat_size(features, input_shape)
    classifier: list[tuple[str, nn.Module]] = [
        ("fc1", nn.Linear(flat, f1)),
        ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(f1, f2)),
        ("relu4", nn.ReLU()),
        ("fc3", nn.Linear(f2, num_classes)),
    ]
    return nn.Sequential(OrderedDict(features + classifier))


@MODELS.register("lenet-max")
def lenet_max(input_shape: tuple[int, int, int], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """:func:`lenet` with max pooling (``nn.MaxPool2d(2)``) in place of each average pooling, as
    most PyTorch LeNets are written; converted by spike-count gating
    (:func:`snnergy.simulation.gate_max_pool`, Rueckauer et al. 2017).

    Example:
        >>> lenet_max((1, 8, 8), 10).pool1
        MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
    """
    model = lenet(input_shape, num_classes, width)
    model.pool1 = nn.MaxPool2d(2)
    model.pool2 = nn.MaxPool2d(2)
    return model


@MODELS.register("vgg")
def vgg(input_shape: tuple[int, int, int], num_classes: int, width: float = 1.0) -> nn.Sequential:
    """Small VGG (Simonyan & Zisserman 2015) with batch norm and average pooling.

    Blocks of [conv3x3 pad 1 - BN - ReLU] x 2 then AvgPool2d(2), with 32, 64, 128 channels;
    as many blocks as keep the spatial size at least 2 after pooling, at most 3 (8x8: 2 blocks,
    28x28 and 32x32: 3). Then flatten - fc(128) - BN1d - ReLU - Dropout(0.2) - fc(classes).
    Layer names: ``conv{block}_{i}``, ``bn{block}_{i}``, ``relu{block}_{i}``, ``pool{block}``,
    ``flatten``, ``fc1``, ``bn_fc1``, ``relu_fc1``, ``dropout``, ``fc2``.

    Args:
        input_shape: Per-sample input shape ``(C, H, W)``, at least 4x4.
        num_classes: Number of logits.
        width: Multiplier on channels and hidden units (rounded, at least 1).

    Raises:
        ConfigError: The input is smaller than 4x4 (no block would fit).

    Example:
        >>> model = vgg((1, 8, 8), 10)
        >>> model.pool2
        AvgPool2d(kernel_size=2, stride=2, padding=0)
        >>> model.fc1  # 64 channels x 2 x 2
        Linear(in_features=256, out_features=128, bias=True)
    """
    channels, height, wide = input_shape
    size, blocks = min(height, wide), 0
    while blocks < 3 and size // 2 >= 2:
        size, blocks = size // 2, blocks + 1
    if blocks == 0:
        raise ConfigError(f"vgg needs inputs of at least 4x4, got {input_shape}")
    layers: list[tuple[str, nn.Module]] = []
    c_in = channels
    for block, c in enumerate((32, 64, 128)[:blocks], start=1):
        c_out = _scaled(c, width)
        for i in (1, 2):
            layers += [
                (f"conv{block}_{i}", nn.Conv2d(c_in, c_out, 3, padding=1)),
                (f"bn{block}_{i}", nn.BatchNorm2d(c_out)),
                (f"relu{block}_{i}", nn.ReLU()),
            ]
            c_in = c_out
        layers.append((f"pool{block}", AvgPool2d(2)))
    layers.append(("flatten", nn.Flatten()))
    flat, hidden = _flat_size(layers, input_shape), _scaled(128, width)
    layers += [
        ("fc1", nn.Linear(flat, hidden)),
        ("bn_fc1", nn.BatchNorm1d(hidden)),
        ("relu_fc1", nn.ReLU()),
        ("dropout", nn.Dropout(0.2)),
        ("fc2", nn.Linear(hidden, num_classes)),
    ]
    return nn.Sequential(OrderedDict(layers))


class BasicBlock(nn.Module):
    """Residual basic block (He et al. 2016): conv3x3-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU.

    The shortcut is the identity when shape is kept, else a strided 1x1 convolution with BN
    (the projection, option B of the paper). Each ReLU is its own module, so activity recording
    and the converted SNN name them (``relu1``, ``relu2``).

    Args:
        c_in: Input channels.
        c_out: Output channels.
        stride: Stride of the first convolution (and of the projection).

    Example:
        >>> block = BasicBlock(4, 8, 2)
        >>> block(torch.zeros(1, 4, 8, 8)).shape, block.shortcut is not None
        (torch.Size([1, 8, 4, 4]), True)
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Sequential | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                OrderedDict([("conv", nn.Conv2d(c_in, c_out, 1, stride=stride)), ("bn", nn.BatchNorm2d(c_out))])
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, section 4.2) with average pooling, for conversion.

    A conv3x3-BN-ReLU stem with ``channels[0]`` channels, three stages of ``blocks`` basic blocks
    with ``channels`` (16, 32, 64 in the paper) channels, the second and third starting with
    stride 2, then global *average* pooling (a fixed ``nn.AvgPool2d`` over the final map, not max
    pooling), flatten and a Linear: ``6 * blocks + 2`` weighted layers on the main path (ResNet-8
    for ``blocks=1``, ResNet-20 for 3). Names: ``stem``, ``stem_bn``, ``stem_relu``,
    ``stage{s}.{b}.{conv1,bn1,relu1,conv2,bn2,shortcut.conv,shortcut.bn,relu2}``, ``pool``,
    ``flatten``, ``fc``.

    Args:
        input_shape: Per-sample input shape ``(C, H, W)``, at least 4x4.
        num_classes: Number of logits.
        channels: Channels of the three stages.
        blocks: Basic blocks per stage.

    Example:
        >>> net = ResNet((1, 8, 8), 10, (4, 8, 16), 1)
        >>> net(torch.zeros(2, 1, 8, 8)).shape, net.pool.kernel_size
        (torch.Size([2, 10]), (2, 2))
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int,
                 channels: tuple[int, int, int] = (16, 32, 64), blocks: int = 1) -> None:
        super().__init__()
        c, height, width = input_shape
        if min(height, width) < 4:
            raise ConfigError(f"resnet needs inputs of at least 4x4, got {input_shape}")
        self.stem = nn.Conv2d(c, channels[0], 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(channels[0])
        self.stem_relu = nn.ReLU()
        c_in = channels[0]
        for s, c_out in enumerate(channels, start=1):
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(c_in, c_out, 2 if s > 1 and b == 0 else 1))
                c_in = c_out
            self.add_module(f"stage{s}", nn.Sequential(*layers))
        size = [height, width]
        for _ in range(2):  # two stride-2 convolutions (3x3, padding 1)
            size = [(n - 1) // 2 + 1 for n in size]
        self.pool = AvgPool2d(tuple(size))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_relu(self.stem_bn(self.stem(x)))
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(self.flatten(self.pool(x)))


@MODELS.register("resnet")
def resnet(input_shape: tuple[int, int, int], num_classes: int, width: float = 1.0) -> ResNet:
    """ResNet-8 (one basic block per stage; 16, 32, 64 channels times ``width``), see :class:`ResNet`.

    Example:
        >>> resnet((1, 28, 28), 10).pool  # 28 -> 14 -> 7
        AvgPool2d(kernel_size=(7, 7), stride=(7, 7), padding=0)
    """
    return ResNet(input_shape, num_classes, tuple(_scaled(c, width) for c in (16, 32, 64)), 1)


@MODELS.register("resnet20")
def resnet20(input_shape: tuple[int, int, int], num_classes: int, width: float = 1.0) -> ResNet:
    """ResNet-20 (three basic blocks per stage; 16, 32, 64 channels times ``width``).

    Example:
        >>> sum(isinstance(m, nn.Conv2d) for m in resnet20((3, 32, 32), 10).modules())  # 19 + 2 projections
        21
    """
    return ResNet(input_shape, num_classes, tuple(_scaled(c, width) for c in (16, 32, 64)), 3)


@MODELS.register("tiny-mlp")
def tiny_mlp(
    input_shape: tuple[int, int, int], num_classes: int, width: float = 1.0
) -> nn.Sequential:
    """The smallest model, for tests: flatten - fc(16) - relu - fc(classes).

    Example:
        >>> tiny_mlp((1, 2, 2), 3)
        Sequential(
          (flatten): Flatten(start_dim=1, end_dim=-1)
          (fc1): Linear(in_features=4, out_features=16, bias=True)
          (relu1): ReLU()
          (fc2): Linear(in_features=16, out_features=3, bias=True)
        )
    """
    hidden = _scaled(16, width)
    return nn.Sequential(
        OrderedDict(
            [
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(math.prod(input_shape), hidden)),
                ("relu1", nn.ReLU()),
                ("fc2", nn.Linear(hidden, num_classes)),
            ]
        )
    )


# --------------------------------------------------------------------------- factory


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def build_model(
    config: ModelConfig, input_shape: tuple[int, int, int], num_classes: int
) -> nn.Module:
    """Builds the registered model ``config.name`` for this input and class count, checked.

    Args:
        config: Model name, width multiplier and activation (``relu``, or ``qcfs`` with
            ``levels`` / ``clip``, one threshold per layer or per channel, each starting at 1).
        input_shape: Per-sample input shape ``(C, H, W)``.
        num_classes: Number of logits (at least 1).

    Returns:
        A freshly initialized model in training mode that passes :func:`check_supported`.

    Raises:
        ConfigError: Unknown model name (listing the known ones), a width that is not a positive
            finite number, a malformed input shape or class count, or an input too small.

    Example:
        >>> model = build_model(ModelConfig("lenet"), (1, 8, 8), 10)
        >>> model(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
        >>> build_model(ModelConfig("lenet", activation="qcfs", levels=4), (1, 8, 8), 10).relu1
        QCFS(levels=4, threshold=1)
    """
    builder = MODELS.get(config.name)
    width = config.width
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width):
        raise ConfigError(f"model.width must be a positive finite number, got {width!r}")
    if width <= 0:
        raise ConfigError(f"model.width must be a positive finite number, got {width!r}")
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(_is_int(s) and s > 0 for s in shape):
        raise ConfigError(
            f"input_shape must be three positive integers (C, H, W), got {input_shape!r}"
        )
    if not _is_int(num_classes) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    shape = tuple(int(s) for s in shape)
    model = builder(shape, int(num_classes), float(width))  # type: ignore[arg-type]
    if config.activation != "relu":
        model = swap_activations(model, config.activation, config.levels, config.channelwise_threshold, shape)
    check_supported(model, shape)
    return model
