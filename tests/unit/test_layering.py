"""Data flows one way: each module imports only the modules STYLE.md section 2 allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "snnergy"
# Utilities every module may use: they import nothing of ours but errors.
UTILITIES = {"errors", "_version", "checkpoints", "registry", "records", "config"}
ALLOWED = {
    "errors": set(),
    "_version": set(),
    "registry": {"errors"},
    "records": set(),
    "config": {"errors"},
    "checkpoints": {"errors"},
    "data": UTILITIES,
    "models": UTILITIES,
    # data: the one batch iterator (snnergy.data.batches); data imports only utilities
    "simulation": UTILITIES | {"data"},
    "activity": UTILITIES,
    # the one definition of a layer's scale, shared by conversion and the energy-aware penalties
    "normalization": UTILITIES,
    "counting": UTILITIES,
    # the energy-aware penalties use counting's exact fan-outs (the code SynOps and effective MACs
    # are counted with) and energy's profiles; both import only records, registry and errors, so
    # data still flows one way
    "regularizers": UTILITIES | {"counting", "energy", "normalization"},
    "energy": UTILITIES,
    "train_state": UTILITIES,
    "training": UTILITIES | {"data", "models", "activity", "regularizers", "train_state"},
    "conversion": UTILITIES | {"data", "models", "simulation", "normalization"},
    "reporting": UTILITIES,
    # user model files in, NIR out: reads and writes the converted network's classes
    "interop": UTILITIES | {"simulation"},
    "cli": UTILITIES | {"experiments", "reporting"},
}


def our_imports(path: Path) -> set[str]:
    """Top-level snnergy modules imported by ``path`` (``snnergy.x.y`` -> ``x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("snnergy."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("snnergy."))
    return found


def module_files() -> list[tuple[str, Path]]:
    files = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        top = rel.parts[0].removesuffix(".py")
        if top not in ("__init__", "__main__"):
            files.append((top, path))
    return files


@pytest.mark.parametrize("top,path", module_files(), ids=lambda v: str(v))
def test_imports_follow_the_pipeline(top: str, path: Path) -> None:
    if top == "experiments":
        return  # experiments may import any stage
    assert top in ALLOWED, f"{top} is not in the layering table; add it"
    illegal = our_imports(path) - ALLOWED[top] - {top}
    assert not illegal, f"{path.name} imports {sorted(illegal)}, which {top} may not import"
