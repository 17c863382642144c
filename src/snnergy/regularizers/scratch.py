"""Reusable temporaries of the fused penalties: no fresh map-sized allocation per batch.

A fused penalty (:mod:`snnergy.regularizers.fused`, :mod:`snnergy.regularizers.fused_energy`)
needs a few map-sized temporaries per layer (magnitudes, ratios, squares) that die before the
call returns. Allocated afresh each batch, a map of a megabyte or more comes from ``mmap`` and
goes back at once, so every batch pays a page fault per 4 KiB page on first touch: on LeNet's
first ReLU map (64 x 6 x 28 x 28 float32, 1.2 MB) three such temporaries took 1.1 ms of CPU
time, 0.34 ms with the allocator told to keep freed memory (issue 18, measured on the 2-core
EPYC, one thread). :func:`scratch` hands out one buffer per shape, dtype, device and slot,
made once and reused by every later call (per thread).

Rule for callers: a scratch buffer is written and read within one call and never returned,
saved for the backward pass or exposed; the tensors a call returns or saves are allocated as
before.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

#: At most this many buffers are kept per thread (a new batch size or model replaces them all).
MAX_BUFFERS = 16

_local = threading.local()


def scratch(like: Tensor, slot: int = 0) -> Tensor:
    """A contiguous tensor of ``like``'s shape, dtype and device, reused across calls.

    Args:
        like: The tensor whose shape, dtype and device the buffer takes (its values are not read).
        slot: Which of a call's simultaneous temporaries: two live buffers of one shape need two slots.

    Returns:
        The buffer, with whatever values a previous call left: write it before reading it.

    Example:
        >>> a = torch.zeros(2, 3)
        >>> first = scratch(a)
        >>> first.shape, scratch(a) is first, scratch(a, slot=1) is first
        (torch.Size([2, 3]), True, False)
    """
    buffers: dict[tuple[object, ...], Tensor] = getattr(_local, "buffers", None) or {}
    key = (tuple(like.shape), like.dtype, like.device, slot)
    buffer = buffers.get(key)
    if buffer is None:
        if len(buffers) >= MAX_BUFFERS:
            buffers = {}
        buffer = buffers[key] = torch.empty(like.shape, dtype=like.dtype, device=like.device)
    _local.buffers = buffers
    return buffer
