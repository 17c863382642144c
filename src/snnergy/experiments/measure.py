"""DNN measurement: accuracy, then the counts of :mod:`snnergy.counting.dnn` and their energy.

The forward passes run here with an :class:`~snnergy.activity.ActivityRecorder`; every count
(sparsity, nominal/dense/effective MACs, input density) is :class:`~snnergy.counting.DNNCounter`'s.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from snnergy.activity import ActivityRecorder
from snnergy.counting import DNNCounter, layer_geometries
from snnergy.data import Data, batches
from snnergy.energy import ENERGY_PROFILES, compute_memory_split, energy_by_profile
from snnergy.errors import SnnergyError
from snnergy.records import DNNRecord, OpCounts


@torch.no_grad()
def measure(
    model: nn.Module,
    data: Data,
    *,
    profiles: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
    snn_samples: int | None = None,
) -> DNNRecord:
    """Measures a trained DNN on ``data``: the ``dnn`` record of ``results.json``.

    Args:
        model: The trained network (evaluated in eval mode; its mode is restored after).
        data: A DataLoader of ``(x, y)`` or an ``(inputs, labels)`` pair; inputs ``(N, C, H, W)``.
        profiles: Energy profiles to report (``None``: all registered).
        device: Where to run the forward passes.
        snn_samples: The SNN is simulated on the first this many samples of ``data``
            (``simulate.max_samples``; ``None``: all): ``accuracy_snn_samples`` is over them.

    Returns:
        Accuracy (on all samples, and on the SNN's), per-layer sparsity, MAC totals per sample,
        per-layer counts and the energy ``macs_effective * E_mac`` per sample on each profile
        (plus, on a memory-aware profile, one weight read per effective MAC, split into
        ``energy_breakdown_j``).
    """
    was_training = model.training
    model.eval().to(device)
    stream = iter(batches(data))
    first = next(stream, None)
    if first is None:
        raise SnnergyError("measure: the data holds no samples")
    # the geometry probe runs its own forward pass: before the recorder, so only the data is counted
    counter = DNNCounter(layer_geometries(model, tuple(first[0].shape[1:])))
    correct = samples = 0
    subset_correct = subset = 0
    with ActivityRecorder(model, activations=True, layer_inputs=True, detach=True) as recorder:
        for x, y in itertools.chain([first], stream):
            x = x.to(device)
            logits = model(x)
            record = recorder.record()
            hits = logits.argmax(1).cpu() == y
            correct += int(hits.sum())
            take = len(y) if snn_samples is None else max(0, min(len(y), snn_samples - samples))
            subset_correct += int(hits[:take].sum())
            subset += take
            samples += len(y)
            counter.add(record.activations, record.layer_inputs)
    model.train(was_training)
    if not samples:
        raise SnnergyError("measure: the data holds no samples")
    counts = counter.counts(samples)
    macs_effective = counts.macs_effective
    energy = energy_by_profile(OpCounts(macs=macs_effective), profiles)
    split = {name: compute_memory_split(OpCounts(macs=macs_effective), name)
             for name in energy if ENERGY_PROFILES.get(name).has_memory}
    return DNNRecord(
        accuracy=correct / samples,
        sparsity=counts.sparsity,
        macs_nominal=counts.macs_nominal,
        macs_dense=counts.macs_dense,
        macs_effective=macs_effective,
        energy_j=energy,
        layers=counts.layers,
        samples=samples,
        accuracy_snn_samples=subset_correct / subset if subset else None,
        snn_samples=subset,
        energy_breakdown_j=split,
    )


__all__ = ["Data", "batches", "measure"]
