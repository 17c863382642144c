"""The compiled GPU time loop (issue 18): the reference's spikes, and picked only on CUDA.

The equivalence tests compile the scan with TorchInductor on the CPU (C++ there, Triton on CUDA:
the same graph of element-wise operations), so they run where no GPU is; each compilation takes
seconds (``slow``).
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from snnergy.config import ConvertConfig
from snnergy.conversion import convert
from snnergy.errors import ConfigError
from snnergy.simulation import IFNeuron, Simulator, fused_scan, simulate_reference
from snnergy.simulation.neurons import if_step_


def _cuda_tensor() -> torch.Tensor:
    """A tensor on a CUDA device without one: a fake tensor carries the device, not the memory."""
    with FakeTensorMode():
        return torch.empty(4, 3, device="cuda")


def test_hand_scan_subtract_and_zero_reset() -> None:
    # currents 0.6 per step from v = 0, threshold 1: v = 0.6, 1.2 (spike) -> 0.2 by subtraction,
    # 0.8, 1.4 (spike) -> 0.4; with reset to zero 0.6, 1.2 (spike) -> 0, 0.6, 1.2 (spike) -> 0
    currents = torch.full((4, 1, 1), 0.6, dtype=torch.float64)
    for reset, after in (("subtract", 0.4), ("zero", 0.0)):
        v, final = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
        out, counts = fused_scan.scan(currents, v, final, IFNeuron(reset=reset), 4, False, backend="eager")
        assert out.flatten().tolist() == [0.0, 1.0, 0.0, 1.0] and counts.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
        assert final.item() == 2.0 and v.item() == pytest.approx(after, abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "reset", "static"), [(torch.float32, "subtract", False),
                                                        (torch.float64, "zero", True)])
def test_inductor_scan_equals_the_reference_loop_bit_for_bit(dtype: torch.dtype, reset: str, static: bool) -> None:
    # the compiled scan against if_step_ step by step: spikes, per-step counts, potentials and
    # per-sample totals identical (potentials start at v0 * threshold = 0.5)
    torch.manual_seed(0)
    neuron = IFNeuron(threshold=1.0, reset=reset, v0=0.5)
    currents = (torch.rand(6, 5, 2, 3, dtype=dtype) * 0.9) if not static else torch.rand(5, 2, 3, dtype=dtype) * 0.9
    v, final = neuron.initial(torch.zeros(5, 2, 3, dtype=dtype)), torch.zeros(5, 2, 3, dtype=dtype)
    out, counts = fused_scan.scan(currents, v, final, neuron, 6, static, backend="inductor")
    v_ref, final_ref = neuron.initial(torch.zeros(5, 2, 3, dtype=dtype)), torch.zeros(5, 2, 3, dtype=dtype)
    spikes = torch.empty(6, 5, 2, 3, dtype=dtype)
    for t in range(6):
        if_step_(currents if static else currents[t], v_ref, neuron, spikes[t])
    final_ref += spikes.sum(0)
    assert torch.equal(out, spikes) and torch.equal(counts, spikes.sum(1))
    assert torch.equal(v, v_ref) and torch.equal(final, final_ref)
    assert 0 < spikes.sum() < spikes.numel()  # some fire, some do not


@pytest.mark.slow
def test_simulation_with_the_fused_scan_equals_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # SNNERGY_FUSED_SCAN=always routes every scan (the CUDA path) through the compiled loop on
    # the CPU; looped mode makes the reference's layer calls, so the traces are bitwise equal
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 3, 3, padding=1), relu1=nn.ReLU(), pool1=nn.AvgPool2d(2),
        flatten=nn.Flatten(), fc1=nn.Linear(48, 8), relu2=nn.ReLU(), fc2=nn.Linear(8, 4)))
    x = torch.rand(6, 1, 8, 8)
    snn = convert(net, x, ConvertConfig(percentile=99.0))
    calls = []
    scan = fused_scan.scan
    monkeypatch.setattr(fused_scan, "scan", lambda *args, **kw: calls.append(1) or scan(*args, **kw))
    monkeypatch.setenv(fused_scan.SWITCH, "always")
    trace = Simulator(snn, [2, 5], mode="looped").run(x)
    monkeypatch.setenv(fused_scan.SWITCH, "off")
    reference = simulate_reference(snn, x, [2, 5])
    assert len(calls) == 2  # both spiking stages, one chunk of 5 steps each
    assert torch.equal(trace.potentials, reference.potentials)
    for name, counts in reference.spike_counts.items():
        assert torch.equal(trace.spike_counts[name], counts), name
        assert torch.equal(trace.final_counts[name], reference.final_counts[name]), name
    assert all(c[-1].sum() > 0 for c in trace.spike_counts.values())  # every layer spikes


def test_the_hook_picks_the_fused_scan_only_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda, cpu = _cuda_tensor(), torch.zeros(4, 3)
    monkeypatch.delenv(fused_scan.SWITCH, raising=False)  # default: auto
    monkeypatch.setattr(fused_scan, "has_triton", lambda: True)  # a CUDA build of PyTorch brings it
    assert fused_scan.setting() == "auto"
    assert fused_scan.selected(cuda) and not fused_scan.selected(cpu)
    assert not fused_scan.selected(torch.zeros(3, 4).t().contiguous().t())  # not dense: the loop
    monkeypatch.setenv(fused_scan.SWITCH, "off")
    assert not fused_scan.selected(cuda) and not fused_scan.selected(cpu)
    monkeypatch.setenv(fused_scan.SWITCH, "always")
    assert fused_scan.selected(cuda) and fused_scan.selected(cpu)
    monkeypatch.setenv(fused_scan.SWITCH, "auto")
    monkeypatch.setattr(fused_scan, "has_triton", lambda: False)  # no Triton: the PyTorch loop
    assert not fused_scan.selected(cuda)


def test_the_cpu_simulation_does_not_call_the_fused_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    # the default (auto) leaves CPU simulations on their own paths: the hook says no
    monkeypatch.delenv(fused_scan.SWITCH, raising=False)
    monkeypatch.setattr(fused_scan, "scan", lambda *args, **kw: pytest.fail("fused scan called on a CPU"))
    net = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 3), relu1=nn.ReLU(), fc2=nn.Linear(3, 2)))
    x = torch.rand(5, 4)
    trace = Simulator(convert(net, x), [3]).run(x)
    assert trace.potentials.shape == (1, 5, 2)


def test_a_bad_switch_value_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fused_scan.SWITCH, "yes")
    with pytest.raises(ConfigError, match="SNNERGY_FUSED_SCAN='yes'.*auto, off, always"):
        fused_scan.selected(torch.zeros(2))
