"""The simulator: runs a spiking network over time, batch by batch, and aggregates what it saw.

:class:`Simulator` runs a feed-forward net layer by layer: each stage computes the currents of all
``T`` steps (one Conv/Linear call on the ``(T*B, ...)`` train, chunked in time to bound memory:
``"batched"``) or one call per step (``"looped"``), then scans its neurons over time, keeping only
one layer's train at a time and the spike counts at the reported ``T`` values (a
:class:`BatchTrace`). :func:`simulate_reference` is the plain step-by-step loop kept for tests, and
:func:`run_simulation` aggregates accuracy, spike counts and rate correlations over a dataset into
a :class:`SimulationResult`.
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import Tensor, nn  # nn: used by the doctests
from tqdm.auto import tqdm

from snnergy.config import SimulateConfig
from snnergy.errors import ConfigError, DataError
from snnergy.simulation.network import SpikingNetwork, SpikingStage
from snnergy.simulation.neurons import IFNeuron, encode_poisson, if_step, if_step_

INPUTS = ("analog", "poisson")
MODES = ("auto", "batched", "looped")
#: Elements of one chunk of batched currents; one layer's train is bounded by 4x this.
MAX_ELEMENTS = 2**24


@dataclass
class BatchTrace:
    """What one simulated batch produced; ``K`` reported timesteps.

    Attributes:
        potentials: ``(K, B, classes)`` readout potential accumulated over steps 1..T_k.
        spike_counts: By neuron name, ``(K, *shape)`` float64 spikes over the batch and steps 1..T_k.
        input_counts: Poisson input: ``(K, *input_shape)`` input spikes likewise; analog: ``None``.
        final_counts: By neuron name, ``(B, *shape)`` float64 spikes of each sample over all steps.
    """

    potentials: Tensor
    spike_counts: dict[str, Tensor]
    input_counts: Tensor | None
    final_counts: dict[str, Tensor]


class Simulator:
    """Simulates batches layer by layer, choosing per stage between batched and looped currents.

    With ``mode="auto"`` the first batch times both ways for each stage (one warm-up and two
    timed repetitions on up to 16 steps) and :attr:`plan` keeps the faster. The analog first
    stage computes its current once per batch and is reported as ``"batched"``.

    Args:
        snn: The network (its device and dtype are used).
        timesteps: The T values to report (sorted, unique, >= 1); runs to the largest.
        input: ``"analog"`` (constant current ``x``) or ``"poisson"`` (:func:`encode_poisson`).
        mode: ``"auto"``, ``"batched"`` or ``"looped"``.
        max_elements: Elements of one chunk of batched currents (time is chunked to fit).
    """

    def __init__(self, snn: SpikingNetwork, timesteps: Iterable[int], *, input: str = "analog",
                 mode: str = "auto", max_elements: int = MAX_ELEMENTS) -> None:
        self.snn = snn
        self.timesteps = check_timesteps(timesteps)
        self.input = _choice(input, INPUTS, "input")
        self.mode = _choice(mode, MODES, "mode")
        self.max_elements = int(max_elements)
        self.plan: dict[str, str] = {}
        self._sizes = {k: math.prod(i) + math.prod(o) for k, (i, o) in snn.shapes().items()}

    @torch.no_grad()
    def run(self, x: Tensor, generator: torch.Generator | None = None) -> BatchTrace:
        """Simulates one batch ``x`` ``(B, *input_shape)``."""
        x = _prepare(self.snn, x)
        steps, batch = self.timesteps[-1], x.shape[0]
        if batch == 0:
            raise DataError("cannot simulate an empty batch")
        index = torch.tensor([t - 1 for t in self.timesteps], device=x.device)
        train = encode_poisson(x, steps, generator) if self.input == "poisson" else None
        input_counts = _cumulative(train, index) if train is not None else None
        counts, final, potentials = {}, {}, x.new_zeros(0)
        for stage in self.snn.stages:
            if train is None:  # analog first stage: the current W x + b is the same every step
                self.plan[stage.name] = "batched"
                current = stage(x)
                chunks: Iterable[Tensor] = [current.expand(steps, *current.shape)]
            else:
                chunk = max(1, self.max_elements // (batch * self._sizes[stage.name]))
                if self._mode(stage, train, chunk) == "looped":
                    chunk = 1
                chunks = _current_chunks(stage, train, chunk)
            if stage.spiking:
                train = _scan(chunks, self.snn.neuron, steps)
                counts[stage.neuron_name] = _cumulative(train, index)
                final[stage.neuron_name] = train.sum(0).to(torch.float64)  # exact: T < 2**24
            else:
                potentials = _integrate(chunks, self.timesteps)
        return BatchTrace(potentials, counts, input_counts, final)

    def _mode(self, stage: SpikingStage, train: Tensor, chunk: int) -> str:
        if self.mode != "auto":
            self.plan[stage.name] = self.mode
        elif stage.name not in self.plan:
            sample = train[: min(train.shape[0], chunk, 16)]
            batched = _timed(lambda: stage(sample.reshape(-1, *sample.shape[2:])), train.device)
            looped = _timed(lambda: [stage(s) for s in sample], train.device)
            self.plan[stage.name] = "batched" if batched <= looped else "looped"
        return self.plan[stage.name]


def simulate_batch(snn: SpikingNetwork, x: Tensor, timesteps: Iterable[int], *, input: str = "analog",
                   generator: torch.Generator | None = None, mode: str = "auto",
                   max_elements: int = MAX_ELEMENTS) -> BatchTrace:
    """Simulates one batch ``x`` ``(B, *input_shape)`` on the fast path (see :class:`Simulator`).

    The spikes are those of :func:`simulate_reference`: the IF scan, the readout sum and the
    counts are the same element-wise operations in the same order. ``"looped"`` also makes the
    same ``(B, ...)``-sized layer calls, so it is bitwise equal. ``"batched"`` computes the same
    currents with one call on ``(chunk*B, ...)``; a BLAS or convolution kernel may round the
    last bit differently for another batch size (PyTorch does not promise batch invariance),
    which flips a spike only when a potential lies within that rounding of the threshold. The
    tests check bitwise equality in float64, where this is practically impossible (float32 was
    also observed equal on CPU, without a guarantee).

    Example:
        >>> stage1 = SpikingStage("fc1", "relu1", nn.Sequential(), nn.Linear(1, 1), True)
        >>> stage2 = SpikingStage("fc2", None, nn.Sequential(), nn.Linear(1, 1, bias=False), False)
        >>> snn = SpikingNetwork([stage1, stage2], (1,))
        >>> with torch.no_grad():  # current 0.4 per step: spikes at steps 3 and 5
        ...     _ = snn.stages[0].layer.weight.fill_(0.4), snn.stages[0].layer.bias.zero_()
        ...     _ = snn.stages[1].layer.weight.fill_(1.0)
        >>> trace = simulate_batch(snn, torch.ones(1, 1), [1, 3, 5])
        >>> trace.spike_counts["relu1"].flatten().tolist(), trace.potentials.flatten().tolist()
        ([0.0, 1.0, 2.0], [0.0, 1.0, 2.0])
    """
    sim = Simulator(snn, timesteps, input=input, mode=mode, max_elements=max_elements)
    return sim.run(x, generator)


@torch.no_grad()
def simulate_reference(snn: SpikingNetwork, x: Tensor, timesteps: Iterable[int], *,
                       input: str = "analog", generator: torch.Generator | None = None) -> BatchTrace:
    """Plain step-by-step simulation (for t in 1..T, each stage in order); kept for tests.

    Each step calls every layer on that step's ``(B, ...)`` slice, exactly as the ``"looped"``
    mode does, so the two agree bit for bit; see :func:`simulate_batch` for the fast path.
    """
    reported = check_timesteps(timesteps)
    _choice(input, INPUTS, "input")
    x = _prepare(snn, x)
    train = encode_poisson(x, reported[-1], generator) if input == "poisson" else None
    v: dict[str, Tensor] = {}
    running: dict[str, Tensor] = {}  # spikes summed over the batch and steps 1..t ("": input)
    final: dict[str, Tensor] = {}
    counts: dict[str, list[Tensor]] = {}
    potential: Tensor | float = 0.0
    potentials = []
    for t in range(reported[-1]):
        s = x if train is None else train[t]
        if train is not None:
            running[""] = running.get("", 0.0) + s.sum(0, dtype=torch.float64)
        for stage in snn.stages:
            current = stage(s)
            if stage.spiking:
                name = stage.neuron_name
                s, v[name] = if_step(current, v.get(name, torch.zeros_like(current)), snn.neuron)
                running[name] = running.get(name, 0.0) + s.sum(0, dtype=torch.float64)
                final[name] = final.get(name, 0.0) + s.to(torch.float64)
            else:
                potential = potential + current
        if t + 1 in reported:
            potentials.append(potential)
            for name, value in running.items():
                counts.setdefault(name, []).append(value)
    inputs = torch.stack(counts.pop("")) if train is not None else None
    spikes = {k: torch.stack(c) for k, c in counts.items()}
    return BatchTrace(torch.stack(potentials), spikes, inputs, final)


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
        modes: Per stage name, ``"batched"`` or ``"looped"``: what the simulator used (the
            analog first stage, whose current is computed once per batch, counts as batched).
    """

    timesteps: list[int]
    correct: list[int]
    samples: int
    spike_counts: dict[str, Tensor]
    input_counts: Tensor | None
    neurons: dict[str, int]
    correlation: dict[str, float]
    modes: dict[str, str]

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
        config: Reported timesteps, input encoding, ``max_samples``.
        device: ``"cpu"`` or ``"cuda"``.
        seed: Seeds the Poisson input generator.
        progress: Show a tqdm progress bar.
        max_elements: Memory budget: one layer's spike train holds at most ``4 * max_elements``
            floats (batches are split to fit) and one chunk of currents ``max_elements``.

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
    device = torch.device(device)
    param = next(snn.parameters())
    net = snn if param.device == device else copy.deepcopy(snn).to(device)
    sim = Simulator(net, config.timesteps, input=config.input, mode="auto", max_elements=max_elements)
    steps = sim.timesteps[-1]
    generator = torch.Generator(device=device).manual_seed(seed) if config.input == "poisson" else None
    widest = max(math.prod(out) for _, out in net.shapes().values())
    sub_batch = max(1, 4 * max_elements // (steps * max(widest, math.prod(net.input_shape))))
    correct = [0] * len(sim.timesteps)
    counts: dict[str, Tensor] = {}
    inputs: Tensor | None = None
    moments: dict[str, _Moments] = {}
    samples = 0
    total = _total(data, config.max_samples)
    with tqdm(total=total, disable=not progress, unit="sample", desc="simulate") as bar:
        for x, y in _split(_batches(data), sub_batch, config.max_samples):
            trace = sim.run(x.to(device), generator)
            labels = y.to(device)
            correct = [c + int(n) for c, n in zip(correct, (trace.potentials.argmax(-1) == labels).sum(1))]
            counts = {k: counts.get(k, 0) + v for k, v in trace.spike_counts.items()}
            if trace.input_counts is not None:
                inputs = trace.input_counts if inputs is None else inputs + trace.input_counts
            with torch.no_grad():
                acts, _ = net.activations(_prepare(net, x.to(device)))
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
                            {k: m.pearson() for k, m in moments.items()}, dict(sim.plan))


def check_timesteps(timesteps: Iterable[int]) -> list[int]:
    """Sorted unique reported timesteps; each an integer >= 1 (else :class:`ConfigError`)."""
    values = list(timesteps)
    if not values or any(isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 1 for t in values):
        raise ConfigError(f"timesteps must be a non-empty list of integers >= 1, got {values!r}")
    return sorted({int(t) for t in values})


# ---------------------------------------------------------------------------- internals


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ConfigError(f"unknown simulation {what} '{value}'; allowed: {', '.join(allowed)}")
    return value


def _prepare(snn: SpikingNetwork, x: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or tuple(x.shape[1:]) != snn.input_shape:
        shape = tuple(x.shape[1:]) if isinstance(x, Tensor) else type(x).__name__
        raise DataError(f"input batch has per-sample shape {shape}; the SNN expects {snn.input_shape}")
    param = next(snn.parameters())
    return x.to(device=param.device, dtype=param.dtype)


def _current_chunks(stage: SpikingStage, train: Tensor, chunk: int) -> Iterator[Tensor]:
    """Currents ``(t1 - t0, B, ...)`` of ``stage`` for successive time chunks of ``train``."""
    for t0 in range(0, train.shape[0], chunk):
        block = train[t0 : t0 + chunk]
        out = stage(block.reshape(-1, *block.shape[2:]))
        yield out.reshape(block.shape[0], block.shape[1], *out.shape[1:])


def _scan(chunks: Iterable[Tensor], neuron: IFNeuron, steps: int) -> Tensor:
    """Runs IF neurons over time on chunks of currents; returns the ``(T, B, ...)`` spikes."""
    out: Tensor | None = None
    t = 0
    for currents in chunks:
        if out is None:
            out = currents.new_empty((steps, *currents.shape[1:]))
            v = torch.zeros_like(currents[0])
        for current in currents:
            if_step_(current, v, neuron, out[t])
            t += 1
    assert out is not None
    return out


def _integrate(chunks: Iterable[Tensor], reported: list[int]) -> Tensor:
    """Readout: potentials ``(K, B, classes)`` summed step by step, read at the reported T."""
    potential: Tensor | float = 0.0
    snapshots, t = [], 0
    for currents in chunks:
        for current in currents:
            potential = potential + current
            t += 1
            if t in reported:
                snapshots.append(potential)
    return torch.stack(snapshots)


def _cumulative(train: Tensor, index: Tensor) -> Tensor:
    """Spikes of a ``(T, B, ...)`` train summed over the batch and steps 1..T_k: ``(K, ...)``.

    The batch sum runs in the train's dtype, which is exact for 0/1 spikes while ``B < 2**24``
    (float32) and about 10x faster than summing into float64; time is then cumulated in float64.
    """
    return train.sum(1).to(torch.float64).cumsum(0).index_select(0, index)


def _timed(fn: Callable[[], object], device: torch.device, repeats: int = 2) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    best = math.inf
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def _batches(data: Any) -> Iterator[tuple[Tensor, Tensor]]:
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, Tensor) for d in data):
        if len(data[0]) != len(data[1]):
            raise DataError(f"{len(data[0])} inputs but {len(data[1])} labels")
        yield data[0], data[1]
        return
    for item in data:
        if not (isinstance(item, (tuple, list)) and len(item) >= 2 and isinstance(item[0], Tensor)):
            raise DataError("simulation data must yield (inputs, labels) batches of tensors")
        yield item[0], torch.as_tensor(item[1])


def _total(data: Any, limit: int | None) -> int | None:
    """Number of samples to simulate, when the data tells it (for the progress bar)."""
    try:
        size = len(data[0]) if isinstance(data, (tuple, list)) else len(data.dataset)
    except (TypeError, AttributeError, IndexError):
        return limit
    return size if limit is None else min(size, limit)


def _split(batches: Iterator[tuple[Tensor, Tensor]], size: int,
           limit: int | None) -> Iterator[tuple[Tensor, Tensor]]:
    seen = 0
    for x, y in batches:
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
        a, b = a.reshape(-1).double(), b.reshape(-1).double()
        n, ma, mb = a.numel(), float(a.mean()), float(b.mean())
        da, db = a - ma, b - mb
        total = self.n + n
        dma, dmb = ma - self.mean_a, mb - self.mean_b
        self.m2a += float((da * da).sum()) + dma * dma * self.n * n / total
        self.m2b += float((db * db).sum()) + dmb * dmb * self.n * n / total
        self.cab += float((da * db).sum()) + dma * dmb * self.n * n / total
        self.mean_a += dma * n / total
        self.mean_b += dmb * n / total
        self.n = total

    def pearson(self) -> float:
        if self.m2a <= 0 or self.m2b <= 0:
            return 0.0
        return max(-1.0, min(1.0, self.cab / math.sqrt(self.m2a * self.m2b)))
