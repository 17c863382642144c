"""One table of unsupported ops: every row's advice reaches the user through the plan."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnergy.errors import ConversionError
from snnergy.structure import trace
from snnergy.structure.hints import FUNCTION_HINTS, MODULE_HINTS, SUPPORTED_TEXT, function_hint, module_hint

MODULE_ROWS = [(name, hint) for names, hint in MODULE_HINTS for name in names
               if name in ("MaxPool2d", "AdaptiveMaxPool2d", "LPPool2d", "Softmax", "LogSoftmax", "LayerNorm")]


@pytest.mark.parametrize("name,hint", MODULE_ROWS)
def test_module_rows_are_the_plans_advice(name: str, hint: str) -> None:
    layer = {"MaxPool2d": lambda: nn.MaxPool2d(1), "AdaptiveMaxPool2d": lambda: nn.AdaptiveMaxPool2d(2),
             "LPPool2d": lambda: nn.LPPool2d(2, 1), "Softmax": lambda: nn.Softmax(1),
             "LogSoftmax": lambda: nn.LogSoftmax(1), "LayerNorm": lambda: nn.LayerNorm([2, 2])}[name]()
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), layer, nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ConversionError, match=rf"module '2' \({name}\) is not supported: ") as err:
        trace(model, (1, 2, 2))
    assert str(err.value).endswith(hint)


def test_function_rows_and_the_fallbacks() -> None:
    assert all(function_hint(getattr(torch, n)) == hint for names, hint in FUNCTION_HINTS for n in names
               if hasattr(torch, n) and n not in ("max", "amax", "clip", "clamp", "conv2d"))
    assert function_hint(torch.erf) == f"supported: {SUPPORTED_TEXT}"
    assert module_hint(nn.Upsample()) == f"supported layers: {SUPPORTED_TEXT}"
    assert module_hint(nn.GELU()).startswith("use ReLU")
