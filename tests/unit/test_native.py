"""Building C sources (snnergy.native): the switch, the cache folder, one build per source,
cached across calls, and one clear error without a compiler."""

from __future__ import annotations

import ctypes
import os
import shutil
from pathlib import Path

import pytest

from snnergy import native
from snnergy.errors import ConfigError

SOURCE = "int twice(int x) { return 2 * x; }\n"


def test_the_switch_takes_three_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in (("", "auto"), ("OFF", "off"), (" require ", "require")):
        monkeypatch.setenv(native.SWITCH, value)
        assert native.setting() == expected
    monkeypatch.setenv(native.SWITCH, "sometimes")
    with pytest.raises(ConfigError, match="SNNERGY_KERNELS"):
        native.setting()


def test_the_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SNNERGY_CACHE_DIR", str(tmp_path / "a"))
    assert native.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("SNNERGY_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert native.cache_dir() == tmp_path / "xdg" / "snnergy"


def test_a_source_builds_once_then_loads_from_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    if native.compiler() is None:
        pytest.skip(f"no C compiler '{os.environ.get('CC') or 'cc'}' on PATH: the test source cannot be built")
    monkeypatch.setenv("SNNERGY_CACHE_DIR", str(tmp_path))
    first = native.build("snnergy_test", SOURCE, "building the test source")
    assert "building the test source" in capsys.readouterr().err
    second = native.build("snnergy_test", SOURCE, "building the test source")
    assert second == first and first.parent == tmp_path and "building" not in capsys.readouterr().err
    assert ctypes.CDLL(str(first)).twice(21) == 42
    assert native.build("snnergy_test", SOURCE + "\n", "again") != first  # another source, another file


def test_no_compiler_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SNNERGY_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler-snnergy")
    assert shutil.which("no-such-compiler-snnergy") is None and native.compiler() is None
    with pytest.raises(RuntimeError, match="no C compiler 'no-such-compiler-snnergy'"):
        native.build("snnergy_test", SOURCE, "never printed")


def _library() -> native.Library:
    return native.Library("snnergy_test_lib", SOURCE, "building the test library", ctypes.CDLL, "the test kernels",
                          "the reference", "the first test call builds them")


def test_a_library_is_built_at_its_first_prepare_then_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if native.compiler() is None:
        pytest.skip(f"no C compiler '{os.environ.get('CC') or 'cc'}' on PATH: the test library cannot be built")
    monkeypatch.setenv("SNNERGY_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(native.SWITCH, "auto")
    library = _library()
    assert not library.available() and library.unavailable_reason() == "not built yet (the first test call builds them)"
    assert library.prepare() and library.available() and library.unavailable_reason() is None
    assert library.loaded().twice(4) == 8 and library.loaded() is library.loaded()
    monkeypatch.setenv(native.SWITCH, "off")  # switched off: never used, says why
    assert not library.prepare() and not library.available() and library.unavailable_reason() == "SNNERGY_KERNELS=off"


def test_a_library_without_a_compiler_falls_back_or_raises_under_require(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    monkeypatch.setenv("SNNERGY_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler-snnergy")
    monkeypatch.setenv(native.SWITCH, "auto")
    library = _library()
    assert not library.prepare()  # auto: the fallback runs, and the reason is kept
    assert library.unavailable_reason() == "no C compiler 'no-such-compiler-snnergy' on PATH (set $CC)"
    with pytest.raises(RuntimeError, match="the test kernels are unavailable: no C compiler"):
        library.loaded()
    monkeypatch.setenv(native.SWITCH, "require")
    with pytest.raises(ConfigError, match="SNNERGY_KERNELS=require, but the test kernels cannot be built: no C compiler "
                                          "'no-such-compiler-snnergy'.*fall back to the reference"):
        library.prepare()
