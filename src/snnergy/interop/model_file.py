"""A user's own model: a Python file with a factory function, and safetensors weights.

``snnergy convert --model-file my_net.py:build --weights my_net.safetensors`` runs the user's file
(importing it executes it, as ``python my_net.py`` would: only name files you trust), calls the
factory and loads the weights with :mod:`safetensors`, which holds plain tensors: nothing is
unpickled. Save them with ``safetensors.torch.save_file(model.state_dict(), "my_net.safetensors")``.

Example:
    >>> import tempfile, pathlib
    >>> from safetensors.torch import save_file
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "net.py").write_text(
    ...     "from torch import nn\\n"
    ...     "def build():\\n"
    ...     "    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))\\n")
    >>> model = load_model_file(f"{folder}/net.py:build")
    >>> save_file(model.state_dict(), str(folder / "net.safetensors"))
    >>> model = load_model_file(f"{folder}/net.py:build", folder / "net.safetensors")
    >>> type(model).__name__, model.training
    ('Sequential', False)
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from snnergy.checkpoints import load_state_into, load_tensors
from snnergy.errors import CheckpointError, ConfigError


def parse_model_spec(spec: str) -> tuple[Path, str]:
    """Splits ``"path/to/file.py:factory"`` into the file and the factory name.

    Example:
        >>> parse_model_spec("nets/my_net.py:build")
        (PosixPath('nets/my_net.py'), 'build')
    """
    file, colon, factory = str(spec).rpartition(":")
    if not colon or not file or not factory.isidentifier():
        raise ConfigError(f"model file '{spec}' must be given as FILE.py:FACTORY, e.g. my_net.py:build "
                          "(FACTORY: the function in FILE that returns the nn.Module)")
    return Path(file), factory


def load_model_file(spec: str, weights: str | Path | None = None, *,
                    input_shape: Sequence[int] | None = None, num_classes: int | None = None) -> nn.Module:
    """Runs ``FILE.py``, calls ``FACTORY`` and loads ``weights`` into the model (eval mode).

    Args:
        spec: ``"FILE.py:FACTORY"``.
        weights: A safetensors file matching the model's ``state_dict`` (keys and shapes);
            ``None`` keeps the factory's initialization.
        input_shape: Passed as ``input_shape=`` when the factory takes such a parameter.
        num_classes: Passed as ``num_classes=`` when the factory takes such a parameter.

    Raises:
        ConfigError: Missing file, a file that fails to run, missing or failing factory, or a
            factory that does not return an ``nn.Module``.
        CheckpointError: Missing or corrupt weights, or weights whose keys or shapes do not
            match the model (the message lists them).
    """
    path, factory_name = parse_model_spec(spec)
    if not path.is_file():
        raise ConfigError(f"model file '{path}' not found")
    module = _run_file(path)
    factory = getattr(module, factory_name, None)
    if factory is None:
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise ConfigError(f"{path} defines no '{factory_name}'; functions and classes defined there: "
                          f"{', '.join(found) or 'none'}")
    if not callable(factory):
        raise ConfigError(f"{path}: '{factory_name}' is a {type(factory).__name__}, not a function")
    kwargs = _factory_kwargs(factory, {"input_shape": tuple(input_shape) if input_shape else None,
                                       "num_classes": num_classes})
    try:
        model = factory(**kwargs)
    except Exception as err:  # the user's own code: report it in one line, keep the cause chained
        raise ConfigError(f"{path}:{factory_name}() failed: {type(err).__name__}: {err}") from err
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{path}:{factory_name}() returned a {type(model).__name__}, not a torch nn.Module")
    if weights is not None:
        load_weights(model, weights)
    return model.eval()


def load_weights(model: nn.Module, weights: str | Path) -> nn.Module:
    """Loads a safetensors file into ``model``; every key and shape must match its ``state_dict``."""
    weights = Path(weights)
    if weights.suffix in (".pt", ".pth", ".pkl", ".ckpt", ".bin"):
        raise CheckpointError(f"{weights}: snnergy reads weights from safetensors files only (nothing is "
                              "unpickled); save them with safetensors.torch.save_file(model.state_dict(), PATH)")
    load_state_into(model, load_tensors(weights), str(weights))
    return model


def _run_file(path: Path) -> Any:
    """Imports ``path`` as a fresh module (its folder is importable while it runs)."""
    resolved = path.resolve()
    name = f"snnergy_user_model_{hashlib.sha1(str(resolved).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ConfigError(f"model file '{path}' cannot be imported as Python (use a .py file)")
    module = importlib.util.module_from_spec(spec)
    folder = str(resolved.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's own code
        sys.modules.pop(name, None)
        raise ConfigError(f"model file '{path}' failed to run: {type(err).__name__}: {err}") from err
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    return module


def _factory_kwargs(factory: Any, offered: dict[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in offered.items() if k in params and v is not None}


__all__ = ["load_model_file", "load_weights", "parse_model_spec"]
