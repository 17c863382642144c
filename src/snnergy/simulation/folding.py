"""Average pooling folded into the next layer: one Conv2d/Linear call on the raw spikes.

An average pooling is linear, and so is the Conv2d or Linear layer after it: together they are
one linear map of the raw (unpooled) inputs, whose weights are composed once, when the simulator
first meets the stage. Spikes then go through that one layer and never make a pooled float map
(about 30 % of a small LeNet call went to ``avg_pool2d`` over spike maps; issue 18). Supported
branches: any number of :class:`~torch.nn.AvgPool2d` (kernel = stride, no padding, floor mode)

* before a :class:`~torch.nn.Conv2d` (no dilation, zero padding): the pools' product
  ``Kh x Kw`` makes each tap a ``Kh x Kw`` block of raw inputs, so the composed convolution has a
  ``(Kh kh) x (Kw kw)`` kernel, stride ``(Kh sh, Kw sw)`` and padding ``(Kh ph, Kw pw)``, each tap
  weighted ``w / (Kh Kw)``; rows and columns that floor mode drops are cropped first;
* then :class:`~torch.nn.Flatten` before a :class:`~torch.nn.Linear`: raw input ``i`` gets the
  column of the pooled input it falls in, times ``1 / (Kh Kw)`` (zero if floor mode drops it),
  the same fan-out as the event tables (:mod:`snnergy.simulation.events`).

On a CPU the simulator keeps convolution spikes channels last and pools them with
:func:`pool_spikes` (strided additions) before a Linear, folding only the Flatten into the
Linear's columns: composing the poolings multiplies the Linear's MACs by the pooling's area, which
cost more than pooling there (Fashion-MNIST LeNet's fc1: 2.8 ms against 1.4 ms per chunk).

The composed map gives the same currents up to the order of the additions (a pooled value is a
sum of spikes times ``1 / k^2``, a power of two for even ``k``), so the same spikes in float64;
:func:`unfoldable` says why a branch is kept as it is (a max pooling stays the spike-count gate).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnergy.pooling import compiled_window
from snnergy.simulation import kernels
from snnergy.simulation.events import pooled_index


def unfoldable(pre: Sequence[nn.Module], layer: nn.Module, channels_last: bool = False) -> str | None:
    """Why the ops ``pre`` and ``layer`` cannot be folded into one layer, or ``None`` if they can.

    A Flatten alone before a Linear folds for ``channels_last`` inputs (the columns are reordered
    instead of the spikes).

    Example:
        >>> unfoldable([nn.AvgPool2d(2)], nn.Conv2d(2, 3, 3, padding=1)) is None
        True
        >>> unfoldable([nn.Flatten()], nn.Linear(8, 2))
        'no average pooling to fold'
        >>> unfoldable([nn.MaxPool2d(2)], nn.Conv2d(2, 3, 3))
        'a MaxPool2d (gated by spike counts, never folded)'
    """
    pools = 0
    for i, op in enumerate(pre):
        if isinstance(op, nn.AvgPool2d):
            if not _plain(op):
                return "an AvgPool2d whose stride differs from its kernel, or with padding or ceil mode"
            pools += 1
        elif isinstance(op, nn.Flatten):
            if op.start_dim != 1 or op.end_dim != -1 or i != len(pre) - 1 or not isinstance(layer, nn.Linear):
                return "a Flatten other than Flatten(1, -1) right before a Linear"
        elif isinstance(op, nn.MaxPool2d):
            return "a MaxPool2d (gated by spike counts, never folded)"
        else:
            return f"a {type(op).__name__} before its layer"
    if not pools and not (channels_last and isinstance(layer, nn.Linear) and len(pre)):
        return "no average pooling to fold"
    if isinstance(layer, nn.Conv2d):
        if _pair(layer.dilation) != (1, 1) or layer.padding_mode != "zeros" or layer.padding == "same":
            return "a dilated, non-zero-padded or 'same'-padded Conv2d"
    elif isinstance(layer, nn.Linear):
        if not isinstance(pre[-1], nn.Flatten):
            return "an AvgPool2d not followed by Flatten before a Linear"
    else:
        return f"a {type(layer).__name__} layer"
    return None


class FoldedLayer:
    """The poolings ``pre`` and ``layer`` as one layer on the raw inputs (see the module docstring).

    Args:
        pre: The branch's weightless ops (:func:`unfoldable` must return ``None``).
        layer: Its Conv2d or Linear.
        input_shape: The raw per-sample input shape ``(C, H, W)``.
        channels_last: The inputs arrive channels last (as event-driven convolutions leave their
            spikes); only the Linear's column order depends on it.

    Example:
        >>> conv = nn.Conv2d(1, 1, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = conv.weight.fill_(2.0)
        >>> folded = FoldedLayer([nn.AvgPool2d(2)], conv, (1, 2, 2))
        >>> # 3 of 4 spikes in the window: pooled 0.75, times 2; folded: 3 spikes x 2 / 4
        >>> folded(torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])).item()
        1.5
    """

    def __init__(self, pre: Sequence[nn.Module], layer: nn.Conv2d | nn.Linear, input_shape: tuple[int, ...],
                 channels_last: bool = False) -> None:
        reason = unfoldable(pre, layer, channels_last)
        if reason is not None:
            raise ValueError(f"cannot fold the poolings into {type(layer).__name__}: {reason}")
        pools = [_pair(op.kernel_size) for op in pre if isinstance(op, nn.AvgPool2d)]
        kh, kw = math.prod(p[0] for p in pools), math.prod(p[1] for p in pools)
        self.input_shape = tuple(int(s) for s in input_shape)
        c, h, w = self.input_shape
        # floor mode: (h // a) // b == h // (a b), so the pools read the first kh * (h // kh) rows
        self.crop = (h // kh * kh, w // kw * kw)
        self.channels_last = channels_last
        weight = layer.weight.detach()
        self.bias = None if layer.bias is None else layer.bias.detach()
        if isinstance(layer, nn.Linear):
            index, scale = pooled_index(self.input_shape, pools)
            columns = torch.from_numpy(index).clamp(min=0).to(weight.device)
            composed = weight[:, columns] * scale
            composed[:, torch.from_numpy(index < 0).to(weight.device)] = 0.0
            if channels_last:
                composed = composed.reshape(-1, c, h, w).permute(0, 2, 3, 1).reshape(composed.shape[0], -1)
            self.weight = composed.contiguous()
            self.conv: tuple[tuple[int, int], tuple[int, int], int] | None = None
        else:
            (sh, sw) = _pair(layer.stride)
            (ph, pw) = (0, 0) if layer.padding == "valid" else _pair(layer.padding)
            self.weight = (weight.repeat_interleave(kh, 2).repeat_interleave(kw, 3) / (kh * kw)).contiguous()
            self.conv = ((kh * sh, kw * sw), (kh * ph, kw * pw), layer.groups)

    def __call__(self, x: Tensor) -> Tensor:
        """The layer's current ``(rows, *out_shape)`` for raw inputs ``x`` ``(rows, *input_shape)``."""
        if self.conv is None:
            flat = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1) if self.channels_last else x.reshape(x.shape[0], -1)
            return F.linear(flat, self.weight, self.bias)
        if self.crop != tuple(x.shape[2:]):
            x = x[:, :, : self.crop[0], : self.crop[1]]
        stride, padding, groups = self.conv
        return F.conv2d(x, self.weight, self.bias, stride, padding, 1, groups)


class BatchedLayer:
    """A branch's weightless ops ``pre`` and its ``layer`` as the batched path runs them, for
    inputs of one layout (see the module docstring).

    Channels-last spikes (a CPU) before a Linear are pooled first (:func:`pool_spikes`) and only
    the Flatten folds, into the Linear's column order; contiguous inputs have every pooling before
    a Linear folded into it (:class:`FoldedLayer`). A convolution reads the pooled spikes.
    ``fold=False`` folds nothing: the ops, then the layer, as the reference.

    Args:
        pre: The branch's weightless ops.
        layer: Its Conv2d, Linear or :class:`~snnergy.simulation.stages.ChannelScale`.
        input_shape: The raw per-sample input shape.
        channels_last: The inputs arrive channels last.
        fold: Fold what can be folded.

    Example:
        >>> layer = nn.Linear(2 * 2 * 2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.arange(8.0))
        >>> run = BatchedLayer([nn.AvgPool2d(2), nn.Flatten()], layer, (2, 4, 4), channels_last=True)
        >>> x = torch.ones(1, 2, 4, 4).contiguous(memory_format=torch.channels_last)
        >>> run.folded is not None, run(x).item()  # every pooled input 1: 0 + 1 + ... + 7
        (True, 28.0)
    """

    def __init__(self, pre: Sequence[nn.Module], layer: nn.Module, input_shape: tuple[int, ...],
                 channels_last: bool, fold: bool = True) -> None:
        pre, shape = list(pre), tuple(int(s) for s in input_shape)
        self.pools: list[nn.Module] = []
        if fold and channels_last and isinstance(layer, nn.Linear):
            while pre and isinstance(pre[0], nn.AvgPool2d) and _plain(pre[0]) and len(shape) == 3:
                (kh, kw), pool = _pair(pre[0].kernel_size), pre.pop(0)
                self.pools.append(pool)
                shape = (shape[0], shape[1] // kh, shape[2] // kw)
        self.pre, self.layer = pre, layer
        foldable = fold and isinstance(layer, nn.Linear) and unfoldable(pre, layer, channels_last) is None
        #: The folded layer, or ``None`` (nothing folded).
        self.folded = FoldedLayer(pre, layer, shape, channels_last) if foldable else None  # type: ignore[arg-type]
        #: The window of the average pooling this branch runs first on channels-last spikes, by
        #: strided additions (:func:`pool_spikes`), or ``None``: the pooling the simulator may do
        #: in the previous layer's IF scan instead (``pooled=True``).
        self.first_pool = leading_pool([*self.pools, *self.pre]) if channels_last and fold and len(shape) == 3 \
            else None

    def __call__(self, x: Tensor, pooled: bool = False) -> Tensor:
        """The layer's current ``(rows, *out_shape)`` for inputs ``x`` ``(rows, *input_shape)``,
        or, ``pooled``, for ``x`` already through :attr:`first_pool`."""
        pools, pre = self.pools, self.pre
        if pooled:
            if self.first_pool is None:
                raise ValueError("pooled inputs, but this branch does not start with a pooling to skip")
            pools, pre = (pools[1:], pre) if pools else (pools, pre[1:])
        x = pool_spikes(pools, x)
        return self.layer(pool_spikes(pre, x)) if self.folded is None else self.folded(x)


def leading_pool(pre: Sequence[nn.Module]) -> tuple[int, int] | None:
    """The window of ``pre``'s first op if it is an average pooling that :func:`pool_spikes`
    computes by additions (kernel = stride, no padding, floor mode), else ``None``.

    Example:
        >>> leading_pool([nn.AvgPool2d(2), nn.Flatten()]), leading_pool([nn.Flatten()])
        ((2, 2), None)
    """
    first = pre[0] if len(pre) else None
    return compiled_window(first) if isinstance(first, nn.AvgPool2d) else None


def pool_spikes(pre: Sequence[nn.Module], x: Tensor) -> Tensor:
    """The weightless ops ``pre`` on spikes ``x`` ``(rows, C, H, W)``; on channels-last inputs each
    :class:`~torch.nn.AvgPool2d` (kernel = stride, no padding, floor mode) is two passes of strided
    additions, a window's rows then its columns, then one division by the window's size.

    ``avg_pool2d`` over channels-last maps of a few channels is slow on a CPU (Fashion-MNIST
    LeNet's pool1, 720 x 6 x 28 x 28 spikes: 6.0 ms against 2.1 ms here). Each window's sum is the
    same number: spikes are 0 or 1, so every partial sum is a small integer, exact in any order,
    and it is divided by ``Kh Kw`` as ``avg_pool2d`` does; the result equals ``avg_pool2d``'s to
    the bit. Other ops, other poolings and contiguous inputs go through the ops themselves.

    Example:
        >>> spikes = (torch.arange(32.0).view(1, 2, 4, 4) % 3 == 0).float()
        >>> fast = pool_spikes([nn.AvgPool2d(2)], spikes.contiguous(memory_format=torch.channels_last))
        >>> torch.equal(fast, F.avg_pool2d(spikes, 2)), fast.is_contiguous(memory_format=torch.channels_last)
        (True, True)
    """
    for op in pre:
        if isinstance(op, nn.AvgPool2d) and _plain(op) and _channels_last_4d(x):
            x = _pool_channels_last(x, _pair(op.kernel_size))
        else:
            x = op(x)
    return x


def _plain(pool: nn.AvgPool2d) -> bool:
    """Kernel = stride, no padding, floor mode, the window's size as divisor (the windows
    :func:`snnergy.pooling.compiled_window` accepts)."""
    return compiled_window(pool) is not None


def _channels_last_4d(x: Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _pool_channels_last(x: Tensor, kernel: tuple[int, int]) -> Tensor:
    (kh, kw), (rows, c, h, w) = kernel, x.shape
    ho, wo = h // kh, w // kw
    if ho == 0 or wo == 0:
        return F.avg_pool2d(x, kernel)  # avg_pool2d says why the window does not fit
    if kernels.pool_compatible(x):  # the same additions in one compiled pass
        return kernels.pool(x, kernel, x.new_empty((rows, ho, wo, c)).permute(0, 3, 1, 2))
    v = x.permute(0, 2, 3, 1)[:, : ho * kh, : wo * kw].unflatten(1, (ho, kh))  # (rows, ho, kh, W, C)
    summed = v[:, :, 0].clone() if kh == 1 else v[:, :, 0] + v[:, :, 1]
    for i in range(2, kh):
        summed += v[:, :, i]
    pairs = summed.view(rows, ho, wo, kw, c)  # (rows, ho, wo * kw, C) -> window columns
    out = pairs[:, :, :, 0].clone() if kw == 1 else pairs[:, :, :, 0] + pairs[:, :, :, 1]
    for j in range(2, kw):
        out += pairs[:, :, :, j]
    return out.div_(kh * kw).permute(0, 3, 1, 2)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[-1]))
