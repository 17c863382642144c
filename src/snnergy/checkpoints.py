"""Checkpoint files: safetensors weights plus a JSON description, written atomically.

Nothing here unpickles: weights are read with :mod:`safetensors`, descriptions with :mod:`json`.
Writes go to a temporary file in the same folder and are renamed into place, so an interrupted
write never leaves a half-written checkpoint behind the real name.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from snnergy.errors import CheckpointError


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Calls ``write(tmp)`` on a temporary path beside ``path``, then renames it over ``path``.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> atomic_write(p, lambda tmp: tmp.write_text("hi"))
        >>> p.read_text()
        'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, data: Any) -> None:
    """Writes ``data`` as indented JSON, atomically; NaN and inf are refused."""

    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")

    atomic_write(path, write)


def read_json(path: str | Path) -> Any:
    """Reads a JSON file; a missing or malformed file is a :class:`CheckpointError`."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not a valid JSON file ({err})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: not a valid JSON file (nested too deeply)") from None
    except OSError as err:  # a directory, no permission
        raise CheckpointError(f"{path}: cannot read: {err.strerror or err}") from None


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Saves named tensors (and optional string metadata) to a safetensors file, atomically
    (contiguous CPU copies)."""
    plain = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(plain, str(tmp), metadata=metadata))


def load_tensors(path: str | Path, allow_nan: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Loads a safetensors file onto the CPU; refuses missing, corrupt or non-finite files.

    Args:
        path: The file.
        allow_nan: Name prefixes of tensors that may hold NaN (e.g. running estimates that mark
            "not seen yet" with NaN); every other floating tensor must be finite.
    """
    return load_tensors_meta(path, allow_nan)[0]


def load_tensors_meta(path: str | Path, allow_nan: tuple[str, ...] = ()) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """:func:`load_tensors` plus the file's string metadata (``{}`` when it has none)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        tensors = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a valid safetensors file ({err})") from None
    for name, tensor in tensors.items():
        if not tensor.is_floating_point() or name.startswith(allow_nan) and not bool(torch.isinf(tensor).any()):
            continue
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor '{name}' holds NaN or inf")
    return tensors, metadata


def load_state_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Loads ``tensors`` into ``module``; missing, extra, mis-shaped or mistyped tensors are errors."""
    check_state(module, tensors, where)
    module.load_state_dict(tensors)


def check_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Checks that ``tensors`` fit ``module``'s ``state_dict`` (names, shapes, dtypes). ``module`` may
    live on the ``meta`` device, so a model described by a file can be checked before it is allocated."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{where}: weights do not match the model (missing: {missing or 'none'}, "
            f"unexpected: {extra or 'none'})"
        )
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{where}: tensor '{name}' has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(expected[name].shape)}"
            )
        if tensor.dtype != expected[name].dtype:
            raise CheckpointError(f"{where}: tensor '{name}' is {tensor.dtype}, the model expects {expected[name].dtype}")


def finite(value: float) -> bool:
    """Whether ``value`` is a finite number (helper for validating loaded numbers)."""
    return isinstance(value, (int, float)) and math.isfinite(value)
