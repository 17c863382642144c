from __future__ import annotations

import math
from pathlib import Path

import pytest

from snnergy.config import (
    ExperimentConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)
from snnergy.errors import ConfigError
from snnergy.registry import Registry


def test_round_trip_through_dict() -> None:
    cfg = apply_overrides(ExperimentConfig(), {"train.layer_weights": "[1, 0.5]", "simulate.timesteps": "[4, 8]"})
    again = config_from_dict(ExperimentConfig, config_to_dict(cfg))
    assert again == cfg
    assert again.train.layer_weights == (1.0, 0.5)
    assert again.simulate.timesteps == (4, 8)


def test_load_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('seed = 3\n[train]\nregularizer = "hoyer"\nstrength = 1\n[data]\ndataset = "mnist"\n')
    cfg = load_config(path)
    assert (cfg.seed, cfg.train.regularizer, cfg.train.strength, cfg.data.dataset) == (3, "hoyer", 1.0, "mnist")


@pytest.mark.parametrize(
    "text,message",
    [
        ("[train]\nlr_rate = 1\n", "unknown config key 'train.lr_rate'"),
        ("[train]\nepochs = 'ten'\n", "config key 'train.epochs' expects an integer"),
        ("[trian]\nepochs = 1\n", "unknown config key 'trian'"),
        ("[train\n", "not a valid TOML file"),
        ("[train]\nepochs = 1.5\n", "expects an integer"),
        ("[train]\nstrength = nan\n", "expects a finite number"),
    ],
)
def test_bad_config_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_override_errors() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'train.lrr'"):
        apply_overrides(ExperimentConfig(), {"train.lrr": "1"})
    with pytest.raises(ConfigError, match="unknown config section 'tran'"):
        apply_overrides(ExperimentConfig(), {"tran.lr": "1"})
    with pytest.raises(ConfigError, match="expects a finite number"):
        apply_overrides(ExperimentConfig(), {"train.lr": "fast"})


def test_optional_fields_accept_none_and_values() -> None:
    assert config_from_dict(TrainConfig, {"layer_weights": None}).layer_weights is None
    cfg = apply_overrides(ExperimentConfig(), {"data.train_limit": "100", "profiles": '["loihi"]'})
    assert cfg.data.train_limit == 100 and cfg.profiles == ("loihi",)


def test_registry_rejects_duplicates_and_lists_names() -> None:
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(ConfigError, match="already registered"):
        reg.add("a", 2)
    with pytest.raises(ConfigError, match="unknown thing 'b'; known: a"):
        reg.get("b")
    assert "a" in reg and len(reg) == 1 and list(reg) == ["a"]


def test_timesteps_are_checked_and_sorted_once_by_the_config() -> None:
    from snnergy.config import SimulateConfig, check_timesteps, doubling_timesteps

    assert SimulateConfig(timesteps=[32, 4, 32]).timesteps == (4, 32)
    assert check_timesteps(range(1, 4)) == (1, 2, 3)
    assert doubling_timesteps(1) == (1,) and doubling_timesteps(16) == (1, 2, 4, 8, 16)
    for bad in ((), (0, 4), (True,), (2.0,), "8", None):
        with pytest.raises(ConfigError, match="simulate.timesteps must be a non-empty list of integers >= 1"):
            SimulateConfig(timesteps=bad)  # type: ignore[arg-type]
    for bad in (0, -3, True):
        with pytest.raises(ConfigError, match="simulate.timesteps must be >= 1"):
            doubling_timesteps(bad)


def test_max_memory_is_checked_by_the_config() -> None:
    from snnergy.config import SimulateConfig

    assert SimulateConfig(max_memory=2**20).max_memory == 2**20
    with pytest.raises(ConfigError, match="simulate.max_memory must be a positive number of bytes"):
        SimulateConfig(max_memory=0)


def test_inputs_and_resets_are_defined_once() -> None:
    import snnergy.config as config
    import snnergy.simulation as simulation
    from snnergy.simulation import neurons, simulator

    assert simulation.INPUTS is simulator.INPUTS is config.INPUTS
    assert simulation.RESETS is neurons.RESETS is config.RESETS
    assert simulation.check_timesteps is config.check_timesteps


def test_activation_names_are_the_activation_registry() -> None:
    from snnergy.config import ACTIVATION_NAMES
    from snnergy.structure import ACTIVATIONS

    assert ACTIVATION_NAMES == tuple(ACTIVATIONS.names())


def test_model_activation_options_are_checked() -> None:
    from snnergy.config import ModelConfig

    defaults = ModelConfig()
    assert (defaults.activation, defaults.levels, defaults.channelwise_threshold) == ("relu", 8, False)
    cfg = apply_overrides(ExperimentConfig(), {"model.activation": "qcfs", "model.levels": "4",
                                               "model.channelwise_threshold": "true"})
    assert (cfg.model.activation, cfg.model.levels, cfg.model.channelwise_threshold) == ("qcfs", 4, True)
    with pytest.raises(ConfigError, match="model.activation: unknown activation 'gelu'; allowed: relu, qcfs, clip"):
        ModelConfig(activation="gelu")
    for levels in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="model.levels must be an integer >= 1"):
            ModelConfig(levels=levels)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="model.channelwise_threshold must be true or false"):
        ModelConfig(channelwise_threshold=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="expects an integer"):
        apply_overrides(ExperimentConfig(), {"model.levels": "2.5"})


def test_init_from_is_a_folder_or_none() -> None:
    assert TrainConfig().init_from is None
    assert TrainConfig(init_from="runs/relu").init_from == "runs/relu"
    for bad in ("", "  ", 3):
        with pytest.raises(ConfigError, match="train.init_from must be a run folder"):
            TrainConfig(init_from=bad)  # type: ignore[arg-type]


def test_distillation_options_are_checked() -> None:
    cfg = TrainConfig()
    assert (cfg.distill, cfg.distill_temperature, cfg.distill_weight) == (None, 4.0, 0.5)
    assert TrainConfig(distill="runs/relu", distill_temperature=0.5, distill_weight=1.0).distill == "runs/relu"
    assert TrainConfig(distill_weight=0.0).distill_weight == 0.0  # both ends of [0, 1] are allowed
    for bad in ("", "  ", 3):
        with pytest.raises(ConfigError, match="train.distill must be a run folder"):
            TrainConfig(distill=bad)  # type: ignore[arg-type]
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ConfigError, match="train.distill_temperature must be a finite number > 0"):
            TrainConfig(distill_temperature=bad)
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ConfigError, match=r"train.distill_weight must be a number in \[0, 1\]"):
            TrainConfig(distill_weight=bad)
    assert apply_overrides(ExperimentConfig(), {"train.distill_temperature": "2"}).train.distill_temperature == 2.0

def test_finetune_section_defaults_to_no_fine_tuning_and_is_checked() -> None:
    from snnergy.config import FinetuneConfig

    cfg = ExperimentConfig()
    assert cfg.finetune == FinetuneConfig() and cfg.finetune.timesteps == 0  # today's results unchanged
    # a config saved before the section existed reads with its defaults
    old = {k: v for k, v in config_to_dict(cfg).items() if k != "finetune"}
    assert config_from_dict(ExperimentConfig, old) == cfg
    tuned = apply_overrides(cfg, {"finetune.timesteps": "8", "finetune.strength": "3e-7", "finetune.train_limit": "500"})
    assert (tuned.finetune.timesteps, tuned.finetune.strength, tuned.finetune.train_limit) == (8, 3e-7, 500)
    for key, value, message in [
        ("timesteps", -1, "finetune.timesteps must be an integer >= 0 (0: no fine-tuning)"),
        ("epochs", 0, "finetune.epochs must be an integer >= 1"),
        ("lr", 0.0, "finetune.lr must be a finite number > 0"),
        ("strength", -1e-7, "finetune.strength must be a finite number >= 0"),
        ("train_limit", 0, "finetune.train_limit must be at least 1 or None"),
        ("slope", 0.0, "finetune.slope must be a finite number > 0"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            FinetuneConfig(**{key: value})


def test_simulate_quantize_default_empty_and_normalized() -> None:
    from snnergy.config import SimulateConfig

    assert SimulateConfig().quantize == () and config_to_dict(ExperimentConfig())["simulate"]["quantize"] == []
    assert SimulateConfig(quantize=[4, 8, 4]).quantize == (8, 4)  # unique, widest first
    assert apply_overrides(ExperimentConfig(), {"simulate.quantize": "[8, 4]"}).simulate.quantize == (8, 4)


@pytest.mark.parametrize("overrides, message", [
    ({"simulate.quantize": "[8, 1]"}, "simulate.quantize must be a list of weight widths, integers in [2, 16]"),
    ({"simulate.quantize": "[8, 17]"}, "simulate.quantize must be a list of weight widths, integers in [2, 16]"),
    ({"simulate.quantize": "8"}, "config key 'simulate.quantize' expects a list"),
    ({"simulate.quantize": "[8, true]"}, "config key 'simulate.quantize[1]' expects an integer"),
    ({"simulate.quantise": "[8]"}, "unknown config key 'simulate.quantise'"),
    ({"simulate.quantize": "[8]", "convert.weight_bits": "8"}, "convert.weight_bits = 8 already quantizes it"),
])
def test_simulate_quantize_bad_values_are_one_clear_error(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        apply_overrides(ExperimentConfig(), overrides)
