"""Shared by the simulation tests: the compiled kernels, built or skipped with the reason."""

from __future__ import annotations

import pytest

from snnergy.simulation import kernels


@pytest.fixture
def kernels_built(native_buildable: None) -> None:
    """Builds the compiled kernels (as the first simulation does), or skips the test with the
    reason when they cannot exist here (switched off, no C compiler). With a compiler they must build."""
    assert kernels.prepare(), f"the compiled kernels must build here: {kernels.unavailable_reason()}"
