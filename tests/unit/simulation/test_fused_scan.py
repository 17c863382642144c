"""The GPU time loop (issue 18): the Triton kernel gives the reference's spikes, picked only on CUDA.

Where no GPU is, the kernel's own code runs in Triton's interpreter (NumPy), which must be switched
on before Triton is imported: those checks run in a subprocess with ``TRITON_INTERPRET=1``
(``slow``: a few seconds each). ``tests/unit/test_gpu.py`` runs the compiled kernel on CUDA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from snnergy.conversion import convert
from snnergy.errors import ConfigError
from snnergy.simulation import IFNeuron, Simulator, fused_scan

needs_triton = pytest.mark.skipif(not fused_scan.has_triton(),
                                  reason="Triton is not installed (make setup installs it on Linux x86-64)")


def _interpreted(script: str) -> dict:
    """Runs ``script`` (which prints one JSON line last) in a fresh Python under Triton's interpreter."""
    src = str(Path(fused_scan.__file__).resolve().parents[2])
    env = {**os.environ, "TRITON_INTERPRET": "1", "SNNERGY_FUSED_SCAN": "always",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


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


def test_an_unknown_backend_is_one_clear_error() -> None:
    v = torch.zeros(1, 1)
    with pytest.raises(ConfigError, match="'triton' or 'eager'"):
        fused_scan.scan(torch.zeros(1, 1), v, torch.zeros(1, 1), IFNeuron(), 1, True, backend="inductor")


@pytest.mark.slow
@needs_triton
def test_the_triton_kernel_equals_the_reference_loop_bit_for_bit() -> None:
    # the kernel against if_step_ step by step: spikes, per-step counts, potentials and per-sample
    # totals identical, for both dtypes, both resets, static and per-step currents; 70 x 130
    # neurons make a grid of 3 x 3 tiles (64 columns x 32 rows), so the counts of a column add
    # up over several programs' atomic additions, and the ragged tiles' masks are exercised
    result = _interpreted("""
        import json, torch
        from snnergy.simulation import IFNeuron, fused_scan
        from snnergy.simulation.neurons import if_step_
        torch.manual_seed(0)
        cases = {}
        for dtype in (torch.float32, torch.float64):
            for reset in ("subtract", "zero"):
                for static in (False, True):
                    for batch, m, n in ((5, 6, 6), (70, 130, 3), (1, 1, 4)):
                        neuron = IFNeuron(threshold=0.7, reset=reset, v0=0.5)
                        shape = (batch, m) if static else (n, batch, m)
                        currents = torch.rand(shape, dtype=dtype)
                        v0 = neuron.initial(torch.zeros(batch, m, dtype=dtype))
                        final0 = torch.rand(batch, m, dtype=dtype).round()  # earlier chunks' totals
                        v, final = v0.clone(), final0.clone()
                        out, counts = fused_scan.scan(currents, v, final, neuron, n, static)
                        v_ref, final_ref = v0.clone(), final0.clone()
                        spikes = torch.empty(n, batch, m, dtype=dtype)
                        for t in range(n):
                            if_step_(currents if static else currents[t], v_ref, neuron, spikes[t])
                        final_ref += spikes.sum(0)
                        cases[f"{dtype} {reset} {static} {batch}x{m}x{n}"] = [
                            torch.equal(out, spikes), torch.equal(counts, spikes.sum(1)),
                            torch.equal(v, v_ref), torch.equal(final, final_ref), int(spikes.sum()),
                            spikes.numel()]
        print(json.dumps(cases))
    """)
    assert len(result) == 24
    for case, (spikes, counts, potentials, totals, fired, neuron_steps) in result.items():
        assert spikes and counts and potentials and totals, case
        assert fired > 0, case  # some fire; and in every layer of more than one neuron, not all at every step
        assert fired < neuron_steps or case.endswith("1x1x4"), case


@pytest.mark.slow
@needs_triton
def test_simulation_with_the_triton_scan_equals_the_reference() -> None:
    # SNNERGY_FUSED_SCAN=always routes every scan (the CUDA path) through the kernel; looped mode
    # makes the reference's layer calls, so the traces are bitwise equal; a budget of 2000 values
    # makes chunks of several lengths (and, batched, groups of several sizes): the torch.compile
    # version recompiled for each and stopped at its recompile limit on an H100
    result = _interpreted("""
        import json, torch
        from collections import OrderedDict
        from torch import nn
        from snnergy.config import ConvertConfig
        from snnergy.conversion import convert
        from snnergy.simulation import Simulator, fused_scan, simulate_reference
        torch.manual_seed(0)
        net = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(1, 3, 3, padding=1), relu1=nn.ReLU(), pool1=nn.AvgPool2d(2),
            flatten=nn.Flatten(), fc1=nn.Linear(48, 8), relu2=nn.ReLU(), fc2=nn.Linear(8, 4)))
        x = torch.rand(6, 1, 8, 8)
        snn = convert(net, x, ConvertConfig(percentile=99.0))
        calls = []
        scan = fused_scan.scan
        fused_scan.scan = lambda *args, **kw: calls.append(args[4]) or scan(*args, **kw)
        out = {}
        for mode in ("looped", "batched"):
            trace = Simulator(snn, [2, 5, 23], mode=mode, max_elements=2000).run(x)
            out[mode] = trace
        import os
        os.environ["SNNERGY_FUSED_SCAN"] = "off"
        reference = simulate_reference(snn, x, [2, 5, 23])
        loop = Simulator(snn, [2, 5, 23], mode="batched", max_elements=2000).run(x)
        def same(a, b):
            return torch.equal(a.potentials, b.potentials) and all(
                torch.equal(a.spike_counts[k], b.spike_counts[k]) and torch.equal(a.final_counts[k], b.final_counts[k])
                for k in b.spike_counts)
        print(json.dumps({"looped_equal": same(out["looped"], reference),
                          "batched_equals_loop": same(out["batched"], loop),
                          "chunk_lengths": sorted(set(calls)), "calls": len(calls),
                          "spiking": [float(c[-1].sum()) for c in reference.spike_counts.values()]}))
    """)
    assert result["looped_equal"] and result["batched_equals_loop"]
    assert len(result["chunk_lengths"]) >= 2 and result["calls"] > 4  # several chunks and lengths
    assert all(s > 0 for s in result["spiking"])  # every layer spikes


@pytest.mark.slow
@needs_triton
@pytest.mark.parametrize(("dtype", "static", "subtract", "arch"), [("fp32", False, True, 90), ("fp64", True, False, 80)])
def test_the_triton_kernel_compiles_to_gpu_code_without_a_gpu(dtype: str, static: bool, subtract: bool,
                                                               arch: int) -> None:
    # Triton's NVIDIA back end (in its Linux wheel, ptxas included) compiles the kernel for an
    # H100 (sm_90) or A100 (sm_80) here: the code CUDA runs, checked where CI has no GPU. Its PTX
    # has no unrounded multiplication (mul.f32 / mul.f64) that ptxas could contract with an
    # addition (v + I must round alone); v - spike * threshold is an explicit fma.rn, exact as
    # the product is 0 or the threshold. A subprocess: this process may have Triton interpreting.
    result = _interpreted(f"""
        import json, os
        os.environ.pop("TRITON_INTERPRET")
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
        from snnergy.simulation import triton_scan
        fn = triton_scan._if_scan
        names = fn.arg_names
        signature = {{name: "*{dtype}" for name in names[:6]}}
        signature.update(n="i32", batch="i32", m="i32", step_stride="i64")
        constants = dict(STATIC={static}, SUBTRACT={subtract}, BLOCK_B=32, BLOCK_COLS=64)
        signature.update({{name: "constexpr" for name in constants}})
        source = ASTSource(fn=fn, signature=signature,
                           constexprs={{(names.index(k),): v for k, v in constants.items()}})
        kernel = triton.compile(source, target=GPUTarget("cuda", {arch}, 32))
        ptx = kernel.asm["ptx"]
        print(json.dumps({{"cubin": len(kernel.asm["cubin"]), "target": ".target sm_{arch}" in ptx,
                          "unrounded_mul": sum(ptx.count(op) for op in ("mul.f32 ", "mul.f64 ")),
                          "fma": ptx.count("fma.rn."), "atomic_add": "atom.global" in ptx}}))
    """)
    assert result["cubin"] > 0 and result["target"]
    assert result["unrounded_mul"] == 0
    assert result["atomic_add"]
    assert (result["fma"] > 0) == subtract  # reset to zero has no product


@needs_triton
def test_the_interpreter_switched_on_too_late_is_one_clear_error() -> None:
    # the kernel module built without TRITON_INTERPRET, then the variable set: CPU tensors reach a
    # compiled kernel, which cannot read them; one ConfigError says what to do
    result = _interpreted("""
        import json, os, torch
        os.environ.pop("TRITON_INTERPRET")
        from snnergy.simulation import IFNeuron, fused_scan, triton_scan
        os.environ["TRITON_INTERPRET"] = "1"
        v, final = torch.zeros(2, 3), torch.zeros(2, 3)
        try:
            fused_scan.scan(torch.ones(2, 3), v, final, IFNeuron(), 2, True)
            print(json.dumps({"error": None}))
        except Exception as err:
            print(json.dumps({"error": type(err).__name__, "message": str(err)}))
    """)
    assert result["error"] == "ConfigError" and "TRITON_INTERPRET=1 before" in result["message"]


def test_the_hook_picks_the_fused_scan_only_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda, cpu = _cuda_tensor(), torch.zeros(4, 3)
    monkeypatch.delenv(fused_scan.SWITCH, raising=False)  # default: auto
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(fused_scan, "has_triton", lambda: True)  # a CUDA build of PyTorch brings it
    assert fused_scan.setting() == "auto"
    assert fused_scan.selected(cuda) and not fused_scan.selected(cpu)
    assert not fused_scan.selected(torch.zeros(3, 4).t().contiguous().t())  # not dense: the loop
    assert not fused_scan.selected(cuda.half())  # a dtype the kernel does not scan: the loop
    monkeypatch.setenv(fused_scan.SWITCH, "off")
    assert not fused_scan.selected(cuda) and not fused_scan.selected(cpu)
    monkeypatch.setenv(fused_scan.SWITCH, "always")
    assert fused_scan.selected(cuda)
    with pytest.raises(ConfigError, match="TRITON_INTERPRET=1"):  # a CPU needs Triton's interpreter
        fused_scan.selected(cpu)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert fused_scan.selected(cpu)
    monkeypatch.setattr(fused_scan, "has_triton", lambda: False)
    with pytest.raises(ConfigError, match="always needs Triton"):
        fused_scan.selected(cuda)
    monkeypatch.setenv(fused_scan.SWITCH, "auto")  # no Triton: the PyTorch loop
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
