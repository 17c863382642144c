"""``snnergy metrics --format neurobench`` equals NeuroBench's own ``Benchmark.run()`` where the
definitions agree (issue 17): a DNN with unpruned weights whose inputs are not all in {-1, 0, 1}.

Skipped unless NeuroBench is importable (``bash benchmarks/peers/setup.sh``; run with
``benchmarks/peers/.venv/bin/python -m pytest tests/peers -q``). docs/neurobench.md lists where the
definitions differ; the zero-weight case is checked here on its hand example.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

REASON = "the peer benchmark's packages are not installed (bash benchmarks/peers/setup.sh)"
pytest.importorskip("neurobench", reason=REASON)

from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount  # noqa: E402
from neurobench.metrics.workload import (  # noqa: E402
    ActivationSparsity,
    ActivationSparsityByLayer,
    ClassificationAccuracy,
    SynapticOperations,
)
from neurobench.models import TorchModel  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from snnergy.config import ModelConfig  # noqa: E402
from snnergy.counting.static import connection_sparsity, footprint_bytes, parameter_count, plan_neurons  # noqa: E402
from snnergy.experiments import measure  # noqa: E402
from snnergy.models import build_model  # noqa: E402
from snnergy.reporting.neurobench import StaticCounts, neurobench_metrics  # noqa: E402
from snnergy.structure import trace  # noqa: E402

STATIC = [Footprint, ParameterCount, ConnectionSparsity]
WORKLOAD = [ClassificationAccuracy, ActivationSparsity, ActivationSparsityByLayer, SynapticOperations]


def _theirs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict:
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    bench = Benchmark(TorchModel(model), loader, [], [lambda preds: preds.argmax(-1)], [STATIC, WORKLOAD])
    results = bench.run(quiet=True)
    bench.workload_metric_manager.cleanup_hooks(bench.model)
    return results


def _ours(model: nn.Module, x: torch.Tensor, y: torch.Tensor, input_shape: tuple[int, ...]) -> dict:
    record = {"config": {"dataset": "-", "model": "-", "regularizer": "none", "strength": 0.0, "seed": 0},
              "dnn": measure(model, (x, y)).to_dict()}
    static = StaticCounts(footprint_bytes(model), parameter_count(model), connection_sparsity(model),
                          plan_neurons(trace(model, input_shape)))
    return neurobench_metrics(record, static)["dnn"]


def test_dnn_metrics_equal_neurobench_on_lenet() -> None:
    torch.manual_seed(3)
    model = build_model(ModelConfig(name="lenet"), (1, 8, 8), 10).double().eval()
    x = torch.rand(12, 1, 8, 8, dtype=torch.float64)
    x[x < 0.3] = 0.0
    y = torch.randint(0, 10, (12,))
    ours = _ours(model, x, y, (1, 8, 8))
    theirs = _theirs(model, x, y, batch_size=4)  # float64: NeuroBench's sums are exact integers
    for key in ("Footprint", "ParameterCount", "ConnectionSparsity", "SynapticOperations"):
        assert ours[key] == theirs[key], key
    assert ours["ClassificationAccuracy"] == pytest.approx(theirs["ClassificationAccuracy"], rel=1e-12)
    # NeuroBench averages per-batch fractions weighted by batch size: equal up to rounding
    assert ours["ActivationSparsity"] == pytest.approx(theirs["ActivationSparsity"], rel=1e-12)
    assert ours["ActivationSparsityByLayer"] == pytest.approx(theirs["ActivationSparsityByLayer"], rel=1e-12)
    assert list(ours["ActivationSparsityByLayer"]) == list(theirs["ActivationSparsityByLayer"])


def test_zero_weights_differ_as_documented() -> None:
    # docs/neurobench.md: Linear(2 -> 2) with weights [[1, 0], [1, 1]], input (0.5, 0.5) (not in
    # {-1, 0, 1}: NeuroBench files the operations as MACs). snnergy's effective MACs: 2 non-zero
    # inputs x fan-out 2 = 4; NeuroBench skips the zero weight: 3. Dense 4 in both. Zero weights:
    # 1 of the 4 + 2 weights in both.
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).double().eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        model[0].bias.fill_(1.0)
        model[2].weight.fill_(2.0)
    x, y = torch.tensor([[0.5, 0.5]], dtype=torch.float64), torch.tensor([0])
    ours, theirs = _ours(model, x, y, (2,)), _theirs(model, x, y, batch_size=1)
    # relu outputs (1.5, 2): both non-zero, so the second layer does 2 MACs in both counts
    assert ours["SynapticOperations"] == {"Effective_MACs": 6.0, "Effective_ACs": 0.0, "Dense": 6.0}
    assert theirs["SynapticOperations"] == {"Effective_MACs": 5.0, "Effective_ACs": 0.0, "Dense": 6.0}
    assert ours["ConnectionSparsity"] == 1 / 6 and theirs["ConnectionSparsity"] == round(1 / 6, 4)  # NeuroBench rounds
