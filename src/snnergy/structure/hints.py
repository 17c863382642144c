"""The one table of unsupported ops and what to use instead.

Every stage that refuses a layer (the plan, hence model checks, conversion, counting and the
regularizers) takes its advice from :func:`module_hint` or :func:`function_hint`. A new hint is
one row of :data:`MODULE_HINTS` or :data:`FUNCTION_HINTS`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

SUPPORTED_TEXT = ("Conv2d, Linear, BatchNorm1d/2d right after them, ReLU, AvgPool2d (or average pooling "
                  "with a fixed window), MaxPool2d with kernel = stride right after a ReLU, Flatten, Dropout, "
                  "Identity, and sums of branches")
"""What a network plan is made of, for error messages."""

_MAX_POOL = ("use nn.MaxPool2d / F.max_pool2d with kernel_size = stride right after a ReLU (converted by "
             "spike-count gating), or AvgPool2d")
_ACTIVATION = "use ReLU (an integrate-and-fire rate approximates a ReLU only)"
_SOFTMAX = "remove it: the readout is the last Linear's logits (its accumulated potential)"

MODULE_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("MaxPool1d", "MaxPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "LPPool1d", "LPPool2d"), _MAX_POOL),
    (("Softmax", "LogSoftmax", "Softmax2d"), _SOFTMAX),
    (("Conv1d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "LazyConv2d"),
     "use nn.Conv2d"),
    (("Bilinear", "LazyLinear"), "use nn.Linear"),
    (("LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "LocalResponseNorm"),
     "use BatchNorm right after a Conv2d/Linear (it is folded into the weights)"),
)
"""Rows ``(module type names, hint)``; activations of ``torch.nn`` not registered get ``use ReLU``."""

FUNCTION_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("max_pool1d", "max_pool3d", "adaptive_max_pool2d", "max", "amax"), _MAX_POOL),
    (("sigmoid", "tanh", "gelu", "silu", "elu", "leaky_relu", "relu6", "hardtanh", "softplus",
      "hardswish", "mish", "selu", "clamp", "clip"), _ACTIVATION),
    (("softmax", "log_softmax"), _SOFTMAX),
    (("cat", "concat", "stack"),
     "concatenation is not supported; snnergy converts chains of layers with residual additions"),
    (("mul", "matmul", "truediv", "div", "sub", "neg", "pow"),
     "only sums of branches are supported (put scalings into a Conv2d/Linear)"),
    (("conv2d", "linear"), "use the nn.Conv2d / nn.Linear modules (their weights must be module parameters)"),
)
"""Rows ``(function or method names, hint)``."""


def module_hint(module: nn.Module) -> str:
    """What to use instead of an unsupported module.

    Example:
        >>> module_hint(nn.AdaptiveMaxPool2d(2))
        'use nn.MaxPool2d / F.max_pool2d with kernel_size = stride right after a ReLU (converted by spike-count gating), or AvgPool2d'
        >>> module_hint(nn.Sigmoid())
        'use ReLU (an integrate-and-fire rate approximates a ReLU only)'
    """
    name = type(module).__name__
    for names, hint in MODULE_HINTS:
        if name in names:
            return hint
    if type(module).__module__ == "torch.nn.modules.activation" and name != "MultiheadAttention":
        return _ACTIVATION
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "use nn.AvgPool2d with a fixed kernel_size and stride (or an output size dividing the input)"
    if type(module).__module__.startswith("torch.nn."):
        return f"supported layers: {SUPPORTED_TEXT}"
    return (f"snnergy sees a custom module's forward only when torch.fx can trace it into supported "
            f"layers ({SUPPORTED_TEXT})")


def function_hint(target: Any) -> str:
    """What to use instead of an unsupported function or tensor method (by its name).

    Example:
        >>> import torch
        >>> function_hint(torch.cat)
        'concatenation is not supported; snnergy converts chains of layers with residual additions'
    """
    name = str(getattr(target, "__name__", target))
    for names, hint in FUNCTION_HINTS:
        if name in names:
            return hint
    return f"supported: {SUPPORTED_TEXT}"
