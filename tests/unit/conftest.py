"""Shared by the unit tests of the compiled kernels: a C compiler and the switch allowing a build,
or the test skipped with the reason."""

from __future__ import annotations

import os

import pytest

from snnergy import native


@pytest.fixture
def native_buildable() -> None:
    """Skips the test with the reason when no compiled kernels can exist here (switched off, no C
    compiler); with a compiler and the switch on, the test then asserts that its kernels build."""
    if native.setting() == "off":
        pytest.skip(f"the compiled kernels are switched off ({native.SWITCH}=off)")
    if native.compiler() is None:
        pytest.skip(f"no C compiler '{os.environ.get('CC') or 'cc'}' on PATH: the compiled kernels cannot be built")
