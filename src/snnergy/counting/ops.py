"""Operation counts of a layer: fan-out maps, nominal/dense/effective MACs, SynOps fan-out, sparsity.

The fan-out of an input element of a Conv2d/Linear layer is the number of MACs it takes part in
(:func:`fanout_map`, exact at borders, strides, padding, dilation and groups); dense MACs sum it
over all inputs, effective MACs over the non-zero inputs (:func:`effective_macs`), and SynOps over
spikes weighted by each neuron's fan-out through average pooling (:func:`neuron_fanout`,
:func:`weighted_events`; into an identity shortcut one operation per element,
:func:`identity_fanout`). Counts are per sample, ``(B, ...)`` layout, summed in float64.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from snnergy.structure.geometry import check_geometry, pool_out_shape
from snnergy.errors import ConfigError
from snnergy.records import LayerGeometry, PoolGeometry


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
    check_geometry(geom)
    if geom.kind == "linear":
        return math.prod(geom.out_shape) * geom.in_shape[-1]
    per_output = geom.in_shape[0] // geom.groups * geom.kernel_size[0] * geom.kernel_size[1]
    return math.prod(geom.out_shape) * per_output


@functools.lru_cache(maxsize=64)
def _fanout_cached(geom: LayerGeometry) -> Tensor:
    check_geometry(geom)
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


def _through_pools(
    fanout: Tensor, pools: tuple[PoolGeometry, ...], neuron_shape: tuple[int, ...], target: str
) -> Tensor:
    """Carries a fan-out map back through average pools (the adjoint of sum-pooling)."""
    for pool in reversed(pools):
        out_shape = pool_out_shape(pool)
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


@functools.lru_cache(maxsize=64)
def _neuron_fanout_cached(
    next_layer: LayerGeometry, pools: tuple[PoolGeometry, ...], neuron_shape: tuple[int, ...]
) -> Tensor:
    return _through_pools(_fanout_cached(next_layer), pools, neuron_shape, f"layer '{next_layer.name}'")


def neuron_fanout(
    next_layer: LayerGeometry, pools: Sequence[PoolGeometry], neuron_shape: tuple[int, ...]
) -> Tensor:
    """Fan-out of each spiking neuron into the next weighted layer, through average pools.

    A spike is a binary event of one neuron: the pooled value is not a spike, and the spike still
    reaches every output its pooled positions feed (docs/design.md, SynOps). So a neuron's fan-out is
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


def identity_fanout(
    branch_shape: tuple[int, ...], pools: Sequence[PoolGeometry], neuron_shape: tuple[int, ...]
) -> Tensor:
    """Fan-out of each spiking neuron into an identity shortcut, through average pools.

    An identity branch (after conversion a per-channel scale, see
    ``snnergy.simulation.ChannelScale``) adds each of its input elements to one element of the
    residual sum: one synaptic operation per element and spike. Through average pooling a spike
    reaches every pooled position whose window contains it, as in :func:`neuron_fanout`.

    Args:
        branch_shape: Per-sample shape of the branch's input after the pools (= its output).
        pools: The average poolings between the neurons and the sum, in forward order.
        neuron_shape: Per-sample shape of the spiking layer.

    Returns:
        float64 tensor of shape ``neuron_shape``.

    Example:
        >>> identity_fanout((1, 2, 2), [], (1, 2, 2)).flatten().tolist()
        [1.0, 1.0, 1.0, 1.0]
        >>> identity_fanout((1, 1, 1), [PoolGeometry((1, 2, 2), (2, 2), (2, 2))], (1, 2, 2)).sum().item()
        4.0
    """
    ones = torch.ones(tuple(branch_shape), dtype=torch.float64)
    return _through_pools(ones, tuple(pools), tuple(neuron_shape), "an identity shortcut")
