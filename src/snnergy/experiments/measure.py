"""DNN measurement: accuracy, per-layer activation sparsity, nominal/dense/effective MACs, energy.

Counts follow DESIGN.md: effective MACs count, for each Conv/Linear layer, the fan-out of every
non-zero value of that layer's *actual* input (what a zero-skipping accelerator sees, after pooling
and flattening); sparsity is the fraction of exact zeros in each post-ReLU map.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from snnergy.activity import ActivityRecorder
from snnergy.counting import dense_macs, effective_macs, layer_geometries, nominal_macs, sparsity_counts
from snnergy.energy import energy_by_profile
from snnergy.errors import SnnergyError
from snnergy.records import DNNRecord, LayerCounts, OpCounts

Data = DataLoader | tuple[Tensor, Tensor]


def batches(data: Data, batch_size: int = 256):
    """Yields ``(x, y)`` batches from a DataLoader or an ``(inputs, labels)`` pair."""
    if isinstance(data, DataLoader):
        yield from data
        return
    try:
        x, y = data
    except (TypeError, ValueError):
        raise SnnergyError("data must be a DataLoader or an (inputs, labels) pair of tensors") from None
    if len(x) != len(y):
        raise SnnergyError(f"inputs ({len(x)}) and labels ({len(y)}) differ in length")
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size], y[i : i + batch_size]


@torch.no_grad()
def measure(
    model: nn.Module,
    data: Data,
    *,
    profiles: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
) -> DNNRecord:
    """Measures a trained DNN on ``data``: the ``dnn`` record of ``results.json``.

    Args:
        model: The trained network (evaluated in eval mode; its mode is restored after).
        data: A DataLoader of ``(x, y)`` or an ``(inputs, labels)`` pair; inputs ``(N, C, H, W)``.
        profiles: Energy profiles to report (``None``: all registered).
        device: Where to run the forward passes.

    Returns:
        Accuracy, per-layer sparsity, MAC totals per sample, per-layer counts and the energy
        ``macs_effective * E_mac`` per sample on each profile.
    """
    was_training = model.training
    model.eval().to(device)
    stream = iter(batches(data))
    first = next(stream, None)
    if first is None:
        raise SnnergyError("measure: the data holds no samples")
    # the geometry probe runs its own forward pass: before the recorder, so only the data is counted
    geometries = {g.name: g for g in layer_geometries(model, tuple(first[0].shape[1:]))}
    correct = samples = 0
    zeros: dict[str, int] = {}
    elements: dict[str, int] = {}
    effective: dict[str, float] = {}
    nonzero: dict[str, int] = {}
    with ActivityRecorder(model, activations=True, layer_inputs=True, detach=True) as recorder:
        for x, y in itertools.chain([first], stream):
            x = x.to(device)
            logits = model(x)
            record = recorder.record()
            correct += int((logits.argmax(1).cpu() == y).sum())
            samples += len(y)
            for name, act in record.activations.items():
                z, n = sparsity_counts(act)
                zeros[name] = zeros.get(name, 0) + z
                elements[name] = elements.get(name, 0) + n
            for name, inp in record.layer_inputs.items():
                effective[name] = effective.get(name, 0.0) + float(effective_macs(geometries[name], inp).sum())
                nonzero[name] = nonzero.get(name, 0) + int((inp != 0).sum())
    model.train(was_training)
    if not samples:
        raise SnnergyError("measure: the data holds no samples")
    layers = {}
    for name, geom in geometries.items():
        per_sample = effective.get(name, 0.0) / samples
        in_size = 1
        for d in geom.in_shape:
            in_size *= d
        layers[name] = LayerCounts(
            macs_nominal=float(nominal_macs(geom)),
            macs_dense=float(dense_macs(geom)),
            macs_effective=per_sample,
            input_density=nonzero.get(name, 0) / (samples * in_size),
        )
    macs_effective = sum(layer.macs_effective for layer in layers.values())
    return DNNRecord(
        accuracy=correct / samples,
        sparsity={name: zeros[name] / elements[name] for name in zeros},
        macs_nominal=sum(layer.macs_nominal for layer in layers.values()),
        macs_dense=sum(layer.macs_dense for layer in layers.values()),
        macs_effective=macs_effective,
        energy_j=energy_by_profile(OpCounts(macs=macs_effective), profiles),
        layers=layers,
        samples=samples,
    )
