"""The command-line reference as Markdown, generated from the real parser and config classes.

The documentation site builds its CLI page from :func:`cli_markdown` at build time (the hook in
``docs/hooks/snnergy_docs.py``), so the page lists exactly the commands and options that
:func:`snnergy.cli.parser.build_parser` defines and every config key a dotted override can set.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from snnergy.config import ExperimentConfig

from snnergy.cli.parser import build_parser

__all__ = ["cli_markdown", "config_keys", "subcommands"]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers of ``parser``, by name, in the order they were added.

    Example:
        >>> list(subcommands(build_parser()))[:3]
        ['train', 'compare', 'convert']
    """
    for action in parser._actions:  # argparse keeps its actions in this attribute only
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def config_keys(config: Any = None, prefix: str = "") -> list[tuple[str, str, Any]]:
    """Every config field as ``(dotted key, type, default)``, walking nested config sections.

    Args:
        config: A config dataclass instance (default: ``ExperimentConfig()``).
        prefix: Dotted prefix of ``config``'s fields.

    Example:
        >>> [k for k in config_keys() if k[0] == "train.epochs"]
        [('train.epochs', 'int', 30)]
    """
    config = ExperimentConfig() if config is None else config
    keys: list[tuple[str, str, Any]] = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            keys += config_keys(value, f"{prefix}{field.name}.")
        else:
            kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
            keys.append((f"{prefix}{field.name}", kind, value))
    return keys


def _cell(text: object) -> str:
    """Markdown table cell: pipes escaped, newlines folded.

    Example:
        >>> _cell("a|b\\nc")
        'a\\\\|b c'
    """
    return " ".join(str(text).split()).replace("|", "\\|")


def _flags(action: argparse.Action) -> str:
    """``--out OUT`` or ``run`` for an argument."""
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    if action.nargs == 0:
        return ", ".join(f"`{s}`" for s in action.option_strings)
    metavar = action.metavar or action.dest.split(".")[-1].upper()
    return ", ".join(f"`{s} {metavar}`" for s in action.option_strings)


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.default in (None, False, argparse.SUPPRESS) or action.nargs == 0:
        return ""
    return f"`{action.default}`"


def _command_section(prog: str, name: str, sub: argparse.ArgumentParser) -> list[str]:
    lines = [f"## `{prog} {name}`", "", _cell(sub.description or ""), "", "```text",
             sub.format_usage().strip(), "```", ""]
    rows = [a for a in sub._actions if not isinstance(a, argparse._HelpAction)]
    if rows:
        lines += ["| argument | default | meaning |", "| --- | --- | --- |"]
        for action in rows:
            sets = f" (sets `{action.dest}`)" if "." in action.dest else ""
            choices = f" (one of {', '.join(map(str, action.choices))})" if action.choices else ""
            lines.append(f"| {_flags(action)} | {_default(action)} | {_cell(action.help or '')}{choices}{sets} |")
        lines.append("")
    if sub.epilog:
        lines += ["```text", sub.epilog.strip("\n"), "```", ""]
    return lines


def cli_markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """The CLI reference page: every subcommand's usage, arguments, defaults and examples, then
    every config key that ``--section.key VALUE`` overrides.

    Args:
        parser: The parser to document (default: :func:`~snnergy.cli.parser.build_parser`).

    Returns:
        A Markdown page.

    Example:
        >>> page = cli_markdown()
        >>> page.startswith("# Command line reference") and "## `snnergy compare`" in page
        True
        >>> "| `train.epochs` | int | `30` |" in page
        True
    """
    parser = parser or build_parser()
    commands = subcommands(parser)
    lines = [
        "# Command line reference",
        "",
        "Generated from the `snnergy` argument parser when the site is built "
        "(`snnergy.cli.reference.cli_markdown`), so it lists exactly what the installed version accepts. "
        "Every command also has `--help`. Bad input prints one `snnergy: error: ...` line and exits with "
        "code 2; SIGINT, SIGTERM and SIGHUP stop a command cleanly (exit code 128 + the signal) and the "
        "same command resumes.",
        "",
        "```text",
        parser.format_usage().strip(),
        "```",
        "",
        "| command | what it does |",
        "| --- | --- |",
    ]
    lines += [f"| [`{name}`](#{parser.prog}-{name}) | {_cell(sub.description or '')} |" for name, sub in commands.items()]
    lines.append("")
    for name, sub in commands.items():
        lines += _command_section(parser.prog, name, sub)
    lines += [
        "## Config keys (dotted overrides)",
        "",
        "`train`, `compare`, `convert`, `simulate` and `finetune` take any config field by dotted path "
        "after their named options (`snnergy train --train.weight_decay 1e-4 --data.batch_size 128`); "
        "the same keys are the tables of a `--config` TOML file and the `[base]` and `[grid]` keys of a "
        "sweep file. Named options override the config file and dotted overrides override both.",
        "",
        "| key | type | default |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{key}` | {_cell(kind)} | `{default!r}` |" for key, kind, default in config_keys()]
    return "\n".join(lines) + "\n"
