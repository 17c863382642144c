"""Shared by the simulation tests: the compiled kernels, built or skipped with the reason."""

from __future__ import annotations

import os

import pytest

from snnergy.simulation import kernels


@pytest.fixture
def kernels_built() -> None:
    """Builds the compiled kernels (as the first simulation does), or skips the test with the
    reason when they cannot exist here (switched off, no C compiler). With a compiler they must build."""
    if kernels.setting() == "off":
        pytest.skip(f"the compiled kernels are switched off ({kernels.SWITCH}=off)")
    if kernels.compiler() is None:
        pytest.skip(f"no C compiler '{os.environ.get('CC') or 'cc'}' on PATH: the compiled kernels cannot be built")
    assert kernels.prepare(), f"the compiled kernels must build here: {kernels.unavailable_reason()}"
