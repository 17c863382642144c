"""The event-driven path of a stage: its current computed from the active inputs only.

A stage's current is linear in its input spikes: ``I = b + sum_i s_i * w_i``, where ``w_i`` is
what input ``i`` contributes through the stage's weightless ops and its layer (its fan-out,
docs/design.md's SynOps). With a few percent of the inputs spiking per step, adding the ``w_i`` of
the active inputs costs one addition per synaptic operation, so the cost follows SynOps rather
than dense MACs (the principle of event-driven neuromorphic hardware; Merolla et al. 2014,
Science 345:668; Davies et al. 2018, IEEE Micro 38:82).

:class:`EventTable` stores every ``w_i`` as *runs*: contiguous slices of a flat weight array
added to contiguous slices of the output row, which the compiled kernel
(:func:`snnergy.simulation.kernels.events`) adds with vector instructions. Supported stages: any
number of :class:`~torch.nn.AvgPool2d` (kernel = stride, no padding, floor mode) and
:class:`~torch.nn.Flatten` before a :class:`~torch.nn.Linear` or a :class:`~torch.nn.Conv2d`
(one group, no dilation, zero padding). An average pool is folded into the weights (``1 / k^2``
per pooled input), so a spike reaches the layer's outputs directly. Convolution outputs are laid
out channels last (each output position's channels contiguous); the current is returned as a
channels-last ``(rows, C, H, W)`` view. Calling a table builds the compiled kernels if they are
not yet (:func:`snnergy.simulation.kernels.prepare`); without them (no compiler,
``SNNERGY_KERNELS=off``) it computes the same currents as a sparse matrix product in PyTorch, but
the simulator does not offer the event path then (:func:`unsupported` says why).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from snnergy.pooling import compiled_window
from snnergy.simulation import kernels
from snnergy.simulation.stages import SpikingStage


class EventTable:
    """The fan-out of every input of a stage, as weight runs (see the module docstring).

    Args:
        stage: The stage; :func:`unsupported` must return ``None`` for it, but for the kernels
            (``need_kernels=False``).
        input_shape: Its per-sample input shape (the previous neurons' shape).
        channels_last: The inputs arrive channels last (a ``(C, H, W)`` input stored as
            ``(H, W, C)``, as an event-driven convolution leaves its spikes): the table is
            indexed in that order, so no copy is needed.

    Example:
        >>> stage = SpikingStage("fc", "relu", nn.Sequential(), nn.Linear(3, 2), True)
        >>> with torch.no_grad():
        ...     _ = stage.layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
        ...     _ = stage.layer.bias.zero_()
        >>> table = EventTable(stage, (3,))
        >>> table(torch.tensor([[1.0, 0.0, 1.0]])).tolist()  # columns 0 and 2 of the weights
        [[4.0, 10.0]]
        >>> table.synops_per_input.tolist()  # each input reaches both outputs
        [2, 2, 2]
    """

    def __init__(self, stage: SpikingStage, input_shape: tuple[int, ...], channels_last: bool = False) -> None:
        reason = unsupported(stage, need_kernels=False)
        if reason is not None:
            raise ValueError(f"stage '{stage.name}' has no event-driven path: {reason}")
        layer = stage.layer
        pools = [_pair(op.kernel_size) for op in stage.pre if isinstance(op, nn.AvgPool2d)]
        self.input_shape = tuple(int(s) for s in input_shape)
        index, scale = pooled_index(self.input_shape, pools)  # raw input -> layer input (-1: dropped)
        self.channels_last = channels_last and len(self.input_shape) == 3
        if self.channels_last:
            index = index.reshape(self.input_shape).transpose(1, 2, 0).reshape(-1)
        weight, bias = layer.weight.detach(), layer.bias
        self.dtype, self.device = weight.dtype, weight.device
        self.bias = (bias.detach() if bias is not None else torch.zeros(weight.shape[0], dtype=weight.dtype)).contiguous()
        if isinstance(layer, nn.Linear):
            self.out_shape: tuple[int, ...] = (layer.out_features,)
            self.weights = (weight.t() * scale).contiguous().reshape(-1)
            runs = _linear_runs(index, layer.out_features)
        else:
            c, h, w = _pooled_shape(self.input_shape, pools)
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, _pair(layer.padding)
            ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            self.out_shape = (layer.out_channels, ho, wo)
            # rows (c, ky, kx reversed): for stride 1, the taps of one kernel row that a spike
            # reaches write consecutive output positions, so they merge into one run
            self.weights = (weight.permute(1, 2, 3, 0).flip(2) * scale).contiguous().reshape(-1)
            runs = _conv_runs(index, (c, h, w), (kh, kw), (sh, sw), (ph, pw), (ho, wo), layer.out_channels)
        self.ptr, self.ostart, self.wstart, self.length = runs
        # the bias of every output (channels last: repeated at every position)
        self.bias_row = self.bias.repeat(self.width // self.bias.numel()).contiguous()
        counts = self.length.reshape(-1)
        per_input = torch.zeros(len(self.ptr) - 1, dtype=torch.int64)
        owners = torch.repeat_interleave(torch.arange(len(per_input)), self.ptr[1:] - self.ptr[:-1])
        per_input.index_add_(0, owners, counts)
        #: Additions one spike of each raw input costs (its fan-out through the stage's layer).
        self.synops_per_input = per_input
        self._matrix: Tensor | None = None  # the runs as a sparse matrix, without the kernels

    @property
    def width(self) -> int:
        return math.prod(self.out_shape)

    def __call__(self, spikes: Tensor) -> Tensor:
        """Currents ``(rows, *out_shape)`` (channels last for a convolution) of ``(rows, *input_shape)``
        inputs (stored channels last if the table is)."""
        rows = spikes.shape[0]
        if self.channels_last:
            spikes = spikes.permute(0, 2, 3, 1)
        flat = spikes.reshape(rows, -1)
        if flat.shape[1] != len(self.ptr) - 1 or flat.dtype != self.dtype or flat.device.type != "cpu":
            raise ValueError(f"event table for inputs {self.input_shape} ({self.dtype}, cpu) got "
                             f"{tuple(spikes.shape[1:])} ({spikes.dtype}, {spikes.device})")
        if not flat.is_contiguous():
            flat = flat.contiguous()
        if kernels.prepare():  # using the table asks for the kernel: builds it if not done yet
            out = torch.empty((rows, self.width), dtype=self.dtype)
            kernels.events(flat, self.ptr, self.ostart, self.wstart, self.length, self.weights, self.bias_row, out)
        else:
            out = self._matrix_product(flat)
        if len(self.out_shape) == 1:
            return out
        c, h, w = self.out_shape
        return out.view(rows, h, w, c).permute(0, 3, 1, 2)

    def _matrix_product(self, flat: Tensor) -> Tensor:
        """The currents without the compiled kernel: the runs as a sparse ``(inputs, width)``
        matrix (built once), ``bias + flat @ matrix``."""
        if self._matrix is None:
            run = torch.repeat_interleave(torch.arange(len(self.length)), self.length)  # the run of each entry
            offset = torch.arange(len(run)) - torch.repeat_interleave(self.length.cumsum(0) - self.length, self.length)
            owner = torch.repeat_interleave(torch.arange(len(self.ptr) - 1), self.ptr[1:] - self.ptr[:-1])
            index = torch.stack([self.ostart[run] + offset, owner[run]])
            matrix = torch.sparse_coo_tensor(index, self.weights[self.wstart[run] + offset],
                                             (self.width, len(self.ptr) - 1), dtype=self.dtype,
                                             check_invariants=True)
            self._matrix = matrix.coalesce()  # (width, inputs): the transposed matrix
        return torch.sparse.mm(self._matrix, flat.t()).t().add(self.bias_row).contiguous()  # type: ignore[arg-type]


def unsupported(stage: SpikingStage, *, need_kernels: bool = True) -> str | None:
    """Why ``stage`` has no event-driven path, or ``None`` if it has one; never builds the kernels.

    Args:
        stage: The stage.
        need_kernels: Also require the compiled kernels to be available now
            (:func:`snnergy.simulation.kernels.available`: the switch allows them and the
            simulator has built them); ``False``: look at the stage's ops only.

    Example:
        >>> unsupported(SpikingStage("fc", "relu", nn.Sequential(), nn.Linear(3, 2), True), need_kernels=False) is None
        True
        >>> unsupported(SpikingStage("fc", "relu", nn.Sequential(nn.ReLU()), nn.Linear(3, 2), True))
        'a ReLU before its layer'
    """
    for op in stage.pre:
        if isinstance(op, nn.Flatten):
            if op.start_dim != 1 or op.end_dim != -1:
                return "a Flatten other than Flatten(1, -1)"
        elif isinstance(op, nn.AvgPool2d):
            if compiled_window(op) is None:
                return "an AvgPool2d whose stride differs from its kernel, or with padding or ceil mode"
        elif isinstance(op, nn.MaxPool2d):
            return "a MaxPool2d (its spikes are gated by running spike counts, on the batched or looped path)"
        else:
            return f"a {type(op).__name__} before its layer"
    layer = stage.layer
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1 or _pair(layer.dilation) != (1, 1) or layer.padding_mode != "zeros" \
                or isinstance(layer.padding, str):
            return "a grouped, dilated, non-zero-padded or 'same'-padded Conv2d"
        if any(isinstance(op, nn.Flatten) for op in stage.pre):
            return "a Flatten before a Conv2d"
    elif not isinstance(layer, nn.Linear):
        return f"a {type(layer).__name__} layer"
    elif any(isinstance(op, nn.AvgPool2d) for op in stage.pre) and not isinstance(stage.pre[-1], nn.Flatten):
        return "an AvgPool2d not followed by Flatten before a Linear"
    if layer.weight.device.type != "cpu":
        return "its weights are not on the CPU (the event kernel is CPU-only)"
    if layer.weight.dtype not in (torch.float32, torch.float64):
        return f"weights of dtype {layer.weight.dtype}"
    if need_kernels and not kernels.available():
        return f"the compiled kernels are unavailable ({kernels.unavailable_reason()})"
    return None


# ---------------------------------------------------------------------------- tables


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def _pooled_shape(shape: tuple[int, ...], pools: list[tuple[int, int]]) -> tuple[int, ...]:
    if not pools:
        return shape
    c, h, w = shape
    for kh, kw in pools:
        h, w = h // kh, w // kw
    return (c, h, w)


def pooled_index(shape: tuple[int, ...], pools: list[tuple[int, int]]) -> tuple[np.ndarray, float]:
    """For each raw input (flat, C order) the flat index of the pooled input it feeds (-1: none),
    and the pooling's weight (the product of ``1 / (kh * kw)``)."""
    n = math.prod(shape)
    if not pools:
        return np.arange(n, dtype=np.int64), 1.0
    c, h, w = shape
    cc, yy, xx = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    scale, hp, wp = 1.0, h, w
    for kh, kw in pools:  # floor mode: rows and columns beyond the last whole window are dropped
        keep = (yy < hp // kh * kh) & (xx < wp // kw * kw)
        yy, xx = np.where(keep, yy // kh, -1), np.where(keep, xx // kw, -1)
        hp, wp, scale = hp // kh, wp // kw, scale / (kh * kw)
    index = np.where((yy >= 0) & (xx >= 0), (cc * hp + yy) * wp + xx, -1)
    return index.reshape(-1).astype(np.int64), scale


def _table(owner: np.ndarray, ostart: np.ndarray, wstart: np.ndarray, length: np.ndarray,
           inputs: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CSR run table by input, merging each input's runs that continue one another in both the
    output and the weights."""
    order = np.lexsort((ostart, owner))
    owner, ostart, wstart, length = owner[order], ostart[order], wstart[order], length[order]
    if len(owner):
        follows = (owner[1:] == owner[:-1]) & (ostart[1:] == ostart[:-1] + length[:-1]) \
            & (wstart[1:] == wstart[:-1] + length[:-1])
        starts = np.concatenate([[True], ~follows])
        group = np.cumsum(starts) - 1
        length = np.bincount(group, weights=length).astype(np.int64)
        owner, ostart, wstart = owner[starts], ostart[starts], wstart[starts]
    ptr = np.zeros(inputs + 1, dtype=np.int64)
    np.add.at(ptr, owner + 1, 1)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (np.cumsum(ptr), ostart, wstart, length))  # type: ignore[return-value]


def _linear_runs(index: np.ndarray, outputs: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    owner = np.nonzero(index >= 0)[0]
    zeros = np.zeros(len(owner), dtype=np.int64)
    return _table(owner, zeros, index[owner] * outputs, zeros + outputs, len(index))


def _conv_runs(index: np.ndarray, shape: tuple[int, int, int], kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int], out_hw: tuple[int, int], channels: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _, h, w = shape
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = kernel, stride, padding, out_hw
    owner = np.nonzero(index >= 0)[0]
    pooled = index[owner]
    c, y, x = pooled // (h * w), pooled // w % h, pooled % w
    parts = []
    for ky in range(kh):
        for kx in range(kw):
            oy, ox = y + ph - ky, x + pw - kx  # output position times the stride
            valid = (oy % sh == 0) & (ox % sw == 0) & (oy >= 0) & (ox >= 0) & (oy < ho * sh) & (ox < wo * sw)
            out = ((oy[valid] // sh) * wo + ox[valid] // sw) * channels
            row = (c[valid] * kh + ky) * kw + (kw - 1 - kx)
            parts.append((owner[valid], out, row * channels))
    own = np.concatenate([p[0] for p in parts])
    ostart = np.concatenate([p[1] for p in parts])
    wstart = np.concatenate([p[2] for p in parts])
    return _table(own, ostart, wstart, np.full(len(own), channels, dtype=np.int64), len(index))
