"""The schema check of the new SNN and DNN fields: curve, energy breakdown, accuracy on the SNN samples."""

from __future__ import annotations

import copy

import pytest

from snnergy.errors import ResultsError
from snnergy.reporting.schema import check_record

RECORD = {
    "config": {"dataset": "d", "model": "m", "regularizer": "none", "strength": 0.0, "seed": 0},
    "dnn": {"accuracy": 0.9, "macs_dense": 10.0, "macs_effective": 5.0, "sparsity": {}, "energy_j": {"p": 1.0},
            "accuracy_snn_samples": 0.88, "snn_samples": 50},
    "snn": {"timesteps": [1, 3], "accuracy": [0.5, 0.9], "synops": [1.0, 3.0], "input_macs": [2.0, 2.0],
            "neuron_updates": [5.0, 15.0], "energy_j": {"p": [3.0, 5.0]},
            "energy_breakdown_j": {"p": {"input_layer": [2.0, 2.0], "spiking_layers": [1.0, 3.0],
                                         "neuron_updates": [0.0, 0.0]}},
            "curve": {"timesteps": [1, 2, 3], "accuracy": [0.5, 0.7, 0.9], "synops": [1.0, 2.0, 3.0],
                      "energy_j": {"p": [3.0, 4.0, 5.0]}}},
}


def changed(path: tuple, value: object) -> dict:
    record = copy.deepcopy(RECORD)
    node = record
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return record


def test_new_fields_pass_and_old_records_without_them_too() -> None:
    assert check_record(RECORD, "r") is RECORD
    old = copy.deepcopy(RECORD)
    for key in ("energy_breakdown_j", "curve"):
        del old["snn"][key]
    del old["dnn"]["accuracy_snn_samples"], old["dnn"]["snn_samples"]
    check_record(old, "r")
    check_record(changed(("snn", "curve"), None), "r")  # a record without a curve
    check_record(changed(("dnn", "accuracy_snn_samples"), None), "r")


@pytest.mark.parametrize("path, value, message", [
    (("snn", "curve", "synops"), [1.0, 2.0], "snn.curve.synops' must be a list of 3 values"),
    (("snn", "curve", "timesteps"), [1, 2], "snn.curve.timesteps' must be increasing integers"),  # ends before T = 3
    (("snn", "curve", "timesteps"), [2, 1, 3], "snn.curve.timesteps' must be increasing integers"),
    (("snn", "curve", "timesteps"), [2, 3, 4], "snn.curve.timesteps' must be increasing integers"),  # past T_max, no 1
    (("snn", "curve", "accuracy"), [0.5, 1.5, 0.9], "snn.curve.accuracy\\[1\\]' must be a number in \\[0, 1\\]"),
    (("snn", "curve", "energy_j", "p"), [1.0], "snn.curve.energy_j.p' must be a list of 3 values"),
    (("snn", "energy_breakdown_j", "p", "input_layer"), [2.0], "snn.energy_breakdown_j.p.input_layer' must be a list of 2"),
    (("snn", "energy_breakdown_j", "p", "spiking_layers"), [1.0, -3.0], "spiking_layers\\[1\\]' must be a number >= 0"),
    (("dnn", "accuracy_snn_samples"), 1.5, "dnn.accuracy_snn_samples' must be a number in \\[0, 1\\] or null"),
])
def test_bad_new_fields_are_named(path: tuple, value: object, message: str) -> None:
    with pytest.raises(ResultsError, match=message):
        check_record(changed(path, value), "r")


def test_model_axes_in_config_are_checked_when_present() -> None:
    # RECORD has no config.activation/levels/width (written before them): it passes, and so do valid ones
    config = {**RECORD["config"], "activation": "qcfs", "levels": 4, "width": 0.5}
    check_record({**RECORD, "config": config}, "r")
    for key, value, message in (("activation", "", "config.activation' must be a non-empty string"),
                                ("levels", 0, "config.levels' must be an integer >= 1"),
                                ("levels", 2.5, "config.levels' must be an integer >= 1"),
                                ("width", 0, "config.width' must be a number > 0")):
        with pytest.raises(ResultsError, match=message):
            check_record(changed(("config", key), value), "r")


def test_dnn_compute_memory_breakdown_checked() -> None:
    with_memory = changed(("dnn", "energy_breakdown_j"), {"m": {"compute": 2.0, "memory": 3.0}})
    assert check_record(with_memory, "r") is with_memory
    with pytest.raises(ResultsError, match="missing key 'dnn.energy_breakdown_j.m.memory'"):
        check_record(changed(("dnn", "energy_breakdown_j"), {"m": {"compute": 2.0}}), "r")
    with pytest.raises(ResultsError, match="dnn.energy_breakdown_j.m.memory' must be a number >= 0"):
        check_record(changed(("dnn", "energy_breakdown_j"), {"m": {"compute": 2.0, "memory": -1.0}}), "r")
    # the SNN's memory part is one more series of the breakdown
    snn_memory = changed(("snn", "energy_breakdown_j", "p", "memory"), [4.0, 6.0])
    check_record(snn_memory, "r")
    with pytest.raises(ResultsError, match="snn.energy_breakdown_j.p.memory' must be a list of 2"):
        check_record(changed(("snn", "energy_breakdown_j", "p", "memory"), [4.0]), "r")


QUANTIZED = {"bits": 8, "per_channel": False, **{k: copy.deepcopy(RECORD["snn"][k]) for k in (
    "timesteps", "accuracy", "synops", "input_macs", "neuron_updates", "energy_j", "curve")}}
CORES = {"loihi": {"cores_per_chip": 128, "total_cores": 2, "fits": True, "chips": 1, "binding_layer": "fc1",
                   "binding": "none", "layers": [{"name": "fc1", "cores": 1, "binding": "none"}]}}


def test_quantized_and_cores_pass() -> None:
    check_record(changed(("snn", "quantized"), {"8": QUANTIZED}), "r")
    check_record(changed(("snn", "cores"), CORES), "r")
    unmappable = copy.deepcopy(CORES)
    unmappable["loihi"].update(total_cores=None, fits=False, chips=None)
    unmappable["loihi"]["layers"][0].update(cores=None, binding="fan-in")
    check_record(changed(("snn", "cores"), unmappable), "r")


@pytest.mark.parametrize("part, value, message", [
    ("quantized", {"8": {**QUANTIZED, "accuracy": [0.5]}}, "'snn.quantized.8.accuracy' must be a list of 2 values"),
    ("quantized", {"8": {**QUANTIZED, "bits": 1}}, "'snn.quantized.8.bits' must be an integer in [2, 16]"),
    ("quantized", {"4": {**QUANTIZED, "curve": {**QUANTIZED["curve"], "synops": [1.0]}}},
     "'snn.quantized.4.curve.synops' must be a list of 3 values"),
    ("cores", {"loihi": {**CORES["loihi"], "total_cores": 0}}, "'snn.cores.loihi.total_cores' must be an integer >= 1 or null"),
    ("cores", {"loihi": {**CORES["loihi"], "layers": None}}, "'snn.cores.loihi.layers' must be a list of stages"),
])
def test_bad_quantized_or_cores_are_named(part: str, value: object, message: str) -> None:
    with pytest.raises(ResultsError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        check_record(changed(("snn", part), value), "r")
