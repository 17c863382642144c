"""Simulation memory is bounded by `simulate.max_memory`: batches are split to fit, results do not
depend on the split, and a request that cannot fit is refused before anything is allocated."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from snnergy.config import SimulateConfig, parse_size
from snnergy.errors import ConfigError
from snnergy.simulation import SpikingNetwork, SpikingStage, run_simulation
from snnergy.simulation.memory import bytes_per_sample, plan

SRC = Path(__file__).resolve().parents[3] / "src"


def small_net(width: int = 32) -> SpikingNetwork:
    torch.manual_seed(0)
    s1 = SpikingStage("fc1", "relu1", nn.Sequential(), nn.Linear(8, width), True)
    s2 = SpikingStage("fc2", "relu2", nn.Sequential(), nn.Linear(width, width), True)
    s3 = SpikingStage("fc3", None, nn.Sequential(), nn.Linear(width, 3), False)
    return SpikingNetwork([s1, s2, s3], (8,))


def test_bytes_per_sample_hand_case() -> None:
    # spiking neurons 32 + 32 = 64: potentials 4 B, counts 4 B while running and 8 B returned,
    # rate-model activations 4 B: 64 x 20 = 1280; readout potentials 3 reported T x 3 classes x
    # 4 B = 36. Total 1316, whatever T: spike trains and currents live one chunk at a time.
    assert bytes_per_sample(small_net(), steps=10, reported=3) == 1316
    assert bytes_per_sample(small_net(), steps=10**6, reported=3) == 1316
    # Poisson input adds the input train, drawn in float32 and kept as bool: 10 x 8 x (4 + 1) = 400
    assert bytes_per_sample(small_net(), steps=10, reported=3, poisson=True) == 1716


def test_a_request_that_cannot_fit_is_refused_before_allocating() -> None:
    x, y = torch.rand(4, 8), torch.zeros(4, dtype=torch.long)
    config = SimulateConfig(timesteps=(10**9,), max_memory=2**20, input="poisson")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"T=1000000000 needs about .* GiB per sample \(mostly the Poisson "
                                          r"input train.*lower the largest T or raise --max-memory"):
        run_simulation(small_net(), (x, y), config)
    assert time.perf_counter() - start < 5  # nothing was simulated (10**9 steps would take hours)
    # reporting every one of 10**6 steps keeps 10**6 x 64 counts (1 GB): refused as well
    with pytest.raises(ConfigError, match=r"for the counts at 1000000 reported T"):
        run_simulation(small_net(), (x, y), SimulateConfig(timesteps=tuple(range(1, 10**6 + 1)), max_memory=2**20))


def test_results_do_not_depend_on_how_the_budget_splits_the_batch() -> None:
    torch.manual_seed(1)
    x, y = torch.rand(50, 8) * 2, torch.randint(0, 3, (50,))
    net = small_net()
    per_sample = bytes_per_sample(net, 64, 3)
    small = run_simulation(net, (x, y), SimulateConfig(timesteps=(16, 32, 64), max_memory=4 * per_sample + 2 * 3072))
    large = run_simulation(net, (x, y), SimulateConfig(timesteps=(16, 32, 64), max_memory=2**30))
    # the counts take 3 T x 64 neurons x 8 B x 2 = 3072 B; half of (4 x 1316 + 6144) less 3072
    # leaves 2632 B: 2 samples per sub-batch
    assert plan(net, 64, 3, 4 * per_sample + 2 * 3072)[0] == 2
    assert small.correct == large.correct and small.samples == large.samples == 50
    assert all(torch.equal(small.spike_counts[k], large.spike_counts[k]) for k in large.spike_counts)


def test_parse_size() -> None:
    assert parse_size("1.5GiB") == 3 * 2**29
    assert parse_size(" 64 MiB ") == 64 * 2**20
    for bad in ("lots", "-1GB", "0", "infGB"):
        with pytest.raises(ConfigError):
            parse_size(bad)


PEAK = textwrap.dedent("""
    import resource, sys, torch
    from torch import nn
    from snnergy.config import SimulateConfig
    from snnergy.simulation import SpikingNetwork, SpikingStage, run_simulation
    torch.manual_seed(0); torch.set_num_threads(1)
    # LeNet-sized layers: 1024 and 512 neurons; T = 512, 400 samples. Unbounded, one batch of
    # spike trains would take 400 x 512 x (1024 + 1024) x 4 B = 1.6 GB.
    stages = [SpikingStage("fc1", "relu1", nn.Sequential(), nn.Linear(64, 1024), True),
              SpikingStage("fc2", "relu2", nn.Sequential(), nn.Linear(1024, 512), True),
              SpikingStage("fc3", None, nn.Sequential(), nn.Linear(512, 10), False)]
    net = SpikingNetwork(stages, (64,))
    x, y = torch.rand(400, 64), torch.zeros(400, dtype=torch.long)
    budget = int(sys.argv[1])
    run_simulation(net, (x[:2], y[:2]), SimulateConfig(timesteps=(8,), max_memory=budget))  # warm up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # every t reported (what the every-t curve asks for): the counts at each t, summed over the
    # batch, are 512 x 1536 x 8 B = 6.3 MB; held once per batch, not once per group of samples
    timesteps = tuple(range(1, 513)) if sys.argv[2] == "every" else (64, 512)
    run_simulation(net, (x, y), SimulateConfig(timesteps=timesteps, max_memory=budget))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
""")


@pytest.mark.slow
@pytest.mark.parametrize("reported", ["listed", "every"])
def test_peak_memory_stays_within_the_budget(tmp_path: Path, reported: str) -> None:
    budget = 64 * 2**20
    script = tmp_path / "peak.py"
    script.write_text(PEAK)
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, str(script), str(budget), reported], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    growth = int(done.stdout.split()[-1])
    assert growth < budget, f"peak grew by {growth / 2**20:.0f} MiB for a {budget / 2**20:.0f} MiB budget"


def test_sample_bytes_from_a_plan_equals_bytes_per_sample_of_the_snn() -> None:
    # the check before training (experiments.snn.check_memory) reads sizes off the DNN's plan;
    # they must give the same bytes as the converted SNN the simulation later plans with
    import math

    from torch import nn

    from snnergy.conversion import convert
    from snnergy.simulation.memory import bytes_per_sample, sample_bytes
    from snnergy.structure import trace

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(36, 8), nn.ReLU(),
                          nn.Linear(8, 3))
    plan = trace(model, (1, 8, 8))
    snn = convert(model, torch.rand(16, 1, 8, 8))
    neurons = sum(math.prod(a.shape) for a in plan.activations)  # 4*6*6 + 8 = 152
    assert neurons == 152
    for poisson in (False, True):
        assert sample_bytes(neurons, plan.readout_neurons, 64, 50, 3, poisson) == bytes_per_sample(snn, 50, 3, poisson)
