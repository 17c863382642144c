"""Everything needed to resume training exactly where the last finished epoch left it.

After each finished epoch, :func:`save_train_state` writes one safetensors file (atomically, so an
interrupt or a kill leaves the previous epoch's file intact) holding the model weights, the
optimizer's state, the shuffling generator's and torch's global random states, and the running
estimates of a model-aware penalty (``synops``, ``macs``); its string metadata holds the finished
epoch, the optimizer step, the optimizer's scalar settings, the epoch log so far and the resolved
configuration the run belongs to. Nothing is pickled.

A run resumed from this file continues with the same random states, so on the same machine it ends
with the same weights as a run that was never interrupted (``tests/e2e/test_interrupt.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from snnergy.checkpoints import load_tensors_meta, save_tensors
from snnergy.errors import CheckpointError

STATE_FORMAT = "snnergy-train-state"
STATE_VERSION = "1"
STATE_FILE = "train_state.safetensors"
_PENALTY = "penalty."


@dataclass
class TrainState:
    """The state of a training run after ``epoch`` finished epochs.

    Attributes:
        epoch: Finished epochs.
        step: Optimizer steps taken (drives the learning-rate schedule).
        model: The model's ``state_dict``.
        optimizer: The optimizer's ``state_dict``.
        loader_rng: The shuffling generator's state (``torch.Generator.get_state``).
        torch_rng: torch's global random state (dropout, Poisson input).
        penalty: A model-aware penalty's running estimates (``{}`` for the others).
        history: The epoch log so far, one dict per finished epoch.
        config: The resolved configuration (``config_to_dict``) the run belongs to.
    """

    epoch: int
    step: int
    model: dict[str, Tensor]
    optimizer: dict[str, Any]
    loader_rng: Tensor
    torch_rng: Tensor
    penalty: dict[str, Tensor] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


def save_train_state(path: str | Path, state: TrainState) -> None:
    """Writes ``state`` to ``path`` (one safetensors file, atomically)."""
    tensors = {f"model.{k}": v for k, v in state.model.items()}
    tensors["rng.loader"] = state.loader_rng
    tensors["rng.torch"] = state.torch_rng
    tensors.update({f"{_PENALTY}{k}": v for k, v in state.penalty.items()})
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state.optimizer["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    metadata = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "epoch": str(state.epoch),
        "step": str(state.step),
        "optimizer": json.dumps({"param_groups": state.optimizer["param_groups"], "scalars": scalars}),
        "history": json.dumps(state.history),
        "config": json.dumps(state.config, sort_keys=True),
    }
    save_tensors(path, tensors, metadata)


def load_train_state(path: str | Path) -> TrainState:
    """Reads a file written by :func:`save_train_state`.

    Raises:
        CheckpointError: A missing, corrupt or foreign file, or one with missing entries.
    """
    tensors, meta = load_tensors_meta(path, allow_nan=(_PENALTY,))
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a snnergy training state (format '{STATE_FORMAT}' expected)")
    if meta.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path}: training state version {meta.get('version')!r}, this snnergy reads {STATE_VERSION}")
    try:
        optim = json.loads(meta["optimizer"])
        state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in optim["scalars"].items()}
        for name, value in tensors.items():
            if name.startswith("optim."):
                _, index, key = name.split(".", 2)
                state.setdefault(int(index), {})[key] = value
        return TrainState(
            epoch=int(meta["epoch"]),
            step=int(meta["step"]),
            model={k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
            optimizer={"state": state, "param_groups": optim["param_groups"]},
            loader_rng=tensors["rng.loader"],
            torch_rng=tensors["rng.torch"],
            penalty={k[len(_PENALTY):]: v for k, v in tensors.items() if k.startswith(_PENALTY)},
            history=list(json.loads(meta["history"])),
            config=dict(json.loads(meta["config"])),
        )
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{path}: training state with a missing or malformed entry ({err})") from None


def config_difference(stored: dict[str, Any], current: dict[str, Any], prefix: str = "") -> str | None:
    """The first dotted key whose value differs between two config dicts, with both values.

    Example:
        >>> config_difference({"train": {"lr": 0.01}}, {"train": {"lr": 0.001}})
        'train.lr: 0.01 stored, 0.001 now'
        >>> config_difference({"seed": 0}, {"seed": 0}) is None
        True
    """
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = config_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: {a!r} stored, {b!r} now"
    return None
