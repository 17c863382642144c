"""Activity recording: the activation maps of a forward pass, captured by forward hooks.

One recorder serves training (the activity penalty needs the post-ReLU maps *with* their
autograd graph) and measuring (sparsity and effective MACs need the maps and the actual input
of every weighted layer, detached). Maps are keyed by the qualified module name from
``named_modules()`` and kept in forward order; layout ``(B, ...)``.

The recorder returns data and has a :meth:`ActivityRecorder.remove` method (as snntorch's
probes and sinabs' hooks): it keeps its maps in its own dictionaries, writes no attribute onto
the user's modules, and no class keeps a list of live instances.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from snnergy.errors import ConfigError, SnnergyError
from snnergy.records import ActivityRecord
from snnergy.structure.activations import activation_module_types


WEIGHTED_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)
"""Modules whose input is recorded with ``layer_inputs=True`` (what MAC counting needs)."""


class ActivityRecorder:
    """Records activation maps (and optionally weighted layers' inputs) by forward hooks.

    Every call of the model (a *forward pass*, marked by a pre-hook on ``model``) adds one map
    per hooked module; several passes before :meth:`record` are concatenated along the batch
    dimension, in order. A module that runs twice within one pass (a ReLU instance reused at two
    places) makes its map ambiguous and raises :class:`~snnergy.errors.SnnergyError`.

    Args:
        model: The network; hooks go on every submodule of a registered activation type
            (:data:`snnergy.structure.ACTIVATIONS`, its output) and, if ``layer_inputs``, every
            ``WEIGHTED_TYPES`` module (its first input).
        activations: Record activation modules' outputs.
        layer_inputs: Record weighted layers' inputs.
        detach: Store detached tensors. With ``False`` the maps keep their autograd graph, so a
            penalty computed from them back-propagates to the parameters.

    Raises:
        ConfigError: Both ``activations`` and ``layer_inputs`` are ``False``.

    Example:
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> with ActivityRecorder(model, layer_inputs=True) as recorder:
        ...     _ = model(torch.ones(5, 3))
        ...     rec = recorder.record()
        >>> {name: tuple(t.shape) for name, t in rec.activations.items()}
        {'1': (5, 4)}
        >>> list(rec.layer_inputs)
        ['0', '2']
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        activations: bool = True,
        layer_inputs: bool = False,
        detach: bool = False,
    ) -> None:
        if not (activations or layer_inputs):
            raise ConfigError("ActivityRecorder: activations and layer_inputs are both False")
        self._detach = detach
        self._pass = 0
        self._activations: dict[str, list[Tensor]] = {}
        self._inputs: dict[str, list[Tensor]] = {}
        self._last_pass: dict[tuple[str, str], int] = {}
        self._handles: list[RemovableHandle] = [model.register_forward_pre_hook(self._new_pass)]
        activation_types = activation_module_types()
        for name, module in model.named_modules():
            if activations and isinstance(module, activation_types):
                self._handles.append(module.register_forward_hook(self._output_hook(name)))
            if layer_inputs and isinstance(module, WEIGHTED_TYPES):
                self._handles.append(module.register_forward_hook(self._input_hook(name)))

    # -- hooks (closures over the module name; nothing is stored on the modules)

    def _new_pass(self, module: nn.Module, args: Any) -> None:
        self._pass += 1

    def _store(self, target: dict[str, list[Tensor]], kind: str, name: str, value: Any) -> None:
        if not isinstance(value, Tensor):
            raise SnnergyError(
                f"module '{name}': expected a tensor {kind}, got {type(value).__name__}"
            )
        if self._last_pass.get((kind, name)) == self._pass:
            raise SnnergyError(
                f"module '{name}' ran twice in one forward pass, so its {kind} is ambiguous: "
                "use a separate module instance at each place in the model"
            )
        self._last_pass[(kind, name)] = self._pass
        target.setdefault(name, []).append(value.detach() if self._detach else value)

    def _output_hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._store(self._activations, "output", name, output)

        return hook

    def _input_hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._store(self._inputs, "input", name, args[0] if args else None)

        return hook

    # -- public API

    def record(self) -> ActivityRecord:
        """Returns the maps of the forward pass(es) since the last call, and starts afresh.

        Returns:
            An :class:`ActivityRecord`; with several passes, each map is their concatenation
            along the batch dimension. Empty maps if no pass ran.

        Raises:
            SnnergyError: A module's maps differ in shape between passes (cannot concatenate).
        """
        record = ActivityRecord(
            activations=_concatenate(self._activations), layer_inputs=_concatenate(self._inputs)
        )
        self._activations, self._inputs, self._last_pass = {}, {}, {}
        return record

    def remove(self) -> None:
        """Removes every hook this recorder registered; calling it again does nothing."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> ActivityRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()


def _concatenate(maps: dict[str, list[Tensor]]) -> dict[str, Tensor]:
    """One tensor per name: the single map, or the passes concatenated along the batch."""
    out: dict[str, Tensor] = {}
    for name, tensors in maps.items():
        if len(tensors) == 1:
            out[name] = tensors[0]
            continue
        shapes = {tuple(t.shape[1:]) for t in tensors}
        if len(shapes) > 1 or tensors[0].dim() == 0:
            raise SnnergyError(
                f"module '{name}': maps of different shapes across forward passes "
                f"({sorted(shapes)}); call record() after each pass"
            )
        out[name] = torch.cat(tensors)
    return out


def record_activity(
    model: nn.Module, x: Tensor, *, layer_inputs: bool = True
) -> tuple[Tensor, ActivityRecord]:
    """Runs one forward pass under ``torch.no_grad`` and returns its output and activity.

    The model's train/eval mode is left as it is: call ``model.eval()`` first to measure.

    Args:
        model: The network.
        x: Input batch, ``(B, C, H, W)`` or ``(B, F)``.
        layer_inputs: Also record each weighted layer's input.

    Returns:
        ``(output, record)``, with detached maps.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
        >>> out, rec = record_activity(model, torch.zeros(3, 2))
        >>> out.shape, list(rec.activations), list(rec.layer_inputs)
        (torch.Size([3, 1]), ['1'], ['0', '2'])
    """
    with ActivityRecorder(model, layer_inputs=layer_inputs, detach=True) as recorder:
        with torch.no_grad():
            output = model(x)
        return output, recorder.record()
