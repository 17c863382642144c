"""Spiking simulation: integrate-and-fire neurons, input encoders, the simulator and its readout.

A converted network (:class:`SpikingNetwork`) is a chain of :class:`SpikingStage` s: linear,
weightless ops (average pooling, flatten), one Conv2d/Linear layer, then integrate-and-fire
neurons (Rueckauer et al. 2017, Front. Neurosci. 11:682), except the last stage whose
potential, accumulated over time, is the readout. A stage may add the currents of residual
:class:`Shortcut` s from earlier stages' spikes (or the input) to its own. Tensors are time first: a spike train is
``(T, B, *neuron_shape)``; a batch of static inputs is ``(B, *input_shape)``.

The simulator runs a feed-forward net in chunks of steps through all stages; each stage computes
its currents with one Conv/Linear call per chunk (``"batched"``, average poolings folded into a
Linear: :mod:`snnergy.simulation.folding`), one per step (``"looped"``) or
from its active inputs only (``"event"``, :mod:`snnergy.simulation.events`, whose cost follows
SynOps), then scans its neurons (on a CPU in the compiled kernels of
:mod:`snnergy.simulation.kernels`). It keeps one chunk of trains at a time and the spike counts
at the reported ``T`` values. :func:`simulate_reference` is the plain step-by-step loop kept for
tests.
"""

from snnergy.simulation.network import (
    READABLE_VERSIONS,
    SPEC_FORMAT,
    SPEC_VERSION,
    ChannelScale,
    Shortcut,
    SpikingNetwork,
    SpikingStage,
    gate_max_pool,
    load_snn,
    save_snn,
)
from snnergy.simulation.neurons import RESETS, IFNeuron, encode_poisson, if_step
from snnergy.simulation.simulator import (
    EVENT_DENSITY,
    INPUTS,
    MAX_ELEMENTS,
    MODES,
    PATHS,
    BatchTrace,
    Simulator,
    check_timesteps,
    simulate_batch,
    simulate_reference,
)
from snnergy.simulation.runner import SimulationResult, run_simulation
from snnergy.simulation.quantize import quantize_weights

__all__ = [
    "EVENT_DENSITY",
    "INPUTS",
    "MAX_ELEMENTS",
    "MODES",
    "PATHS",
    "READABLE_VERSIONS",
    "RESETS",
    "SPEC_FORMAT",
    "SPEC_VERSION",
    "BatchTrace",
    "ChannelScale",
    "IFNeuron",
    "Shortcut",
    "SimulationResult",
    "Simulator",
    "SpikingNetwork",
    "SpikingStage",
    "check_timesteps",
    "encode_poisson",
    "gate_max_pool",
    "if_step",
    "quantize_weights",
    "load_snn",
    "run_simulation",
    "save_snn",
    "simulate_batch",
    "simulate_reference",
]
