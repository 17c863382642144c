"""SNN-in-the-loop fine-tuning: a converted network trained through its own IF neurons.

:class:`UnrolledNetwork` (:mod:`snnergy.finetuning.unroll`) is a differentiable copy of a
:class:`~snnergy.simulation.SpikingNetwork` unrolled for T steps, spiking exactly as the simulator
does (same currents, IF update, reset, ``v0`` and readout) with a surrogate gradient for the spikes,
one trainable threshold per spiking layer, and its own SynOps per sample (counting's exact
fan-out). :func:`finetune` (:mod:`snnergy.finetuning.loop`) trains it on the readout's
cross-entropy plus a SynOps penalty and folds the thresholds back into a plain ``SpikingNetwork``
that ``simulate`` runs; the simulator stays the judge of accuracy and SynOps.
"""

from snnergy.finetuning.loop import FinetuneEpoch, FinetuneResult, finetune
from snnergy.finetuning.unroll import DEFAULT_SLOPE, UnrolledNetwork, UnrolledOutput, spike

__all__ = ["DEFAULT_SLOPE", "FinetuneEpoch", "FinetuneResult", "UnrolledNetwork", "UnrolledOutput", "finetune", "spike"]
