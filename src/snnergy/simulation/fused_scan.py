"""The GPU time loop: the integrate-and-fire scan of a chunk as one compiled function (issue 18).

On a CPU the simulator scans its IF neurons in a compiled C kernel
(:mod:`snnergy.simulation.kernels`); on CUDA it ran the PyTorch loop of
:func:`~snnergy.simulation.neurons.if_step_`: four element-wise kernels per step, each reading
and writing every potential. Here the steps of a chunk are one function compiled by
``torch.compile`` (TorchInductor: a Triton kernel on CUDA, C++ on a CPU) that reads each current
once and writes each spike once, potentials kept in registers, and returns the per-step spike
counts with them; the next stage's current stays one batched call per chunk (cuDNN / cuBLAS).

Numerics: the same element-wise operations as :func:`~snnergy.simulation.neurons.if_step_`,
in the same order: ``v + I``, ``v >= threshold``, then ``v - spike * threshold`` (the product is
exact: 0 or the threshold, so a fused multiply-add rounds it the same) or ``0``. The spikes and
potentials are those of the reference, bit for bit; the counts are sums of 0/1 values in the
spikes' dtype, exact below 2**24 (float32).

Selection (:func:`selected`), by the environment variable ``SNNERGY_FUSED_SCAN``:

* ``auto`` (the default): on CUDA devices, where ``torch.compile`` and Triton (which
  TorchInductor needs there; CUDA wheels of PyTorch bring it) are installed;
* ``off``: never (the PyTorch loop);
* ``always``: on every device, CPU included (tests and experiments: the CPU's own compiled kernel
  is faster there).

Any other value is a :class:`~snnergy.errors.ConfigError`. A compiled function is made once per
process and backend (:func:`compiled`); ``torch.compile`` itself compiles on the first call of
each shape (seconds, then cached on disk by TorchInductor).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Callable

import torch
from torch import Tensor

from snnergy.config import env_setting
from snnergy.simulation.neurons import IFNeuron

#: The environment variable that selects the fused scan, and its values (the first is the default).
SWITCH = "SNNERGY_FUSED_SCAN"
SETTINGS = ("auto", "off", "always")
#: The ``torch.compile`` backend of :func:`scan` (TorchInductor: Triton on CUDA, C++ on a CPU).
BACKEND = "inductor"

_compiled: dict[str, Callable[..., tuple[Tensor, Tensor, Tensor]]] = {}


def setting() -> str:
    """The value of ``$SNNERGY_FUSED_SCAN``: ``"auto"`` (also when unset or empty), ``"off"`` or ``"always"``.

    Raises:
        ConfigError: Any other value.

    Example:
        >>> os.environ.get(SWITCH, "") in ("", *SETTINGS) and setting() in SETTINGS
        True
    """
    return env_setting(SWITCH, SETTINGS)


def selected(v: Tensor) -> bool:
    """The selection hook: whether the simulator scans potentials ``v`` with :func:`scan`.

    ``auto``: ``v`` on a CUDA device, Triton installed; ``always``: any device; ``off``: never.
    ``v`` must be a dense float tensor (contiguous, or channels last as the CPU simulator keeps
    convolution stages), and ``torch.compile`` present.

    Example:
        >>> selected(torch.zeros(2, 3)) == (setting() == "always")
        True
    """
    mode = setting()
    if mode == "off" or not hasattr(torch, "compile"):
        return False
    if mode == "auto" and (v.device.type != "cuda" or not has_triton()):
        return False
    dense = v.is_contiguous() or (v.dim() == 4 and v.is_contiguous(memory_format=torch.channels_last))
    return v.is_floating_point() and dense and v.dim() >= 1


def has_triton() -> bool:
    """Whether Triton is installed (TorchInductor's code generator for CUDA); never imports it.

    Example:
        >>> isinstance(has_triton(), bool)
        True
    """
    return importlib.util.find_spec("triton") is not None


def steps(currents: Tensor, v: Tensor, threshold: float, subtract: bool, n: int,
          static: bool) -> tuple[Tensor, Tensor, Tensor]:
    """IF neurons over ``n`` steps, written as a pure function for ``torch.compile``.

    Args:
        currents: ``(n, B, m)`` currents, or with ``static`` one ``(B, m)`` current every step.
        v: ``(B, m)`` potentials before the first step (not modified).
        threshold: Firing threshold.
        subtract: Reset by subtraction (else to zero).
        n: Steps.
        static: ``currents`` is the same at every step.

    Returns:
        The ``(n, B, m)`` spikes, the ``(n, m)`` spikes of each step summed over the batch, and
        the potentials after the last step.

    Example:
        >>> out, counts, v = steps(torch.tensor([[[0.5]], [[0.5]], [[0.5]]]), torch.zeros(1, 1), 1.0, True, 3, False)
        >>> out.flatten().tolist(), counts.flatten().tolist(), v.item()
        ([0.0, 1.0, 0.0], [0.0, 1.0, 0.0], 0.5)
    """
    spikes = []
    for t in range(n):
        v = v + (currents if static else currents[t])
        fired = v >= threshold
        spike = fired.to(v.dtype)
        v = v - spike * threshold if subtract else torch.where(fired, torch.zeros_like(v), v)
        spikes.append(spike)
    out = torch.stack(spikes)
    return out, out.sum(1), v


def compiled(backend: str = BACKEND) -> Callable[..., tuple[Tensor, Tensor, Tensor]]:
    """:func:`steps` compiled with ``torch.compile(backend=backend)``, made once per backend.

    Example:
        >>> compiled("eager") is compiled("eager")
        True
    """
    if backend not in _compiled:
        _compiled[backend] = torch.compile(steps, backend=backend, fullgraph=True)
    return _compiled[backend]


def scan(currents: Tensor, v: Tensor, final: Tensor, neuron: IFNeuron, n: int, static: bool,
         backend: str | None = None) -> tuple[Tensor, Tensor]:
    """The simulator's scan of one chunk, compiled (the contract of ``simulator._scan``).

    Args:
        currents: ``(n, B, *shape)`` currents, or with ``static`` one ``(B, *shape)`` current.
        v: ``(B, *shape)`` potentials, updated in place.
        final: ``(B, *shape)``, each sample's spikes added in place.
        neuron: Threshold and reset rule.
        n: Steps of the chunk.
        static: ``currents`` is the same at every step.
        backend: The ``torch.compile`` backend (``None``: :data:`BACKEND`).

    Returns:
        The ``(n, B, *shape)`` spikes and each step's spikes summed over the batch, ``(n, *shape)``.

    Example:
        >>> v, final = torch.zeros(1, 2), torch.zeros(1, 2)
        >>> out, counts = scan(torch.tensor([[0.5, 1.0]]), v, final, IFNeuron(), 3, True, backend="eager")
        >>> out[:, 0].tolist(), final.tolist(), v.tolist()
        ([[0.0, 1.0], [1.0, 1.0], [0.0, 1.0]], [[1.0, 3.0]], [[0.5, 0.0]])
    """
    batch, shape = v.shape[0], v.shape[1:]
    flat_v = v.reshape(batch, -1)
    flat_currents = currents.reshape(batch, -1) if static else currents.reshape(n, batch, -1)
    out, counts, after = compiled(backend or BACKEND)(flat_currents, flat_v, float(neuron.threshold),
                                           neuron.reset == "subtract", n, static)
    v.copy_(after.reshape(v.shape))
    final += out.sum(0).reshape(v.shape)  # sums of 0/1 in the spikes' dtype: exact below 2**24 steps
    return out.view(n, batch, *shape), counts.view(n, *shape)
