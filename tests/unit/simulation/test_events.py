"""The event-driven path: same currents and spikes as the dense path (with the compiled kernel and
with its PyTorch stand-in), cost per spike equal to docs/design.md's SynOps fan-out, and a clear
fallback without a compiler. The kernels themselves and their switch: test_kernels.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from snnergy.config import ConvertConfig
from snnergy.conversion import convert
from snnergy.counting import readers_fanout
from snnergy.simulation import IFNeuron, Simulator, SpikingNetwork, SpikingStage, simulate_reference
from snnergy.simulation import kernels
from snnergy.simulation.events import EventTable, unsupported

SRC = Path(__file__).resolve().parents[3] / "src"


def stage(pre: list[nn.Module], layer: nn.Module) -> SpikingStage:
    return SpikingStage("s", "r", nn.Sequential(*pre), layer, True)


def binary(rows: int, shape: tuple[int, ...], density: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((rows, *shape), generator=g) < density).double()


CASES = {
    # (weightless ops, layer, raw input shape)
    "linear": ([], nn.Linear(12, 5), (12,)),
    "conv pad 1": ([], nn.Conv2d(3, 4, 3, padding=1), (3, 6, 6)),
    "conv stride 2 pad 2, 5x3 kernel": ([], nn.Conv2d(2, 3, (5, 3), stride=2, padding=(2, 1)), (2, 9, 7)),
    "pool then conv": ([nn.AvgPool2d(2)], nn.Conv2d(2, 5, 3), (2, 10, 10)),
    # 7x7 pooled by 2 keeps 3x3: row and column 6 feed nothing (floor mode)
    "odd pool then flatten then linear": ([nn.AvgPool2d(2), nn.Flatten()], nn.Linear(2 * 3 * 3, 4), (2, 7, 7)),
    "two pools then conv": ([nn.AvgPool2d(2), nn.AvgPool2d((1, 2))], nn.Conv2d(1, 2, 2), (1, 8, 8)),
    "flatten then linear": ([nn.Flatten()], nn.Linear(2 * 4 * 4, 3), (2, 4, 4)),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("compiled", [True, False], ids=["kernel", "pytorch"])
def test_event_currents_equal_the_dense_stage(name: str, channels_last: bool, compiled: bool,
                                               monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    if compiled:
        request.getfixturevalue("kernels_built")
    else:  # the table's PyTorch stand-in for the kernel
        monkeypatch.setenv(kernels.SWITCH, "off")
    torch.manual_seed(0)
    pre, layer, shape = CASES[name]
    s = stage(pre, layer).double()
    x = binary(40, shape, 0.2)
    x[0] = 0.0  # a row without events: the bias alone
    layered = channels_last and len(shape) == 3
    table = EventTable(s, shape, channels_last=layered)
    given = x.contiguous(memory_format=torch.channels_last) if layered else x
    with torch.no_grad():
        dense = s(x)
        event = table(given)
    assert event.shape == dense.shape
    torch.testing.assert_close(event, dense, rtol=0, atol=1e-12)
    # a pooled value (0.25, 0.5, ...) counts as such: spikes of any height are weighted
    graded = x * 0.5
    with torch.no_grad():
        torch.testing.assert_close(table(graded.contiguous(memory_format=torch.channels_last) if layered else graded),
                                   s(graded), rtol=0, atol=1e-12)


def test_cost_per_spike_is_the_synops_fan_out_hand_case() -> None:
    # one input channel 4x4, conv 3x3 padding 0 -> 2x2 outputs, 3 output channels: the corner
    # input (0, 0) reaches only output (0, 0): 1 position x 3 channels = 3 additions; the input
    # (1, 1) reaches all 4 output positions: 12; after a 2x2 pool (4x4 -> 2x2, conv 1x1) every
    # input reaches one pooled value, so 3 additions each
    table = EventTable(stage([], nn.Conv2d(1, 3, 3)), (1, 4, 4))
    per = table.synops_per_input.reshape(4, 4)
    assert per[0, 0] == 3 and per[1, 1] == 12 and per[0, 1] == 6 and per.sum() == 3 * 9 * 4
    pooled = EventTable(stage([nn.AvgPool2d(2)], nn.Conv2d(1, 3, 1)), (1, 4, 4))
    assert pooled.synops_per_input.tolist() == [3] * 16


def test_cost_per_spike_equals_the_synops_definition_on_a_converted_lenet() -> None:
    # the event path's additions per spike are, input by input, the fan-out docs/design.md counts
    # as SynOps (counting.readers_fanout over the plan), for every stage of a converted LeNet
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.AvgPool2d(2),
        conv2=nn.Conv2d(4, 6, 3, padding=1, stride=2), relu2=nn.ReLU(), flatten=nn.Flatten(),
        fc1=nn.Linear(6 * 2 * 2, 8), relu3=nn.ReLU(), fc2=nn.Linear(8, 3)))
    snn = convert(net, torch.rand(16, 1, 8, 8), ConvertConfig())
    plan = snn.plan()
    sim = Simulator(snn, [1])
    for previous, s in zip(snn.stages, snn.stages[1:]):
        in_shape = sim._in_shapes[s.name]
        table = EventTable(s, in_shape)
        fanout = readers_fanout(plan.readers(previous.neuron_name), in_shape)
        assert torch.equal(table.synops_per_input.reshape(in_shape).to(fanout.dtype), fanout), s.name


def test_unsupported_stages_say_why() -> None:
    assert unsupported(stage([], nn.Conv2d(4, 4, 3, groups=2))) is not None
    assert "dilated" in unsupported(stage([], nn.Conv2d(1, 2, 3, dilation=2)))
    assert "stride differs" in unsupported(stage([nn.AvgPool2d(3, stride=1)], nn.Conv2d(1, 2, 1)))
    assert "Flatten before a Conv2d" in unsupported(stage([nn.Flatten()], nn.Conv2d(1, 2, 1)))
    assert unsupported(stage([nn.AvgPool2d(2), nn.Flatten()], nn.Linear(4, 2)), need_kernels=False) is None
    with pytest.raises(ValueError, match="no event-driven path"):
        EventTable(stage([], nn.Conv2d(1, 2, 3, dilation=2)), (1, 6, 6))


def net_with_an_unsupported_stage() -> SpikingNetwork:
    torch.manual_seed(0)
    s1 = SpikingStage("conv1", "relu1", nn.Sequential(), nn.Conv2d(1, 4, 3, padding=1), True)
    s2 = SpikingStage("conv2", "relu2", nn.Sequential(), nn.Conv2d(4, 4, 3, padding=2, dilation=2), True)
    s3 = SpikingStage("fc", None, nn.Sequential(nn.Flatten()), nn.Linear(4 * 6 * 6, 3), False)
    snn = SpikingNetwork([s1, s2, s3], (1, 6, 6)).double()
    with torch.no_grad():
        for s in snn.stages:
            s.layer.weight.mul_(2.0)
    return snn


def test_the_event_path_needs_the_kernels(kernels_built: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert unsupported(stage([nn.AvgPool2d(2), nn.Flatten()], nn.Linear(4, 2))) is None
    monkeypatch.setenv(kernels.SWITCH, "off")
    assert unsupported(stage([nn.AvgPool2d(2), nn.Flatten()], nn.Linear(4, 2))) \
        == f"the compiled kernels are unavailable ({kernels.SWITCH}=off)"


def test_event_mode_falls_back_per_stage_and_says_why(kernels_built: None) -> None:
    snn = net_with_an_unsupported_stage()
    x = torch.rand(7, 1, 6, 6, dtype=torch.float64)
    sim = Simulator(snn, [2, 6], input="poisson", mode="event")
    trace = sim.run(x, torch.Generator().manual_seed(1))
    assert sim.paths == {"conv1": "event", "conv2": "batched", "fc": "event"}
    assert set(sim.unsupported) == {"conv2"} and "dilated" in sim.unsupported["conv2"]
    ref = simulate_reference(snn, x, [2, 6], input="poisson", generator=torch.Generator().manual_seed(1))
    assert torch.equal(trace.potentials, ref.potentials)
    assert all(torch.equal(trace.spike_counts[k], ref.spike_counts[k]) for k in ref.spike_counts)


def test_auto_plans_on_the_middle_chunk_and_records_densities() -> None:
    snn = net_with_an_unsupported_stage()
    x = torch.rand(7, 1, 6, 6, dtype=torch.float64)
    # widest stage: conv2, 4x6x6 in + 4x6x6 out = 288 values per sample: chunks of 5 steps
    sim = Simulator(snn, [40], input="analog", mode="auto", max_elements=7 * 288 * 5)
    sim.run(x)
    assert sim.paths["conv1"] == "batched"  # analog first stage: computed once
    assert sim.paths["conv2"] in ("batched", "looped") and sim.paths["fc"] in ("batched", "looped", "event")
    assert set(sim.density) == {"conv2", "fc"} and all(0 < d < 1 for d in sim.density.values())


def test_auto_takes_the_event_path_below_the_density_threshold(kernels_built: None) -> None:
    snn = net_with_an_unsupported_stage()
    x = torch.rand(7, 1, 6, 6, dtype=torch.float64)
    runs = {}
    for threshold in (0.0, 1.0):
        sim = Simulator(snn, [20], input="poisson", mode="auto", event_density=threshold)
        runs[threshold] = (sim, sim.run(x, torch.Generator().manual_seed(2)))
    sparse, dense = runs[1.0][0], runs[0.0][0]
    assert sparse.paths == {"conv1": "event", "conv2": "batched", "fc": "event"}  # conv2: no event path
    assert dense.paths == {"conv1": "batched", "conv2": "batched", "fc": "batched"}
    assert sparse.density == dense.density and 0 < sparse.density["fc"] < 1  # measured on the data alone
    assert torch.equal(runs[1.0][1].potentials, runs[0.0][1].potentials)


FALLBACK = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
    from test_events import net_with_an_unsupported_stage
    from snnergy.simulation import Simulator, kernels, simulate_reference
    snn = net_with_an_unsupported_stage()
    x = torch.rand(5, 1, 6, 6, dtype=torch.float64)
    sim = Simulator(snn, [3, 9], mode="event")
    trace = sim.run(x)  # tries to build the kernels, and falls back
    assert not kernels.available()
    print(kernels.unavailable_reason())
    ref = simulate_reference(snn, x, [3, 9])
    assert torch.equal(trace.potentials, ref.potentials)
    assert sim.paths == {"conv1": "batched", "conv2": "batched", "fc": "batched"}, sim.paths
    assert "compiled kernels are unavailable" in sim.unsupported["fc"], sim.unsupported
    print("fallback ok")
""")


def test_without_a_compiler_the_pytorch_loops_give_the_same_spikes(tmp_path: Path) -> None:
    script = tmp_path / "fallback.py"
    script.write_text(FALLBACK)
    env = {**os.environ, "CC": "no-such-compiler-snnergy", "SNNERGY_CACHE_DIR": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1", "SNNERGY_KERNELS": "auto"}
    done = subprocess.run([sys.executable, str(script), str(SRC), str(Path(__file__).parent)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "no C compiler 'no-such-compiler-snnergy'" in done.stdout and "fallback ok" in done.stdout
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())
