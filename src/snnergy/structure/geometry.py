"""Layer geometries: the shapes and window parameters that operation counts are computed from.

:func:`geometry_of` and :func:`pool_geometry` read a :class:`~snnergy.records.LayerGeometry` or
:class:`~snnergy.records.PoolGeometry` off an ``nn.Conv2d``/``nn.Linear`` or ``nn.AvgPool2d`` and
check it against the shapes (:func:`check_geometry`, :func:`pool_out_shape`). The network plan
(:mod:`snnergy.structure`) carries them; counting computes operations from them.
"""

from __future__ import annotations

import math

from torch import nn

from snnergy.errors import ConfigError, SnnergyError
from snnergy.records import LayerGeometry, PoolGeometry


def window_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a sliding window (floor mode), as ``nn.Conv2d`` and ``nn.AvgPool2d``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def check_geometry(geom: LayerGeometry) -> None:
    """Raises ConfigError when the shapes of ``geom`` are not those its layer produces."""
    where = f"layer '{geom.name}'"
    if geom.kind == "linear":
        if not geom.in_shape or not geom.out_shape or geom.in_shape[:-1] != geom.out_shape[:-1]:
            raise ConfigError(
                f"{where}: linear shapes {geom.in_shape} -> {geom.out_shape} do not match "
                "(only the last dimension may change)"
            )
        return
    if geom.kind != "conv2d":
        raise ConfigError(f"{where}: unknown layer kind '{geom.kind}' (conv2d or linear)")
    if len(geom.in_shape) != 3 or len(geom.out_shape) != 3:
        raise ConfigError(
            f"{where}: conv2d shapes must be per-sample (C, H, W), got "
            f"{geom.in_shape} -> {geom.out_shape}"
        )
    (c_in, h, w), (c_out, h_out, w_out) = geom.in_shape, geom.out_shape
    if geom.groups < 1 or c_in % geom.groups or c_out % geom.groups:
        raise ConfigError(
            f"{where}: {c_in} input and {c_out} output channels are not divisible by "
            f"groups={geom.groups}"
        )
    expected = tuple(
        window_out_size(size, *params)
        for size, params in zip(
            (h, w), zip(geom.kernel_size, geom.stride, geom.padding, geom.dilation)
        )
    )
    if expected != (h_out, w_out) or min(expected) < 1:
        raise ConfigError(
            f"{where}: a {geom.kernel_size} kernel, stride {geom.stride}, padding "
            f"{geom.padding}, dilation {geom.dilation} on a {h}x{w} input gives "
            f"{expected[0]}x{expected[1]}, not {h_out}x{w_out}"
        )


def pool_out_shape(pool: PoolGeometry) -> tuple[int, int, int]:
    """Per-sample output shape of an average pooling (floor mode)."""
    if len(pool.in_shape) != 3:
        raise ConfigError(f"average pooling input must be (C, H, W), got {pool.in_shape}")
    c, h, w = pool.in_shape
    h_out, w_out = (
        window_out_size(size, k, s, p, 1)
        for size, k, s, p in zip((h, w), pool.kernel_size, pool.stride, pool.padding)
    )
    if h_out < 1 or w_out < 1:
        raise ConfigError(f"average pooling {pool.kernel_size} does not fit a {h}x{w} input")
    return (c, h_out, w_out)


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def geometry_of(
    module: nn.Module, name: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> LayerGeometry:
    """The :class:`LayerGeometry` of a Conv2d or Linear module seen with these shapes.

    Args:
        module: An ``nn.Conv2d`` (zero padding) or ``nn.Linear``.
        name: Its qualified name in the model.
        in_shape: Per-sample input shape (no batch dimension).
        out_shape: Per-sample output shape (no batch dimension).

    Returns:
        The layer's geometry, checked against the module's parameters.

    Raises:
        SnnergyError: for any other module, or a padding this module cannot count.
        ConfigError: when the shapes do not match the module.

    Example:
        >>> geometry_of(nn.Conv2d(1, 2, 3, stride=2), "c", (1, 7, 7), (2, 3, 3)).stride
        (2, 2)
    """
    in_shape, out_shape = tuple(int(d) for d in in_shape), tuple(int(d) for d in out_shape)
    if isinstance(module, nn.Linear):
        features = (module.in_features, module.out_features)
        if not in_shape or (in_shape[-1], *out_shape[-1:]) != features:
            raise ConfigError(
                f"layer '{name}': Linear({module.in_features}, {module.out_features}) cannot map "
                f"{in_shape} -> {out_shape}"
            )
        geom = LayerGeometry(name, "linear", in_shape, out_shape)
    elif isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise SnnergyError(
                f"layer '{name}': padding_mode='{module.padding_mode}' pads with copies of real "
                "inputs, which changes their fan-out; counting supports padding_mode='zeros'"
            )
        kernel, dilation = _pair(module.kernel_size), _pair(module.dilation)
        if module.padding == "valid":
            padding = (0, 0)
        elif module.padding == "same":
            totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
            if any(t % 2 for t in totals):
                raise SnnergyError(
                    f"layer '{name}': padding='same' with kernel {kernel} and dilation "
                    f"{dilation} pads unevenly; give an explicit padding instead"
                )
            padding = (totals[0] // 2, totals[1] // 2)
        else:
            padding = _pair(module.padding)
        if not in_shape or in_shape[0] != module.in_channels:
            raise ConfigError(
                f"layer '{name}': Conv2d with {module.in_channels} input channels got a "
                f"per-sample input of shape {in_shape}"
            )
        geom = LayerGeometry(
            name, "conv2d", in_shape, out_shape, kernel, _pair(module.stride), padding,
            dilation, module.groups,
        )
    else:
        raise SnnergyError(
            f"layer '{name}': cannot count the operations of {type(module).__name__}; "
            "counting supports Conv2d and Linear"
        )
    check_geometry(geom)
    return geom


def pool_geometry(module: nn.AvgPool2d, in_shape: tuple[int, int, int]) -> PoolGeometry:
    """The :class:`PoolGeometry` of an ``nn.AvgPool2d`` seen with a per-sample input shape.

    Args:
        module: The average pooling (``ceil_mode`` only where it does not change the output).
        in_shape: Per-sample input shape ``(C, H, W)``.

    Returns:
        Its geometry.

    Example:
        >>> pool_geometry(nn.AvgPool2d(2), (6, 8, 8))
        PoolGeometry(in_shape=(6, 8, 8), kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))
    """
    if not isinstance(module, nn.AvgPool2d):
        raise SnnergyError(
            f"cannot take the pooling geometry of {type(module).__name__}; use nn.AvgPool2d"
        )
    kernel = _pair(module.kernel_size)
    stride = _pair(module.stride) if module.stride else kernel
    geom = PoolGeometry(tuple(int(d) for d in in_shape), kernel, stride, _pair(module.padding))
    out_shape = pool_out_shape(geom)
    if module.ceil_mode:
        ceil_out = []
        for n, k, s, p in zip(geom.in_shape[1:], kernel, stride, geom.padding):
            size = math.ceil((n + 2 * p - k) / s) + 1
            # PyTorch drops a last window that would start in the right padding.
            ceil_out.append(size - 1 if (size - 1) * s >= n + p else size)
        if tuple(ceil_out) != out_shape[1:]:
            raise SnnergyError(
                f"AvgPool2d(ceil_mode=True) on a {geom.in_shape} input adds a partial window; "
                "use ceil_mode=False or an input size the pooling divides"
            )
    return geom
