"""Tracing a model with torch.fx, and naming a node or a failure by the user's source line.

:func:`trace_graph` traces (a failure raises a :class:`~snnergy.errors.ConversionError` naming
the user's line from the exception's traceback); :func:`run_graph` records every node's value on
one sample (shapes, and concrete values for arguments such as ``x.size(3)``); :func:`user_line`
reads the innermost frame outside torch from a node's recorded stack trace.

Subclasses of the layer types a plan knows stay leaves of the graph (a subclass may change
``forward``), so they are refused by their exact type instead of being traced through.
"""

from __future__ import annotations

import os
import re
import traceback
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn

from snnergy.errors import ConversionError, DataError
from snnergy.structure.activations import activation_module_types

_TORCH_DIR = os.path.dirname(torch.__file__)

#: Layer types whose subclasses stay leaves of the traced graph.
_KNOWN_LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                 nn.Flatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, (*_KNOWN_LAYERS, *activation_module_types())):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace_graph(model: nn.Module, stack_traces: bool = False) -> fx.GraphModule:
    """Traces ``model``; a failure names the user's line.

    Recording stack traces makes torch.fx import torch._dynamo (seconds), so the walk traces
    without them and traces again with them only to name the line of a node in an error.
    """
    tracer = _Tracer()
    tracer.record_stack_traces = stack_traces
    try:
        graph = tracer.trace(model)
    except Exception as err:  # any tracing failure: data-dependent control flow, unsupported Python
        frames = [f for f in _tb_frames(err) if not f[0].startswith(_TORCH_DIR)]
        where = f" at {frames[-1][0]}:{frames[-1][1]} `{frames[-1][2]}`" if frames else ""
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConversionError(
            f"model {type(model).__name__} cannot be traced by torch.fx{where}: {message}. snnergy "
            "converts models whose forward is a fixed graph of modules and functions: move "
            "control flow that depends on tensor values out of forward") from None
    return fx.GraphModule(model, graph)


def _tb_frames(err: BaseException) -> list[tuple[str, int, str]]:
    return [(f.filename, f.lineno or 0, (f.line or "").strip())
            for f in traceback.extract_tb(err.__traceback__)]


def run_graph(graph_module: fx.GraphModule, sample: Tensor) -> dict[fx.Node, Any]:
    """Every node's value on ``sample`` (one interpreted forward, no gradient)."""
    values: dict[fx.Node, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            out = super().run_node(n)
            values[n] = out
            return out

    with torch.no_grad():
        try:
            Recorder(graph_module).run(sample)
        except Exception as err:  # the user's forward failed on the calibration sample
            raise DataError(f"the model's forward fails on a calibration batch of shape "
                            f"{tuple(sample.shape)}: {err}") from None
    return values


def function_name(target: Any) -> str:
    name = getattr(target, "__name__", repr(target))
    module = getattr(target, "__module__", None) or ""
    if module in ("_operator", "operator"):
        return f"operator.{name}"
    if module.startswith("torch._C") or not module:
        return f"torch.{name}"
    return f"{module}.{name}"


def user_line(stack_trace: str | None) -> str:
    """`` at file:line `code` `` of the innermost user frame (outside torch) of a node's trace."""
    if not stack_trace:
        return ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in [^\n]*\n\s*([^\n]*)', stack_trace)
    frames = [f for f in frames if not f[0].startswith(_TORCH_DIR)]
    if not frames:
        return ""
    path, line, code = frames[-1]
    return f" at {path}:{line} `{code.strip()}`"
