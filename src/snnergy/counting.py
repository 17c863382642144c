"""Operation counting: fan-out, nominal/dense/effective MACs, SynOps and sparsity.

One fan-out implementation serves both networks (DESIGN.md, "Definitions"):

- the *fan-out* of an input element of a Conv2d/Linear layer is the number of MACs it takes part
  in, exact at borders, strides, padding, dilation and groups (:func:`fanout_map`);
- *dense* MACs sum the fan-out over all inputs (NeuroBench "Dense": every input non-zero, zero
  padding not counted); *nominal* MACs are the ptflops/thop count, padding included;
- *effective* MACs (zero-skipping DNN hardware) sum the fan-out over the non-zero inputs of a
  layer's actual input (:func:`effective_macs`);
- *SynOps* (SNN) sum, over all spikes, the spiking neuron's fan-out into the next weighted layer,
  through any average pooling in between (:func:`neuron_fanout`, :func:`weighted_events`).

Everything is per sample with layout ``(B, ...)``; sums are float64 so that they are exact
integers for realistic sizes (below 2**53).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnergy.errors import ConfigError, SnnergyError
from snnergy.records import LayerGeometry, PoolGeometry

__all__ = [
    "dense_macs", "effective_macs", "fanout_map", "geometry_of", "layer_geometries",
    "neuron_fanout", "nominal_macs", "pool_geometry", "sparsity_counts", "weighted_events",
]

# Weighted layers whose operations this module cannot count: met in a forward pass, they are
# refused rather than silently left out of the totals.
_UNSUPPORTED_WEIGHTED = (
    nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Bilinear,
)


def _window_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a sliding window (floor mode), as ``nn.Conv2d`` and ``nn.AvgPool2d``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _window_adjoint(
    out_map: Tensor,
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor:
    """Adjoint of a sliding-window sum: spreads each output value over the inputs of its window.

    A transposed convolution with an all-ones kernel (as sinabs ``sinabs/hooks.py::
    conv_connection_map`` builds its fan-out map) computed on the padded canvas, then cropped to
    the real inputs: padded positions are dropped, and the tail rows/columns that floor division
    leaves out of every window get 0.

    Args:
        out_map: ``(N, H_out, W_out)`` values per output position.
        in_hw: ``(H, W)`` of the real (unpadded) input.
        kernel, stride, padding, dilation: ``(h, w)`` pairs of the window.

    Returns:
        ``(N, H, W)``: for each input position, the sum of ``out_map`` over the output positions
        whose window contains it.
    """
    ones = torch.ones((1, 1, *kernel), dtype=out_map.dtype, device=out_map.device)
    full = F.conv_transpose2d(out_map.unsqueeze(1), ones, stride=stride, dilation=dilation)
    canvas_h, canvas_w = in_hw[0] + 2 * padding[0], in_hw[1] + 2 * padding[1]
    full = F.pad(full, (0, canvas_w - full.shape[-1], 0, canvas_h - full.shape[-2]))
    h0, w0 = padding
    return full[:, 0, h0 : h0 + in_hw[0], w0 : w0 + in_hw[1]]


def _check_geometry(geom: LayerGeometry) -> None:
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
        _window_out_size(size, *params)
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


def _pool_out_shape(pool: PoolGeometry) -> tuple[int, int, int]:
    """Per-sample output shape of an average pooling (floor mode)."""
    if len(pool.in_shape) != 3:
        raise ConfigError(f"average pooling input must be (C, H, W), got {pool.in_shape}")
    c, h, w = pool.in_shape
    h_out, w_out = (
        _window_out_size(size, k, s, p, 1)
        for size, k, s, p in zip((h, w), pool.kernel_size, pool.stride, pool.padding)
    )
    if h_out < 1 or w_out < 1:
        raise ConfigError(f"average pooling {pool.kernel_size} does not fit a {h}x{w} input")
    return (c, h_out, w_out)


def nominal_macs(geom: LayerGeometry) -> int:
    """MACs of one sample as ptflops/thop count them, zero padding included, bias excluded.

    Conv2d: ``C_out*H_out*W_out*(C_in/groups)*k_h*k_w``; Linear: ``out elements * in_features``.

    Args:
        geom: The layer's shapes.

    Returns:
        The nominal MAC count per sample.

    Example:
        >>> nominal_macs(LayerGeometry("c", "conv2d", (1, 3, 3), (1, 3, 3), (3, 3), padding=(1, 1)))
        81
    """
    _check_geometry(geom)
    if geom.kind == "linear":
        return math.prod(geom.out_shape) * geom.in_shape[-1]
    per_output = geom.in_shape[0] // geom.groups * geom.kernel_size[0] * geom.kernel_size[1]
    return math.prod(geom.out_shape) * per_output


@functools.lru_cache(maxsize=64)
def _fanout_cached(geom: LayerGeometry) -> Tensor:
    _check_geometry(geom)
    if geom.kind == "linear":
        return torch.full(geom.in_shape, float(geom.out_shape[-1]), dtype=torch.float64)
    c_in, h, w = geom.in_shape
    c_out, h_out, w_out = geom.out_shape
    ones = torch.ones((1, h_out, w_out), dtype=torch.float64)
    spatial = _window_adjoint(
        ones, (h, w), geom.kernel_size, geom.stride, geom.padding, geom.dilation
    )
    # Each input channel feeds the C_out/groups output channels of its group.
    return (spatial * (c_out // geom.groups)).expand(c_in, h, w).contiguous()


def fanout_map(geom: LayerGeometry) -> Tensor:
    """How many MACs each input element of a Conv2d/Linear layer takes part in.

    Exact at borders, strides, padding, dilation and groups: the transposed convolution of an
    all-ones output map with an all-ones kernel, as sinabs builds its synops connection map
    (``sinabs/hooks.py::conv_connection_map``), restricted to the real (unpadded) inputs. Inputs
    that no window touches (stride larger than the kernel, tail rows dropped by floor division)
    get 0. Linear: ``out_features`` everywhere.

    Args:
        geom: The layer's shapes.

    Returns:
        float64 tensor of shape ``geom.in_shape`` (a fresh copy; cached per geometry).

    Example:
        >>> conv = LayerGeometry("c", "conv2d", (1, 3, 3), (1, 3, 3), (3, 3), padding=(1, 1))
        >>> fanout_map(conv)[0].long().tolist()  # corner 2x2=4, edge 2x3=6, centre 3x3=9
        [[4, 6, 4], [6, 9, 6], [4, 6, 4]]
    """
    return _fanout_cached(geom).clone()


def dense_macs(geom: LayerGeometry) -> int:
    """MACs of one sample whose inputs are all non-zero, zero padding excluded (NeuroBench Dense).

    Args:
        geom: The layer's shapes.

    Returns:
        The sum of :func:`fanout_map`.

    Example:
        >>> dense_macs(LayerGeometry("c", "conv2d", (1, 3, 3), (1, 3, 3), (3, 3), padding=(1, 1)))
        49
    """
    return int(_fanout_cached(geom).sum().item())


def weighted_events(fanout: Tensor, events: Tensor) -> Tensor:
    """Per-sample sum of events weighted by fan-out: ``sum(events * fanout)``.

    Args:
        fanout: Fan-out per element, shape ``S`` (e.g. :func:`fanout_map`).
        events: ``(B, *S)`` events per element: a non-zero mask, spike counts...

    Returns:
        ``(B,)`` float64 on ``events``' device.

    Example:
        >>> weighted_events(torch.tensor([3.0, 3.0]), torch.tensor([[1, 0], [2, 1]]))
        tensor([3., 9.], dtype=torch.float64)
    """
    if events.dim() != fanout.dim() + 1 or tuple(events.shape[1:]) != tuple(fanout.shape):
        raise ConfigError(
            f"events of shape {tuple(events.shape)} do not match a fan-out of shape "
            f"{tuple(fanout.shape)}: expected (B, {', '.join(map(str, fanout.shape))})"
        )
    weights = fanout.to(device=events.device, dtype=torch.float64).reshape(-1)
    return events.reshape(events.shape[0], -1).to(torch.float64) @ weights


def effective_macs(geom: LayerGeometry, inputs: Tensor) -> Tensor:
    """Zero-skipping MACs per sample: the fan-out summed over the non-zero inputs.

    Args:
        geom: The layer's shapes.
        inputs: ``(B, *geom.in_shape)`` the layer's actual input.

    Returns:
        ``(B,)`` float64 MACs per sample.

    Example:
        >>> fc = LayerGeometry("fc", "linear", (4,), (3,))
        >>> effective_macs(fc, torch.tensor([[0.5, 0.0, 0.0, 2.0]]))  # 2 non-zero x 3 outputs
        tensor([6.], dtype=torch.float64)
    """
    if tuple(inputs.shape[1:]) != tuple(geom.in_shape):
        raise ConfigError(
            f"layer '{geom.name}': input of shape {tuple(inputs.shape)} does not match its "
            f"per-sample input shape {geom.in_shape}"
        )
    return weighted_events(_fanout_cached(geom), inputs != 0)


@functools.lru_cache(maxsize=64)
def _neuron_fanout_cached(
    next_layer: LayerGeometry, pools: tuple[PoolGeometry, ...], neuron_shape: tuple[int, ...]
) -> Tensor:
    fanout = _fanout_cached(next_layer)
    target = f"layer '{next_layer.name}'"
    for pool in reversed(pools):
        out_shape = _pool_out_shape(pool)
        if fanout.numel() != math.prod(out_shape):
            raise ConfigError(
                f"average pooling {pool.in_shape} -> {out_shape} does not feed {target} "
                f"({tuple(fanout.shape)}: {fanout.numel()} elements)"
            )
        fanout = _window_adjoint(
            fanout.reshape(out_shape), pool.in_shape[1:], pool.kernel_size, pool.stride,
            pool.padding, (1, 1),
        )
        target = f"average pooling {pool.in_shape} -> {out_shape}"
    if fanout.numel() != math.prod(neuron_shape):
        raise ConfigError(
            f"neurons of shape {neuron_shape} do not feed {target} "
            f"({tuple(fanout.shape)}: {fanout.numel()} elements)"
        )
    return fanout.reshape(neuron_shape).contiguous()


def neuron_fanout(
    next_layer: LayerGeometry, pools: Sequence[PoolGeometry], neuron_shape: tuple[int, ...]
) -> Tensor:
    """Fan-out of each spiking neuron into the next weighted layer, through average pools.

    A spike is a binary event of one neuron: the pooled value is not a spike, and the spike still
    reaches every output its pooled positions feed (DESIGN.md, SynOps). So a neuron's fan-out is
    the sum, over the pooled positions whose window contains it, of their fan-out: the adjoint of
    sum-pooling applied to the next layer's :func:`fanout_map`. Flattening is a reshape.

    Args:
        next_layer: The weighted layer the spikes feed.
        pools: The average poolings between the neurons and ``next_layer``, in forward order.
        neuron_shape: Per-sample shape of the spiking layer, e.g. ``(C, H, W)``.

    Returns:
        float64 tensor of shape ``neuron_shape`` (a fresh copy; cached).

    Example:
        >>> fc = LayerGeometry("fc", "linear", (4,), (10,))
        >>> neuron_fanout(fc, [PoolGeometry((1, 4, 4), (2, 2), (2, 2))], (1, 4, 4))[0, 0].tolist()
        [10.0, 10.0, 10.0, 10.0]
    """
    return _neuron_fanout_cached(next_layer, tuple(pools), tuple(neuron_shape)).clone()


def sparsity_counts(activation: Tensor) -> tuple[int, int]:
    """Exact zeros and total elements of an activation map (sparsity = zeros / total).

    Example:
        >>> sparsity_counts(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
        (3, 4)
    """
    return int((activation == 0).sum().item()), activation.numel()


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def geometry_of(
    module: nn.Module, name: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> LayerGeometry:
    """The :class:`LayerGeometry` of a Conv2d or Linear module seen with these shapes.

    Args:
        module: An ``nn.Conv2d`` (zero padding) or ``nn.Linear``.
        name: Its qualified name in the model.
        in_shape, out_shape: Per-sample input and output shapes (no batch dimension).

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
    _check_geometry(geom)
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
    out_shape = _pool_out_shape(geom)
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


def layer_geometries(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerGeometry]:
    """Geometries of every Conv2d/Linear a model runs, in forward order, from one dummy pass.

    The pass uses one all-zero sample, no gradient and eval mode; temporary forward hooks are
    removed and every submodule's train/eval mode is restored afterwards. A module called twice
    appears twice. Operations written as functional calls (``F.conv2d`` in ``forward``) are not
    seen.

    Args:
        model: The network.
        input_shape: Per-sample input shape, e.g. ``(1, 8, 8)``.

    Returns:
        One :class:`LayerGeometry` per weighted-layer call.

    Raises:
        ConfigError: when the forward pass fails on this input shape.
        SnnergyError: when the model runs a weighted layer counting does not support.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
        >>> [(g.name, g.in_shape, g.out_shape) for g in layer_geometries(net, (1, 4, 4))]
        [('0', (1, 4, 4), (2, 2, 2)), ('2', (8,), (3,))]
    """
    input_shape = tuple(int(d) for d in input_shape)
    if not input_shape or min(input_shape) < 1:
        raise ConfigError(f"input shape must be per-sample positive sizes, got {input_shape}")
    calls: list[tuple[nn.Module, str, tuple[int, ...], tuple[int, ...]]] = []
    unsupported: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):

            def hook(mod: nn.Module, args: tuple, out: Tensor, name: str = name) -> None:
                calls.append((mod, name, tuple(args[0].shape[1:]), tuple(out.shape[1:])))

            handles.append(module.register_forward_hook(hook))
        elif isinstance(module, _UNSUPPORTED_WEIGHTED):

            def refuse(mod: nn.Module, args: tuple, out: object, name: str = name) -> None:
                unsupported.append(f"'{name}' ({type(mod).__name__})")

            handles.append(module.register_forward_hook(refuse))
    modes = {module: module.training for module in model.modules()}
    tensors = (*model.parameters(), *model.buffers())
    first = next((t for t in tensors if t.is_floating_point()), None)
    dummy = torch.zeros(
        (1, *input_shape),
        dtype=first.dtype if first is not None else torch.float32,
        device=first.device if first is not None else "cpu",
    )
    try:
        model.eval()
        with torch.no_grad():
            model(dummy)
    except SnnergyError:
        raise
    except Exception as exc:  # any failure of the user's forward is a shape/config mismatch
        raise ConfigError(
            f"a forward pass of {type(model).__name__} on input shape {(1, *input_shape)} "
            f"failed: {exc}"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    if unsupported:
        raise SnnergyError(
            f"cannot count the operations of layer(s) {', '.join(unsupported)}; "
            "counting supports Conv2d and Linear"
        )
    return [geometry_of(*call) for call in calls]
