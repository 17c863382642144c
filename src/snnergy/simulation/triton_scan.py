"""The IF scan of a chunk as one Triton kernel (the GPU time loop of :mod:`~snnergy.simulation.fused_scan`).

Imported only where Triton is installed. Each program holds a tile of samples x neurons (at most
:data:`BLOCK_M` neurons and :data:`TILE` values); it loads the tile's potentials once, runs the
chunk's ``n`` steps with the potentials in registers (one read of each current, one write of each
spike), adds each step's spikes of the tile to the step's per-neuron count (one atomic addition
per column and tile) and writes the potentials and each sample's spike total back at the end.
``n`` is a run-time loop bound, so one compilation serves every chunk length, batch and layer size
(Triton compiles once per dtype, reset rule and tile shape; ``torch.compile``'s unrolled loop
recompiled for each and failed on a GPU at its recompile limit).

Numerics: the operations of :func:`~snnergy.simulation.neurons.if_step_` in its order, in the
potentials' dtype: ``v + I``, ``v >= threshold``, then ``v - spike * threshold`` (the product is 0
or the threshold, exact, so a fused multiply-add rounds it the same) or ``0``. The threshold is
passed as a one-element tensor of that dtype, as PyTorch casts the reference's Python float. The
counts and totals are sums of 0/1 values, exact below 2**24 (float32) whatever the order of the
atomic additions: every number is the reference's, bit for bit.

With ``TRITON_INTERPRET=1`` set before Triton is imported, the kernel runs on CPU tensors in
Triton's interpreter (NumPy; slow): the tests' way to check its arithmetic where no GPU is.
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

from snnergy.errors import ConfigError

#: Most neurons (columns) and elements of one program's tile.
BLOCK_M = 64
TILE = 2048


@triton.jit
def _if_scan(cur_ptr, v_ptr, out_ptr, count_ptr, final_ptr, thr_ptr, n, batch, m, step_stride,
             STATIC: tl.constexpr, SUBTRACT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_COLS: tl.constexpr):
    rows = (tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    cols = tl.program_id(0) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    inside = (rows[:, None] < batch) & (cols[None, :] < m)
    offsets = rows[:, None] * m + cols[None, :]
    threshold = tl.load(thr_ptr)
    v = tl.load(v_ptr + offsets, mask=inside, other=0.0)
    total = tl.zeros((BLOCK_B, BLOCK_COLS), dtype=v.dtype)
    static_current = tl.load(cur_ptr + offsets, mask=inside, other=0.0)  # unused (and removed) unless STATIC
    t = 0
    while t < n:  # a while loop: Triton's interpreter cannot take range() of a run-time int
        if STATIC:
            current = static_current
        else:
            current = tl.load(cur_ptr + offsets, mask=inside, other=0.0)
        v = v + current
        fired = v >= threshold
        spike = tl.where(fired, 1.0, 0.0).to(v.dtype)
        if SUBTRACT:
            v = v - spike * threshold
        else:
            v = tl.where(fired, 0.0, v).to(v.dtype)
        tl.store(out_ptr + offsets, spike, mask=inside)
        total = total + spike
        tl.atomic_add(count_ptr + cols, tl.sum(tl.where(inside, spike, 0.0).to(v.dtype), axis=0), mask=cols < m)
        cur_ptr += step_stride
        out_ptr += step_stride
        count_ptr += m
        t += 1
    tl.store(v_ptr + offsets, v, mask=inside)
    tl.store(final_ptr + offsets, tl.load(final_ptr + offsets, mask=inside, other=0.0) + total, mask=inside)


def if_scan(currents: Tensor, v: Tensor, out: Tensor, counts: Tensor, final: Tensor, threshold: Tensor,
            subtract: bool, n: int, static: bool) -> None:
    """Runs the kernel on flat, contiguous buffers of one dtype (checked by the caller).

    Args:
        currents: ``(n, B, m)``, or ``(B, m)`` with ``static``.
        v: ``(B, m)`` potentials, updated in place.
        out: ``(n, B, m)``, the spikes written.
        counts: ``(n, m)`` zeros, each step's spikes summed over the batch added.
        final: ``(B, m)``, each sample's spikes added.
        threshold: One element, ``v``'s dtype.
        subtract: Reset by subtraction (else to zero).
        n: Steps.
        static: ``currents`` is the same every step.
    """
    if v.device.type != "cuda" and not isinstance(_if_scan, InterpretedFunction):
        raise ConfigError(f"the Triton scan got {v.device.type} tensors, which only Triton's interpreter reads, "
                          "and the kernel was built without it: set TRITON_INTERPRET=1 before "
                          "snnergy.simulation.triton_scan is first imported")
    batch, m = v.shape
    cols = min(BLOCK_M, triton.next_power_of_2(m))
    rows = min(triton.next_power_of_2(batch), TILE // cols)
    grid = (triton.cdiv(m, cols), triton.cdiv(batch, rows))
    _if_scan[grid](currents, v, out, counts, final, threshold, n, batch, m, batch * m,
                   STATIC=static, SUBTRACT=subtract, BLOCK_B=rows, BLOCK_COLS=cols)
