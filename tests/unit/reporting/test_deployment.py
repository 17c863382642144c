"""The report's weight-quantization and core-mapping tables, on hand-built records."""

from __future__ import annotations

from snnergy.reporting.deployment import core_rows, quantization_rows, quantization_section, widths
from snnergy.reporting.report import report_markdown
from snnergy.reporting.schema import check_record
from snnergy.reporting.sweep_report import sweep_report_markdown


def _curve(accuracy: list[float]) -> dict:
    # t = 1..4; SynOps 10 per step; energy on "p" = 1 + t (1 J input layer, 1 J per step).
    return {"timesteps": [1, 2, 3, 4], "accuracy": accuracy, "synops": [10.0, 20.0, 30.0, 40.0],
            "energy_j": {"p": [2.0, 3.0, 4.0, 5.0]}}


def _part(accuracy: list[float]) -> dict:
    curve = _curve(accuracy)
    return {"timesteps": [2, 4], "accuracy": [accuracy[1], accuracy[3]], "synops": [20.0, 40.0],
            "input_macs": [1.0, 1.0], "neuron_updates": [4.0, 8.0], "energy_j": {"p": [3.0, 5.0]}, "curve": curve}


CORES = {
    "loihi": {"cores_per_chip": 128, "total_cores": 3, "fits": True, "chips": 1, "binding_layer": "fc1",
              "binding": "neurons", "layers": [{"name": "fc1", "cores": 2, "binding": "neurons"},
                                               {"name": "fc2", "cores": 1, "binding": "none"}]},
    "toy": {"cores_per_chip": 4, "total_cores": None, "fits": False, "chips": None, "binding_layer": "fc2",
            "binding": "fan-in", "layers": [{"name": "fc1", "cores": 1, "binding": "none"},
                                            {"name": "fc2", "cores": None, "binding": "fan-in"}]},
}


def _record(regularizer: str, fp32: list[float], int8: list[float], int4: list[float], width: float = 1.0) -> dict:
    snn = {**_part(fp32), "quantized": {"8": {"bits": 8, "per_channel": False, **_part(int8)},
                                        "4": {"bits": 4, "per_channel": False, **_part(int4)}},
           "cores": CORES}
    return {"config": {"dataset": "d", "model": "m", "regularizer": regularizer, "strength": 0.0 if regularizer == "none" else 0.1,
                       "seed": 0, "width": width},
            "dnn": {"accuracy": 0.92, "sparsity": {}, "macs_dense": 1.0, "macs_effective": 1.0, "energy_j": {"p": 1.0}},
            "snn": snn}


def test_quantization_rows_by_hand() -> None:
    # Target 0.85. fp32 reaches it at t = 2 (0.86): iso-T 2, energy 3 J there.
    # int8 at t = 2: 0.84 (below); its own first t >= 0.85 is 3 (0.87): 4 J.
    # int4 at t = 2: 0.5; never reaches 0.85: no t, no energy.
    record = _record("none", [0.5, 0.86, 0.9, 0.9], [0.5, 0.84, 0.87, 0.9], [0.2, 0.5, 0.6, 0.7])
    check_record(record, "hand-built")  # the record is a valid results.json record
    (row,) = quantization_rows([record], 0.85, "p")
    assert (row["iso_t"], row["acc_fp32"], row["acc_8"], row["acc_4"]) == (2, 0.86, 0.84, 0.5)
    assert (row["t_fp32"], row["t_8"], row["t_4"]) == (2, 3, None)
    assert (row["energy_fp32"], row["energy_8"], row["energy_4"]) == (3.0, 4.0, None)
    assert row["iso_note"] == ""


def test_iso_t_falls_back_to_the_largest_t_when_fp32_misses_the_target() -> None:
    record = _record("none", [0.5, 0.6, 0.7, 0.8], [0.5, 0.6, 0.7, 0.79], [0.1, 0.2, 0.3, 0.4])
    (row,) = quantization_rows([record], 0.85, "p")
    assert (row["iso_t"], row["acc_fp32"], row["acc_8"], row["acc_4"], row["t_fp32"]) == (4, 0.8, 0.79, 0.4, None)
    assert "largest T" in row["iso_note"]


def test_no_quantized_records_no_section() -> None:
    record = _record("none", [0.5, 0.86, 0.9, 0.9], [0.5] * 4, [0.5] * 4)
    del record["snn"]["quantized"], record["snn"]["cores"]
    assert widths([record]) == [] and quantization_section([record], 0.85, "p") == []
    text = report_markdown([record], profile="p")
    assert "Weight quantization" not in text and "Core mapping" not in text


def test_core_rows_one_row_per_network_with_the_binding_limit() -> None:
    # Two regularizers of one network share the mapping (one row); a narrower net is another row.
    a = _record("none", [0.9] * 4, [0.9] * 4, [0.9] * 4)
    b = _record("l1", [0.9] * 4, [0.9] * 4, [0.9] * 4)
    c = _record("none", [0.9] * 4, [0.9] * 4, [0.9] * 4, width=0.5)
    c["snn"]["cores"] = {"loihi": {**CORES["loihi"], "total_cores": 2, "binding": "none", "binding_layer": "fc1",
                                   "layers": [{"name": "fc1", "cores": 1, "binding": "none"},
                                              {"name": "fc2", "cores": 1, "binding": "none"}]}}
    networks, layers, chips = core_rows([a, b, c])
    assert chips == ["loihi", "toy"]
    assert [n["network"] for n in networks] == ["relu", "relu w0.5"]
    assert networks[0]["loihi"] == "3/128 fits; most: fc1 (neurons)"
    assert networks[0]["toy"] == "does not map: a neuron of fc2 breaks fan-in"
    assert networks[1]["loihi"] == "2/128 fits (one core per stage)" and "toy" not in networks[1]
    assert [(r["network"], r["layer"], r["loihi"], r.get("toy")) for r in layers] == [
        ("relu", "fc1", "2 (neurons)", "1"), ("relu", "fc2", "1", "- (fan-in)"),
        ("relu w0.5", "fc1", "1", None), ("relu w0.5", "fc2", "1", None)]


def test_compare_and_sweep_reports_hold_both_tables() -> None:
    records = [_record("none", [0.5, 0.86, 0.9, 0.9], [0.5, 0.84, 0.87, 0.9], [0.2, 0.5, 0.6, 0.7]),
               _record("l1", [0.5, 0.9, 0.9, 0.9], [0.5, 0.9, 0.9, 0.9], [0.5, 0.5, 0.9, 0.9])]
    for text in (report_markdown(records, profile="p", target=0.85),
                 sweep_report_markdown(records, profile="p", target=0.85)):
        assert "Weight quantization" in text and "Core mapping" in text
        assert "| configuration | iso-T | fp32 acc at iso-T | int8 acc at iso-T | int4 acc at iso-T |" in text
        assert "| none | 2 | 0.86 | 0.84 | 0.5 | 2 | 3 |  | 3 | 4 |  |  |" in text
        assert "| relu | 3/128 fits; most: fc1 (neurons) | does not map: a neuron of fc2 breaks fan-in |" in text
