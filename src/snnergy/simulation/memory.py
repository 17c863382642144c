"""Memory planning for a simulation: split batches so that a run stays under a byte budget, and
refuse a request that cannot fit before anything is allocated.

The time-batched simulator keeps, per sample of a sub-batch, a stage's input and output spike
trains ``(T, ...)``, the trains later shortcuts still read, the spike counts at every reported T
of every layer, and the rate model's activations; the currents of one chunk of steps come on top.
:func:`bytes_per_sample` adds these up for the widest stage (an upper bound: a stage's input is
the previous stage's output), and :func:`plan` gives the per-sample state half of the budget, the
currents of one chunk a quarter, and leaves a quarter for temporaries (measured on a LeNet-sized
net at T = 512: a 64 MiB budget raises the process's peak by 56 MiB; 3/4 for the state gave 73 MiB,
over the budget; ``tests/unit/test_memory.py`` checks it).
"""

from __future__ import annotations

import math
import os

import torch

from snnergy.errors import ConfigError
from snnergy.simulation.network import SpikingNetwork

#: Fraction of the machine's memory a simulation may use when no budget is given.
DEFAULT_FRACTION = 0.25
_FLOAT = 4  # bytes of a float32 element (trains, currents, counts)
_DOUBLE = 8  # final spike counts are float64


def default_max_memory(device: torch.device | str = "cpu") -> int:
    """A safe budget in bytes: :data:`DEFAULT_FRACTION` of physical RAM (of the GPU's free memory
    on CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(DEFAULT_FRACTION * free)
    return int(DEFAULT_FRACTION * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def bytes_per_sample(snn: SpikingNetwork, steps: int, reported: int, poisson: bool = False) -> int:
    """Upper bound of the memory one sample of a sub-batch holds during a ``steps``-step run.

    Example:
        >>> from torch import nn
        >>> from snnergy.simulation import SpikingStage
        >>> s1 = SpikingStage("fc1", "relu1", nn.Sequential(), nn.Linear(4, 10), True)
        >>> s2 = SpikingStage("fc2", None, nn.Sequential(), nn.Linear(10, 3), False)
        >>> # trains 100 x (4 in + 10 out) x 4 B; counts 2 x 10 x 4 B; final 10 x 8 B; rates 10 x 4 B;
        >>> # readout potentials 2 x 3 x 4 B
        >>> bytes_per_sample(SpikingNetwork([s1, s2], (4,)), steps=100, reported=2)
        5824
    """
    shapes = snn.shapes()
    inputs = [math.prod(i) for i, _ in shapes.values()]
    outputs = [math.prod(o) for _, o in shapes.values()]
    neurons = sum(o for o, s in zip(outputs, snn.stages) if s.spiking)
    kept = sum(outputs[i] for i, s in enumerate(snn.stages) if s.neuron_name in snn.shortcut_sources())
    widest_train = max(i + o for i, o in zip(inputs, outputs)) + kept + (math.prod(snn.input_shape) if poisson else 0)
    trains = _FLOAT * steps * widest_train
    counts = _FLOAT * reported * neurons + _DOUBLE * neurons + _FLOAT * neurons
    readout = _FLOAT * reported * outputs[-1]
    return trains + counts + readout


def plan(snn: SpikingNetwork, steps: int, reported: int, max_memory: int, poisson: bool = False) -> tuple[int, int]:
    """``(sub_batch, max_elements)`` that keep a run under ``max_memory`` bytes.

    Raises:
        ConfigError: Not even one sample fits: the message gives what one sample needs.

    Example:
        >>> from torch import nn
        >>> from snnergy.simulation import SpikingStage
        >>> s1 = SpikingStage("fc1", "relu1", nn.Sequential(), nn.Linear(4, 10), True)
        >>> s2 = SpikingStage("fc2", None, nn.Sequential(), nn.Linear(10, 3), False)
        >>> plan(SpikingNetwork([s1, s2], (4,)), steps=100, reported=2, max_memory=2**20)  # 524288 // 5824
        (90, 65536)
    """
    if max_memory <= 0:
        raise ConfigError(f"simulate.max_memory must be a positive number of bytes, got {max_memory}")
    per_sample = bytes_per_sample(snn, steps, reported, poisson)
    state = max_memory // 2
    if per_sample > state:
        raise ConfigError(
            f"simulating T={steps} needs about {_size(per_sample)} per sample (spike trains of the widest "
            f"layer over all steps), over half of simulate.max_memory = {_size(max_memory)}: "
            f"lower the largest T or raise --max-memory"
        )
    return state // per_sample, max(1, max_memory // 4 // _FLOAT)


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
