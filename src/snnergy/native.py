"""Building snnergy's C sources: compiled once per machine with the system's C compiler, cached,
loaded through :mod:`ctypes`; nothing is downloaded.

Four places keep CPU kernels in C: the simulator (:mod:`snnergy.simulation.kernels`: the IF
scan and event-driven currents), the fused penalties (:mod:`snnergy.regularizers.compiled`:
per-sample statistics and gradients of the activation maps), the average pooling
(:mod:`snnergy.pooling`) and the trained-threshold activations
(:mod:`snnergy.threshold_kernels`). This module is what they share, so that none imports
another: the compiler (``$CC``, else ``cc``), the cache folder, the content hash in the library's
file name and the one switch, ``$SNNERGY_KERNELS`` (:func:`setting`: ``auto``, ``off`` or
``require``), which all four obey.

Cache folder: ``$SNNERGY_CACHE_DIR``, else ``$XDG_CACHE_HOME/snnergy``, else ``~/.cache/snnergy``;
a library's file name carries a hash of its source, the flags, the compiler's version and the
CPU's feature flags (the code is built for the host CPU with ``-march=native``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from snnergy.config import env_setting
from snnergy.errors import ConfigError

#: The environment variable that switches the compiled kernels, and its values (the first is the default).
SWITCH = "SNNERGY_KERNELS"
SETTINGS = ("auto", "off", "require")

#: Flags every library is built with: optimized for the host, no fused multiply-adds, no fast-math
#: (``-fno-trapping-math`` only lets the compiler vectorize comparisons; it changes no value).
FLAGS = ("-O3", "-march=native", "-std=c11", "-ffp-contract=off", "-fno-fast-math", "-fno-trapping-math",
         "-shared", "-fPIC")
#: Tried first; a compiler without OpenMP builds without it (one thread).
OPENMP = ("-fopenmp",)


#: The C prelude of the vector kernels: headers and eight lanes of each type (GCC/Clang vector
#: extensions: any target, split where narrower), ``W`` the lane count.
VECTORS = r"""
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <stdlib.h>

typedef float vf __attribute__((vector_size(32)));
typedef int32_t vfi __attribute__((vector_size(32)));
typedef double vd __attribute__((vector_size(64)));
typedef int64_t vdi __attribute__((vector_size(64)));
#define W 8
"""

#: ctypes' pointer, int64 and int: the kernels' argument types.
POINTER, INT64, INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int


def load_typed(path: Path, signatures: Callable[[Any], dict[str, list[Any]]],
               returns: dict[str, Any] | None = None) -> ctypes.CDLL:
    """Loads the library at ``path`` and types its kernels: each name of ``signatures(scalar)``
    exists as ``name_f32`` and ``name_f64``, whose argument types it gives with ``scalar``
    ``c_float``, resp. ``c_double``; return types from ``returns`` (else none). Every compiled
    module's loader (:class:`Library`'s ``load``).
    """
    lib = ctypes.CDLL(str(path))
    for suffix, scalar in (("_f32", ctypes.c_float), ("_f64", ctypes.c_double)):
        for name, argtypes in signatures(scalar).items():
            fn = getattr(lib, name + suffix)
            fn.argtypes, fn.restype = argtypes, (returns or {}).get(name)
    return lib


def eager(*tensors: Any) -> bool:
    """Whether ``tensors`` are plain eager tensors that a kernel may read by address: not a
    ``torch.fx`` proxy (symbolic tracing, as SpikingJelly's converter does), and not under
    ``torch.jit.trace``, ``torch.compile`` or ``torch.export``. Where they are not, the callers
    run their PyTorch expression, which is what such a trace records.

    Example:
        >>> import torch
        >>> eager(torch.zeros(2)), eager(torch.fx.Proxy(torch.fx.Graph().placeholder("x")))
        (True, False)
    """
    import torch  # here, so that the build machinery itself needs no torch

    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return (all(isinstance(t, torch.Tensor) for t in tensors) and not torch.jit.is_tracing()
            and not (compiling is not None and compiling()))


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


class Library:
    """One C library, built and loaded at its first :meth:`prepare` if the switch allows, then
    kept for the process; what :mod:`snnergy.simulation.kernels`, :mod:`snnergy.regularizers.compiled`,
    :mod:`snnergy.pooling` and :mod:`snnergy.threshold_kernels` each hold one of.

    Args:
        stem: The library's file name before the hash (:func:`build`).
        source: The C source.
        message: Printed on stderr before a build that is not cached yet.
        load: Loads the built file (sets the functions' argument types), e.g. with :mod:`ctypes`.
        what: The kernels' name in messages, e.g. ``"the fused penalties' compiled kernels"``.
        fallback: What runs without them, in the ``require`` error, e.g. ``"PyTorch"``.
        builder: Where building happens, in :meth:`unavailable_reason` before the first build.

    Example:
        >>> lib = Library("none", "", "", lambda path: path, "these kernels", "PyTorch", "never here")
        >>> os.environ.get(SWITCH, "auto") == "off" or lib.unavailable_reason() == "not built yet (never here)"
        True
    """

    def __init__(self, stem: str, source: str, message: str, load: Callable[[Path], Any], what: str,
                 fallback: str, builder: str) -> None:
        self.stem, self.source, self.message, self.load = stem, source, message, load
        self.what, self.fallback, self.builder = what, fallback, builder
        self._lock = threading.Lock()
        self._tried = False
        self._lib: Any = None
        self._reason: str | None = None

    def prepare(self) -> bool:
        """Builds (once per machine: later calls and processes load the cached file) and loads the
        library if ``$SNNERGY_KERNELS`` allows; whether it can be used now.

        Raises:
            ConfigError: The switch is invalid, or ``require`` and the library cannot be built or
                loaded (the message says why: no compiler, the compiler's error).
        """
        mode = setting()
        if mode == "off":
            return False
        with self._lock:
            if not self._tried:
                try:
                    self._lib = self.load(build(self.stem, self.source, self.message))
                except (OSError, subprocess.SubprocessError, RuntimeError) as err:
                    text = str(err).strip()
                    self._reason = text.splitlines()[0] if text else repr(err)
                self._tried = True
        if self._lib is None and mode == "require":
            raise ConfigError(f"{SWITCH}=require, but {self.what} cannot be built: {self._reason} "
                              f"(set {SWITCH}=auto to fall back to {self.fallback})")
        return self._lib is not None

    def available(self) -> bool:
        """Whether the library can be used now; never builds."""
        return setting() != "off" and self._lib is not None

    def unavailable_reason(self) -> str | None:
        """Why the library cannot be used now (switched off, not built yet, no compiler, a failed
        build), or ``None`` if it can; never builds."""
        if setting() == "off":
            return f"{SWITCH}=off"
        if not self._tried:
            return f"not built yet ({self.builder})"
        return self._reason

    def loaded(self) -> Any:
        """The loaded library, prepared if need be (a direct kernel call asks for it).

        Raises:
            RuntimeError: It is unavailable (the reason is in the message).
        """
        if self._lib is None and not self.prepare():
            raise RuntimeError(f"{self.what} are unavailable: {self.unavailable_reason()}")
        return self._lib
