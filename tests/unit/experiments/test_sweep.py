"""Sweep files: expansion into configurations, identity hashes, and validation before any run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from snnergy.cli import main
from snnergy.config import ExperimentConfig, TrainConfig, config_to_dict
from snnergy.errors import ConfigError
from snnergy.experiments.grid import config_hash, expand, load_sweep, parse_sweep

ROOT = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_product_with_per_regularizer_strengths() -> None:
    sweep = parse_sweep(
        {
            "base": {"data": {"dataset": "digits"}, "train": {"epochs": 2}},
            "grid": {"model.name": ["lenet", "mlp"], "train.regularizer": ["none", "l1", "hoyer"], "seed": [0, 1]},
            "strengths": {"l1": [0.1, 0.3], "hoyer": [0.01]},
        }
    )
    # 2 models x (none once + 2 l1 + 1 hoyer) x 2 seeds = 2 x 4 x 2 = 16
    assert len(sweep.configs) == 16
    pairs = {(c.train.regularizer, c.train.strength) for c in sweep.configs}
    assert pairs == {("none", 0.0), ("l1", 0.1), ("l1", 0.3), ("hoyer", 0.01)}
    assert all(c.train.epochs == 2 and c.data.dataset == "digits" for c in sweep.configs)
    # product order: the first grid key varies slowest
    assert [c.model.name for c in sweep.configs[:8]] == ["lenet"] * 8


def test_none_runs_once_at_strength_zero() -> None:
    # none x 3 strengths collapses to one configuration; l1 keeps its 3
    configs = expand(ExperimentConfig(), [("train.regularizer", ["none", "l1"]), ("train.strength", [0.1, 0.2, 0.3])])
    assert [(c.train.regularizer, c.train.strength) for c in configs] == [
        ("none", 0.0), ("l1", 0.1), ("l1", 0.2), ("l1", 0.3)
    ]


def test_section_tables_merge_into_the_base() -> None:
    sweep = parse_sweep(
        {"base": {"model": {"width": 2.0}}, "grid": {"model": [{"name": "lenet"}, {"name": "vgg", "width": 0.5}]}}
    )
    assert [(c.model.name, c.model.width) for c in sweep.configs] == [("lenet", 2.0), ("vgg", 0.5)]


def test_config_key_lists_chosen_points_not_a_product() -> None:
    # 2 chosen configurations x 2 seeds = 4, not the 2 x 2 x 2 = 8 of a product of model x train x seed
    sweep = parse_sweep({
        "base": {"train": {"epochs": 2}},
        "grid": {
            "config": [
                {"model": {"activation": "relu"}, "train": {"regularizer": "none"}},
                {"model": {"activation": "qcfs", "levels": 4}, "train": {"regularizer": "synops", "strength": 1e-6}},
            ],
            "seed": [0, 1],
        },
    })
    got = [(c.model.activation, c.model.levels, c.train.regularizer, c.train.strength, c.train.epochs, c.seed)
           for c in sweep.configs]
    assert got == [("relu", 8, "none", 0.0, 2, 0), ("relu", 8, "none", 0.0, 2, 1),
                   ("qcfs", 4, "synops", 1e-6, 2, 0), ("qcfs", 4, "synops", 1e-6, 2, 1)]


def test_no_grid_is_the_base_alone() -> None:
    sweep = parse_sweep({"base": {"seed": 3}})
    assert sweep.configs == (ExperimentConfig(seed=3),)


def test_hash_is_the_resolved_config() -> None:
    a = ExperimentConfig(train=TrainConfig(regularizer="l1", strength=0.1))
    assert config_hash(a) == config_hash(ExperimentConfig(train=TrainConfig(strength=0.1, regularizer="l1")))
    # an int given for a float field is the same run: 1 -> 1.0 before hashing
    one = parse_sweep({"grid": {"train.lr": [1]}}).configs[0]
    assert config_hash(one) == config_hash(ExperimentConfig(train=TrainConfig(lr=1.0)))
    assert config_hash(a) != config_hash(ExperimentConfig(train=TrainConfig(regularizer="l1", strength=0.2)))
    # sha256 hex digest
    assert len(config_hash(a)) == 64 and int(config_hash(a), 16) >= 0


def test_to_dict_keeps_the_grid() -> None:
    sweep = parse_sweep({"grid": {"seed": [0, 1]}}, source="x.toml")
    data = sweep.to_dict()
    assert data["grid"] == {"seed": [0, 1]} and data["configurations"] == 2 and data["source"] == "x.toml"
    assert data["base"] == config_to_dict(ExperimentConfig())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[gird]\nseed = [0]", ["unknown sweep table 'gird'", "allowed: description, base, grid, strengths"]),
        ("[grid]\n\"train.regulariser\" = [\"l1\"]", ["'train.regulariser'", "allowed: epochs, lr"]),
        ("[grid]\n\"trian.lr\" = [0.1]", ["unknown config section 'trian'", "allowed: data, model, train"]),
        ("[base.train]\nepochs = \"ten\"", ["'base.train.epochs' expects an integer", "'ten'"]),
        ("[grid]\n\"train.epochs\" = [3, 2.5]", ["train.epochs = 2.5", "'train.epochs' expects an integer"]),
        ("[grid]\nseed = []", ["grid key 'seed' needs a non-empty list"]),
        ("[grid]\nseed = 3", ["grid key 'seed' needs a non-empty list"]),
        ("[grid]\n\"train.regularizer\" = [\"l1\", \"hoyr\"]\n\"train.strength\" = [0.1]",
         ["grid key 'train.regularizer'", "unknown regularizer 'hoyr'", "known: none, l1"]),
        ("[base.model]\nname = \"alexnet\"", ["base.model.name", "unknown model 'alexnet'", "lenet"]),
        ("[base.data]\ndataset = \"imagenet\"", ["base.data.dataset", "unknown dataset 'imagenet'", "digits"]),
        ("[base]\nprofiles = [\"cmos45-fp32\", \"tpu\"]", ["base.profiles", "unknown energy profile 'tpu'", "loihi"]),
        ("[grid]\n\"train.regularizer\" = [\"l1\"]\n[strengths]\nhoyr = [0.1]",
         ["strengths key 'hoyr'", "unknown regularizer 'hoyr'"]),
        ("[grid]\n\"train.regularizer\" = [\"l1\", \"hoyer\"]\n[strengths]\nl1 = [0.1]",
         ["regularizer 'hoyer' has no entry in [strengths]"]),
        ("[grid]\n\"train.strength\" = [0.1]\n[strengths]\nl1 = [0.1]", ["either as grid key 'train.strength' or in [strengths]"]),
        ("[strengths]\nl1 = [-0.1]", ["strengths.l1 expects finite numbers >= 0"]),
        ("[grid]\nmodel = [\"lenet\"]", ["grid key 'model' is a section: its values must be tables"]),
        ("[grid\nseed = [0]", ["not a valid TOML file"]),
        ("[grid]\nconfig = [1]", ["grid key 'config' takes tables of config settings"]),
        ("[grid]\nconfig = [{trian = {lr = 0.1}}]", ["grid key 'config': unknown config key 'trian'", "allowed: data, model"]),
        ("[grid]\nconfig = [{train = {regularizer = \"hoyr\"}}]", ["grid key 'config'", "unknown regularizer 'hoyr'"]),
    ],
)
def test_bad_sweep_files_name_file_and_key(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message


def test_missing_sweep_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sweep file not found"):
        load_sweep(tmp_path / "nope.toml")


def test_cli_reports_a_bad_sweep_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[base.model]\nname = \"alexnet\"")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("snnergy: error: ") and "unknown model 'alexnet'" in err
    assert not (tmp_path / "out").exists()  # validated before anything was written


def test_cli_dry_run_lists_configurations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[grid]\n\"train.regularizer\" = [\"none\", \"l1\"]\nseed = [0, 1]\n[strengths]\nl1 = [0.1]")
    assert main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "4 configurations" in out and out.count("| l1 |") == 2
    assert not (tmp_path / "out").exists()


def test_shipped_small_sweep() -> None:
    sweep = load_sweep(ROOT / "sweeps" / "digits_small.toml")
    assert 1 < len(sweep.configs) <= 12
    assert {(c.data.dataset, c.model.name) for c in sweep.configs} == {("digits", "lenet")}
    assert max(max(c.simulate.timesteps) for c in sweep.configs) <= 64


def test_shipped_fashion_mnist_sweep_is_the_paper_grid() -> None:
    sweep = load_sweep(ROOT / "sweeps" / "fashion_mnist.toml")
    configs = sweep.configs
    assert {c.data.dataset for c in configs} == {"fashion-mnist"}
    assert {c.model.name for c in configs} == {"lenet", "vgg"}
    assert {c.train.regularizer for c in configs} == {"none", "l1", "hoyer", "hoyer-square", "transformed-l1"}
    assert {c.seed for c in configs} == {0, 1}
    for name, strengths in dict(sweep.strengths or ()).items():
        ratios = {round(math.log10(b / a), 3) for a, b in zip(strengths, strengths[1:])}
        assert len(strengths) >= 3 and len(ratios) <= 2 and min(ratios) > 0, name  # a log grid
    # 2 models x (1 + 4 regularizers x 4 strengths) x 2 seeds
    assert len(configs) == 2 * (1 + 4 * 4) * 2


def test_shipped_low_latency_sweep_holds_issue_14s_levers() -> None:
    configs = load_sweep(ROOT / "sweeps" / "fashion_mnist_lowlatency.toml").configs
    assert len(configs) == 15 * 3 and {c.seed for c in configs} == {0, 1, 2}  # 15 chosen points x 3 seeds
    relu = {(c.train.regularizer, c.model.width) for c in configs if c.model.activation == "relu"}
    assert relu == {("none", 1.0), ("l1", 1.0), ("none", 0.5)}
    plain_qcfs = {(c.model.levels, c.train.strength) for c in configs if c.model.activation == "qcfs"
                  and c.model.width == 1.0 and not c.train.distill and not c.finetune.timesteps}
    assert plain_qcfs == {(L, s) for L in (4, 8) for s in (3e-7, 5e-7, 1e-6)}  # L in {4, 8} x 3 synops strengths
    assert any(c.train.distill and not c.finetune.timesteps for c in configs)  # distillation alone
    assert {c.finetune.timesteps for c in configs} == {0, 6, 8}  # SNN fine-tuning at T = 6-8
    assert all(c.train.init_from == c.train.distill == "runs/fm_lowlat_teacher" or not c.train.distill
               for c in configs if c.model.width == 1.0)


def test_ray_path_without_ray_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from snnergy.errors import SnnergyError
    from snnergy.experiments.sweep import run_sweep

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    sweep = parse_sweep({"base": {"data": {"dataset": "synthetic-blobs"}, "model": {"name": "tiny-mlp"}}})
    with pytest.raises(SnnergyError, match=r"pip install 'snnergy\[ray\]'"):
        run_sweep(sweep, tmp_path, ray="local", report=False)


def test_report_profile_must_be_configured(tmp_path: Path) -> None:
    from snnergy.experiments.sweep import run_sweep

    sweep = parse_sweep({"base": {"profiles": ["loihi"]}}, "s.toml")
    with pytest.raises(ConfigError, match="report profile 'cmos45-fp32' is not among the configured profiles"):
        run_sweep(sweep, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_compare_builds_a_sweep_of_the_same_configurations() -> None:
    from dataclasses import replace

    from snnergy.config import DataConfig, SimulateConfig
    from snnergy.experiments.compare import COMPARE_LAYOUT, compare_sweep, default_grid

    base = ExperimentConfig(data=DataConfig(dataset="digits"), simulate=SimulateConfig(timesteps=(8, 32)), seed=3)
    grid = [("none", 0.0), *default_grid(["l1"]), ("hoyer", 0.01)]
    sweep = compare_sweep(base, grid)
    # exactly the configurations compare ran before it was a sweep: the base with each (regularizer, strength)
    assert sweep.configs == tuple(replace(base, train=replace(base.train, regularizer=n, strength=s)) for n, s in grid)
    assert sweep.layout == COMPARE_LAYOUT and sweep.source == "compare"
    assert [sweep.layout.run_folder(c) for c in sweep.configs] == ["none-0", "l1-0.03", "l1-0.1", "l1-0.15", "hoyer-0.01"]
    with pytest.raises(ConfigError, match="unknown regularizer 'l3'"):
        compare_sweep(base, [("l3", 0.1)])


def test_one_identity_for_configs_records_and_groups() -> None:
    import json

    from snnergy.experiments import result_record
    from snnergy.reporting.identity import SEED_KEYS, config_hash as identity_hash, record_hash

    a = ExperimentConfig(train=TrainConfig(regularizer="l1", strength=0.1))
    assert config_hash is identity_hash  # the sweep's identity is the one identity
    record = json.loads(json.dumps(result_record(a)))  # as read back from results.json or the store
    assert record_hash(record) == config_hash(a) == config_hash(config_to_dict(a))
    other_seed = json.loads(json.dumps(result_record(ExperimentConfig(train=a.train, seed=5))))
    assert record_hash(other_seed) != record_hash(record)
    assert record_hash(other_seed, SEED_KEYS) == record_hash(record, SEED_KEYS)


def test_layout_names_the_run_folders_and_the_report() -> None:
    from snnergy.experiments.grid import SweepLayout

    config = ExperimentConfig(train=TrainConfig(regularizer="l1", strength=0.1))
    assert SweepLayout().run_folder(config) == config_hash(config)[:12]
    assert SweepLayout(run_folders="label").run_folder(config) == "l1-0.1"
    with pytest.raises(ConfigError, match="run_folders must be one of id, label"):
        SweepLayout(run_folders="name")
    with pytest.raises(ConfigError, match="unknown report style 'fancy'"):
        SweepLayout(report="fancy")
    assert parse_sweep({}).to_dict()["layout"] == {"run_folders": "id", "report": "sweep", "failed_in_results": False}


def test_run_without_a_folder_keeps_nothing_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from snnergy.experiments.sweep import run_sweep

    monkeypatch.chdir(tmp_path)
    sweep = parse_sweep({"base": {"data": {"dataset": "synthetic-blobs"}, "model": {"name": "tiny-mlp"},
                                  "train": {"epochs": 1}, "simulate": {"timesteps": [4]}, "device": "cpu"},
                         "grid": {"seed": [0, 1]}})
    summary = run_sweep(sweep, None)
    assert (summary.finished, summary.out, summary.report) == (2, None, None)
    assert [r["config"]["seed"] for r in summary.records] == [0, 1]
    assert list(tmp_path.iterdir()) == []


def test_a_budget_too_small_fails_the_sweep_before_training(tmp_path: Path) -> None:
    # issue 15: the budget used to be checked only at simulation, after each training
    from snnergy.experiments.sweep import run_sweep

    sweep = parse_sweep({"base": {"data": {"dataset": "synthetic-blobs"}, "model": {"name": "tiny-mlp"},
                                  "train": {"epochs": 1}, "simulate": {"timesteps": [4], "max_memory": 1000}},
                         "grid": {"seed": [0, 1]}})
    with pytest.raises(ConfigError, match="checked before training"):
        run_sweep(sweep, tmp_path / "s", report=False)
    assert not (tmp_path / "s").exists()
