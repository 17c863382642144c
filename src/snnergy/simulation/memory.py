"""Memory planning for a simulation: split batches so that a run stays under a byte budget, and
refuse a request that cannot fit before anything is allocated.

The simulator runs the steps in chunks (:mod:`snnergy.simulation.simulator`), so its spike
trains and currents hold one chunk at a time, whatever ``T``: a few buffers of at most
``max_elements`` values each. What grows with the batch is each sample's state: the potentials
and spike counts of every spiking neuron, the rate model's activations (for the rate
correlation), the readout potentials at every reported T and, with Poisson input, the input train
over all steps (drawn in one go, so that the draws do not depend on the chunking).
:func:`bytes_per_sample` adds these up, and :func:`plan` gives the per-sample state half of the
budget (less the counts at every reported T, held once per batch), and a quarter to
:data:`CHUNK_BUFFERS` chunk-sized buffers; a quarter is left for temporaries
(``tests/unit/simulation/test_memory.py`` checks the peak of a LeNet-sized run at T = 512 against the budget).
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
_BOOL = 1  # the Poisson input train
#: Chunk-sized buffers alive at once: a stage's inputs, currents and spikes, the step counts,
#: a shortcut source's spikes, and a temporary.
CHUNK_BUFFERS = 6


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
        >>> # 10 neurons: potentials 4 B, counts 4 B while running and 8 B returned, rate-model
        >>> # activations 4 B: 200; readout potentials 2 x 3 x 4 B = 24
        >>> bytes_per_sample(SpikingNetwork([s1, s2], (4,)), steps=100, reported=2)
        224
        >>> # Poisson: the input train 100 x 4 inputs x (1 B + 4 B while drawing) more
        >>> bytes_per_sample(SpikingNetwork([s1, s2], (4,)), steps=100, reported=2, poisson=True)
        2224
    """
    shapes = snn.shapes()
    outputs = [math.prod(o) for _, o in shapes.values()]
    neurons = sum(o for o, s in zip(outputs, snn.stages) if s.spiking)
    return sample_bytes(neurons, outputs[-1], math.prod(snn.input_shape), steps, reported, poisson)


def plan(snn: SpikingNetwork, steps: int, reported: int, max_memory: int, poisson: bool = False) -> tuple[int, int]:
    """``(sub_batch, max_elements)`` that keep a run under ``max_memory`` bytes: samples per
    sub-batch, and the most values one chunk-sized buffer may hold.

    Raises:
        ConfigError: Not even one sample fits: the message gives what one sample needs.

    Example:
        >>> from torch import nn
        >>> from snnergy.simulation import SpikingStage
        >>> s1 = SpikingStage("fc1", "relu1", nn.Sequential(), nn.Linear(4, 10), True)
        >>> s2 = SpikingStage("fc2", None, nn.Sequential(), nn.Linear(10, 3), False)
        >>> # counts 2 x 10 x 8 B x 2 = 320 B per batch; (2**19 - 320) // 224 samples;
        >>> # chunk buffers 2**20 // 4 // (4 B x 6)
        >>> plan(SpikingNetwork([s1, s2], (4,)), steps=100, reported=2, max_memory=2**20)
        (2339, 10922)
    """
    neurons = sum(math.prod(o) for s, (_, o) in zip(snn.stages, snn.shapes().values()) if s.spiking)
    return plan_sizes(neurons, bytes_per_sample(snn, steps, reported, poisson), steps, reported, max_memory, poisson)


def plan_sizes(neurons: int, per_sample: int, steps: int, reported: int, max_memory: int,
               poisson: bool = False) -> tuple[int, int]:
    """:func:`plan` from the numbers alone: ``neurons`` spiking neurons and ``per_sample`` bytes
    (:func:`bytes_per_sample`, or :func:`sample_bytes` from a network plan before any training).

    Raises:
        ConfigError: Not even one sample fits.

    Example:
        >>> plan_sizes(10, 224, steps=100, reported=2, max_memory=2**20)  # the example of plan
        (2339, 10922)
    """
    if max_memory <= 0:
        raise ConfigError(f"simulate.max_memory must be a positive number of bytes, got {max_memory}")
    state = max_memory // 2 - 2 * _DOUBLE * reported * neurons  # counts: per group, and summed
    if per_sample > state:
        what = "mostly the Poisson input train over all steps" if poisson else "neuron state and counts"
        raise ConfigError(
            f"simulating T={steps} needs about {_size(per_sample)} per sample ({what}) and "
            f"{_size(2 * _DOUBLE * reported * neurons)} for the counts at {reported} reported T, over half "
            f"of simulate.max_memory = {_size(max_memory)}: lower the largest T or raise --max-memory"
        )
    return state // per_sample, max(1, max_memory // 4 // (_FLOAT * CHUNK_BUFFERS))


def sample_bytes(neurons: int, readout: int, inputs: int, steps: int, reported: int, poisson: bool = False) -> int:
    """:func:`bytes_per_sample` from sizes: ``neurons`` spiking neurons, ``readout`` output units,
    ``inputs`` input elements per sample (what a network plan gives before the SNN exists).

    Example:
        >>> sample_bytes(10, 3, 4, steps=100, reported=2), sample_bytes(10, 3, 4, 100, 2, poisson=True)
        (224, 2224)
    """
    state = (_FLOAT + _FLOAT + _DOUBLE + _FLOAT) * neurons + _FLOAT * reported * readout
    return state + (steps * inputs * (_BOOL + _FLOAT) if poisson else 0)


def _size(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"
