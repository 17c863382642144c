"""Pareto fronts, seed statistics, smallest T and the iso-accuracy summary on hand-made records."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snnergy.cli import main
from snnergy.errors import ConfigError
from snnergy.experiments.store import write_results
from snnergy.reporting import pareto
from snnergy.reporting import sweep_report_markdown, write_report

P = "cmos45-fp32"


def rec(reg: str, strength: float, seed: int, acc: float, macs: float, snn_acc: list[float], snn_energy: list[float],
        percentile: float = 99.9, sparsity: float = 0.5, rate: float = 0.1) -> dict[str, Any]:
    """A result record with docs/design.md's schema; DNN energy = MACs x 1e-12 J, T = 1, 2, 4."""
    resolved = {"train": {"regularizer": reg, "strength": strength}, "convert": {"percentile": percentile},
                "seed": seed, "device": "cpu"}
    return {
        "config": {"dataset": "d", "model": "m", "regularizer": reg, "strength": strength, "seed": seed, "resolved": resolved},
        "dnn": {"accuracy": acc, "sparsity": {"relu1": sparsity}, "macs_dense": 1000.0, "macs_effective": macs,
                "energy_j": {P: macs * 1e-12}},
        "snn": {"timesteps": [1, 2, 4], "accuracy": snn_acc, "synops": [10.0, 20.0, 40.0], "input_macs": [5.0] * 3,
                "neuron_updates": [1.0, 2.0, 4.0], "spike_rate": {"relu1": rate}, "energy_j": {P: snn_energy}},
    }


# Two seeds of three configurations. Seed means (by hand):
#   none:      DNN acc (0.90+0.92)/2 = 0.91, MACs 800;  SNN acc [0.5, 0.85, 0.91], energy [1, 2, 4]
#   l1 0.1:    DNN acc 0.905, MACs 500;                 SNN acc [0.6, 0.9, 0.91],  energy [0.5, 1, 2]
#   l1 0.3:    DNN acc 0.80, MACs 300;                  SNN acc [0.7, 0.75, 0.8],  energy [0.25, 0.5, 1]
RECORDS = [
    rec("none", 0.0, 0, 0.90, 800, [0.5, 0.84, 0.90], [1, 2, 4]),
    rec("none", 0.0, 1, 0.92, 800, [0.5, 0.86, 0.92], [1, 2, 4]),
    rec("l1", 0.1, 0, 0.90, 500, [0.6, 0.9, 0.91], [0.5, 1, 2]),
    rec("l1", 0.1, 1, 0.91, 500, [0.6, 0.9, 0.91], [0.5, 1, 2]),
    rec("l1", 0.3, 0, 0.80, 300, [0.7, 0.75, 0.8], [0.25, 0.5, 1]),
    rec("l1", 0.3, 1, 0.80, 300, [0.7, 0.75, 0.8], [0.25, 0.5, 1]),
    {"config": {"dataset": "d", "model": "m", "regularizer": "l1", "strength": 9.0, "seed": 0}, "error": "ConfigError: boom"},
]


def test_front_of_hand_made_points() -> None:
    # (cost, accuracy):  0 (1, .5)  1 (2, .9)  2 (3, .8): 1 is cheaper and better  3 (2, .7): 1 is as cheap and better
    #                    4 (4, .95) the most accurate  5 (1, .4): 0 is as cheap and better  6 (5, .95): 4 is cheaper
    costs = [1, 2, 3, 2, 4, 1, 5]
    accs = [0.5, 0.9, 0.8, 0.7, 0.95, 0.4, 0.95]
    assert pareto.pareto_front(costs, accs) == [0, 1, 4]


def test_front_edge_cases() -> None:
    assert pareto.pareto_front([], []) == []
    assert pareto.pareto_front([1, 1], [0.5, 0.5]) == [0, 1]  # exact duplicates are both kept
    assert pareto.pareto_front([math.nan, 2], [0.9, 0.5]) == [1]  # NaN is never on the front
    with pytest.raises(ValueError):
        pareto.pareto_front([1], [])


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), max_size=30))
def test_front_is_exactly_the_non_dominated_points(points: list[tuple[int, int]]) -> None:
    costs = [c for c, _ in points]
    accs = [a for _, a in points]

    def dominated(i: int) -> bool:
        return any(costs[j] <= costs[i] and accs[j] >= accs[i] and (costs[j], accs[j]) != (costs[i], accs[i])
                   for j in range(len(points)))

    assert sorted(pareto.pareto_front(costs, accs)) == [i for i in range(len(points)) if not dominated(i)]


def test_mean_std_over_seeds() -> None:
    mean, std = pareto.mean_std([0.90, 0.92])
    # mean 0.91; sample std = sqrt(((0.01)^2 + (0.01)^2) / 1) = 0.01414
    assert mean == pytest.approx(0.91) and std == pytest.approx(math.sqrt(2) * 0.01)
    assert pareto.mean_std([None, 0.5, math.nan]) == (0.5, 0.0)


def test_groups_are_configurations_over_seeds() -> None:
    groups = pareto.group_records(RECORDS)
    assert [(g.label, g.seeds) for g in groups] == [("none", [0, 1]), ("l1 0.1", [0, 1]), ("l1 0.3", [0, 1])]
    # a setting that varies joins the label
    varied = pareto.group_records([rec("none", 0.0, 0, 0.9, 1, [0, 0, 0], [1, 1, 1], percentile=p) for p in (99.0, 100.0)])
    assert [g.label for g in varied] == ["none, convert.percentile=99", "none, convert.percentile=100"]


def test_snn_points_are_seed_means() -> None:
    none = pareto.group_records(RECORDS)[0]
    points = pareto.snn_points(none, P)
    assert [p.timesteps for p in points] == [1, 2, 4]
    assert [p.accuracy for p in points] == pytest.approx([0.5, 0.85, 0.91])
    assert points[1].accuracy_std == pytest.approx(math.sqrt(2) * 0.01)
    assert [p.energy_j for p in points] == [1, 2, 4] and points[2].synops == 40.0


def test_fronts_per_regularizer() -> None:
    groups = pareto.group_records(RECORDS)
    fronts = pareto.snn_fronts(groups, P)
    # none alone: accuracy rises with energy at every T, so all three points are on its front
    assert [(p.group.label, p.timesteps) for p in fronts["none"]] == [("none", 1), ("none", 2), ("none", 4)]
    # l1 points (energy, acc): 0.3@T1 (.25,.7) 0.3@T2 (.5,.75) 0.1@T1 (.5,.6) 0.3@T4 (1,.8) 0.1@T2 (1,.9) 0.1@T4 (2,.91)
    # 0.1@T1 loses to 0.3@T2 (same energy, better); 0.3@T4 loses to 0.1@T2 (same energy, better)
    assert [(p.group.label, p.timesteps) for p in fronts["l1"]] == [
        ("l1 0.3", 1), ("l1 0.3", 2), ("l1 0.1", 2), ("l1 0.1", 4)
    ]
    # DNN: l1 0.3 (300 MACs, 0.80) and l1 0.1 (500, 0.905): neither beats the other
    assert [g.label for g in pareto.dnn_fronts(groups, P)["l1"]] == ["l1 0.3", "l1 0.1"]


def test_smallest_t_and_iso_accuracy() -> None:
    groups = pareto.group_records(RECORDS)
    target, how = pareto.target_accuracy(groups, drop=0.01)
    assert target == pytest.approx(0.90) and "unregularized DNN 0.9100" in how  # 0.91 - 1 pp
    none, l1_01, l1_03 = groups
    assert pareto.smallest_t(none, target, P).timesteps == 4  # 0.5, 0.85, 0.91: first >= 0.90 at T = 4
    assert pareto.smallest_t(l1_01, target, P).timesteps == 2  # 0.6, 0.9: at T = 2, energy 1
    assert pareto.smallest_t(l1_03, target, P) is None  # never above 0.8
    rows = {r["regularizer"]: r for r in pareto.iso_accuracy(groups, target, P)}
    assert (rows["l1"]["snn_configuration"], rows["l1"]["snn_timesteps"], rows["l1"]["snn_energy_j"]) == ("l1 0.1", 2, 1)
    assert rows["l1"]["dnn_configuration"] == "l1 0.1" and rows["l1"]["dnn_energy_j"] == pytest.approx(500e-12)
    assert rows["none"]["snn_energy_j"] == 4
    lines = pareto.iso_accuracy_lines(list(rows.values()), P)
    assert "**l1 0.1 at T = 2**" in lines[0] and "regularizer **l1**" in lines[0]
    assert pareto.target_accuracy(groups, target=0.5)[0] == 0.5


def test_configuration_rows_and_layers() -> None:
    groups = pareto.group_records(RECORDS)
    rows = pareto.configuration_rows(groups, P, 0.90)
    assert [r["t_target"] for r in rows] == [4, 2, None]
    assert rows[0]["dnn_accuracy"] == pytest.approx(0.91) and rows[0]["seeds"] == 2
    assert rows[1]["t_target_energy_j"] == 1
    [layer] = pareto.layer_stats(groups[0])
    assert (layer["layer"], layer["sparsity"], layer["spike_rate"], layer["sparsity_std"]) == ("relu1", 0.5, 0.1, 0.0)


def test_sweep_report_text() -> None:
    text = sweep_report_markdown(RECORDS, P)
    assert "6 finished run(s) in 3 configuration(s)" in text and "1 failed" in text
    for heading in ("## d / m", "### Iso-accuracy", "### Pareto fronts: accuracy vs SNN energy",
                    "### Pareto fronts: accuracy vs DNN effective MACs", "## Failed configurations"):
        assert heading in text
    assert "0.91 ± 0.0141" in text  # none's DNN accuracy over its two seeds
    assert "ConfigError: boom" in text


def test_report_command_on_a_results_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_results(tmp_path, [r for r in RECORDS if "error" not in r])
    assert main(["report", str(tmp_path)]) == 0
    for name in ("report.md", "summary.csv", "layers.csv", "plots/pareto_d_m.png", "plots/timesteps_d_m.png", "plots/layers_d_m.png"):
        assert (tmp_path / name).is_file(), name
    assert len((tmp_path / "summary.csv").read_text().splitlines()) == 1 + 3  # header + 3 configurations
    assert main(["report", str(tmp_path), "--profile", "loihi"]) == 2
    assert "energy profile 'loihi' is not in the stored results" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_unknown_profile_in_write_report(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stored: cmos45-fp32"):
        write_report(tmp_path, RECORDS, "tpu", style="sweep")


def test_seeds_group_per_configuration_over_the_model_axes() -> None:
    def axes_rec(activation: str, width: float, seed: int, acc: float) -> dict[str, Any]:
        record = rec("none", 0.0, seed, acc, 500.0, [0.5, 0.8, acc], [1.0, 2.0, 4.0])
        levels = 4 if activation == "qcfs" else 8  # relu keeps the default levels, which it ignores
        record["config"]["resolved"]["model"] = {"activation": activation, "levels": levels, "width": width}
        return record  # the axes only in config.resolved, as a sweep over "model.activation" writes them too

    records = [axes_rec(a, w, s, acc) for a, w, acc in (("relu", 1.0, 0.9), ("relu", 0.5, 0.8), ("qcfs", 0.5, 0.7))
               for s in (0, 1)]
    groups = pareto.group_records(records)
    # three configurations of two seeds each, labelled by their axes (no "model.activation=" extras, and
    # no "model.levels=8" on the relu ones: levels differ between activations only)
    assert [(g.label, g.seeds) for g in groups] == [("none", [0, 1]), ("relu w0.5 none", [0, 1]), ("qcfs4 w0.5 none", [0, 1])]
    assert pareto.baseline_group(groups) is groups[0]  # the full-width ReLU one
    # seed means at T = 4: each configuration's two seeds share acc, so the mean is that acc
    assert [pareto.snn_points(g, P)[-1].accuracy for g in groups] == [0.9, 0.8, 0.7]


def test_levers_tag_labels_and_keep_the_baseline_plain() -> None:
    def lever_rec(seed: int, acc: float, distill: str | None = None, finetune: dict | None = None,
                  reg: str = "none") -> dict[str, Any]:
        record = rec(reg, 0.0 if reg == "none" else 5e-7, seed, acc, 500.0, [0.5, 0.8, acc], [1.0, 2.0, 4.0])
        record["config"]["resolved"]["train"]["distill"] = distill
        record["config"]["resolved"]["finetune"] = {"timesteps": 0, "strength": 0.0, **(finetune or {})}
        return record

    ft = {"timesteps": 8, "strength": 1.5e-6}
    records = [lever_rec(s, acc, d, f) for acc, d, f in ((0.9, None, None), (0.8, "runs/t", None), (0.7, "runs/t", ft))
               for s in (0, 1)]
    groups = pareto.group_records(records)
    # the tags name the levers, and their settings (finetune.strength 0 vs 1.5e-6, the teacher's path)
    # are not repeated as "key=value" extras since each lever uses one setting throughout
    assert [g.label for g in groups] == ["none", "none kd", "none kd ft8"]
    # a ReLU "none" run that was distilled or fine-tuned is not the unregularized reference
    assert pareto.baseline_group(groups) is groups[0]
    assert pareto.baseline_group(groups[1:]) is None
    # two fine-tuned configurations that differ in their fine-tuning strength keep that key in the label
    other = [lever_rec(s, 0.6, "runs/t", {"timesteps": 8, "strength": 3e-6}) for s in (0, 1)]
    labels = [g.label for g in pareto.group_records(records + other)]
    # (and only theirs: the configurations that were not fine-tuned show no fine-tuning setting)
    assert labels == ["none", "none kd", "none kd ft8, finetune.strength=1.5e-06", "none kd ft8, finetune.strength=3e-06"]
