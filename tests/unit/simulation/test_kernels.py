"""The compiled CPU kernels and their switch ``SNNERGY_KERNELS``: the scan is bitwise the PyTorch
step, the library builds once into the cache at the first simulation (never in a predicate), and
``auto`` / ``off`` / ``require`` / an invalid value behave as documented. Tests that need the
kernels skip with the reason when no C compiler exists (the fallback without one: test_events.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from snnergy.errors import ConfigError
from snnergy.simulation import IFNeuron, Simulator, SpikingNetwork, SpikingStage
from snnergy.simulation import kernels
from snnergy.simulation.events import unsupported
from snnergy.simulation.neurons import if_step_

SRC = Path(__file__).resolve().parents[3] / "src"


def small_net() -> SpikingNetwork:
    """conv -> pool+conv -> flatten+linear readout, float64, weights scaled so that neurons fire."""
    torch.manual_seed(0)
    s1 = SpikingStage("conv1", "relu1", nn.Sequential(), nn.Conv2d(1, 4, 3, padding=1), True)
    s2 = SpikingStage("conv2", "relu2", nn.Sequential(nn.AvgPool2d(2)), nn.Conv2d(4, 4, 3, padding=1), True)
    s3 = SpikingStage("fc", None, nn.Sequential(nn.Flatten()), nn.Linear(4 * 3 * 3, 3), False)
    snn = SpikingNetwork([s1, s2, s3], (1, 6, 6)).double()
    with torch.no_grad():
        for s in snn.stages:
            s.layer.weight.mul_(2.0)
    return snn


def run_script(body: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Runs ``body`` in a fresh Python (its own kernel state) with this checkout's ``src`` first on
    the path, ``small_net`` defined, the cache in ``tmp_path/cache`` and ``env`` set."""
    script = tmp_path / "script.py"
    net = textwrap.dedent(__import__("inspect").getsource(small_net))
    script.write_text("import sys\nsys.path.insert(0, sys.argv[1])\nimport torch\nfrom torch import nn\n"
                      "from snnergy.simulation import Simulator, SpikingNetwork, SpikingStage, kernels\n"
                      + net + textwrap.dedent(body))
    full = {**os.environ, "SNNERGY_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, str(script), str(SRC)], capture_output=True, text=True, env=full,
                          timeout=300)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("static", [False, True])
def test_compiled_scan_is_bitwise_the_pytorch_step(kernels_built: None, dtype: torch.dtype, reset: str, static: bool) -> None:
    torch.manual_seed(0)
    neuron = IFNeuron(0.7, reset)
    steps, batch, shape = 9, 5, (3, 4, 5)
    currents = ((torch.rand(batch, *shape) if static else torch.rand(steps, batch, *shape)) - 0.3).to(dtype)
    v_ref, v = torch.zeros(batch, *shape, dtype=dtype), torch.zeros(batch, *shape, dtype=dtype)
    ref = torch.empty(steps, batch, *shape, dtype=dtype)
    for t in range(steps):
        if_step_(currents if static else currents[t], v_ref, neuron, ref[t])
    out, counts = torch.empty_like(ref), torch.empty(steps, *shape, dtype=dtype)
    final = torch.zeros_like(v)
    kernels.if_scan(currents, v, out, counts, final, neuron.threshold, reset == "subtract", static=static)
    assert torch.equal(out, ref) and torch.equal(v, v_ref)
    assert torch.equal(counts, ref.sum(1)) and torch.equal(final, ref.sum(0))
    assert 0 < ref.mean() < 1  # some neurons fire, some do not


BUILD = """
    snn = small_net()
    # the predicates only look: nothing is built before the first simulation
    assert not kernels.available() and "not built yet" in kernels.unavailable_reason()
    from snnergy.simulation.events import unsupported
    assert "not built yet" in unsupported(snn.stages[2])
    import os; assert os.environ["RUN"] != "0" or not os.path.exists(os.environ["SNNERGY_CACHE_DIR"])
    sim = Simulator(snn, [4], input="poisson", mode="event")
    sim.run(torch.rand(3, 1, 6, 6, dtype=torch.float64), torch.Generator().manual_seed(0))
    assert kernels.available(), kernels.unavailable_reason()
    assert sim.paths == {"conv1": "event", "conv2": "event", "fc": "event"}, sim.paths
    print("built ok")
"""


def test_kernels_build_once_into_the_cache_at_the_first_simulation(tmp_path: Path) -> None:
    if kernels.compiler() is None:
        pytest.skip(f"no C compiler '{os.environ.get('CC') or 'cc'}' on PATH: the compiled kernels cannot be built")
    runs = [run_script(BUILD, tmp_path, SNNERGY_KERNELS="auto", RUN=str(i)) for i in range(2)]
    for done in runs:
        assert done.returncode == 0, done.stderr
        assert "built ok" in done.stdout
    # the first process compiles and says so on stderr; the second loads the cached library
    assert kernels.BUILD_MESSAGE in runs[0].stderr and kernels.BUILD_MESSAGE not in runs[1].stderr
    built = list((tmp_path / "cache").iterdir())
    assert len(built) == 1 and built[0].name.startswith("snnergy_kernels_") and built[0].suffix == ".so"


def test_an_invalid_switch_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kernels.SWITCH, "sometimes")
    message = "environment variable SNNERGY_KERNELS='sometimes': allowed values are auto, off, require"
    for call in (kernels.setting, kernels.prepare, kernels.available,
                 lambda: unsupported(small_net().stages[1]),
                 lambda: Simulator(small_net(), [2]).run(torch.rand(2, 1, 6, 6, dtype=torch.float64))):
        with pytest.raises(ConfigError) as err:
            call()
        assert str(err.value) == message


@pytest.mark.parametrize("value", ["", "auto", "AUTO", " off ", "require"])
def test_the_switch_values(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kernels.SWITCH, value)
    assert kernels.setting() == (value.strip().lower() or "auto")
    monkeypatch.delenv(kernels.SWITCH)
    assert kernels.setting() == "auto"


def test_off_gives_the_same_spikes_as_auto_through_the_pytorch_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    snn, x = small_net(), torch.rand(6, 1, 6, 6, dtype=torch.float64)
    traces, sims = {}, {}
    for value in ("auto", "off"):
        monkeypatch.setenv(kernels.SWITCH, value)
        # density threshold 1: with the kernels, auto takes the event path wherever it can
        sims[value] = Simulator(snn, [3, 12], input="poisson", event_density=1.0)
        traces[value] = sims[value].run(x, torch.Generator().manual_seed(3))
    assert torch.equal(traces["auto"].potentials, traces["off"].potentials)
    assert traces["auto"].spike_counts.keys() == traces["off"].spike_counts.keys()
    assert all(torch.equal(traces["auto"].spike_counts[k], traces["off"].spike_counts[k]) for k in traces["off"].spike_counts)
    assert all(torch.equal(traces["auto"].final_counts[k], traces["off"].final_counts[k]) for k in traces["off"].final_counts)
    # off: the event path is not offered, and every stage says why
    assert "event" not in sims["off"].paths.values()
    assert sims["off"].unsupported == {name: f"the compiled kernels are unavailable ({kernels.SWITCH}=off)"
                                       for name in ("conv1", "conv2", "fc")}
    assert not kernels.available() and kernels.unavailable_reason() == f"{kernels.SWITCH}=off"
    sim = Simulator(snn, [3], input="poisson", mode="event")
    sim.run(x, torch.Generator().manual_seed(3))
    assert sim.paths == {"conv1": "batched", "conv2": "batched", "fc": "batched"}


OFF = """
    sim = Simulator(small_net(), [5], mode="event")
    sim.run(torch.rand(2, 1, 6, 6, dtype=torch.float64))
    assert not kernels.available() and set(sim.paths.values()) == {"batched"}, sim.paths
    print("off ok")
"""


def test_off_never_builds_nor_loads(tmp_path: Path) -> None:
    done = run_script(OFF, tmp_path, SNNERGY_KERNELS="off")  # with whatever compiler is here
    assert done.returncode == 0, done.stderr
    assert "off ok" in done.stdout and kernels.BUILD_MESSAGE not in done.stderr
    assert not (tmp_path / "cache").exists()


REQUIRE = """
    from snnergy.errors import ConfigError
    try:
        Simulator(small_net(), [5]).run(torch.rand(2, 1, 6, 6, dtype=torch.float64))
    except ConfigError as err:
        print("ConfigError:", err)
    else:
        print("no error")
"""


def test_require_without_a_compiler_is_one_clear_error(tmp_path: Path) -> None:
    done = run_script(REQUIRE, tmp_path, SNNERGY_KERNELS="require", CC="no-such-compiler")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "ConfigError: SNNERGY_KERNELS=require, but snnergy's compiled CPU kernels cannot be built: "
        "no C compiler 'no-such-compiler' on PATH (set $CC) (set SNNERGY_KERNELS=auto to fall back to the "
        "PyTorch loops)")


def test_require_with_a_compiler_builds(kernels_built: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kernels.SWITCH, "require")
    assert kernels.prepare() and kernels.available() and kernels.unavailable_reason() is None


# ---------------------------------------------------------------------------- pooling, and the scan that pools


@pytest.mark.parametrize("kernel", [(2, 2), (3, 3), (2, 1), (1, 3), (7, 7)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_pool_is_avg_pool2d_on_spikes_and_the_strided_additions_on_anything(
        kernels_built: None, kernel: tuple[int, int], dtype: torch.dtype, threads: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 15x14 maps leave rows/columns that floor mode drops for most windows
    from snnergy.simulation.folding import pool_spikes

    torch.manual_seed(0)
    spikes = (torch.rand(5, 6, 15, 14) < 0.3).to(dtype).contiguous(memory_format=torch.channels_last)
    ho, wo = 15 // kernel[0], 14 // kernel[1]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = kernels.pool(spikes, kernel, spikes.new_empty((5, ho, wo, 6)).permute(0, 3, 1, 2))
        # spikes: each window's sum is a small integer, divided as avg_pool2d divides it
        assert torch.equal(out, torch.nn.functional.avg_pool2d(spikes, kernel))
        # any values: the same additions in the same order as the strided PyTorch additions
        values = torch.randn(5, 6, 15, 14, dtype=dtype).contiguous(memory_format=torch.channels_last)
        compiled = kernels.pool(values, kernel, values.new_empty((5, ho, wo, 6)).permute(0, 3, 1, 2))
        monkeypatch.setattr(kernels, "pool_compatible", lambda x: False)
        assert torch.equal(compiled, pool_spikes([nn.AvgPool2d(kernel)], values))
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("kernel", [(2, 2), (3, 2)])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_scan_that_pools_is_the_scan_then_the_pool(kernels_built: None, dtype: torch.dtype, reset: str,
                                                            static: bool, kernel: tuple[int, int],
                                                            threads: int) -> None:
    # a 7x5 map: with (2, 2) windows row 6 and column 4 are dropped by floor mode, with (3, 2)
    # row 6 and column 4; those neurons are still scanned and counted
    torch.manual_seed(0)
    neuron = IFNeuron(0.7, reset)
    steps, batch, (c, h, w) = 9, 4, (3, 7, 5)
    last = torch.channels_last
    currents = ((torch.rand(batch, c, h, w) if static else torch.rand(steps, batch, c, h, w)) - 0.3).to(dtype)
    currents = currents.contiguous(memory_format=last) if static else \
        currents.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    v_ref = torch.zeros(batch, c, h, w, dtype=dtype).contiguous(memory_format=last)
    v, final_ref, final = v_ref.clone(), torch.zeros_like(v_ref), torch.zeros_like(v_ref)
    ref = torch.empty(steps, batch, h, w, c, dtype=dtype).permute(0, 1, 4, 2, 3)
    counts_ref, counts = (torch.empty(steps, h, w, c, dtype=dtype).permute(0, 3, 1, 2) for _ in range(2))
    kernels.if_scan(currents, v_ref, ref, counts_ref, final_ref, neuron.threshold, reset == "subtract",
                    static=static)
    ho, wo = h // kernel[0], w // kernel[1]
    out = torch.empty(steps, batch, ho, wo, c, dtype=dtype).permute(0, 1, 4, 2, 3)
    assert kernels.scan_pool_compatible(currents, v, out, counts, final, kernel, static)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        kernels.if_scan_pool(currents, v, out, counts, final, neuron.threshold, reset == "subtract", kernel,
                             static=static)
    finally:
        torch.set_num_threads(previous)
    pooled = torch.nn.functional.avg_pool2d(ref.flatten(0, 1), kernel).unflatten(0, (steps, batch))
    assert torch.equal(out, pooled) and torch.equal(v, v_ref)
    assert torch.equal(counts, counts_ref) and torch.equal(final, final_ref)
    assert 0 < ref.mean() < 1 and ref[:, :, :, h - 1].sum() > 0  # neurons fire, in the dropped row too
    # a contiguous (not channels-last) map, or a wrongly shaped output, is not for this kernel
    assert not kernels.scan_pool_compatible(currents, v.contiguous(), out, counts, final, kernel, static)
    assert not kernels.scan_pool_compatible(currents, v, out[:, :, :, :1], counts, final, kernel, static)
