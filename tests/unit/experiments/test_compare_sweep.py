"""compare's model axes: activations x levels x widths crossed with the regularizer grid, their run
folders, the results.json keys they leave, and resuming a crossed comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snnergy.config import DataConfig, ExperimentConfig, ModelConfig, SimulateConfig, TrainConfig
from snnergy.errors import ConfigError
from snnergy.experiments import compare, compare_sweep, comparison_grid, model_tables, result_record
from snnergy.experiments.compare import COMPARE_GRID, DEFAULT_LEVELS
from snnergy.reporting.identity import config_hash


def axes_of(config: ExperimentConfig) -> tuple:
    return (config.model.activation, config.model.levels, config.model.width, config.train.regularizer,
            config.train.strength)


def test_activations_levels_and_widths_cross_the_regularizer_grid() -> None:
    base = ExperimentConfig()
    points = comparison_grid(base, [("none", 0.0), ("synops", 7e-7)], ["relu", "qcfs"], [4, 8], [0.5, 1.0])
    sweep = compare_sweep(base, points)
    # relu: 2 widths x 2 regularizers = 4; qcfs: 2 levels x 2 widths x 2 regularizers = 8; 12 in all,
    # relu keeping the base's levels (8: relu ignores them, so no duplicate runs per level)
    assert len(sweep.configs) == 12
    assert [axes_of(c) for c in sweep.configs[:4]] == [
        ("relu", 8, 0.5, "none", 0.0), ("relu", 8, 0.5, "synops", 7e-7),
        ("relu", 8, 1.0, "none", 0.0), ("relu", 8, 1.0, "synops", 7e-7)]
    assert [sweep.layout.run_folder(c) for c in sweep.configs] == [
        "w0.5-none-0", "w0.5-synops-7e-07", "none-0", "synops-7e-07",
        "qcfs4-w0.5-none-0", "qcfs4-w0.5-synops-7e-07", "qcfs4-none-0", "qcfs4-synops-7e-07",
        "qcfs8-w0.5-none-0", "qcfs8-w0.5-synops-7e-07", "qcfs8-none-0", "qcfs8-synops-7e-07"]
    assert len({config_hash(c) for c in sweep.configs}) == 12
    # the full-width ReLU configurations are exactly those of a comparison without model axes:
    # the same identity, so an older comparison folder resumes into the crossed one
    plain = compare_sweep(base, [("none", 0.0), ("synops", 7e-7)])
    assert {config_hash(c) for c in plain.configs} <= {config_hash(c) for c in sweep.configs}
    assert sweep.to_dict()["grid"]["model"][0] == {"activation": "relu", "width": 0.5}


def test_pairs_cross_the_model_tables() -> None:
    sweep = compare_sweep(ExperimentConfig(), [("none", 0.0), ("l1", 0.1)],
                          models=[{"activation": "clip"}, {"activation": "qcfs", "levels": 2, "width": 0.25}])
    assert [sweep.layout.run_folder(c) for c in sweep.configs] == [
        "clip-none-0", "clip-l1-0.1", "qcfs2-w0.25-none-0", "qcfs2-w0.25-l1-0.1"]


def test_the_default_comparison_has_both_activations() -> None:
    points = comparison_grid(ExperimentConfig())
    # every relu pair of COMPARE_GRID, then every qcfs pair at the default levels
    expected = [("relu", None, *p) for p in COMPARE_GRID["relu"]] + [("qcfs", DEFAULT_LEVELS, *p) for p in COMPARE_GRID["qcfs"]]
    assert [(m["activation"], m.get("levels"), r, s) for m, r, s in points] == expected
    assert ("none", 0.0) in COMPARE_GRID["relu"] and ("none", 0.0) in COMPARE_GRID["qcfs"]
    # --levels replaces the default levels; --widths crosses both activations
    points = comparison_grid(ExperimentConfig(), levels=[8], widths=[0.5])
    assert {(m["activation"], m.get("levels"), m["width"]) for m, _, _ in points} == {("relu", None, 0.5), ("qcfs", 8, 0.5)}
    # a base of another activation keeps the comparison as before the model axes: its network alone,
    # the default regularizers at their default strengths (1 none + 3 x 3)
    qcfs = ExperimentConfig(model=ModelConfig(activation="qcfs", levels=8))
    assert {m["activation"] for m, _, _ in comparison_grid(qcfs)} == {"qcfs"} and len(comparison_grid(qcfs)) == 10


def test_model_axes_are_checked() -> None:
    base = ExperimentConfig()
    with pytest.raises(ConfigError, match="unknown activation 'foo'; known: relu, qcfs, clip"):
        model_tables(base, ["foo"])
    with pytest.raises(ConfigError, match=r"levels \[4\] apply to qcfs only, and the activations are relu"):
        model_tables(base, ["relu"], [4])
    with pytest.raises(ConfigError, match="model.width"):
        compare_sweep(base, [("none", 0.0)], models=[{"width": 0.0}])
    with pytest.raises(ConfigError, match="model.levels"):
        compare_sweep(base, [("none", 0.0)], models=[{"activation": "qcfs", "levels": 0}])
    # two tables of the same network would share a run folder
    with pytest.raises(ConfigError, match="share the run folder runs/qcfs4-none-0"):
        compare_sweep(base, [("none", 0.0)], models=[{"activation": "qcfs", "levels": 4},
                                                     {"activation": "qcfs", "levels": 4, "channelwise_threshold": True}])


def test_results_json_records_the_model_axes() -> None:
    config = ExperimentConfig(model=ModelConfig(activation="qcfs", levels=4, width=0.5),
                              train=TrainConfig(regularizer="synops", strength=7e-7))
    cfg = json.loads(json.dumps(result_record(config)))["config"]
    assert list(cfg)[:8] == ["dataset", "model", "regularizer", "strength", "activation", "levels", "width", "seed"]
    assert (cfg["activation"], cfg["levels"], cfg["width"]) == ("qcfs", 4, 0.5)
    assert cfg["resolved"]["model"]["activation"] == "qcfs"


def test_a_crossed_comparison_resumes(tmp_path: Path) -> None:
    base = ExperimentConfig(data=DataConfig(dataset="synthetic-blobs"), model=ModelConfig(name="tiny-mlp"),
                            train=TrainConfig(epochs=1), simulate=SimulateConfig(timesteps=(4,)), device="cpu")
    out = tmp_path / "cmp"
    seen: list[str] = []
    first = compare(base, grid=[("none", 0.0)], activations=["relu", "qcfs"], levels=[2], widths=[0.5, 1.0], out=out)
    assert [(r["config"]["activation"], r["config"]["levels"], r["config"]["width"]) for r in first] == [
        ("relu", 8, 0.5), ("relu", 8, 1.0), ("qcfs", 2, 0.5), ("qcfs", 2, 1.0)]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["none-0", "qcfs2-none-0", "qcfs2-w0.5-none-0", "w0.5-none-0"]
    # the same command again: every configuration comes from the store, none is trained again
    again = compare(base, grid=[("none", 0.0)], activations=["relu", "qcfs"], levels=[2], widths=[0.5, 1.0], out=out,
                    on_result=lambda r: seen.append(r["config"]["activation"]))
    assert again == first and seen == ["relu", "relu", "qcfs", "qcfs"]
    report = (out / "report.md").read_text()
    assert "qcfs2 w0.5 none" in report and "relu w0.5 none" in report
