"""MkDocs hook of the snnergy site: pages generated from the code at build time, so they never drift.

- ``reference/cli.md``: the command-line reference, :func:`snnergy.cli.reference.cli_markdown`
  on the real argument parser;
- ``reference/api/<module>.md``: one mkdocstrings page (``::: snnergy.<module>``) per public
  top-level module or package of ``src/snnergy``, listed under the nav entry whose value is
  ``reference/api/`` (a new module gets its page and nav entry without editing anything).

The hook imports snnergy from this checkout's ``src`` (not whatever an editable install points to).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "snnergy"
API_DIR = "reference/api/"
SKIPPED = {"cli"}  # the command line has its own page, generated from the parser


def api_modules() -> list[str]:
    """Public top-level modules and packages of snnergy, sorted (``config``, ``conversion``, ...)."""
    names = [p.stem for p in PACKAGE.glob("*.py")] + [p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()]
    return sorted(n for n in names if not n.startswith("_") and n not in SKIPPED)


def _api_page(name: str) -> str:
    if name == "index":
        return ("# snnergy (the top-level API)\n\nWhat `import snnergy` exports: the pipeline's steps, "
                "the registries and the config classes. Lower levels live in their modules (left).\n\n::: snnergy\n")
    return f"# snnergy.{name}\n\n::: snnergy.{name}\n"


def _fill_api_nav(nav: list[Any]) -> bool:
    """Replaces the nav value ``reference/api/`` by one entry per module; True when found."""
    for i, item in enumerate(nav):
        if isinstance(item, dict):
            for title, value in item.items():
                if value == API_DIR:
                    item[title] = [{"snnergy": f"{API_DIR}index.md"}] + [
                        {f"snnergy.{m}": f"{API_DIR}{m}.md"} for m in api_modules()]
                    return True
                if isinstance(value, list) and _fill_api_nav(value):
                    return True
        elif item == API_DIR:
            nav[i] = {"API": f"{API_DIR}index.md"}
            return True
    return False


def on_config(config: Any, **kwargs: Any) -> Any:
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    if config.nav is not None:
        _fill_api_nav(config.nav)
    return config


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    from snnergy.cli.reference import cli_markdown

    files.append(File.generated(config, "reference/cli.md", content=cli_markdown()))
    for name in ["index", *api_modules()]:
        files.append(File.generated(config, f"{API_DIR}{name}.md", content=_api_page(name)))
    return files
