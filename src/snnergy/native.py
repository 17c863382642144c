"""Building snnergy's C sources: compiled once per machine with the system's C compiler, cached,
loaded through :mod:`ctypes`; nothing is downloaded.

Two packages keep CPU kernels in C: the simulator (:mod:`snnergy.simulation.kernels`: the IF
scan and event-driven currents) and the fused penalties (:mod:`snnergy.regularizers.compiled`:
per-sample statistics and gradients of the activation maps). This module is what they share, so
that neither imports the other: the compiler (``$CC``, else ``cc``), the cache folder, the
content hash in the library's file name and the one switch, ``$SNNERGY_KERNELS``
(:func:`setting`: ``auto``, ``off`` or ``require``), which both packages obey.

Cache folder: ``$SNNERGY_CACHE_DIR``, else ``$XDG_CACHE_HOME/snnergy``, else ``~/.cache/snnergy``;
a library's file name carries a hash of its source, the flags, the compiler's version and the
CPU's feature flags (the code is built for the host CPU with ``-march=native``).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from snnergy.config import env_setting

#: The environment variable that switches the compiled kernels, and its values (the first is the default).
SWITCH = "SNNERGY_KERNELS"
SETTINGS = ("auto", "off", "require")

#: Flags every library is built with: optimized for the host, no fused multiply-adds, no fast-math
#: (``-fno-trapping-math`` only lets the compiler vectorize comparisons; it changes no value).
FLAGS = ("-O3", "-march=native", "-std=c11", "-ffp-contract=off", "-fno-fast-math", "-fno-trapping-math",
         "-shared", "-fPIC")
#: Tried first; a compiler without OpenMP builds without it (one thread).
OPENMP = ("-fopenmp",)


def setting() -> str:
    """The value of ``$SNNERGY_KERNELS``: ``"auto"`` (also when unset or empty), ``"off"`` or ``"require"``.

    Raises:
        ConfigError: Any other value.

    Example:
        >>> os.environ.get(SWITCH, "") in ("", *SETTINGS) and setting() in SETTINGS
        True
    """
    return env_setting(SWITCH, SETTINGS)


def compiler() -> str | None:
    """The C compiler (``$CC``, else ``cc``) as found on ``PATH``, or ``None``."""
    return shutil.which(os.environ.get("CC") or "cc")


def cache_dir() -> Path:
    """Where built libraries are kept (module docstring)."""
    if os.environ.get("SNNERGY_CACHE_DIR"):
        return Path(os.environ["SNNERGY_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "snnergy"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def build(stem: str, source: str, message: str, flags: Sequence[str] = FLAGS,
          optional: Sequence[str] = OPENMP) -> Path:
    """The shared library of ``source``, built once per machine into :func:`cache_dir`.

    Args:
        stem: The library's file name before the hash, e.g. ``"snnergy_kernels"``.
        source: The C source.
        message: Printed on stderr before a build that is not cached yet.
        flags: Compiler flags.
        optional: Flags tried first and left out if the compiler refuses them (OpenMP).

    Returns:
        The library's path (an existing one when cached).

    Raises:
        RuntimeError: No compiler, or the compiler's error (its first 500 characters).
    """
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise RuntimeError(f"no C compiler '{cc}' on PATH (set $CC)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    key = hashlib.sha256("\0".join([source, *flags, *optional, version, _cpu_flags(),
                                    platform.machine()]).encode()).hexdigest()[:16]
    target = cache_dir() / f"{stem}_{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(message, file=sys.stderr, flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        path = Path(tmp) / f"{stem}.c"
        path.write_text(source)
        built = Path(tmp) / target.name
        for extra in (list(optional), []):
            run = subprocess.run([cc, *flags, *extra, str(path), "-o", str(built)],
                                 capture_output=True, text=True, timeout=300, check=False)
            if run.returncode == 0:
                break
        else:
            raise RuntimeError(f"compiling {stem} with '{cc}' failed: {run.stderr.strip()[:500]}")
        os.replace(built, target)  # atomic: concurrent builders leave one complete file
    print(f"snnergy: compiled {stem} in {time.perf_counter() - start:.1f} s into {target.parent}",
          file=sys.stderr, flush=True)
    return target
