"""Griffe extension of the documentation build: reads snnergy's docstring conventions.

snnergy's Google-style docstrings (read by Napoleon-like tools and doctest) use forms that
Griffe's Google parser reads otherwise; this extension rewrites them when Griffe loads an object,
changing nothing in the package:

- ``Example:`` heads the doctests; Griffe takes the singular as an admonition and would render
  the doctest as Markdown, so it becomes ``Examples:`` (rendered as Python code);
- ``kernel_size, stride, padding: (h, w) pairs`` documents several parameters (or attributes) in
  one entry of an ``Args:`` / ``Attributes:`` section; it becomes one entry per name, each with the
  description, so Griffe finds every name in the signature;
- Sphinx roles (``:func:`~snnergy.counting.fanout_map```) would print as text: each becomes the
  name in code (``fanout_map``; ``~`` keeps the last component, as Sphinx shows it).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

HEADING = re.compile(r"^(\s*)Example:\s*$")
SECTION = re.compile(r"^(\s*)(Args|Arguments|Attributes|Parameters):\s*$")
GROUPED = re.compile(r"^(\s+)(\w+(?:,\s*\w+)+):\s(.*)$")
ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|data|attr|exc|obj|const):`(~?)([^`]+)`")


def _role(match: re.Match) -> str:
    return f"`{match[2].rsplit('.', 1)[-1] if match[1] else match[2]}`"


def rewrite(text: str) -> str:
    """The docstring with ``Example:`` headings renamed, grouped parameter entries split and
    Sphinx roles turned into code.

    Example:
        >>> print(rewrite("Args:\\n    a, b: Sizes.\\n\\nExample:\\n    The doctests."))
        Args:
            a: Sizes.
            b: Sizes.
        <BLANKLINE>
        Examples:
            The doctests.
        >>> rewrite("See :func:`~snnergy.counting.fanout_map` and :mod:`snnergy.counting.dnn`.")
        'See `fanout_map` and `snnergy.counting.dnn`.'
    """
    out: list[str] = []
    section_indent: int | None = None
    for line in text.split("\n"):
        if (match := HEADING.match(line)) is not None:
            out.append(f"{match[1]}Examples:")
            section_indent = None
            continue
        if (match := SECTION.match(line)) is not None:
            section_indent = len(match[1])
        elif line.strip() and section_indent is not None and len(line) - len(line.lstrip()) <= section_indent:
            section_indent = None  # a line at the header's indent ends the section
        grouped = GROUPED.match(line) if section_indent is not None else None
        if grouped is not None and len(grouped[1]) > section_indent:
            out += [f"{grouped[1]}{name.strip()}: {grouped[3]}" for name in grouped[2].split(",")]
        else:
            out.append(line)
    return ROLE.sub(_role, "\n".join(out))


class SnnergyConventions(griffe.Extension):
    """Applies :func:`rewrite` to every docstring Griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
