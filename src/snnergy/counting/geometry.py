"""Geometries of the weighted layers a model runs, from one dummy forward pass.

:func:`layer_geometries` collects the geometry of every weighted layer call (any model: the DNN's
MACs need no spiking structure) and refuses weighted layers it cannot count. The geometry of one
layer is read by :func:`snnergy.structure.geometry_of` / :func:`~snnergy.structure.pool_geometry`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from snnergy.errors import ConfigError, SnnergyError
from snnergy.records import LayerGeometry
from snnergy.structure.geometry import geometry_of

# Weighted layers whose operations this module cannot count: met in a forward pass, they are
# refused rather than silently left out of the totals.
_UNSUPPORTED_WEIGHTED = (
    nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Bilinear,
)


def layer_geometries(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerGeometry]:
    """Geometries of every Conv2d/Linear a model runs, in forward order, from one dummy pass.

    The pass uses one all-zero sample, no gradient and eval mode; temporary forward hooks are
    removed and every submodule's train/eval mode is restored afterwards. A module called twice
    appears twice. Operations written as functional calls (``F.conv2d`` in ``forward``) are not
    seen.

    Args:
        model: The network.
        input_shape: Per-sample input shape, e.g. ``(1, 8, 8)``.

    Returns:
        One :class:`LayerGeometry` per weighted-layer call.

    Raises:
        ConfigError: when the forward pass fails on this input shape.
        SnnergyError: when the model runs a weighted layer counting does not support.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
        >>> [(g.name, g.in_shape, g.out_shape) for g in layer_geometries(net, (1, 4, 4))]
        [('0', (1, 4, 4), (2, 2, 2)), ('2', (8,), (3,))]
    """
    input_shape = tuple(int(d) for d in input_shape)
    if not input_shape or min(input_shape) < 1:
        raise ConfigError(f"input shape must be per-sample positive sizes, got {input_shape}")
    calls: list[tuple[nn.Module, str, tuple[int, ...], tuple[int, ...]]] = []
    unsupported: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):

            def hook(mod: nn.Module, args: tuple, out: Tensor, name: str = name) -> None:
                calls.append((mod, name, tuple(args[0].shape[1:]), tuple(out.shape[1:])))

            handles.append(module.register_forward_hook(hook))
        elif isinstance(module, _UNSUPPORTED_WEIGHTED):

            def refuse(mod: nn.Module, args: tuple, out: object, name: str = name) -> None:
                unsupported.append(f"'{name}' ({type(mod).__name__})")

            handles.append(module.register_forward_hook(refuse))
    dummy_forward(model, input_shape, handles)
    if unsupported:
        raise SnnergyError(
            f"cannot count the operations of layer(s) {', '.join(unsupported)}; "
            "counting supports Conv2d and Linear"
        )
    return [geometry_of(*call) for call in calls]


def dummy_forward(model: nn.Module, input_shape: tuple[int, ...], handles: list) -> None:
    """Runs ``model`` once on zeros of shape ``(1, *input_shape)`` in eval mode without gradients,
    then removes ``handles`` (the caller's temporary hooks) and restores every module's mode.

    The dtype and device follow the model's first floating-point parameter or buffer. A failure
    of the model's forward on that shape is a :class:`ConfigError` naming the shape.
    """
    modes = {module: module.training for module in model.modules()}
    first = next((t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None)
    dummy = torch.zeros(
        (1, *input_shape),
        dtype=first.dtype if first is not None else torch.float32,
        device=first.device if first is not None else "cpu",
    )
    try:
        model.eval()
        with torch.no_grad():
            model(dummy)
    except SnnergyError:
        raise
    except Exception as exc:  # any failure of the user's forward is a shape/config mismatch
        raise ConfigError(
            f"a forward pass of {type(model).__name__} on input shape {(1, *input_shape)} "
            f"failed: {exc}"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
