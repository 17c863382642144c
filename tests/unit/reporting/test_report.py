from __future__ import annotations

from pathlib import Path

import pytest

from snnergy.reporting import report_markdown, result_rows, summary_rows, verdict, write_report


def record(reg: str, strength: float, dnn_acc: float, energy: float, snn_acc: list[float], snn_energy: list[float],
           sparsity: float = 0.5) -> dict:
    return {
        "config": {"dataset": "digits", "model": "lenet", "regularizer": reg, "strength": strength, "seed": 0},
        "dnn": {"accuracy": dnn_acc, "sparsity": {"relu1": sparsity, "relu2": sparsity}, "macs_nominal": 120.0,
                "macs_dense": 100.0, "macs_effective": energy / 4.6e-12, "energy_j": {"cmos45-fp32": energy}},
        "snn": {"timesteps": [8, 32], "accuracy": snn_acc, "synops": [10.0, 40.0], "input_macs": [5.0, 5.0],
                "neuron_updates": [80.0, 320.0], "spike_rate": {"relu1": 0.1, "relu2": 0.05},
                "correlation": {"relu1": 0.99, "relu2": 0.98}, "energy_j": {"cmos45-fp32": snn_energy}},
    }


RECORDS = [
    record("none", 0.0, 0.97, 4e-7, [0.90, 0.97], [1e-7, 4e-7]),
    record("l1", 0.1, 0.965, 2e-7, [0.955, 0.965], [0.5e-7, 2e-7]),
    record("hoyer", 0.03, 0.94, 1e-7, [0.93, 0.94], [0.2e-7, 0.8e-7]),  # too inaccurate
    record("hoyer", 1.0, 0.10, 1e-9, [0.1, 0.1], [1e-10, 1e-10], sparsity=1.0),  # collapsed
]


def test_verdict_picks_the_cheapest_within_one_point() -> None:
    lines = verdict(RECORDS)
    # target = 0.97 - 0.01 = 0.96: DNNs none (4e-7 J) and l1 (2e-7 J) qualify -> l1.
    assert "0.9600" in lines[0]
    assert "Lowest DNN energy: **l1 (strength 0.1)**" in lines[1]
    # SNN points reaching 0.96: none@32 (4e-7), l1@32 (2e-7); l1@8 has 0.955 < 0.96 -> l1 at T = 32.
    assert "Lowest SNN energy: **l1 (strength 0.1) at T = 32**" in lines[2]


def test_summary_rows_and_collapse_note() -> None:
    rows = summary_rows(RECORDS)
    assert [r["regularizer"] for r in rows] == ["none", "l1", "hoyer", "hoyer"]
    assert rows[0]["t_within"] == 32 and rows[1]["t_within"] == 8  # l1: 0.955 >= 0.965 - 0.01
    assert rows[1]["snn_dnn_energy_ratio"] == pytest.approx(1.0)
    assert rows[3]["note"] == "collapsed: relu1, relu2 silent" and rows[0]["note"] == ""


def test_long_rows_one_per_timestep() -> None:
    rows = result_rows(RECORDS)
    assert len(rows) == 8
    assert rows[1]["timesteps"] == 32 and rows[1]["snn_energy_j"] == 4e-7


def test_failed_configurations_are_listed(tmp_path: Path) -> None:
    failed = {"config": {"dataset": "digits", "model": "lenet", "regularizer": "l2", "strength": 9.0, "seed": 0},
              "error": "training diverged"}
    text = report_markdown([*RECORDS, failed])
    assert "4 finished configuration(s), 1 failed" in text and "l2 (strength 9): training diverged" in text
    path = write_report(tmp_path, [*RECORDS, failed])
    assert path.read_text().startswith("# snnergy report")
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "accuracy_energy.png", "accuracy_timesteps.png", "layers.png"]


def test_reporting_imports_flow_one_way() -> None:
    """No import circle between reporting's files (at module level or inside functions), and
    none of them imports the package itself (its __init__ imports them all)."""
    import ast

    import snnergy.reporting

    folder = Path(snnergy.reporting.__file__).parent
    edges: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        if path.stem == "__init__":
            continue
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                assert name != "snnergy.reporting", f"{path.name} imports the reporting package"
                if name.startswith("snnergy.reporting."):
                    found.add(name.split(".")[2])
        edges[path.stem] = found
    done: set[str] = set()

    def visit(module: str, trail: tuple[str, ...]) -> None:
        assert module not in trail, f"import circle: {' -> '.join([*trail, module])}"
        if module in done:
            return
        for target in edges.get(module, ()):
            visit(target, (*trail, module))
        done.add(module)

    for module in edges:
        visit(module, ())
    assert not any("writer" in targets for targets in edges.values())  # the writer is on top


def test_one_writer_two_styles(tmp_path: Path) -> None:
    from snnergy.errors import ConfigError
    from snnergy.reporting import REPORT_STYLES

    assert REPORT_STYLES.names() == ["compare", "sweep"]
    compare = write_report(tmp_path / "c", RECORDS)
    assert compare.read_text().startswith("# snnergy report") and "## Which regularizer?" in compare.read_text()
    sweep = write_report(tmp_path / "s", RECORDS, style="sweep")
    assert sweep.read_text().startswith("# snnergy sweep report")
    assert (tmp_path / "s" / "summary.csv").is_file() and not (tmp_path / "c" / "summary.csv").exists()
    with pytest.raises(ConfigError, match="unknown report style 'fancy'"):
        write_report(tmp_path, RECORDS, style="fancy")


def test_compare_report_takes_an_absolute_target() -> None:
    lines = verdict(RECORDS, target=0.93)
    assert lines[0].startswith("Target: accuracy >= 0.9300 (given)")
    assert "hoyer (strength 0.03)" in lines[1]  # the cheapest DNN at 0.94 >= 0.93


def axes_record(activation: str, levels: int, width: float, reg: str, strength: float, dnn_acc: float, dnn_j: float,
                acc: list[float], synops_per_t: float, input_j: float, collapsed: list[str] | None = None) -> dict:
    """A record over the model axes with a curve at t = 1..4 on profile p: 1 J per SynOp, ``input_j``
    for the analog input layer, no neuron-update energy; the DNN ran the same images as the SNN."""
    synops = [synops_per_t * t for t in range(1, 5)]
    energy = [s + input_j for s in synops]
    return {
        "config": {"dataset": "digits", "model": "lenet", "regularizer": reg, "strength": strength, "seed": 0,
                   "activation": activation, "levels": levels, "width": width},
        "dnn": {"accuracy": dnn_acc, "accuracy_snn_samples": dnn_acc, "snn_samples": 100, "sparsity": {"relu1": 0.5},
                "macs_dense": 100.0, "macs_effective": dnn_j, "energy_j": {"p": dnn_j}, "collapsed": collapsed or []},
        "snn": {"timesteps": [4], "accuracy": [acc[-1]], "synops": [synops[-1]], "input_macs": [1.0],
                "neuron_updates": [0.0], "energy_j": {"p": [energy[-1]]},
                "energy_breakdown_j": {"p": {"input_layer": [input_j], "spiking_layers": [synops[-1]], "neuron_updates": [0.0]}},
                "curve": {"timesteps": [1, 2, 3, 4], "accuracy": acc, "synops": synops, "energy_j": {"p": energy}}},
    }


# relu and qcfs (L = 4) at widths 1, 0.5 and 0.25. The target is the unregularized full-width ReLU DNN's
# 0.95 minus 1 pp = 0.94 (the qcfs none DNN's 0.99 must not enter it: a mean over every `none` run
# would give 0.957 - 0.01 = 0.947, which qcfs4 w0.5 synops misses at t = 2).
AXES_RECORDS = [
    # relu w1 none: reaches 0.94 at t = 3: 30 SynOps, 30 + 5 = 35 J; DNN 0.95, 50 J
    axes_record("relu", 8, 1.0, "none", 0.0, 0.95, 50.0, [0.5, 0.8, 0.94, 0.95], 10.0, 5.0),
    # relu w0.5 none: never reaches 0.94 (SNN nor DNN)
    axes_record("relu", 8, 0.5, "none", 0.0, 0.93, 20.0, [0.5, 0.7, 0.9, 0.93], 5.0, 2.0),
    # qcfs4 w1 none: t = 2: 8 SynOps, 13 J; DNN 0.99, 40 J
    axes_record("qcfs", 4, 1.0, "none", 0.0, 0.99, 40.0, [0.6, 0.95, 0.95, 0.95], 4.0, 5.0),
    # qcfs4 w0.5 synops: t = 2 (0.945): 4 SynOps, 4 + 2 = 6 J: the best; DNN 0.95, 12 J: the cheapest DNN
    axes_record("qcfs", 4, 0.5, "synops", 1e-7, 0.95, 12.0, [0.9, 0.945, 0.95, 0.95], 2.0, 2.0),
    # qcfs4 w0.25 synops: cheaper still (t = 1, 1 + 1 = 2 J; DNN 1 J) but collapsed: never a candidate
    axes_record("qcfs", 4, 0.25, "synops", 1e-7, 0.95, 1.0, [0.94, 0.95, 0.95, 0.95], 1.0, 1.0, ["relu2"]),
]


def test_verdict_over_activations_and_widths() -> None:
    lines = verdict(AXES_RECORDS, profile="p")
    assert lines[0].startswith("Target: accuracy >= 0.9400 (unregularized full-width ReLU DNN")
    assert "Lowest DNN energy: **qcfs4 w0.5 synops (strength 1e-07)**, 12 J/sample" in lines[1]
    assert "Lowest SNN energy: **qcfs4 w0.5 synops (strength 1e-07) at T = 2**" in lines[2]
    # against relu w1 none at t = 3 (30 SynOps, 35 J): 30 / 4 = 7.5x fewer SynOps, 35 / 6 = 5.83x less energy
    assert "against the unregularized full-width ReLU SNN (none at its smallest sufficient T = 3" in lines[3]
    assert "**7.5x fewer SynOps** and **5.83x less energy**" in lines[3] and "in 2 instead of 3 timesteps" in lines[3]
    # SNN 6 J over the cheapest DNN reaching the target, qcfs4 w0.5 synops's own 12 J: 0.5
    assert "SNN/DNN energy at iso-accuracy: **0.5**" in lines[4] and "qcfs4 w0.5 synops (strength 1e-07), 12 J" in lines[4]
    assert "qcfs4 w0.25 synops (strength 1e-07) (relu2)" in lines[-1]  # collapsed, named, left out
    rows = {(r["activation"], r["width"], r["regularizer"]): r for r in summary_rows(AXES_RECORDS, profile="p")}
    assert rows[("qcfs", 0.5, "synops")]["t_within"] == 2 and rows[("relu", 1.0, "none")]["t_within"] == 3


def test_sweep_report_over_activations_and_widths() -> None:
    from snnergy.reporting import pareto
    from snnergy.reporting.sweep_report import sweep_report_markdown

    groups = pareto.group_records(AXES_RECORDS)
    assert [g.label for g in groups] == ["none", "relu w0.5 none", "qcfs4 none", "qcfs4 w0.5 synops 1e-07",
                                         "qcfs4 w0.25 synops 1e-07"]
    assert [g.family for g in groups][:4] == ["none", "relu w0.5 none", "qcfs4 none", "qcfs4 w0.5 synops"]
    lines = pareto.iso_factor_lines(groups, 0.94, "p")  # the same derivation as the compare verdict above
    assert "**qcfs4 w0.5 synops 1e-07 at t = 2**" in lines[0] and "**7.5x fewer SynOps** and **5.83x less energy**" in lines[0]
    assert "SNN/DNN energy at iso-accuracy: **0.5**" in lines[1]
    # overall front over the listed T = 4 points (collapsed left out): qcfs4 w0.5 synops (0.95, 8 + 2 = 10 J)
    # dominates qcfs4 none (0.95, 21 J) and relu none (0.95, 45 J); relu w0.5 (0.93, 22 J) is dominated too
    assert [p.group.label for p in pareto.overall_snn_front(groups, "p")] == ["qcfs4 w0.5 synops 1e-07"]
    text = sweep_report_markdown(AXES_RECORDS, profile="p")
    assert "Lowest SNN energy: **qcfs4 w0.5 synops 1e-07 at T = 2** (qcfs4 w0.5, regularizer **synops**)" in text


def test_old_records_without_the_model_axes_still_report() -> None:
    from snnergy.reporting import config_label, pareto
    from snnergy.reporting.filters import axes, is_full_baseline

    old = RECORDS[0]  # written before config.activation/levels/width existed, and without config.resolved
    assert "activation" not in old["config"] and axes(old) == ("relu", 8, 1.0) and is_full_baseline(old)
    assert config_label(RECORDS[1]) == "l1 0.1" and summary_rows(RECORDS)[0]["activation"] == "relu"
    resolved = {**RECORDS[1], "config": {**RECORDS[1]["config"], "resolved": {"model": {"name": "lenet", "width": 1.0}}}}
    assert axes(resolved) == ("relu", 8, 1.0) and pareto.group_records([resolved])[0].family == "l1"
    # mixed with new records, the old full-width ReLU `none` is still the baseline and the reference
    lines = verdict([old, AXES_RECORDS[2]], profile="cmos45-fp32")
    assert lines[0].startswith("Target: accuracy >= 0.9600 (unregularized full-width ReLU DNN 0.9700")


def test_compute_vs_memory_table_only_for_memory_profiles() -> None:
    from snnergy.reporting.report import memory_rows

    assert "Compute vs memory" not in report_markdown(RECORDS)  # compute-only profiles: no table
    rec = record("none", 0.0, 0.97, 4e-7, [0.90, 0.97], [1e-7, 4e-7])
    # DNN on "m": compute 4e-7 + memory 6e-7 = 1e-6 J. SNN at T = 32: compute 1 + 2 + 0 = 3e-7 J,
    # memory 9e-7 J, total 1.2e-6 J: SNN/DNN total 1.2e-6 / 1e-6 = 1.2.
    rec["dnn"]["energy_j"]["m"] = 1e-6
    rec["dnn"]["energy_breakdown_j"] = {"m": {"compute": 4e-7, "memory": 6e-7}}
    rec["snn"]["energy_j"]["m"] = [5e-7, 1.2e-6]
    rec["snn"]["energy_breakdown_j"] = {"m": {"input_layer": [1e-7, 1e-7], "spiking_layers": [0.5e-7, 2e-7],
                                              "neuron_updates": [0.0, 0.0], "memory": [3.5e-7, 9e-7]}}
    (row,) = memory_rows([rec], "m")
    assert row["timesteps"] == 32
    assert row["dnn_compute_j"] == 4e-7 and row["dnn_memory_j"] == 6e-7
    assert row["snn_compute_j"] == pytest.approx(3e-7) and row["snn_memory_j"] == 9e-7
    assert row["snn_dnn_energy_ratio"] == pytest.approx(1.2)
    text = report_markdown([rec])
    assert "Compute vs memory on `m`" in text and "| DNN compute (J) | DNN memory (J) |" in text


def test_compute_vs_memory_reads_each_snn_at_its_smallest_sufficient_t() -> None:
    from snnergy.reporting.report import memory_rows

    rec = record("none", 0.0, 0.97, 4e-7, [0.90, 0.97], [1e-7, 4e-7])
    rec["dnn"]["energy_breakdown_j"] = {"m": {"compute": 4e-7, "memory": 6e-7}}
    # listed T = 8, 32; curve at t = 8..32 reaching 0.96 first at t = 16 with 20 SynOps.
    steps = list(range(8, 33))
    synops = [10.0 + 30.0 * (t - 8) / 24 for t in steps]  # 10 at t = 8, 40 at t = 32 (as listed)
    # on "m": input 1e-7 J, 5e-9 J per SynOp compute, memory 1e-8 J per SynOp (no neuron terms)
    rec["snn"]["curve"] = {"timesteps": steps, "accuracy": [0.96 if t >= 16 else 0.9 for t in steps],
                           "synops": synops, "energy_j": {"m": [1e-7 + 15e-9 * s for s in synops]}}
    rec["snn"]["energy_breakdown_j"] = {"m": {"input_layer": [1e-7, 1e-7], "spiking_layers": [5e-8, 2e-7],
                                              "neuron_updates": [0.0, 0.0], "memory": [1e-7, 4e-7]}}
    (row,) = memory_rows([rec], "m", target=0.96)
    # t = 16: 20 SynOps -> compute 1e-7 + 20 x 5e-9 = 2e-7 J, memory 20 x 1e-8 = 2e-7 J;
    # SNN/DNN total 4e-7 / (4e-7 + 6e-7) = 0.4
    assert (row["timesteps"], row["note"]) == (16, "")
    assert row["snn_compute_j"] == pytest.approx(2e-7) and row["snn_memory_j"] == pytest.approx(2e-7)
    assert row["snn_dnn_energy_ratio"] == pytest.approx(0.4)
    (never,) = memory_rows([rec], "m", target=0.99)  # never reached: the largest T, said so
    assert never["timesteps"] == 32 and never["note"] == "largest T: never reaches the target"


def test_breakdown_table_has_a_memory_column_on_a_memory_profile() -> None:
    rec = record("none", 0.0, 0.97, 4e-7, [0.90, 0.97], [1e-7, 4e-7])
    rec["dnn"]["energy_j"]["m"] = 1e-6
    rec["snn"]["energy_j"]["m"] = [5e-7, 1.2e-6]
    rec["snn"]["energy_breakdown_j"] = {"m": {"input_layer": [1e-7, 1e-7], "spiking_layers": [0.5e-7, 2e-7],
                                              "neuron_updates": [0.0, 0.0], "memory": [3.5e-7, 9e-7]}}
    assert "memory (J)" in report_markdown([rec], profile="m")
    assert "memory (J)" not in report_markdown(RECORDS)
