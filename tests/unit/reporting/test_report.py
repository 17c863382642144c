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
