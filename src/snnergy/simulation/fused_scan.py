"""The GPU time loop: the integrate-and-fire scan of a chunk as one Triton kernel (issue 18).

On a CPU the simulator scans its IF neurons in a compiled C kernel
(:mod:`snnergy.simulation.kernels`); on CUDA it ran the PyTorch loop of
:func:`~snnergy.simulation.neurons.if_step_`: four element-wise kernels per step, each reading
and writing every potential. Here the steps of a chunk are one Triton kernel
(:mod:`snnergy.simulation.triton_scan`) that reads each current once and writes each spike once,
potentials kept in registers, and adds each step's spike counts on the way; the next stage's
current stays one batched call per chunk (cuDNN / cuBLAS). The number of steps is a run-time
argument, so one compilation serves every chunk, batch and layer. (The first version unrolled
the steps in a function compiled by ``torch.compile``; on an H100 it recompiled for every chunk
length, batch and layer size and stopped at TorchDynamo's recompile limit of 8.)

Numerics: the same element-wise operations as :func:`~snnergy.simulation.neurons.if_step_`,
in the same order (:func:`steps` writes them in PyTorch, the specification the kernel is tested
against): ``v + I``, ``v >= threshold``, then ``v - spike * threshold`` or ``0``. The spikes and
potentials are those of the reference, bit for bit; the counts are sums of 0/1 values in the
spikes' dtype, exact below 2**24 (float32).

Selection (:func:`selected`), by the environment variable ``SNNERGY_FUSED_SCAN``:

* ``auto`` (the default): float32 / float64 potentials on a CUDA device, where Triton is installed
  (CUDA wheels of PyTorch bring it);
* ``off``: never (the PyTorch loop);
* ``always``: on every device; on a CPU the kernel runs in Triton's interpreter, which needs
  ``TRITON_INTERPRET=1`` set before Triton is imported (tests: slow, but the kernel's own code).

Any other value, or ``always`` where Triton cannot run the kernel, is a
:class:`~snnergy.errors.ConfigError`.
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

from snnergy.config import env_setting
from snnergy.errors import ConfigError
from snnergy.simulation.neurons import IFNeuron

#: The environment variable that selects the fused scan, and its values (the first is the default).
SWITCH = "SNNERGY_FUSED_SCAN"
SETTINGS = ("auto", "off", "always")
#: The dtypes the kernel scans (the simulator's; others take the PyTorch loop).
DTYPES = (torch.float32, torch.float64)

_thresholds: dict[tuple[float, torch.dtype, torch.device], Tensor] = {}


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
    ``v`` must be a dense float32 / float64 tensor (contiguous, or channels last as the CPU
    simulator keeps convolution stages).

    Raises:
        ConfigError: ``always`` without Triton, or on a CPU without Triton's interpreter.

    Example:
        >>> selected(torch.zeros(2, 3)) == (setting() == "always")
        True
    """
    mode = setting()
    if mode == "off" or (mode == "auto" and (v.device.type != "cuda" or not has_triton())):
        return False
    if mode == "always" and not has_triton():
        raise ConfigError(f"{SWITCH}=always needs Triton (pip install triton); unset it to use the PyTorch loop")
    if mode == "always" and v.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ConfigError(f"{SWITCH}=always on a {v.device.type} tensor runs the Triton kernel in Triton's "
                          "interpreter: set TRITON_INTERPRET=1 before Triton is imported (tests), or unset "
                          f"{SWITCH}")
    dense = v.is_contiguous() or (v.dim() == 4 and v.is_contiguous(memory_format=torch.channels_last))
    return v.dtype in DTYPES and dense and v.dim() >= 1


def has_triton() -> bool:
    """Whether Triton is installed (the kernel's compiler); never imports it.

    Example:
        >>> isinstance(has_triton(), bool)
        True
    """
    return importlib.util.find_spec("triton") is not None


def steps(currents: Tensor, v: Tensor, threshold: float, subtract: bool, n: int,
          static: bool) -> tuple[Tensor, Tensor, Tensor]:
    """IF neurons over ``n`` steps in PyTorch: the specification of the kernel's arithmetic.

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


def scan(currents: Tensor, v: Tensor, final: Tensor, neuron: IFNeuron, n: int, static: bool,
         backend: str = "triton") -> tuple[Tensor, Tensor]:
    """The simulator's scan of one chunk in the Triton kernel (the contract of ``simulator._scan``).

    Args:
        currents: ``(n, B, *shape)`` currents, or with ``static`` one ``(B, *shape)`` current.
        v: ``(B, *shape)`` potentials, updated in place.
        final: ``(B, *shape)``, each sample's spikes added in place.
        neuron: Threshold and reset rule.
        n: Steps of the chunk.
        static: ``currents`` is the same at every step.
        backend: ``"triton"`` (:mod:`snnergy.simulation.triton_scan`) or ``"eager"`` (:func:`steps`
            in PyTorch: the specification, for tests).

    Returns:
        The ``(n, B, *shape)`` spikes and each step's spikes summed over the batch, ``(n, *shape)``.

    Example:
        >>> v, final = torch.zeros(1, 2), torch.zeros(1, 2)
        >>> out, counts = scan(torch.tensor([[0.5, 1.0]]), v, final, IFNeuron(), 3, True, backend="eager")
        >>> out[:, 0].tolist(), final.tolist(), v.tolist()
        ([[0.0, 1.0], [1.0, 1.0], [0.0, 1.0]], [[1.0, 3.0]], [[0.5, 0.0]])
    """
    batch, shape = v.shape[0], v.shape[1:]
    if backend == "eager":
        flat_currents = currents.reshape(batch, -1) if static else currents.reshape(n, batch, -1)
        out, counts, after = steps(flat_currents, v.reshape(batch, -1), float(neuron.threshold),
                                   neuron.reset == "subtract", n, static)
        v.copy_(after.reshape(v.shape))
        final += out.sum(0).reshape(v.shape)
        return out.view(n, batch, *shape), counts.view(n, *shape)
    if backend != "triton":
        raise ConfigError(f"fused scan backend must be 'triton' or 'eager', got {backend!r}")
    from snnergy.simulation import triton_scan  # Triton is imported only where the kernel runs

    # the kernel reads and writes flat row-major buffers: channels-last potentials (a CPU's) go
    # through contiguous copies, written back after
    flat_v = v if v.is_contiguous() else v.contiguous()
    flat_final = final if final.is_contiguous() else final.contiguous()
    out = torch.empty((n, *v.shape), dtype=v.dtype, device=v.device)
    counts = torch.zeros((n, *shape), dtype=v.dtype, device=v.device)
    triton_scan.if_scan(currents.to(v.dtype).contiguous(), flat_v.view(batch, -1), out, counts,
                        flat_final.view(batch, -1), _threshold(neuron.threshold, v), neuron.reset == "subtract",
                        n, static)
    if flat_v is not v:
        v.copy_(flat_v)
    if flat_final is not final:
        final.copy_(flat_final)
    return out, counts


def _threshold(threshold: float, v: Tensor) -> Tensor:
    """The threshold as a one-element tensor of ``v``'s dtype and device (the value PyTorch
    compares ``v`` with in :func:`~snnergy.simulation.neurons.if_step_`), made once."""
    key = (float(threshold), v.dtype, v.device)
    if key not in _thresholds:
        _thresholds[key] = torch.tensor([float(threshold)], dtype=v.dtype, device=v.device)
    return _thresholds[key]
