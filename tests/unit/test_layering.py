"""Data flows one way: each module imports only the modules STYLE.md section 2 allows, no file
imports another file's private names, and the files' imports have no cycle."""

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
    # the network plan: one traced description of a model that every stage reads
    "structure": UTILITIES | {"layers", "pooling"},
    # trained-threshold activations (QCFS, trained clip): torch modules, and theta's start from
    # the converter's percentile definition (normalization imports only errors)
    "layers": UTILITIES | {"normalization", "threshold_kernels"},
    "threshold_kernels": UTILITIES | {"native"},
    # the registry models build their activations with layers' one factory
    "models": UTILITIES | {"structure", "layers", "pooling"},
    "pooling": UTILITIES | {"native"},
    # data: the one batch iterator (snnergy.data.batches); data imports only utilities
    # pooling: the one definition of a plain average-pooling window (pooling.compiled_window)
    "simulation": UTILITIES | {"data", "structure", "native", "pooling"},
    "activity": UTILITIES | {"structure"},
    # the one definition of a layer's scale, shared by conversion and the energy-aware penalties
    "normalization": UTILITIES,
    # building the C sources of the simulator's and the fused penalties' kernels (compiler, cache)
    "native": UTILITIES,
    "counting": UTILITIES | {"structure"},
    # the energy-aware penalties use counting's exact fan-outs (the code SynOps and effective MACs
    # are counted with) and energy's profiles; both import only records, registry and errors, so
    # data still flows one way
    # threshold_kernels: the term a fused penalty hands to a compiled activation's backward pass
    # (threshold_kernels.PenaltyTerm); it imports only native
    "regularizers": UTILITIES | {"counting", "energy", "normalization", "structure", "native", "threshold_kernels"},
    "energy": UTILITIES,
    "train_state": UTILITIES,
    # knowledge distillation's loss: a pure function of logits, which training adds to its loss
    "distillation": UTILITIES,
    "training": UTILITIES | {"data", "models", "layers", "activity", "regularizers", "train_state", "distillation"},
    "conversion": UTILITIES | {"data", "structure", "simulation", "normalization"},
    # SNN-in-the-loop fine-tuning: an unrolled copy of the simulation's network, its SynOps with
    # counting's exact fan-out
    "finetuning": UTILITIES | {"structure", "simulation", "counting"},
    "reporting": UTILITIES,
    # core-mapping estimates: chip limits and the partitioning of the network plan's stages
    "hardware": UTILITIES | {"structure"},
    # user model files in, NIR out: reads and writes the converted network's classes
    "interop": UTILITIES | {"simulation"},
    "cli": UTILITIES | {"experiments", "reporting"},
    # one run end to end: glue over every stage
    "experiments": UTILITIES | {"data", "structure", "normalization", "models", "simulation", "activity", "counting", "regularizers",
                                "energy", "train_state", "training", "conversion", "finetuning", "reporting", "interop",
                                "hardware"},
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
    assert top in ALLOWED, f"{top} is not in the layering table; add it"
    illegal = our_imports(path) - ALLOWED[top] - {top}
    assert not illegal, f"{path.name} imports {sorted(illegal)}, which {top} may not import"


def module_of(path: Path) -> str:
    """``snnergy.a.b`` for ``a/b.py`` and ``a/b/__init__.py``."""
    parts = ("snnergy", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_of(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path) -> list[tuple[str, str | None]]:
    """``(module, name)`` of every snnergy import in ``path`` (``name`` None for ``import m``)."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("snnergy"):
            found += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("snnergy")]
    return found


def edges(path: Path) -> set[str]:
    """The modules of ours that ``path`` imports (a submodule when a name is one)."""
    out = set()
    for module, name in imported(path):
        out.add(f"{module}.{name}" if name and f"{module}.{name}" in MODULES else module)
    return out & set(MODULES)


@pytest.mark.parametrize("path", sorted(MODULES.values()), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_file_imports_another_files_private_names(path: Path) -> None:
    private = sorted(f"{m}.{n}" for m, n in imported(path)
                     if n and n.startswith("_") and not n.startswith("__") and MODULES.get(m) != path)
    assert not private, f"{path.relative_to(PACKAGE)} imports private names {private}: make them public or move them"


def test_no_import_cycles_between_files() -> None:
    graph = {m: edges(p) - {m} for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


TESTS = Path(__file__).resolve().parent
# Suites of the whole package rather than of one module.
CROSS_CUTTING = {"api_calls", "bad_inputs", "gpu", "layering"}


@pytest.mark.parametrize("path", sorted(TESTS.rglob("test_*.py")), ids=lambda p: str(p.relative_to(TESTS)))
def test_unit_tests_mirror_the_source_tree(path: Path) -> None:
    # tests/unit/<package>/test_<module>.py: the folder is a package of src/snnergy, and the file
    # names one of its modules (or modules, e.g. test_nir for nir_export/nir_import) or an entry
    # point its __init__ exports; top-level files name a top-level module or a cross-cutting suite
    name = path.stem.removeprefix("test_")
    folder = path.parent.relative_to(TESTS)
    if folder == Path("."):
        assert (PACKAGE / f"{name}.py").is_file() or name in CROSS_CUTTING, f"{path.name}: no module snnergy.{name}"
        return
    package = PACKAGE / folder
    assert (package / "__init__.py").is_file(), f"tests/unit/{folder}: no package snnergy.{folder}"
    modules = [p.stem for p in package.glob("*.py")]
    exported = (package / "__init__.py").read_text()
    assert any(m.startswith(name) for m in modules) or f'"{name}"' in exported, \
        f"{path.relative_to(TESTS)}: names no module or entry point of snnergy.{str(folder).replace('/', '.')}"
