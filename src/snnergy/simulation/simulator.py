"""The simulator: runs a spiking network over time, one batch at a time.

:class:`Simulator` runs the steps in *chunks*: for a chunk of a few steps (and a group of samples,
where the whole batch does not fit) every stage in turn computes its currents, scans its IF
neurons and hands its spikes to the next stage (a residual stage also reads the same chunk of its
shortcuts' sources), while potentials and spike counts carry over to the next chunk. A chunk holds
at most :data:`CHUNK_ELEMENTS` values per buffer (per device), so memory does not grow with ``T``.
Each stage takes one of three paths for its currents:

* ``"batched"``: one Conv/Linear call on the chunk's ``(steps * samples, ...)`` inputs; on a CPU
  the convolution stages' potentials and spikes are laid out channels last, their average
  poolings are strided additions (:func:`~snnergy.simulation.folding.pool_spikes`) and a Flatten
  before a Linear is folded into its column order; elsewhere average poolings before a Linear
  are folded into it (:mod:`snnergy.simulation.folding`);
* ``"looped"``: one call per step on ``(samples, ...)``, the same calls as the reference;
* ``"event"``: only the active inputs cost work, each adding its fan-out of weights
  (:mod:`snnergy.simulation.events`): the cost follows SynOps, not dense MACs. CPU only.

With ``mode="auto"`` the simulator measures each stage's input spike density on the chunk that
holds the middle step of the first batch (earlier chunks take ``"batched"``: in the first steps
few neurons spike yet) and takes ``"event"`` where it supports it and the density is at most
:data:`EVENT_DENSITY`, ``"batched"`` elsewhere (:attr:`Simulator.paths`, :attr:`Simulator.density`).
The choice depends on the data only, not on timings, so a run gives the same numbers every time.
On a CPU the IF scan runs in a compiled kernel (:mod:`snnergy.simulation.kernels`) with the same
arithmetic as :func:`~snnergy.simulation.neurons.if_step_`, counting spikes as it goes; where only
the next stage's first average pooling reads a stage's spikes, its scan leaves them pooled
(:meth:`Simulator._scan_pooling`), and the stages write their spikes into two reused buffers. Every
path (and :func:`simulate_reference`) starts the potentials at the neuron's initial potential
``v0 * threshold`` (:meth:`~snnergy.simulation.IFNeuron.initial`; 0 by default). The first
run on a CPU builds the kernels if ``$SNNERGY_KERNELS`` allows (:func:`~snnergy.simulation.kernels.prepare`,
once per machine, with a message on stderr); without them the PyTorch loops give the same spikes.
:func:`simulate_reference` is the plain step-by-step loop kept for tests;
:mod:`snnergy.simulation.runner` runs a whole dataset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn  # nn: used by the doctests

from snnergy.config import INPUTS, check_timesteps
from snnergy.errors import ConfigError, DataError
from snnergy.simulation import fused_scan, kernels
from snnergy.simulation.events import EventTable, unsupported
from snnergy.simulation.folding import BatchedLayer, leading_pool, pool_spikes
from snnergy.simulation.network import SpikingNetwork, SpikingStage, gate_max_pool
from snnergy.simulation.neurons import IFNeuron, encode_poisson, if_step, if_step_

MODES = ("auto", "batched", "looped", "event")
#: The paths a stage's currents can take (``"auto"`` picks one of them per stage).
PATHS = ("batched", "looped", "event")
#: Elements of one chunk by device type (other types: :data:`OTHER_ELEMENTS`). On a CPU a chunk of
#: 2**22 (16 MiB in float32) was the fastest on Fashion-MNIST LeNet (T = 64, batch 256, 1 thread:
#: 2**18, 2**20, 2**22, 2**24 and 2**26 gave 13.3, 17.9, 22.8, 18.1 and 16.8 k sample-steps/s on
#: the event path): smaller chunks pay per-call overheads, larger ones page faults and cache
#: misses. On CUDA 2**27 (512 MiB): a chunk of 2**24 values (64 MiB) moves through an H100's
#: 3 TB/s in about 20 us, less than the simulator's Python work for a stage and chunk (layer
#: calls, kernel launches, counts: tens of microseconds or more), so the GPU would wait on Python;
#: with 2**27 a Fashion-MNIST LeNet batch of 1024 runs in two groups of 16 steps. Not measured on a
#: GPU yet: ``benchmarks/gpu/run.py`` times 2**24 and one and four groups beside it.
CHUNK_ELEMENTS = {"cpu": 2**22, "cuda": 2**27}
OTHER_ELEMENTS = 2**24
#: Upper bound on the elements of one chunk (rows x the widest stage's inputs and outputs): the
#: largest device budget, so each device type's :data:`CHUNK_ELEMENTS` applies below it.
MAX_ELEMENTS = max(*CHUNK_ELEMENTS.values(), OTHER_ELEMENTS)
#: Steps of a chunk when the budget allows (fewer samples per group instead). Measured on the
#: sweep's Fashion-MNIST LeNet (synops 3e-7), T = 64, batch 256, 1 thread: the first layer's IF
#: scan (77 M neuron-steps) took 137 ms with chunks of 2 steps x 256 samples (potentials and
#: counts go through memory every 2 steps), 111 / 94 / 84 / 77 ms with 8 / 16 / 32 / 64 steps;
#: whole runs were fastest at 16 (465 ms; 490, 495 and 514 ms at 8, 32 and 64).
CHUNK_STEPS = 16
#: Input density at or below which ``mode="auto"`` takes the event path. Measured crossovers
#: (``benchmarks/event_crossover.py --threads 1 --densities 0.02,0.03,0.04,0.05,0.06,0.08``, 2048
#: rows), re-measured after the batched path began pooling channels-last spikes by strided
#: additions (issue 18): event / batched time at 5 % and 8 % density was 0.93 / 1.14 for LeNet's
#: pooled conv2, 0.98 / 1.25 for its fc1, 0.73 / 0.92 for fc2, 0.79 / 1.08 for VGG's pooled
#: conv2_1, 0.79 / 0.82 for conv1_2 and 0.37 / 0.60 for conv3_2: the event path pays below about
#: 5 % on every layer measured (it was 8 % before; the sweep's unregularized Fashion-MNIST LeNet,
#: conv2 at 5.8 %, T = 64, 360 images: 0.50 to 0.54 s a call with 0.05 against 0.66 to 0.69 s with 0.08).
EVENT_DENSITY = 0.05


@dataclass
class BatchTrace:
    """What one simulated batch produced; ``K`` reported timesteps.

    Attributes:
        potentials: ``(K, B, classes)`` readout potential accumulated over steps 1..T_k.
        spike_counts: By neuron name, ``(K, *shape)`` float64 spikes over the batch and steps 1..T_k.
        input_counts: Poisson input: ``(K, *input_shape)`` input spikes likewise; analog: ``None``.
        final_counts: By neuron name, ``(B, *shape)`` float64 spikes of each sample over all steps.
        gated_counts: By the name of a stage with a max pooling (:attr:`SpikingStage.gate`), the
            ``(K, *shape)`` float64 spikes of its source neurons that passed the gate, over the
            batch and steps 1..T_k (what their SynOps into that stage count).
    """

    potentials: Tensor
    spike_counts: dict[str, Tensor]
    input_counts: Tensor | None
    final_counts: dict[str, Tensor]
    gated_counts: dict[str, Tensor] = field(default_factory=dict)


class Simulator:
    """Simulates batches chunk by chunk, with a path per stage (see the module docstring).

    The analog first stage computes its current once per batch (reported as ``"batched"``).
    ``mode="event"`` takes the event path wherever a stage supports it and ``"batched"``
    elsewhere; :attr:`paths` says what each stage used and :attr:`unsupported` why a stage had no
    event path.

    Args:
        snn: The network (its device and dtype are used).
        timesteps: The T values to report (integers >= 1, :func:`~snnergy.config.check_timesteps`);
            runs to the largest.
        input: ``"analog"`` (constant current ``x``) or ``"poisson"`` (:func:`encode_poisson`).
        mode: ``"auto"``, ``"batched"``, ``"looped"`` or ``"event"``.
        event_density: With ``"auto"``, the input density at or below which a stage takes the
            event path.
        max_elements: Most elements of one chunk (rows x the widest stage's inputs plus outputs);
            the device's :data:`CHUNK_ELEMENTS` when smaller.
        fold: On the batched path, fold the Flatten of channels-last spikes (a CPU's, pooled
            first) or average poolings of contiguous ones into the next Linear
            (:mod:`snnergy.simulation.folding`; the same spikes, the rounding of another
            summation order); ``False`` folds nothing, as the looped path and
            :func:`simulate_reference`. A Conv2d after a pooling reads the pooled spikes, channels
            last on a CPU (composing it would multiply its MACs by the pooling's area).
    """

    def __init__(self, snn: SpikingNetwork, timesteps: Iterable[int], *, input: str = "analog",
                 mode: str = "auto", max_elements: int = MAX_ELEMENTS, event_density: float = EVENT_DENSITY,
                 fold: bool = True) -> None:
        self.snn = snn
        self.fold = bool(fold)
        self.event_density = float(event_density)
        self.timesteps = list(check_timesteps(timesteps))
        self.input = _choice(input, INPUTS, "input")
        self.mode = _choice(mode, MODES, "mode")
        self.max_elements = max(1, int(max_elements))
        #: Per stage name, the path its currents took (``results.json``'s ``snn.paths``).
        self.paths: dict[str, str] = {}
        #: Per stage name, the fraction of non-zero inputs on the chunk its path was chosen on.
        self.density: dict[str, float] = {}
        #: Per stage name, why it has no event path (stages that have one are absent).
        self.unsupported: dict[str, str] = {}
        shapes = snn.shapes()
        outs = [snn.input_shape] + [o for _, o in shapes.values()]
        self._in_shapes = dict(zip(shapes, outs))  # a stage's input: the previous neurons' shape
        self._source_shapes: dict[str | None, tuple[int, ...]] = {None: tuple(snn.input_shape)}
        self._source_shapes.update({s.neuron_name: o for s, (_, o) in zip(snn.stages, shapes.values()) if s.spiking})
        #: Per branch (a stage name, or ``"<stage>/<shortcut index>"``) and input layout, how the
        #: batched path runs it (its poolings, and what is folded into its layer).
        self._folded: dict[tuple[str, bool], BatchedLayer] = {}
        self._widest = max(math.prod(i) + math.prod(o) for i, o in shapes.values())
        self._tables: dict[tuple[str, bool] | tuple[str, bool, str], EventTable | None] = {}
        self._sources = set(snn.shortcut_sources())
        #: The two spike buffers the stages write into in turn (:meth:`_run_group`), kept from
        #: batch to batch: within the chunk-sized buffers the memory plan counts.
        self._ring: list[Tensor | None] = [None, None]

    @torch.no_grad()
    def run(self, x: Tensor, generator: torch.Generator | None = None) -> BatchTrace:
        """Simulates one batch ``x`` ``(B, *input_shape)``.

        Raises:
            ConfigError: ``$SNNERGY_KERNELS`` is invalid, or ``require`` and the kernels cannot be
                built (on a CPU; see :mod:`snnergy.simulation.kernels`).
        """
        x = prepare_input(self.snn, x)
        if x.device.type == "cpu":
            kernels.prepare()  # the defined build point: once per process (the library once per machine)
        steps, batch = self.timesteps[-1], x.shape[0]
        if batch == 0:
            raise DataError("cannot simulate an empty batch")
        train = encode_poisson(x, steps, generator, dtype=torch.bool) if self.input == "poisson" else None
        group, chunk = self._chunking(batch, x.device)
        potentials: list[Tensor] = []
        finals: dict[str, list[Tensor]] = {}
        counts: dict[str, Tensor] = {}
        gated: dict[str, Tensor] = {}
        for g in range(0, batch, group):
            part = self._run_group(x[g : g + group], None if train is None else train[:, g : g + group], chunk,
                                   self._ring)
            potentials.append(part[0])
            # the counts at every reported t are summed over the batch: add each group's as it
            # comes (in group order, as before), never holding one (reported T, neurons) tensor per group
            counts = {k: counts[k] + c if k in counts else c for k, c in part[1].items()}
            gated = {k: gated[k] + c if k in gated else c for k, c in part[3].items()}
            for k, f in part[2].items():
                finals.setdefault(k, []).append(f)
        index = torch.tensor([t - 1 for t in self.timesteps], device=x.device)
        input_counts = None if train is None else \
            train.sum(1, dtype=torch.float64).cumsum(0).index_select(0, index)
        return BatchTrace(torch.cat(potentials, 1), counts, input_counts,
                          {k: torch.cat(f) for k, f in finals.items()}, gated)

    def _chunking(self, batch: int, device: torch.device) -> tuple[int, int]:
        """(samples per group, steps per chunk): up to :data:`CHUNK_STEPS` steps, then as many
        samples as the budget allows (the IF scan keeps a sample's potentials in cache over the
        chunk's steps, so deeper chunks move less memory)."""
        budget = min(self.max_elements, CHUNK_ELEMENTS.get(device.type, OTHER_ELEMENTS))
        steps = min(self.timesteps[-1], CHUNK_STEPS, max(1, budget // self._widest))
        # looped: layer calls on the whole batch, as the reference makes them
        group = batch if self.mode == "looped" else min(batch, max(1, budget // (steps * self._widest)))
        return group, max(1, min(self.timesteps[-1], budget // (group * self._widest)))

    def _run_group(self, x: Tensor, train: Tensor | None, chunk: int, ring: list[Tensor | None]
                   ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """Simulates the samples ``x`` (their Poisson ``train``): potentials, counts, final counts
        and the counts of spikes through max-pooling gates.

        ``ring``: two reusable spike buffers. A stage's spikes are read by the next stage only
        (unless a shortcut reads them too), so the stages write their spikes into the two in turn,
        chunk after chunk, group after group and batch after batch: they are allocated once, not
        once per chunk (a fresh 11 MiB buffer costs its page faults again every time).
        """
        steps, reported = self.timesteps[-1], set(self.timesteps)
        stages = self.snn.stages
        v: dict[str, Tensor] = {}
        running: dict[str, Tensor] = {}  # spikes over the group and steps 1..t, float64
        snapshots: dict[str, list[Tensor]] = {s.neuron_name: [] for s in stages if s.spiking}
        final: dict[str, Tensor] = {}  # each sample's spikes (exact in float32 below 2**24 steps)
        statics: dict[tuple[str, int], Tensor] = {}  # currents that are the same at every step
        potential: Tensor | float = 0.0
        potentials: list[Tensor] = []
        gated: dict[str, list[Tensor]] = {s.name: [] for s in stages if s.gate is not None}
        gated_running: dict[str, Tensor] = {}
        for t0 in range(0, steps, chunk):
            n = min(chunk, steps - t0)
            source = x if train is None else train[t0 : t0 + n].to(x.dtype)
            outputs: dict[str | None, Tensor] = {None: source}
            inputs = source
            spiked: Tensor | None = None  # the spikes of `inputs` summed over the batch, when known
            slot: int | None = None  # the ring buffer holding `inputs`, if one does
            pooled = False  # `inputs` went through the next stage's first pooling already
            choose = t0 + n > (steps - 1) // 2  # choose paths on the chunk holding the middle step
            previous: str | None = None
            for i, stage in enumerate(stages):
                if stage.gate is not None:  # spikes through max pooling: gated by spike counts
                    before = final[previous] - inputs.sum(0)  # type: ignore[index]
                    inputs, passed = gate_max_pool(stage.gate, inputs, before)
                    spiked, slot = None, None
                    cumulative = passed.sum(1, dtype=torch.float64).cumsum(0)
                    if stage.name in gated_running:
                        cumulative += gated_running[stage.name]
                    gated_running[stage.name] = cumulative[-1]
                    gated[stage.name] += [cumulative[t - 1 - t0] for t in range(t0 + 1, t0 + n + 1) if t in reported]
                previous = stage.neuron_name
                static = i == 0 and train is None
                if static:  # analog first stage: the current W x + b is the same every step
                    self.paths[stage.name] = "batched"
                    if (stage.name, -1) not in statics:
                        statics[(stage.name, -1)] = _channels_last(stage.total_current(x, {None: x})
                                                                   if len(stage.shortcuts) else stage(x))
                    currents = statics[(stage.name, -1)]
                else:
                    # choose on the chunk holding the middle step: at the start few neurons spike yet
                    currents = self._currents(stage, inputs, choose=choose, spiked=spiked, pooled=pooled)
                    if len(stage.shortcuts):
                        currents = self._add_shortcuts(currents, stage, outputs, statics, train is None)
                if stage.spiking:
                    name = stage.neuron_name
                    if name not in v:
                        v[name] = _channels_last(self.snn.neuron.initial(currents if static else currents[0]))
                        final[name] = torch.zeros_like(v[name])
                    # a shortcut's source keeps its own buffer; the others take the ring's other slot
                    slot = None if name in self._sources else 1 if slot == 0 else 0
                    out, window = None, None
                    if slot is not None and not fused_scan.selected(v[name]):
                        window = self._scan_pooling(i, v[name], choose)
                        out, ring[slot] = _steps_in(ring[slot], v[name], n, window)
                    spikes, step_counts = _scan(currents, v[name], final[name], self.snn.neuron, n, static, out,
                                                window)
                    pooled = window is not None
                    cumulative = step_counts.cumsum(0, dtype=torch.float64)
                    if name in running:
                        cumulative += running[name]
                    running[name] = cumulative[-1]
                    snapshots[name] += [cumulative[t - 1 - t0] for t in range(t0 + 1, t0 + n + 1) if t in reported]
                    inputs, spiked = spikes, step_counts
                    if name in self._sources:  # a later shortcut reads this chunk
                        outputs[name] = spikes
                else:
                    for j in range(n):
                        potential = potential + (currents if static else currents[j])
                        if t0 + j + 1 in reported:
                            potentials.append(potential)  # type: ignore[arg-type]
        counts = {k: torch.stack(s) for k, s in snapshots.items()}
        return (torch.stack(potentials), counts, {k: f.to(torch.float64) for k, f in final.items()},
                {k: torch.stack(g) for k, g in gated.items()})

    def _currents(self, stage: SpikingStage, inputs: Tensor, choose: bool, spiked: Tensor | None = None,
                  pooled: bool = False) -> Tensor:
        """The stage's own currents ``(n, B, ...)`` for the chunk ``inputs`` ``(n, B, ...)``; with
        ``mode="auto"`` a stage without a path yet gets one if ``choose``, else takes ``"batched"``.
        ``spiked``: the inputs summed over the batch (spikes: their count), if known. ``pooled``:
        the inputs went through the stage's first pooling in the previous IF scan
        (:meth:`_scan_pooling`, which only pools for the batched path)."""
        if pooled:
            return self._event(stage, inputs, pooled=True) if self.paths.get(stage.name) == "event" else \
                self._batched(stage, inputs, pooled=True)
        if stage.name in self.paths or choose or self.mode != "auto":
            path = self._path(stage, inputs, spiked)
        else:
            path = "batched"
        return _PATH_CALLS[path](self, stage, inputs)

    def _batched(self, stage: SpikingStage, inputs: Tensor, pooled: bool = False) -> Tensor:
        flat = inputs.reshape(-1, *inputs.shape[2:])
        if stage.gate is not None:  # gated: inputs are pooled already
            out = stage.after_gate(flat)
        else:
            # pooled spikes come from channels-last ones (a 1x1 pooled map is contiguous as well)
            out = self._batched_layer(stage.name, stage.pre, stage.layer, self._in_shapes[stage.name],
                                      pooled or _is_channels_last(flat))(flat, pooled)
        return out.reshape(inputs.shape[0], inputs.shape[1], *out.shape[1:])

    def _batched_layer(self, branch: str, pre: Sequence[nn.Module], layer: nn.Module, shape: tuple[int, ...],
                       channels_last: bool) -> BatchedLayer:
        """The branch as the batched path runs it for inputs of one layout, built once per layout."""
        key = (branch, channels_last)
        if key not in self._folded:
            self._folded[key] = BatchedLayer(pre, layer, shape, channels_last, self.fold)
        return self._folded[key]

    def _scan_pooling(self, i: int, v: Tensor, choose: bool) -> tuple[int, int] | None:
        """The window of the average pooling that the next stage runs first on stage ``i``'s
        spikes, when stage ``i``'s IF scan can pool them itself (:func:`kernels.if_scan_pool`), else
        ``None``.

        It can when those spikes are read by that pooling alone: channels-last CPU spikes that no
        shortcut reads, and a next stage without a max-pooling gate whose branch starts with the
        pooling and whose path is either the batched one (chosen already, or ``"auto"`` before the
        chunk that chooses it, which needs the raw spikes' density; :attr:`BatchedLayer.first_pool`),
        with the same values as the strided additions, so the same currents; or the event path
        (chosen), with the table of the pooled inputs (:meth:`_pooled_table`), whose currents add
        the reference's products (pooled value times weight) where the raw table adds a quarter of
        the weight per spike: the same currents to rounding.
        """
        stages = self.snn.stages
        if (i + 1 >= len(stages) or not self.fold or stages[i].neuron_name in self._sources
                or stages[i + 1].gate is not None or not _is_channels_last(v) or not kernels.available()):
            return None
        nxt = stages[i + 1]
        path = self.paths.get(nxt.name)
        if path == "event":
            return leading_pool(nxt.pre) if self._pooled_table(nxt) is not None else None
        if path != "batched" and (path is not None or self.mode != "auto" or choose):
            return None
        return self._batched_layer(nxt.name, nxt.pre, nxt.layer, self._in_shapes[nxt.name], True).first_pool

    def _pooled_table(self, stage: SpikingStage) -> EventTable | None:
        """The event table of ``stage`` for channels-last inputs pooled already by its first
        average pooling (the pooling left out of the fan-out), or ``None`` where there is none;
        built once."""
        key = (stage.name, True, "pooled")
        if key not in self._tables:
            window = leading_pool(stage.pre)
            table = None
            if window is not None and len(self._in_shapes[stage.name]) == 3:
                rest = SpikingStage(stage.name, stage.neuron_name, nn.Sequential(*list(stage.pre)[1:]), stage.layer,
                                    stage.spiking)
                c, h, w = self._in_shapes[stage.name]
                if unsupported(rest, need_kernels=False) is None and h // window[0] and w // window[1]:
                    table = EventTable(rest, (c, h // window[0], w // window[1]), True)
            self._tables[key] = table
        return self._tables[key]

    def _looped(self, stage: SpikingStage, inputs: Tensor) -> Tensor:
        call = stage.after_gate if stage.gate is not None else stage
        return torch.stack([call(step) for step in inputs])

    def _event(self, stage: SpikingStage, inputs: Tensor, pooled: bool = False) -> Tensor:
        flat = inputs.reshape(-1, *inputs.shape[2:])
        layout = flat.dim() == 4 and not flat.is_contiguous()  # channels last
        table = self._pooled_table(stage) if pooled else self._tables.get((stage.name, layout))
        if table is None:
            if pooled:
                raise AssertionError(f"stage '{stage.name}': pooled inputs but no table for them")
            table = self._tables[(stage.name, layout)] = EventTable(stage, self._in_shapes[stage.name], layout)
        out = table(flat)
        return out.reshape(inputs.shape[0], inputs.shape[1], *out.shape[1:])

    def _path(self, stage: SpikingStage, inputs: Tensor, spiked: Tensor | None = None) -> str:
        if stage.name in self.paths:
            return self.paths[stage.name]
        reason = unsupported(stage)
        if reason is not None:
            self.unsupported[stage.name] = reason
        # spikes are 0 or 1: their count is the number of non-zero inputs (count_nonzero on a
        # channels-last chunk took 20 ms of a 110 ms LeNet call)
        nonzero = float(spiked.sum(dtype=torch.float64)) if spiked is not None else float(torch.count_nonzero(inputs))
        density = self.density[stage.name] = nonzero / max(1, inputs.numel())
        if self.mode in ("batched", "looped"):
            path = self.mode
        elif reason is not None:
            path = "batched"
        else:
            path = "event" if self.mode == "event" or density <= self.event_density else "batched"
        self.paths[stage.name] = path
        return path

    def _add_shortcuts(self, currents: Tensor, stage: SpikingStage, outputs: dict[str | None, Tensor],
                       statics: dict[tuple[str, int], Tensor], analog: bool) -> Tensor:
        """Adds each shortcut's current for the chunk, in the reference's order (own, then each).

        A shortcut reads its source's spikes of the same chunk, in one call on ``(n*B, ...)``;
        from the analog input (the static ``x``) its current is the same at every step and is
        computed once per batch.
        """
        for j, shortcut in enumerate(stage.shortcuts):
            if shortcut.source is None and analog:
                if (stage.name, j) not in statics:
                    statics[(stage.name, j)] = shortcut(outputs[None])
                currents = currents + statics[(stage.name, j)]
                continue
            block = outputs[shortcut.source]
            flat = block.reshape(-1, *block.shape[2:])
            out = self._batched_layer(f"{stage.name}/{j}", shortcut.pre, shortcut.layer,
                                      self._source_shapes[shortcut.source], _is_channels_last(flat))(flat)
            currents = currents + out.reshape(block.shape[0], block.shape[1], *out.shape[1:])
        return currents


_PATH_CALLS: dict[str, Callable[[Simulator, SpikingStage, Tensor], Tensor]] = {
    "batched": Simulator._batched, "looped": Simulator._looped, "event": Simulator._event,
}


def simulate_batch(snn: SpikingNetwork, x: Tensor, timesteps: Iterable[int], *, input: str = "analog",
                   generator: torch.Generator | None = None, mode: str = "auto",
                   max_elements: int = MAX_ELEMENTS) -> BatchTrace:
    """Simulates one batch ``x`` ``(B, *input_shape)`` on the fast path (see :class:`Simulator`).

    The spikes are those of :func:`simulate_reference`: the IF scan, the readout sum and the
    counts are the same element-wise operations in the same order. ``"looped"`` also makes the
    same ``(B, ...)``-sized layer calls, so it is bitwise equal. ``"batched"`` computes the same
    currents with one call on ``(steps*samples, ...)``; a BLAS or convolution kernel may round
    the last bit differently for another batch size (PyTorch does not promise batch invariance),
    and ``"event"`` adds the same products in another order (input by input), which flips a
    spike only when a potential lies within that rounding of the threshold. The tests check
    bitwise equality in float64, where this is practically impossible; float32 runs are
    compared spike by spike in ``benchmarks/peers`` (``same as snnergy``).

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
    x = prepare_input(snn, x)
    train = encode_poisson(x, reported[-1], generator) if input == "poisson" else None
    v: dict[str, Tensor] = {}
    running: dict[str, Tensor] = {}  # spikes summed over the batch and steps 1..t ("": input)
    final: dict[str, Tensor] = {}
    counts: dict[str, list[Tensor]] = {}
    potential: Tensor | float = 0.0
    potentials = []
    through: dict[str, Tensor] = {}  # spikes that passed each max-pooling gate, over the batch
    gated: dict[str, list[Tensor]] = {}
    for t in range(reported[-1]):
        s = x if train is None else train[t]
        if train is not None:
            running[""] = running.get("", 0.0) + s.sum(0, dtype=torch.float64)
        outputs: dict[str | None, Tensor] = {None: s}  # this step's spikes, for shortcuts
        previous: str | None = None
        for stage in snn.stages:
            if stage.gate is not None:  # final[previous] holds steps 1..t
                pooled, passed = gate_max_pool(stage.gate, s.unsqueeze(0), (final[previous] - s).to(s.dtype))
                through[stage.name] = through.get(stage.name, 0.0) + passed[0].sum(0, dtype=torch.float64)
                current = stage.after_gate(pooled[0])
            else:
                current = stage(s)
            previous = stage.neuron_name
            for shortcut in stage.shortcuts:
                current = current + shortcut(outputs[shortcut.source])
            if stage.spiking:
                name = stage.neuron_name
                s, v[name] = if_step(current, v[name] if name in v else snn.neuron.initial(current), snn.neuron)
                outputs[name] = s
                running[name] = running.get(name, 0.0) + s.sum(0, dtype=torch.float64)
                final[name] = final.get(name, 0.0) + s.to(torch.float64)
            else:
                potential = potential + current
        if t + 1 in reported:
            potentials.append(potential)
            for name, value in running.items():
                counts.setdefault(name, []).append(value)
            for name, value in through.items():
                gated.setdefault(name, []).append(value)
    inputs = torch.stack(counts.pop("")) if train is not None else None
    spikes = {k: torch.stack(c) for k, c in counts.items()}
    return BatchTrace(torch.stack(potentials), spikes, inputs, final, {k: torch.stack(g) for k, g in gated.items()})


# ---------------------------------------------------------------------------- internals


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ConfigError(f"unknown simulation {what} '{value}'; allowed: {', '.join(allowed)}")
    return value


def prepare_input(snn: SpikingNetwork, x: Tensor) -> Tensor:
    """``x`` on the network's device and dtype, after checking its per-sample shape."""
    if not isinstance(x, Tensor) or tuple(x.shape[1:]) != snn.input_shape:
        shape = tuple(x.shape[1:]) if isinstance(x, Tensor) else type(x).__name__
        raise DataError(f"input batch has per-sample shape {shape}; the SNN expects {snn.input_shape}")
    param = next(snn.parameters())
    return x.to(device=param.device, dtype=param.dtype)


def _scan(currents: Tensor, v: Tensor, final: Tensor, neuron: IFNeuron, steps: int,
          static: bool, out: Tensor | None = None, window: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
    """IF neurons over ``steps`` steps of ``currents`` (``(n, B, ...)``, or ``(B, ...)`` every step
    when ``static``), updating ``v`` and adding each sample's spikes to ``final`` in place; the
    spikes go into ``out`` (laid out as :func:`_like_steps`) if given. With a pooling ``window``
    (channels-last ``v``), the spikes leave average-pooled into ``out`` (``(steps, B, C, H // kh,
    W // kw)``, :func:`_steps_in`): :func:`kernels.if_scan_pool` where it can run, else the scan
    then :func:`~snnergy.simulation.folding.pool_spikes` (the same values).

    Returns the ``(n, B, ...)`` spikes and each step's spikes summed over the batch ``(n, ...)``.
    The spikes take the layout of ``v`` (channels last after an event-driven convolution). On a
    CPU the compiled kernel runs the steps and counts; elsewhere the :func:`if_step_` loop, with
    the same arithmetic.
    """
    if fused_scan.selected(v):  # CUDA: the compiled time loop (issue 18; SNNERGY_FUSED_SCAN)
        return fused_scan.scan(currents, v, final, neuron, steps, static)
    counts = _like_steps(v[0], steps)
    if not static and currents.stride()[1:] != v.stride():
        currents = _like_steps(v, steps).copy_(currents)
    if window is not None:
        assert out is not None, "a pooled scan writes into the buffer it is given"
        if kernels.scan_pool_compatible(currents, v, out, counts, final, window, static):
            kernels.if_scan_pool(currents, v, out, counts, final, neuron.threshold, neuron.reset == "subtract",
                                 window, static=static)
        else:
            spikes, counts = _scan(currents, v, final, neuron, steps, static)
            out.copy_(pool_spikes([nn.AvgPool2d(window)], spikes.flatten(0, 1)).unflatten(0, spikes.shape[:2]))
        return out, counts
    out = _like_steps(v, steps) if out is None else out
    if kernels.scan_compatible(currents, v, out, counts, final, static):
        kernels.if_scan(currents, v, out, counts, final, neuron.threshold, neuron.reset == "subtract",
                        static=static)
        return out, counts
    for t in range(steps):
        if_step_(currents if static else currents[t], v, neuron, out[t])
    # sums in the spikes' dtype: exact for 0/1 below 2**24 samples or steps
    counts.copy_(out.sum(1))
    final += out.sum(0)
    return out, counts


def _channels_last(t: Tensor) -> Tensor:
    """A ``(B, C, H, W)`` tensor laid out channels last (where pooling and convolutions run
    fastest on a CPU); other tensors as they are."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 and t.device.type == "cpu" else t


def _like_steps(v: Tensor, steps: int, storage: Tensor | None = None) -> Tensor:
    """An empty ``(steps, *v.shape)`` tensor whose every step is laid out as ``v``: new, or the
    first elements of the flat ``storage`` (which must hold enough)."""
    if v.dim() == 4 and not v.is_contiguous():  # (B, C, H, W) channels last
        b, c, h, w = v.shape
        shape, order = (steps, b, h, w, c), (0, 1, 4, 2, 3)
    elif v.dim() == 3 and not v.is_contiguous():  # one sample (C, H, W) of a channels-last batch
        c, h, w = v.shape
        shape, order = (steps, h, w, c), (0, 3, 1, 2)
    else:
        shape, order = (steps, *v.shape), tuple(range(v.dim() + 1))
    block = v.new_empty(shape) if storage is None else storage[: math.prod(shape)].view(shape)
    return block.permute(order)


def _steps_in(storage: Tensor | None, v: Tensor, steps: int,
              window: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
    """``(steps, *v.shape)`` laid out as ``v`` in the flat ``storage``, and the storage: reused
    when it holds enough values of ``v``'s dtype and device, else a new one. With a pooling
    ``window`` (channels-last ``v`` ``(B, C, H, W)``): ``(steps, B, C, H // kh, W // kw)``, each
    step channels last."""
    if window is not None:
        b, c, h, w = v.shape
        shape = (steps, b, h // window[0], w // window[1], c)
        need = math.prod(shape)
    else:
        need = steps * v.numel()
    if storage is None or storage.numel() < need or storage.dtype != v.dtype or storage.device != v.device:
        storage = v.new_empty(need)
    if window is not None:
        return storage[:need].view(shape).permute(0, 1, 4, 2, 3), storage
    return _like_steps(v, steps, storage), storage


def _is_channels_last(t: Tensor) -> bool:
    """A ``(B, C, H, W)`` tensor laid out channels last (and not also contiguous)."""
    return t.dim() == 4 and not t.is_contiguous()
