"""A result record as NeuroBench's metrics: the names, structure and units of NeuroBench 2.3.

NeuroBench (Yik et al., "The neurobench framework for benchmarking neuromorphic computing
algorithms and systems", Nature Communications 16, 2025; package ``neurobench`` 2.3) returns from
``Benchmark.run()`` one flat dict keyed by metric class name: static metrics ``Footprint``,
``ParameterCount``, ``ConnectionSparsity``; workload metrics ``ClassificationAccuracy``,
``ActivationSparsity``, ``ActivationSparsityByLayer`` and ``SynapticOperations`` (a dict
``{"Effective_MACs", "Effective_ACs", "Dense"}``, each an average per sample).
:func:`neurobench_metrics` gives that dict for the DNN and for the SNN of one result record,
mapped from the record's counts (docs/design.md "Definitions"; no count is made up here) and from
the network's static counts (:class:`StaticCounts`, from :mod:`snnergy.counting.static`), with the
units (:data:`GLOSSARY`), the source of every number (:data:`MAPPING`) and the differences in
definition (:data:`DIFFERENCES`; docs/neurobench.md works them out by hand).

The SNN is read at the **largest simulated T** (``snn.timesteps[-1]``): the only T at which the
record holds spike rates (hence ``ActivationSparsity``), and the T of the reports' fixed-T figures;
``per_timestep`` gives the operations and accuracy at every listed T.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from snnergy.errors import ResultsError

NEUROBENCH_VERSION = "2.3"
FORMAT = "neurobench"

GLOSSARY: dict[str, str] = {
    "Footprint": "bytes: every parameter and buffer at its stored precision (float32: 4 bytes each)",
    "ParameterCount": "parameters (tensor elements)",
    "ConnectionSparsity": "fraction in [0, 1] of the Conv/Linear weights that are exactly zero (biases not counted)",
    "ClassificationAccuracy": "fraction in [0, 1] of the evaluated test samples classified correctly",
    "ActivationSparsity": "fraction in [0, 1] of activation outputs exactly zero: DNN over activation-layer "
                          "elements x samples; SNN over spiking neurons x time steps x samples (1 - spike rate)",
    "ActivationSparsityByLayer": "the same fraction per activation (spiking) layer",
    "SynapticOperations.Effective_MACs": "multiply-accumulates per sample (one inference; SNN: the whole T-step "
                                         "inference) on zero-skipping hardware",
    "SynapticOperations.Effective_ACs": "accumulates per sample: SNN spikes x fan-out (SynOps) over the T steps",
    "SynapticOperations.Dense": "operations per sample with every input non-zero: DNN one pass; SNN every "
                                "weighted layer at every one of the T steps",
    "timesteps": "T, the simulation steps of one SNN inference",
    "samples": "test samples the numbers are averaged over",
}

MAPPING: dict[str, str] = {
    "dnn.Footprint": "bytes of the trained model's parameters and buffers (counting.footprint_bytes)",
    "dnn.ParameterCount": "elements of the trained model's parameters (counting.parameter_count)",
    "dnn.ConnectionSparsity": "zero weights / weights of its Conv/Linear layers (counting.connection_sparsity)",
    "dnn.ClassificationAccuracy": "dnn.accuracy",
    "dnn.ActivationSparsity": "sum_l n_l * dnn.sparsity[l] / sum_l n_l, n_l the elements per sample of layer l",
    "dnn.ActivationSparsityByLayer": "dnn.sparsity",
    "dnn.SynapticOperations.Effective_MACs": "dnn.macs_effective",
    "dnn.SynapticOperations.Effective_ACs": "0 (snnergy files every DNN operation as a MAC)",
    "dnn.SynapticOperations.Dense": "dnn.macs_dense",
    "snn.Footprint": "bytes of the converted network: folded Conv/Linear weights and biases, identity-shortcut "
                     "scales (counting.plan_footprint_bytes)",
    "snn.ParameterCount": "snn.Footprint / 4 (every tensor of the converted network is float32)",
    "snn.ConnectionSparsity": "zero weights / weights of the folded Conv/Linear layers "
                              "(counting.plan_connection_sparsity); null with convert.weight_bits",
    "snn.ClassificationAccuracy": "snn.accuracy at T",
    "snn.ActivationSparsity": "1 - sum_l n_l * snn.spike_rate[l] / sum_l n_l (spike_rate: spikes per neuron "
                              "per step at the largest T)",
    "snn.ActivationSparsityByLayer": "1 - snn.spike_rate[l]",
    "snn.SynapticOperations.Effective_MACs": "snn.input_macs at T (the analog first layer, once per sample)",
    "snn.SynapticOperations.Effective_ACs": "snn.synops at T",
    "snn.SynapticOperations.Dense": "dnn.macs_dense * T",
}

DIFFERENCES: tuple[str, ...] = (
    "Pooled spikes: snnergy counts every spike that reaches a weighted layer through average pooling, "
    "times its pooled position's fan-out, as ACs; NeuroBench sees the pooled (non-binary) value, files "
    "the layer under MACs and counts each non-zero pooled position once per step.",
    "Zero weights: NeuroBench's effective counts skip exactly-zero weights; snnergy's fan-out counts "
    "every connection (equal on unpruned weights). Dense counts all weights in both.",
    "Analog input: snnergy computes the first layer's constant current once per sample "
    "(Effective_MACs = input_macs); NeuroBench runs the layer at every step (T times).",
    "MAC or AC: NeuroBench files a layer's operations under ACs when its whole input batch lies in "
    "{-1, 0, 1}; snnergy files every DNN operation as a MAC and every SNN spike's as an AC.",
    "Residual identity shortcuts: snnergy's SynOps count one operation per spike element they carry; "
    "NeuroBench counts only Conv/Linear layers.",
    "Activation sparsity of the SNN covers the spiking layers, not the readout (a non-spiking accumulator).",
)


@dataclass(frozen=True)
class StaticCounts:
    """What a result record lacks: one network's static counts (:mod:`snnergy.counting.static`).

    Attributes:
        footprint_bytes: Bytes of parameters and buffers; ``None`` when unknown.
        parameter_count: Parameter elements; ``None`` when unknown.
        connection_sparsity: Fraction of zero Conv/Linear weights; ``None`` when unknown.
        neurons: Elements per sample of each activation layer, by name.
    """

    footprint_bytes: int | None
    parameter_count: int | None
    connection_sparsity: float | None
    neurons: Mapping[str, int] = field(default_factory=dict)


def _weighted_zeros(fractions: Mapping[str, float], neurons: Mapping[str, int], where: str) -> float | None:
    missing = [name for name in fractions if name not in neurons]
    if missing:
        raise ResultsError(f"{where}: layer '{missing[0]}' is not an activation layer of the run's network "
                           f"({', '.join(neurons) or 'none'}): the results belong to another model")
    total = sum(neurons[name] for name in fractions)
    return sum(neurons[name] * value for name, value in fractions.items()) / total if total else None


def _operations(macs: float, acs: float, dense: float) -> dict[str, float]:
    return {"Effective_MACs": float(macs), "Effective_ACs": float(acs), "Dense": float(dense)}


def dnn_metrics(dnn: Mapping[str, Any], static: StaticCounts) -> dict[str, Any]:
    """NeuroBench's results dict of the DNN part of a record.

    Example:
        >>> dnn = {"accuracy": 0.5, "sparsity": {"a": 0.25, "b": 1.0}, "macs_dense": 10.0, "macs_effective": 6.0}
        >>> m = dnn_metrics(dnn, StaticCounts(40, 10, 0.0, {"a": 4, "b": 2}))
        >>> m["ActivationSparsity"], m["SynapticOperations"]  # (4 * 0.25 + 2 * 1.0) / 6
        (0.5, {'Effective_MACs': 6.0, 'Effective_ACs': 0.0, 'Dense': 10.0})
    """
    return {
        "Footprint": static.footprint_bytes,
        "ParameterCount": static.parameter_count,
        "ConnectionSparsity": static.connection_sparsity,
        "ClassificationAccuracy": float(dnn["accuracy"]),
        "ActivationSparsity": _weighted_zeros(dnn["sparsity"], static.neurons, "dnn.sparsity"),
        "ActivationSparsityByLayer": {name: float(v) for name, v in dnn["sparsity"].items()},
        "SynapticOperations": _operations(dnn["macs_effective"], 0.0, dnn["macs_dense"]),
    }


def snn_metrics(snn: Mapping[str, Any], macs_dense: float, static: StaticCounts) -> dict[str, Any]:
    """NeuroBench's results dict of the SNN part of a record at its largest T, with ``timesteps``,
    ``samples`` and ``per_timestep`` (operations and accuracy at every listed T).

    Example:
        >>> snn = {"timesteps": [2, 4], "accuracy": [0.5, 1.0], "synops": [3.0, 8.0], "input_macs": [2.0, 2.0],
        ...        "spike_rate": {"a": 0.25}, "samples": 2}
        >>> m = snn_metrics(snn, 5.0, StaticCounts(40, 10, 0.0, {"a": 4}))
        >>> m["timesteps"], m["ActivationSparsity"], m["SynapticOperations"]
        (4, 0.75, {'Effective_MACs': 2.0, 'Effective_ACs': 8.0, 'Dense': 20.0})
    """
    steps = [int(t) for t in snn["timesteps"]]
    rates = snn.get("spike_rate", {})
    by_layer = {name: 1.0 - float(rate) for name, rate in rates.items()}
    return {
        "timesteps": steps[-1],
        "samples": snn.get("samples"),
        "Footprint": static.footprint_bytes,
        "ParameterCount": static.parameter_count,
        "ConnectionSparsity": static.connection_sparsity,
        "ClassificationAccuracy": float(snn["accuracy"][-1]),
        "ActivationSparsity": _weighted_zeros(by_layer, static.neurons, "snn.spike_rate"),
        "ActivationSparsityByLayer": by_layer,
        "SynapticOperations": _operations(snn["input_macs"][-1], snn["synops"][-1], macs_dense * steps[-1]),
        "per_timestep": {
            "timesteps": steps,
            "ClassificationAccuracy": [float(a) for a in snn["accuracy"]],
            "Effective_MACs": [float(m) for m in snn["input_macs"]],
            "Effective_ACs": [float(s) for s in snn["synops"]],
            "Dense": [float(macs_dense * t) for t in steps],
        },
    }


def neurobench_metrics(record: Mapping[str, Any], dnn: StaticCounts, snn: StaticCounts | None = None,
                       run: str | None = None) -> dict[str, Any]:
    """One result record as NeuroBench metrics: ``dnn`` and ``snn`` each a dict shaped like
    NeuroBench's ``Benchmark.run()`` result (``snn`` is ``None`` when the record has no SNN part),
    with the units, the mapping and the differences in definition.

    Args:
        record: A checked result record (docs/design.md "Results schema").
        dnn: The trained model's static counts.
        snn: The converted network's (``None``: the record's SNN part, if any, is reported with
            ``null`` static counts, its activation sparsity weighted by ``dnn.neurons``).
        run: The run folder, recorded as ``run``.

    Raises:
        ResultsError: The record failed (``error``) or has no DNN part, or its layers are not the
            network's.

    Example:
        >>> record = {"config": {"dataset": "d", "model": "m", "regularizer": "none", "strength": 0.0, "seed": 0},
        ...           "dnn": {"accuracy": 1.0, "sparsity": {"a": 0.5}, "macs_dense": 8.0, "macs_effective": 5.0,
        ...                   "samples": 2}}
        >>> m = neurobench_metrics(record, StaticCounts(40, 10, 0.0, {"a": 2}))
        >>> m["format"], m["dnn"]["ClassificationAccuracy"], m["snn"]
        ('neurobench', 1.0, None)
    """
    if "error" in record:
        raise ResultsError(f"{run or 'the record'}: the configuration failed ({record['error']}): no metrics")
    if "dnn" not in record:
        raise ResultsError(f"{run or 'the record'}: the record has no 'dnn' part")
    part = record["dnn"]
    static_snn = snn if snn is not None else StaticCounts(None, None, None, dnn.neurons)
    snn_part = record.get("snn")
    result = {
        "format": FORMAT,
        "neurobench_version": NEUROBENCH_VERSION,
        "run": run,
        "config": {k: v for k, v in record["config"].items() if k != "resolved"},
        "per_sample": True,
        "dnn": {**dnn_metrics(part, dnn), "samples": part.get("samples")},
        "snn": snn_metrics(snn_part, float(part["macs_dense"]), static_snn) if snn_part else None,
        "units": dict(GLOSSARY),
        "mapping": dict(MAPPING),
        "differences": list(DIFFERENCES),
    }
    return result


__all__ = [
    "DIFFERENCES", "FORMAT", "GLOSSARY", "MAPPING", "NEUROBENCH_VERSION", "StaticCounts",
    "dnn_metrics", "neurobench_metrics", "snn_metrics",
]
