"""Peer comparisons (issue 8): collected by every ``pytest`` run, skipped where the peers are absent.

SpikingJelly, sinabs and NeuroBench are not snnergy dependencies; they live in the benchmark's
own environment (``bash benchmarks/peers/setup.sh``). There, run
``benchmarks/peers/.venv/bin/python -m pytest tests/peers -q``. Elsewhere every test here is
skipped by ``pytest.importorskip`` with the reason.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ADAPTERS = Path(__file__).resolve().parents[2] / "benchmarks" / "peers" / "peers.py"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "peers: compares with SpikingJelly, sinabs or NeuroBench "
                                       "(skipped where they are not installed)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.peers)


@pytest.fixture(scope="session")
def adapters() -> ModuleType:
    """benchmarks/peers/peers.py, imported by path under a name of its own."""
    name = "snnergy_peer_adapters"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ADAPTERS)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
