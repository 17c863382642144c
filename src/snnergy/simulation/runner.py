"""A dataset through the simulator: memory-bounded sub-batches, and accuracy, spike counts and
rate correlations aggregated into a :class:`SimulationResult`."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import Tensor, nn  # nn: used by the doctests
from tqdm.auto import tqdm

from snnergy.config import SimulateConfig
from snnergy.data import batches
from snnergy.errors import ConfigError, DataError
from snnergy.simulation.memory import default_max_memory
from snnergy.simulation.memory import plan as plan_memory
from snnergy.simulation.network import SpikingNetwork, SpikingStage  # SpikingStage: used by the doctest
from snnergy.simulation.simulator import MAX_ELEMENTS, Simulator, prepare_input


@dataclass
class SimulationResult:
    """A simulation aggregated over all samples; lists are aligned with ``timesteps``.

    Attributes:
        timesteps: The reported T values (sorted, unique, >= 1).
        correct: Correct readout predictions after each T (argmax of the potential accumulated
            over steps 1..T; ties go to the lowest class index, as ``torch.argmax``).
        samples: Number of simulated samples.
        spike_counts: By neuron name, ``(K, *shape)`` float64 spikes over samples and steps 1..T_k.
        input_counts: Poisson input: ``(K, *input_shape)`` input spikes likewise; analog: ``None``.
        neurons: Neurons per spiking layer (per sample), by neuron name.
        correlation: By neuron name, Pearson r over all (sample, neuron) pairs between the
            rate-model activation (DNN activation / lambda) and the SNN rate at the largest T;
            0.0 when either side is constant.
        paths: Per stage name, the path its currents took: ``"batched"``, ``"looped"`` or
            ``"event"`` (the analog first stage, whose current is computed once per batch, counts
            as batched); see :class:`~snnergy.simulation.Simulator`.
        density: Per stage name (but the analog first), the fraction of its inputs that were
            non-zero on the chunk where its path was chosen.
        gated_counts: By name of a stage reading its neurons through max pooling, ``(K, *shape)``
            float64 spikes of those neurons that passed the gate (:attr:`BatchTrace.gated_counts`).
    """

    timesteps: list[int]
    correct: list[int]
    samples: int
    spike_counts: dict[str, Tensor]
    input_counts: Tensor | None
    neurons: dict[str, int]
    correlation: dict[str, float]
    paths: dict[str, str]
    density: dict[str, float] = field(default_factory=dict)
    gated_counts: dict[str, Tensor] = field(default_factory=dict)

    @property
    def accuracy(self) -> list[float]:
        """Fraction of correct predictions after each reported T."""
        return [c / self.samples if self.samples else 0.0 for c in self.correct]


def run_simulation(snn: SpikingNetwork, data: Any, config: SimulateConfig = SimulateConfig(), *,
                   device: str | torch.device = "cpu", seed: int = 0, progress: bool = False,
                   max_elements: int = MAX_ELEMENTS) -> SimulationResult:
    """Simulates a dataset and aggregates accuracy, spike counts and rate correlations.

    Args:
        snn: The converted network (copied onto ``device`` if it lives elsewhere).
        data: A DataLoader (or iterable) of ``(x, y)`` batches, or an ``(inputs, labels)`` pair.
        config: Reported timesteps, input encoding, ``max_samples`` (validated when it was built).
        device: ``"cpu"`` or ``"cuda"``.
        seed: Seeds the Poisson input generator.
        progress: Show a tqdm progress bar.
        max_elements: Most values of one chunk-sized buffer (see :class:`Simulator`);
            ``config.max_memory`` (bytes; ``None``: a quarter of the RAM) bounds the whole run
            (batches are split to fit), see :mod:`snnergy.simulation.memory`.

    Raises:
        ConfigError: Not even one sample fits in ``config.max_memory`` (before allocating).

    Example:
        >>> stage1 = SpikingStage("fc1", "relu1", nn.Sequential(), nn.Linear(1, 1, bias=False), True)
        >>> stage2 = SpikingStage("fc2", None, nn.Sequential(), nn.Linear(1, 2, bias=False), False)
        >>> snn = SpikingNetwork([stage1, stage2], (1,))
        >>> with torch.no_grad():  # a spike adds -0.5 to class 0 and +1 to class 1
        ...     _ = stage1.layer.weight.fill_(0.5), stage2.layer.weight.copy_(torch.tensor([[-0.5], [1.0]]))
        >>> data = (torch.tensor([[1.0], [0.0]]), torch.tensor([1, 1]))
        >>> result = run_simulation(snn, data, SimulateConfig(timesteps=(1, 2)))
        >>> # x = 1: v = 0.5, then 1.0 -> spike at step 2; x = 0 never spikes (tie -> class 0)
        >>> result.accuracy, result.spike_counts["relu1"].flatten().tolist()
        ([0.0, 0.5], [0.0, 1.0])
    """
    readout = snn.shapes()[snn.stages[-1].name][1]
    if len(readout) != 1:
        raise ConfigError(f"the readout '{snn.stages[-1].name}' gives per-sample shape {readout}; the simulation "
                          "scores one value per class (a 1-d output), e.g. a NIR graph whose Input carries a "
                          f"batch dimension: its input shape here is {snn.input_shape}")
    device = torch.device(device)
    param = next(snn.parameters())
    net = snn if param.device == device else copy.deepcopy(snn).to(device)
    steps = config.timesteps[-1]
    budget = config.max_memory if config.max_memory is not None else default_max_memory(device)
    fitting, budget_elements = plan_memory(net, steps, len(config.timesteps), budget, config.input == "poisson")
    max_elements = min(max_elements, budget_elements)
    sim = Simulator(net, config.timesteps, input=config.input, mode="auto", max_elements=max_elements)
    generator = torch.Generator(device=device).manual_seed(seed) if config.input == "poisson" else None
    sub_batch = fitting
    correct = [0] * len(sim.timesteps)
    counts: dict[str, Tensor] = {}
    gated: dict[str, Tensor] = {}
    inputs: Tensor | None = None
    moments: dict[str, _Moments] = {}
    samples = 0
    total = _total(data, config.max_samples)
    with tqdm(total=total, disable=not progress, unit="sample", desc="simulate") as bar:
        for x, y in _split(batches(data, batch_size=None), sub_batch, config.max_samples):
            trace = sim.run(x.to(device), generator)
            labels = y.to(device)
            correct = [c + int(n) for c, n in zip(correct, (trace.potentials.argmax(-1) == labels).sum(1))]
            counts = {k: counts.get(k, 0) + v for k, v in trace.spike_counts.items()}
            gated = {k: gated.get(k, 0) + v for k, v in trace.gated_counts.items()}
            if trace.input_counts is not None:
                inputs = trace.input_counts if inputs is None else inputs + trace.input_counts
            with torch.no_grad():
                acts, _ = net.activations(prepare_input(net, x.to(device)))
            for name, act in acts.items():
                moments.setdefault(name, _Moments()).add(act, trace.final_counts[name] / steps)
            samples += x.shape[0]
            bar.update(x.shape[0])
    if samples == 0:
        raise DataError("no samples to simulate: the data is empty")
    neurons = {s.neuron_name: math.prod(out) for s, (_, out) in zip(net.stages, net.shapes().values())
               if s.spiking}
    return SimulationResult(list(sim.timesteps), correct, samples, {k: v.cpu() for k, v in counts.items()},
                            None if inputs is None else inputs.cpu(), neurons,
                            {k: m.pearson() for k, m in moments.items()}, dict(sim.paths),
                            dict(sim.density), {k: v.cpu() for k, v in gated.items()})


def _total(data: Any, limit: int | None) -> int | None:
    """Number of samples to simulate, when the data tells it (for the progress bar)."""
    try:
        size = len(data[0]) if isinstance(data, (tuple, list)) else len(data.dataset)
    except (TypeError, AttributeError, IndexError):
        return limit
    return size if limit is None else min(size, limit)


def _split(stream: Iterator[tuple[Tensor, Tensor]], size: int,
           limit: int | None) -> Iterator[tuple[Tensor, Tensor]]:
    seen = 0
    for x, y in stream:
        for i in range(0, x.shape[0], size):
            if limit is not None and seen >= limit:
                return
            stop = i + size if limit is None else min(i + size, i + limit - seen)
            seen += x[i:stop].shape[0]
            yield x[i:stop], y[i:stop]


class _Moments:
    """Running Pearson statistics of (a, b) pairs, merged batch by batch (Chan et al. 1979)."""

    def __init__(self) -> None:
        self.n, self.mean_a, self.mean_b, self.m2a, self.m2b, self.cab = 0, 0.0, 0.0, 0.0, 0.0, 0.0

    def add(self, a: Tensor, b: Tensor) -> None:
        a, b = _flat64(a), _flat64(b)
        n, ma, mb = a.numel(), float(a.mean()), float(b.mean())
        da, db = a.sub_(ma), b.sub_(mb)  # in place on the copies; dot products: no (n,) temporaries
        total = self.n + n
        dma, dmb = ma - self.mean_a, mb - self.mean_b
        self.m2a += float(torch.dot(da, da)) + dma * dma * self.n * n / total
        self.m2b += float(torch.dot(db, db)) + dmb * dmb * self.n * n / total
        self.cab += float(torch.dot(da, db)) + dma * dmb * self.n * n / total
        self.mean_a += dma * n / total
        self.mean_b += dmb * n / total
        self.n = total

    def pearson(self) -> float:
        if self.m2a <= 0 or self.m2b <= 0:
            return 0.0
        return max(-1.0, min(1.0, self.cab / math.sqrt(self.m2a * self.m2b)))


def _flat64(t: Tensor) -> Tensor:
    """A float64 copy of ``t``, flat in its logical (row-major) order: one pass, also from a
    channels-last map (``reshape`` then ``to`` copied such a map twice: about 10 ms of a
    Fashion-MNIST LeNet call of 360 images)."""
    return torch.empty(t.shape, dtype=torch.float64, device=t.device).copy_(t).reshape(-1)
