"""The simulator: runs a spiking network over time, one batch at a time.

:class:`Simulator` runs a feed-forward net layer by layer (a residual net: the chain of stages,
each shortcut reading the kept train of its source): each stage computes the currents of all
``T`` steps (one Conv/Linear call on the ``(T*B, ...)`` train, chunked in time to bound memory:
``"batched"``) or one call per step (``"looped"``), then scans its neurons over time, keeping only
one layer's train at a time and the spike counts at the reported ``T`` values (a
:class:`BatchTrace`). :func:`simulate_reference` is the plain step-by-step loop kept for tests;
:mod:`snnergy.simulation.runner` runs a whole dataset through it.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn  # nn: used by the doctests

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

    A residual net keeps, besides the current layer's train, the trains that later shortcuts
    still read (each dropped after its last reader).

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
        last_use = self.snn.shortcut_sources()
        # trains that later shortcuts read (None: the input, a train or the static analog x)
        kept: dict[str | None, Tensor] = {None: x if train is None else train} if None in last_use else {}
        for i, stage in enumerate(self.snn.stages):
            if train is None:  # analog first stage: the current W x + b is the same every step
                self.plan[stage.name] = "batched"
                current = stage.total_current(x, {None: x}) if len(stage.shortcuts) else stage(x)
                chunks: Iterable[Tensor] = [current.expand(steps, *current.shape)]
            else:
                chunk = max(1, self.max_elements // (batch * self._sizes[stage.name]))
                if self._mode(stage, train, chunk) == "looped":
                    chunk = 1
                chunks = _current_chunks(stage, train, chunk)
                if len(stage.shortcuts):
                    chunks = _with_shortcuts(chunks, stage, kept, self.input == "analog")
            if stage.spiking:
                train = _scan(chunks, self.snn.neuron, steps)
                counts[stage.neuron_name] = _cumulative(train, index)
                final[stage.neuron_name] = train.sum(0).to(torch.float64)  # exact: T < 2**24
                if stage.neuron_name in last_use:
                    kept[stage.neuron_name] = train
            else:
                potentials = _integrate(chunks, self.timesteps)
            for source in [k for k in kept if last_use[k] <= i]:
                del kept[source]  # no later shortcut reads it
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
        outputs: dict[str | None, Tensor] = {None: s}  # this step's spikes, for shortcuts
        for stage in snn.stages:
            current = stage(s)
            for shortcut in stage.shortcuts:
                current = current + shortcut(outputs[shortcut.source])
            if stage.spiking:
                name = stage.neuron_name
                s, v[name] = if_step(current, v.get(name, torch.zeros_like(current)), snn.neuron)
                outputs[name] = s
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


def _with_shortcuts(chunks: Iterable[Tensor], stage: SpikingStage, kept: dict[str | None, Tensor],
                    analog: bool) -> Iterator[Tensor]:
    """Adds each shortcut's current to the stage's own, chunk by chunk over the same steps.

    A shortcut reads the kept ``(T, B, ...)`` train of its source over the chunk's steps, in one
    call on ``(n*B, ...)``; from the analog input (the static ``x``) its current is the same at
    every step and is computed once. Additions run in the reference's order (own, then each
    shortcut), so a looped (``n = 1``) run is bitwise equal to :func:`simulate_reference`.
    """
    static = {j: sc(kept[None]) for j, sc in enumerate(stage.shortcuts) if sc.source is None and analog}
    t0 = 0
    for currents in chunks:
        n = currents.shape[0]
        for j, shortcut in enumerate(stage.shortcuts):
            if j in static:
                currents = currents + static[j]
                continue
            block = kept[shortcut.source][t0 : t0 + n]
            out = shortcut(block.reshape(-1, *block.shape[2:]))
            currents = currents + out.reshape(n, block.shape[1], *out.shape[1:])
        t0 += n
        yield currents


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
