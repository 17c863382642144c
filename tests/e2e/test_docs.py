"""The documentation site: it builds in strict mode, and every code block of its tutorials runs.

Pages whose blocks run (:data:`RUN_PAGES`): getting started, the concepts and the tutorials, each
in a fresh folder, its blocks in order. A block's language says what the runner does with it:

- ``python``: executed, in one namespace per page (later blocks see earlier names);
- ``python title="F"`` / ``toml title="F"``: written to the file ``F`` (a model file, a sweep file);
- ``bash``: every command (``\\`` continues a line, ``#`` starts a comment) is a ``snnergy``
  command, run in this process through :func:`snnergy.cli.main`, and must exit with 0;
- ``text``: output or a listing, not run; ``shell``: set-up commands (``make``, ``pip``), only on
  the getting-started page, not run (they install the environment these tests run in).

Any other language fails the test, so no block is skipped unnoticed. Nothing downloads: the
Fashion-MNIST tutorial reads a small synthetic IDX set through ``$SNNERGY_DATA``.
"""

from __future__ import annotations

import gzip
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUN_PAGES = [DOCS / "getting-started.md", *sorted(DOCS.glob("concepts/*.md")), *sorted(DOCS.glob("tutorials/*.md"))]
FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
TITLE = re.compile(r'title="([^"]+)"')


def blocks(page: Path) -> list[tuple[str, str | None, str]]:
    """``(language, title or None, body)`` of every fenced block of ``page``, in order."""
    return [(m["lang"], (TITLE.search(m["attrs"]) or [None, None])[1], m["body"])
            for m in FENCE.finditer(page.read_text())]


def commands(body: str) -> list[list[str]]:
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped.

    Example: ``"snnergy a \\\\\\n  --b 1  # c\\n"`` gives ``[["snnergy", "a", "--b", "1"]]``.
    """
    return [argv for line in body.replace("\\\n", " ").splitlines() if (argv := shlex.split(line, comments=True))]


def test_commands_joins_continuations_and_drops_comments() -> None:
    assert commands("snnergy a \\\n   --b 1   # c\n\n# only a comment\nsnnergy d\n") == [
        ["snnergy", "a", "--b", "1"], ["snnergy", "d"]]


def write_fashion_idx(folder: Path, n_train: int = 600, n_test: int = 200) -> None:
    """A small learnable Fashion-MNIST stand-in: 28x28 uint8 images, class k a bright 7x7 patch at
    one of 10 positions plus noise, as the four gzipped IDX files (magic 0x0803 / 0x0801)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for i, k in enumerate(labels):
            r, c = 2 + 7 * (k // 4), 2 + 6 * (k % 4)
            images[i, r : r + 7, c : c + 7] = 220
        for kind, array, magic in (("images-idx3", images, 3), ("labels-idx1", labels, 1)):
            header = bytes([0, 0, 8, magic]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
            (folder / f"{split}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + array.tobytes()))


def registries() -> dict[str, object]:
    import snnergy
    from snnergy.structure import ACTIVATIONS

    return {"regularizers": snnergy.REGULARIZERS, "profiles": snnergy.ENERGY_PROFILES, "activations": ACTIVATIONS,
            "models": snnergy.MODELS, "datasets": snnergy.DATASETS}


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_code_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from snnergy.cli import main

    found = blocks(page)
    assert found, f"{page.name} has no code block"
    if page.name == "ray-sweeps.md":
        pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'snnergy[ray]')")
    write_fashion_idx(tmp_path / "data" / "fashion-mnist")
    monkeypatch.setenv("SNNERGY_DATA", str(tmp_path / "data"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    before = {name: set(r.names()) for name, r in registries().items()}
    modules = set(sys.modules)
    namespace: dict = {"__name__": "__docs__"}
    try:
        for i, (lang, title, body) in enumerate(found):
            where = f"{page.relative_to(ROOT)} block {i + 1} ({lang})"
            if title is not None:
                assert lang in ("python", "toml"), f"{where}: only python and toml blocks name a file"
                (work / title).write_text(body)
            elif lang == "python":
                exec(compile(body, where, "exec"), namespace)  # noqa: S102 - our own documentation
            elif lang == "bash":
                for argv in commands(body):
                    assert argv[0] == "snnergy", f"{where}: '{shlex.join(argv)}' is not a snnergy command"
                    assert main(argv[1:]) == 0, f"{where}: '{shlex.join(argv)}' failed"
            elif lang == "shell":
                assert page.name == "getting-started.md", f"{where}: shell (set-up) blocks belong on getting started"
            else:
                assert lang == "text", f"{where}: unknown block language '{lang}' (python, bash, toml, text)"
    finally:
        for name, registry in registries().items():
            for added in set(registry.names()) - before[name]:
                registry.remove(added)
        for name in set(sys.modules) - modules:
            if getattr(sys.modules[name], "__file__", None) and str(work) in str(sys.modules[name].__file__):
                del sys.modules[name]


def test_only_the_run_pages_hold_runnable_code() -> None:
    # a python or bash block anywhere else in the site would be documentation nobody runs
    others = [p for p in DOCS.glob("*.md") if p not in RUN_PAGES and p.name not in ("design.md", "benchmarks.md")]
    for page in others:
        langs = {lang for lang, _, _ in blocks(page)}
        assert not langs & {"python", "bash"}, f"{page.relative_to(ROOT)}: runnable blocks belong on a tutorial page"


def test_docstring_rewrite_of_the_build() -> None:
    # docs/hooks/ is outside the doctest paths: run its doctests here
    import doctest
    import importlib.util

    spec = importlib.util.spec_from_file_location("griffe_conventions", DOCS / "hooks" / "griffe_conventions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
    # by hand: a continuation line of a description and a line outside the section stay as they are
    text = "Args:\n    a, b: Pairs.\n        more text, here: kept\nReturns:\n    x, y: kept too"
    assert module.rewrite(text) == ("Args:\n    a: Pairs.\n    b: Pairs.\n        more text, here: kept\n"
                                    "Returns:\n    x, y: kept too")


def test_site_builds_strictly(tmp_path: Path) -> None:
    from snnergy.cli import build_parser
    from snnergy.cli.reference import subcommands

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                           "--site-dir", str(site)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "WARNING" not in log, log
    cli = (site / "reference" / "cli" / "index.html").read_text()
    for name in subcommands(build_parser()):  # the generated CLI page has every command
        assert f"snnergy {name}</code>" in cli, name
    api = (site / "reference" / "api" / "counting" / "index.html").read_text()
    assert "fanout_map" in api and "How many MACs each input element" in api  # from the docstring
    for page in RUN_PAGES:
        rel = page.relative_to(DOCS).with_suffix("")
        assert (site / rel / "index.html").is_file(), rel
    assert (site / "results" / "digits-lenet" / "report" / "index.html").is_file()
