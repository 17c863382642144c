"""CUDA runs give the CPU's numbers (skipped, with the reason, where no CUDA device exists)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from snnergy.conversion import convert
from snnergy.experiments import simulate

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; CI has none"),
]


def test_cuda_simulation_matches_cpu() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.AvgPool2d(2),
            flatten=nn.Flatten(), fc1=nn.Linear(4 * 4 * 4, 10), relu2=nn.ReLU(), fc2=nn.Linear(10, 3),
        )
    )
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 3, (32,))
    snn = convert(net, x)
    cpu = simulate(snn, (x, y), timesteps=[4, 16], device="cpu")
    gpu = simulate(snn, (x, y), timesteps=[4, 16], device="cuda")
    assert gpu.accuracy == cpu.accuracy
    assert gpu.synops == pytest.approx(cpu.synops, rel=1e-3)


def test_cuda_fused_time_loop_gives_the_reference_spikes(monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 18: on CUDA the scan is the compiled time loop (SNNERGY_FUSED_SCAN=auto picks it);
    # looped mode makes the reference's layer calls, so every count is bitwise the reference's
    from snnergy.simulation import Simulator, fused_scan, simulate_reference

    torch.manual_seed(0)
    net = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.AvgPool2d(2),
            flatten=nn.Flatten(), fc1=nn.Linear(4 * 4 * 4, 10), relu2=nn.ReLU(), fc2=nn.Linear(10, 3),
        )
    )
    x = torch.rand(32, 1, 8, 8)
    snn = convert(net, x).to("cuda")
    x = x.to("cuda")
    monkeypatch.delenv(fused_scan.SWITCH, raising=False)
    assert fused_scan.selected(torch.zeros(2, 3, device="cuda"))
    trace = Simulator(snn, [4, 16], mode="looped").run(x)
    monkeypatch.setenv(fused_scan.SWITCH, "off")
    reference = simulate_reference(snn, x, [4, 16])
    assert torch.equal(trace.potentials, reference.potentials)
    for name, counts in reference.spike_counts.items():
        assert torch.equal(trace.spike_counts[name], counts), name
