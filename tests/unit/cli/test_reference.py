"""The CLI reference page is generated from the real parser and config classes."""

from __future__ import annotations

import argparse

from snnergy.cli import build_parser
from snnergy.cli.reference import cli_markdown, config_keys, subcommands
from snnergy.config import DataConfig


def test_every_command_and_option_of_the_parser_is_on_the_page() -> None:
    parser = build_parser()
    page = cli_markdown(parser)
    commands = subcommands(parser)
    assert "compare" in commands and "profiles" in commands
    for name, sub in commands.items():
        assert f"## `snnergy {name}`" in page
        assert f"](#snnergy-{name})" in page  # the command table links to its section
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in page, f"{name} {flag}"


def test_a_small_parser_renders_row_by_row() -> None:
    parser = argparse.ArgumentParser(prog="tool")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", description="run it", epilog="examples:\n  tool run --out x")
    run.add_argument("folder", help="where")
    run.add_argument("--out", required=True, help="output | file")
    run.add_argument("--quiet", action="store_true", help="no bars")
    run.add_argument("--epochs", dest="train.epochs", type=int, default=3, help="epochs")
    run.add_argument("--reset", choices=("a", "b"), default="a", help="how")
    page = cli_markdown(parser)
    # by hand: a positional by name, required; a required option; flag without metavar or default;
    # a dotted destination says the config key it sets; the pipe of the help text escaped
    assert "| `folder` | required | where |" in page
    assert "| `--out OUT` | required | output \\| file |" in page
    assert "| `--quiet` |  | no bars |" in page
    assert "| `--epochs EPOCHS` | `3` | epochs (sets `train.epochs`) |" in page
    assert "| `--reset RESET` | `a` | how (one of a, b) |" in page
    assert "```text\nexamples:\n  tool run --out x\n```" in page
    assert "## `tool run`" in page and "| [`run`](#tool-run) | run it |" in page


def test_config_keys_of_one_section_by_hand() -> None:
    # DataConfig's six fields and their defaults, in declaration order
    assert config_keys(DataConfig(), "data.") == [
        ("data.dataset", "str", "digits"),
        ("data.data_dir", "str | None", None),
        ("data.batch_size", "int", 64),
        ("data.calibration_size", "int", 512),
        ("data.train_limit", "int | None", None),
        ("data.test_limit", "int | None", None),
    ]


def test_config_keys_cover_every_section() -> None:
    sections = {key.split(".")[0] for key, _, _ in config_keys() if "." in key}
    assert sections == {"data", "model", "train", "convert", "simulate", "finetune"}
    assert {"seed", "device", "profiles"} <= {key for key, _, _ in config_keys()}
