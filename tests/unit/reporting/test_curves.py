"""Iso-accuracy reading of SNN records: smallest sufficient t on the every-t curve, breakdown, baseline."""

from __future__ import annotations

import pytest

from snnergy.reporting import curves, pareto
from snnergy.reporting.report import breakdown_rows, summary_rows, verdict

P = "p"


def snn_part(accuracy: list[float], synops: list[float], listed: list[int], input_j: float = 0.5,
             neuron_j_per_t: float = 0.0) -> dict:
    """An SNN part with a curve at t = 1..len(accuracy); profile P charges 1 J per SynOp, ``input_j``
    for the input layer and ``neuron_j_per_t`` per step for neuron updates."""
    steps = list(range(1, len(accuracy) + 1))
    energy = [input_j + s + neuron_j_per_t * t for t, s in zip(steps, synops)]
    at = [t - 1 for t in listed]
    return {
        "timesteps": listed, "accuracy": [accuracy[i] for i in at], "synops": [synops[i] for i in at],
        "input_macs": [1.0] * len(listed), "neuron_updates": [10.0 * t for t in listed],
        "energy_j": {P: [energy[i] for i in at]},
        "energy_breakdown_j": {P: {"input_layer": [input_j] * len(listed), "spiking_layers": [synops[i] for i in at],
                                   "neuron_updates": [neuron_j_per_t * t for t in listed]}},
        "curve": {"timesteps": steps, "accuracy": accuracy, "synops": synops, "energy_j": {P: energy}},
    }


def record(reg: str, strength: float, dnn_acc: float, dnn_energy: float, snn: dict, same: float | None = None,
           seed: int = 0) -> dict:
    dnn = {"accuracy": dnn_acc, "sparsity": {"relu1": 0.5}, "macs_dense": 10.0, "macs_effective": 5.0,
           "energy_j": {P: dnn_energy}}
    if same is not None:
        dnn.update(accuracy_snn_samples=same, snn_samples=100)
    return {"config": {"dataset": "d", "model": "m", "regularizer": reg, "strength": strength, "seed": seed},
            "dnn": dnn, "snn": snn}


# A hand-made curve at t = 1..8; the listed T are the powers of two 1, 2, 4, 8.
ACC = [0.10, 0.40, 0.70, 0.85, 0.90, 0.93, 0.95, 0.96]
SYNOPS = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]


def test_smallest_integer_t_at_or_above_the_target() -> None:
    curve = curves.snn_curve(snn_part(ACC, SYNOPS, [1, 2, 4, 8]), P)
    assert curve.every_t and curve.timesteps == list(range(1, 9))
    hit = curves.smallest_sufficient(curve, 0.90)
    # 0.90 is reached exactly at t = 5 (at or above): 5 SynOps, energy 0.5 + 5 = 5.5 J
    assert (hit.timesteps, hit.accuracy, hit.synops, hit.energy_j) == (5, 0.90, 5.0, 5.5)
    assert curves.smallest_sufficient(curve, 0.905).timesteps == 6  # 0.93 is the first above 0.905
    assert curves.smallest_sufficient(curve, 0.97) is None  # never reached
    # on the listed T only (an old record, no curve) the same target reads T = 8: 0.85 at 4, 0.96 at 8
    old = snn_part(ACC, SYNOPS, [1, 2, 4, 8])
    del old["curve"]
    listed = curves.smallest_sufficient(curves.snn_curve(old, P), 0.90)
    assert (listed.timesteps, listed.every_t) == (8, False)


def test_breakdown_between_listed_t_is_derived_exactly() -> None:
    snn = snn_part(ACC, SYNOPS, [1, 2, 4, 8], input_j=0.5, neuron_j_per_t=0.25)
    # t = 5: input 0.5 J (every t); neuron updates 0.25 x 5 = 1.25 J (from 2.0 J at T = 8, x 5/8);
    # spiking layers: curve energy 0.5 + 5 + 1.25 = 6.75 J minus both = 5 J (= 5 SynOps x 1 J)
    assert curves.breakdown_at(snn, P, 5) == pytest.approx(
        {"input_layer": 0.5, "spiking_layers": 5.0, "neuron_updates": 1.25})
    assert curves.breakdown_at(snn, P, 4) == {"input_layer": 0.5, "spiking_layers": 4.0, "neuron_updates": 1.0}
    assert curves.input_floor(snn, P) == 0.5
    assert curves.breakdown_at({k: v for k, v in snn.items() if k != "energy_breakdown_j"}, P, 5) is None


def test_memory_split_between_listed_t_is_derived_exactly() -> None:
    # Profile M: 2 J per SynOp (compute), 3 J per weight read (one per SynOp and per input MAC),
    # input layer 0.5 J compute + 1.5 J weight reads, neuron state 0.5 J per step.
    snn = snn_part(ACC, SYNOPS, [1, 2, 4, 8])
    steps = snn["curve"]["timesteps"]
    total = [0.5 + 2 * s + 1.5 + 3 * s + 0.5 * t for t, s in zip(steps, SYNOPS)]
    at = [t - 1 for t in snn["timesteps"]]
    snn["curve"]["energy_j"]["m"] = total
    snn["energy_breakdown_j"]["m"] = {
        "input_layer": [0.5] * 4, "spiking_layers": [2 * SYNOPS[i] for i in at], "neuron_updates": [0.0] * 4,
        "memory": [1.5 + 3 * SYNOPS[i] + 0.5 * (i + 1) for i in at]}
    # t = 5 (not listed): 5 SynOps -> spiking 2 x 5 = 10 J (2 J per SynOp, read at T = 8: 16 J / 8);
    # memory = total 0.5 + 10 + 1.5 + 15 + 2.5 = 29.5 minus 0.5 + 10 = 19 J (= 1.5 + 3 x 5 + 0.5 x 5)
    assert curves.breakdown_at(snn, "m", 5) == pytest.approx(
        {"input_layer": 0.5, "spiking_layers": 10.0, "neuron_updates": 0.0, "memory": 19.0})
    assert curves.breakdown_at(snn, "m", 4)["memory"] == pytest.approx(1.5 + 12 + 2)  # listed: as recorded


def test_target_comes_from_the_dnn_on_the_snn_samples() -> None:
    # the unregularized DNN is 0.97 on the 10,000 test images but 0.95 on the 100 the SNN ran:
    # target 0.95 - 0.01 = 0.94, which the none SNN reaches at t = 7 (0.95), not 0.96 (t = 8)
    records = [record("none", 0.0, 0.97, 10.0, snn_part(ACC, SYNOPS, [1, 2, 4, 8]), same=0.95)]
    lines = verdict(records, profile=P)
    assert lines[0].startswith("Target: accuracy >= 0.9400 (unregularized DNN on the 100 test images the SNN ran 0.9500")
    assert "at T = 7** (the smallest sufficient t, every t checked)" in lines[2]
    assert summary_rows(records, profile=P)[0]["t_within"] == 7


def test_verdict_factors_against_the_unregularized_relu_snn() -> None:
    base = snn_part(ACC, SYNOPS, [1, 2, 4, 8])  # reaches 0.89 at t = 5: 5 SynOps, 5.5 J
    # l1: 0.9 already at t = 2 with half the SynOps per step: 1 SynOp, 1.5 J
    sparse = snn_part([0.5, 0.9, 0.92, 0.93, 0.94, 0.95, 0.96, 0.96], [0.5 * s for s in SYNOPS], [1, 2, 4, 8])
    records = [record("none", 0.0, 0.90, 10.0, base), record("l1", 0.1, 0.90, 3.0, sparse)]
    lines = verdict(records, profile=P)  # target 0.90 - 0.01 = 0.89
    assert "**l1 (strength 0.1) at T = 2**" in lines[2]
    # none at t = 5 (5 SynOps, 5.5 J); l1 at t = 2 (1 SynOp, 1.5 J): 5x fewer SynOps, 5.5/1.5 = 3.67x less energy
    assert "**5x fewer SynOps** and **3.67x less energy**" in lines[3] and "in 2 instead of 5 timesteps" in lines[3]
    # cheapest DNN at the target: l1, 3 J: SNN/DNN = 1.5 / 3 = 0.5
    assert "SNN/DNN energy at iso-accuracy: **0.5**" in lines[4]
    assert "input layer 0.5 J, spiking layers 1 J, neuron updates 0 J" in lines[5]
    # floor: 5.5 J / 0.5 J = 11x at most below the unregularized SNN
    assert "at most 11x below the unregularized ReLU SNN's 5.5 J" in lines[6]
    rows = breakdown_rows(records, P)
    assert [(r["configuration"], r["at"], r["timesteps"], r["total"]) for r in rows] == [
        ("none", "largest T", 8, 8.5), ("none", "target", 5, 5.5),
        ("l1 (strength 0.1)", "largest T", 8, 4.5), ("l1 (strength 0.1)", "target", 2, 1.5)]


def test_sweep_iso_accuracy_uses_every_t_and_the_baseline() -> None:
    base = [record("none", 0.0, 0.90, 10.0, snn_part(ACC, SYNOPS, [1, 2, 4, 8]), seed=s) for s in (0, 1)]
    sparse = snn_part([0.5, 0.9, 0.92, 0.93, 0.94, 0.95, 0.96, 0.96], [0.5 * s for s in SYNOPS], [1, 2, 4, 8])
    groups = pareto.group_records([*base, record("l1", 0.1, 0.90, 3.0, sparse)])
    none, l1 = groups
    assert pareto.smallest_t(none, 0.89, P).timesteps == 5  # listed T would say 8
    assert pareto.baseline_group(groups) is none
    lines = pareto.iso_factor_lines(groups, 0.89, P)
    assert "**l1 0.1 at t = 2**" in lines[0] and "**5x fewer SynOps** and **3.67x less energy**" in lines[0]
    rows = {r["regularizer"]: r for r in pareto.iso_accuracy(groups, 0.89, P)}
    assert (rows["none"]["snn_timesteps"], rows["l1"]["snn_timesteps"]) == (5, 2)


def test_baseline_is_the_relu_full_width_unregularized_run() -> None:
    def rec(reg: str, activation: str, width: float) -> dict:
        r = record(reg, 0.0, 0.9, 1.0, snn_part(ACC, SYNOPS, [8]))
        r["config"]["resolved"] = {"model": {"activation": activation, "width": width}}
        return r

    records = [rec("none", "qcfs", 1.0), rec("l1", "relu", 1.0), rec("none", "relu", 0.5), rec("none", "relu", 1.0)]
    assert curves.baseline_record(records) is records[3]
    assert curves.baseline_record(records[:2]) is None
    assert curves.is_baseline({"config": {"regularizer": "none"}})  # no resolved activation: ReLU


def test_memory_breakdown_read_at_a_listed_t() -> None:
    snn = snn_part(ACC, SYNOPS, [1, 2, 4, 8], input_j=0.5)
    # a memory-aware profile: a "memory" part (here 2 J per SynOp read) beside the three terms
    snn["energy_breakdown_j"][P]["memory"] = [2.0 * SYNOPS[t - 1] for t in [1, 2, 4, 8]]
    # at T = 4: input 0.5, spiking layers 4, neuron updates 0, memory 2 x 4 = 8 J
    assert curves.breakdown_at(snn, P, 4) == {"input_layer": 0.5, "spiking_layers": 4.0, "neuron_updates": 0.0,
                                              "memory": 8.0}
    # between listed T: test_memory_split_between_listed_t_is_derived_exactly
