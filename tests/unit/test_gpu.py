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


def _net() -> nn.Sequential:
    """conv, ReLU, average pooling, linear, ReLU, linear readout: 8 x 8 inputs, 3 classes."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.AvgPool2d(2),
            flatten=nn.Flatten(), fc1=nn.Linear(4 * 4 * 4, 10), relu2=nn.ReLU(), fc2=nn.Linear(10, 3),
        )
    )


def test_cuda_simulation_matches_cpu() -> None:
    torch.manual_seed(0)
    net = _net()
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
    net = _net()
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_triton_scan_over_chunks_of_every_length_and_groups_of_every_size(
        monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    # issue 18: the torch.compile version recompiled for every chunk length, group size and layer,
    # and stopped at TorchDynamo's recompile limit (8) on an H100. With a budget of 2000 values the
    # chunks take several lengths and, batched, the 37 samples several group sizes: the Triton
    # kernel gives the reference's counts (looped) and the PyTorch loop's (batched: same currents)
    from snnergy.simulation import Simulator, fused_scan, simulate_reference

    torch.manual_seed(0)
    net = _net()
    x = torch.rand(37, 1, 8, 8)
    snn = convert(net, x).to(device="cuda", dtype=dtype)
    x = x.to(device="cuda", dtype=dtype)
    monkeypatch.delenv(fused_scan.SWITCH, raising=False)
    lengths = []
    scan = fused_scan.scan
    monkeypatch.setattr(fused_scan, "scan", lambda *args, **kw: lengths.append(args[4]) or scan(*args, **kw))
    looped = Simulator(snn, [3, 16, 41], mode="looped", max_elements=2000).run(x)
    batched = Simulator(snn, [3, 16, 41], mode="batched", max_elements=2000).run(x)
    assert len(set(lengths)) >= 2
    monkeypatch.setenv(fused_scan.SWITCH, "off")
    reference = simulate_reference(snn, x, [3, 16, 41])
    loop = Simulator(snn, [3, 16, 41], mode="batched", max_elements=2000).run(x)
    for trace, expected in ((looped, reference), (batched, loop)):
        assert torch.equal(trace.potentials, expected.potentials)
        for name, counts in expected.spike_counts.items():
            assert torch.equal(trace.spike_counts[name], counts), name
            assert torch.equal(trace.final_counts[name], expected.final_counts[name]), name
    assert all(c[-1].sum() > 0 for c in reference.spike_counts.values())
