"""Core-mapping estimates: how many cores of a neuromorphic chip a converted network needs.

A :class:`ChipLimits` holds a chip's published per-core limits (neurons, fan-in axons, synaptic
memory), its weight precision and its cores per chip, each with its source; a limit that is not
published is ``None`` and is not checked. :func:`map_plan` splits every stage of a
:class:`~snnergy.structure.NetworkPlan` (each spiking layer and the readout) over cores with one
simple partitioning (docs/design.md, "Core mapping"):

- a Linear stage is cut into blocks of consecutive output neurons; every block reads all the
  stage's presynaptic neurons;
- a Conv2d stage is cut into blocks of whole output rows (all channels, all columns); when one
  row is still too large, into blocks of output channels of one row; when one channel of one row
  is still too large, into blocks of columns of one channel of one row.

The block is the largest one whose worst core holds at most ``neurons_per_core`` neurons, reads
at most ``axons_per_core`` distinct presynaptic neurons (its fan-in: the source neurons behind
any pooling or max-pool gate, summed over the stage's branches) and stores at most
``synaptic_memory_bits`` = synapses x ``weight_bits``. Each limit alone gives a core count; the
stage's cores are the largest of them and that limit *binds*. Synapses are counted exactly from
the plan's geometry: ``connections`` are the distinct (source neuron, neuron) pairs; a chip with
``shared_conv_weights`` stores a conv kernel once per core (``c_out x c_in/groups x`` the kernel's
reach on the source), any other stores every connection. The estimate ignores routing tables,
neuron-state memory, the input encoder and placement: a lower bound on the cores a real
compiler (NxSDK/Lava, sPyNNaker, samna) would use.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

from snnergy.errors import ConfigError
from snnergy.records import LayerGeometry, PoolGeometry
from snnergy.registry import Registry
from snnergy.structure import Branch, NetworkPlan, Stage

__all__ = ["CHIPS", "ChipLimits", "LayerMapping", "NetworkMapping", "chip_limits", "map_plan",
           "LIMITS"]

#: The three per-core limits, in the order ties are reported.
LIMITS = ("neurons", "fan-in", "synaptic memory")


@dataclass(frozen=True)
class ChipLimits:
    """One neuromorphic chip's per-core limits, with their source.

    Args:
        name: Registry key, e.g. ``"loihi"``.
        neurons_per_core: Neurons (compartments) one core updates; ``None``: not published.
        axons_per_core: Distinct presynaptic neurons (input axons) one core can receive.
        synaptic_memory_bits: Synaptic (weight) memory of one core, in bits.
        weight_bits: Bits stored per synapse (the weight precision assumed for the memory check).
        cores_per_chip: Neuromorphic cores on one chip.
        shared_conv_weights: Whether a convolution's kernel is stored once per core (weight
            sharing) instead of once per connection.
        source: Citations of the numbers.
        notes: Assumptions and what is not published.

    Example:
        >>> ChipLimits("toy", 100, None, None, 8, 4, False, "made up").cores_per_chip
        4
    """

    name: str
    neurons_per_core: int | None
    axons_per_core: int | None
    synaptic_memory_bits: int | None
    weight_bits: int | None
    cores_per_chip: int
    shared_conv_weights: bool
    source: str
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.source.strip():
            raise ConfigError(f"chip '{self.name}' needs a name and a source")
        for field_name in ("neurons_per_core", "axons_per_core", "synaptic_memory_bits", "weight_bits"):
            value = getattr(self, field_name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"chip '{self.name}': {field_name}={value} must be a positive integer or None")
        if not isinstance(self.cores_per_chip, int) or self.cores_per_chip < 1:
            raise ConfigError(f"chip '{self.name}': cores_per_chip={self.cores_per_chip} must be a positive integer")
        if self.synaptic_memory_bits is not None and self.weight_bits is None:
            raise ConfigError(f"chip '{self.name}': a synaptic memory needs weight_bits to be checked")


CHIPS: Registry[ChipLimits] = Registry("chip")

_KIB_BITS = 1024 * 8

CHIPS.add("loihi", ChipLimits(
    name="loihi",
    # 1,024 neural compartments per core: Davies et al., IEEE Micro 38(1) 2018, Table 1; 131,072
    # neurons per chip / 128 cores; nengo-loihi's "Number of compartments exceeded max (1024)".
    neurons_per_core=1024,
    # 4,096 fan-in axons per core: Davies et al. 2018, Table 1 (as cited by SpikingJelly issue #543,
    # "Loihi only supports 4096 input ... axons").
    axons_per_core=4096,
    # 128 KB synaptic memory per core: Davies et al. 2018; "a total of 16MB of synaptic memory" over
    # 128 cores (IEEE Circuits and Systems Magazine, Q2 2022).
    synaptic_memory_bits=128 * _KIB_BITS,
    # Weights are 1 to 9 bits (Davies et al. 2018); 8 assumed (int8 weights).
    weight_bits=8,
    # 128 neuromorphic cores per chip: Davies et al. 2018, "Chip Overview".
    cores_per_chip=128,
    shared_conv_weights=False,
    source="M. Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', IEEE Micro "
           "38(1), 2018 (Table 1: 128 cores, 1,024 compartments, 4,096 fan-in axons, 128 KB synaptic memory "
           "per core, 1-9 bit weights)",
    notes="8-bit weights assumed; every synapse stored (Loihi 1 has no convolutional weight sharing); the "
          "synaptic memory also holds delays/tags in denser formats, ignored here.",
))
CHIPS.add("loihi2", ChipLimits(
    name="loihi2",
    # Up to 8,192 neurons per core: 1 million neurons per chip over 128 cores (Intel, 'Taking
    # Neuromorphic Computing to the Next Level with Loihi 2', technology brief, 2021).
    neurons_per_core=8192,
    # Fan-in per core: not published as a single figure (the brief gives 120 M synapses per chip).
    axons_per_core=None,
    # Synaptic memory per core: the brief gives none for a fixed format (memory is shared flexibly
    # between synapses and neuron state), so it is not checked.
    synaptic_memory_bits=None,
    # Weights up to 8 bits (signed) in the brief's synapse formats; 8 assumed.
    weight_bits=8,
    # 128 neuromorphic cores per chip (technology brief 2021).
    cores_per_chip=128,
    shared_conv_weights=True,
    source="Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', technology brief, "
           "2021 (128 neuromorphic cores, up to 1 M neurons and 120 M synapses per chip)",
    notes="8,192 neurons per core = 1 M / 128; fan-in and synaptic memory per core are not published as "
          "fixed numbers and are not checked; convolutional weight sharing assumed (the brief's "
          "convolutional connectivity compression).",
))
CHIPS.add("spinnaker2", ChipLimits(
    name="spinnaker2",
    # Neurons per processing element: set by software (the ARM M4F runs the neuron models), not a
    # hardware limit: not published.
    neurons_per_core=None,
    axons_per_core=None,
    # 128 KB of local SRAM per processing element (Höppner et al. 2021), shared with code, neuron
    # state and routing: an upper bound on the synaptic memory.
    synaptic_memory_bits=128 * _KIB_BITS,
    # The machine-learning accelerator computes with 8-bit integers (Höppner et al. 2021); 8 assumed.
    weight_bits=8,
    # 152 processing elements per chip (Mayr, Höppner & Furber, arXiv:1911.02385, 2019; Höppner et al. 2021).
    cores_per_chip=152,
    shared_conv_weights=False,
    source="S. Höppner et al., 'The SpiNNaker 2 Processing Element Architecture for Hybrid Digital "
           "Neuromorphic Computing', arXiv:2103.08392, 2021 (128 KB SRAM per PE); C. Mayr, S. Höppner, "
           "S. Furber, 'SpiNNaker 2: A 10 Million Core Processor System for Brain Simulation and Machine "
           "Learning', arXiv:1911.02385, 2019 (152 PEs per chip)",
    notes="Neurons and fan-in per core are software limits, not checked; the whole 128 KB SRAM counted as "
          "synaptic memory (an optimistic bound: code and state share it); every synapse stored, as "
          "sPyNNaker's synaptic matrices do.",
))
CHIPS.add("speck", ChipLimits(
    name="speck",
    # Per-core neuron and kernel memory differ by core and are published only as a figure in the
    # sinabs documentation ("Memory Constraints and Network Sizing"): not checked here.
    neurons_per_core=None,
    axons_per_core=None,
    synaptic_memory_bits=None,
    # 8-bit weights, 16-bit neuron state (sinabs docs, docs/speck/overview.md, "Chip Resources").
    weight_bits=8,
    # 9 DYNAP-CNN cores (layers) per chip (sinabs docs, "Chip Resources").
    cores_per_chip=9,
    shared_conv_weights=True,
    source="SynSense sinabs documentation, docs/speck/overview.md 'Chip Resources' (9 DYNAP-CNN cores, 8-bit "
           "weights, kernel memory c x f x kx x ky: shared kernels); open-neuromorphic.org DynapCNN page",
    notes="A DYNAP-CNN core runs one layer, so every stage takes at least one core and a layer cannot be "
          "split; per-core memory limits are only published as a figure, so they are not checked: the "
          "count is a lower bound.",
))


def chip_limits(name: str) -> ChipLimits:
    """The registered chip ``name``, or one :class:`~snnergy.errors.ConfigError` listing the chips.

    Example:
        >>> chip_limits("loihi").cores_per_chip
        128
    """
    if name not in CHIPS:
        raise ConfigError(f"no chip limits for profile '{name}'; chips with published core limits: "
                          f"{', '.join(CHIPS.names())}")
    return CHIPS.get(name)


@dataclass(frozen=True)
class LayerMapping:
    """One stage (spiking layer or readout) split over cores.

    Attributes:
        name: The stage's weighted layer.
        kind: ``"conv2d"`` or ``"linear"``.
        neurons: Output neurons of the stage.
        connections: Distinct (presynaptic neuron, neuron) pairs over all branches.
        synapses: Synapses the chip stores (= connections, or the conv kernels per core where the
            chip shares conv weights), summed over cores.
        fan_in: Distinct presynaptic neurons read by the worst core.
        neurons_per_core: Neurons on the worst (fullest) core.
        cores: Cores the stage needs (``None``: one core cannot hold even the smallest block).
        cores_by_limit: Cores each checked limit alone needs (``None``: even one block exceeds it).
        binding: The limit with the most cores (ties: in the order of :data:`LIMITS`); ``"none"``
            when one core holds the stage (or no limit is checked).
    """

    name: str
    kind: str
    neurons: int
    connections: int
    synapses: int
    fan_in: int
    neurons_per_core: int
    cores: int | None
    cores_by_limit: dict[str, int | None]
    binding: str


@dataclass(frozen=True)
class NetworkMapping:
    """A network on one chip: per-stage mappings and the verdict.

    Attributes:
        chip: The chip's limits.
        layers: One :class:`LayerMapping` per stage, in execution order.
        total_cores: Sum of the stages' cores (``None`` when a stage cannot be mapped).
        fits: ``total_cores <= chip.cores_per_chip``.
        chips: Chips needed (``ceil(total / cores_per_chip)``; ``None`` when unmappable).
        binding_layer: The stage with the most cores.
    """

    chip: ChipLimits
    layers: tuple[LayerMapping, ...]
    total_cores: int | None
    fits: bool
    chips: int | None
    binding_layer: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``snnergy hardware --out``)."""
        return {"chip": asdict(self.chip), "layers": [asdict(layer) for layer in self.layers],
                "total_cores": self.total_cores, "fits": self.fits, "chips": self.chips,
                "binding_layer": self.binding_layer}


# ---- geometry: which source neurons a block of output neurons reads, per axis -------------------

def _axis_levels(branch: Branch, axis: int) -> list[tuple[int, int, int, int]]:
    """Poolings from the source to the layer input along one spatial axis (0: rows, 1: columns),
    as (kernel, stride, padding, input size), source first: the max-pool gate then the average
    poolings."""
    levels: list[PoolGeometry] = ([branch.gate] if branch.gate is not None else []) + list(branch.pools)
    return [(p.kernel_size[axis], p.stride[axis], p.padding[axis], p.in_shape[1 + axis]) for p in levels]


def _back(indices: set[int], levels: list[tuple[int, int, int, int]]) -> set[int]:
    """Source indices behind layer-input indices, undoing each pooling (last first)."""
    for kernel, stride, padding, size in reversed(levels):
        indices = {j for i in indices for j in range(i * stride - padding, i * stride - padding + kernel)
                   if 0 <= j < size}
    return indices


def _conv_reach(geometry: LayerGeometry, axis: int, outputs: range) -> set[int]:
    """Layer-input indices along ``axis`` that the outputs ``outputs`` read (padding excluded)."""
    k, s, p, d = (geometry.kernel_size[axis], geometry.stride[axis], geometry.padding[axis], geometry.dilation[axis])
    size = geometry.in_shape[1 + axis]
    return {o * s - p + t * d for o in outputs for t in range(k) if 0 <= o * s - p + t * d < size}


@dataclass(frozen=True)
class _Block:
    """One core's share of a stage: worst-case neurons, fan-in, stored synapses; the core count."""

    cores: int
    neurons: int
    fan_in: int
    stored: int


def _conv_branch(branch: Branch, rows: range, channels: range, cols: range, shared: bool) -> tuple[int, int, int]:
    """(fan-in, connections, stored synapses) of one conv (or identity) branch for the output rows
    ``rows``, output ``channels`` and output columns ``cols``."""
    out_c = branch.out_shape[0]
    g = branch.geometry
    if g is None:  # identity shortcut: neuron (c, y, x) reads source (c, y, x) behind any pooling
        g = LayerGeometry(branch.name, "conv2d", branch.in_shape, branch.out_shape, groups=branch.in_shape[0])
    cin_group = g.in_shape[0] // g.groups
    groups = {c * g.groups // out_c for c in channels}
    row_levels, col_levels = _axis_levels(branch, 0), _axis_levels(branch, 1)
    per_row = [len(_back(_conv_reach(g, 0, range(y, y + 1)), row_levels)) for y in rows]
    per_col = [len(_back(_conv_reach(g, 1, range(x, x + 1)), col_levels)) for x in cols]
    fan_in = (len(groups) * cin_group * len(_back(_conv_reach(g, 0, rows), row_levels))
              * len(_back(_conv_reach(g, 1, cols), col_levels)))
    connections = len(channels) * cin_group * sum(per_row) * sum(per_col)
    stored = len(channels) * cin_group * max(per_row) * max(per_col) if shared else connections
    return fan_in, connections, stored


def _linear_sources(branch: Branch) -> int:
    """Distinct source neurons a Linear branch reads: all its inputs, traced back through pooling."""
    rows_levels = _axis_levels(branch, 0) if len(branch.source_shape) == 3 else []
    if not rows_levels:
        return math.prod(branch.source_shape)
    height, width = _pooled_hw(branch)
    rows = _back(set(range(height)), rows_levels)
    cols = _back(set(range(width)), _axis_levels(branch, 1))
    return branch.source_shape[0] * len(rows) * len(cols)


def _pooled_hw(branch: Branch) -> tuple[int, int]:
    """Height and width after the branch's last pooling (before its Flatten)."""
    last = list(branch.pools)[-1] if branch.pools else branch.gate
    assert last is not None
    size = [(last.in_shape[1 + a] + 2 * last.padding[a] - last.kernel_size[a]) // last.stride[a] + 1 for a in (0, 1)]
    return size[0], size[1]


def _blocks(stage: Stage, shared: bool) -> tuple[int, int, list[Callable[[], _Block]]]:
    """(neurons, connections, blocks largest first) of one stage under the partitioning."""
    out_shape = stage.main.out_shape
    neurons = math.prod(out_shape)
    if len(out_shape) != 3:
        sources = sum(_linear_sources(b) if b.geometry is not None else 1 for b in stage.branches)
        identity = sum(1 for b in stage.branches if b.geometry is None)
        full = sources - identity  # a Linear neuron reads every input of each weighted branch
        connections = neurons * full + neurons * identity

        def linear(n: int) -> Callable[[], _Block]:
            return lambda: _Block(math.ceil(neurons / n), n, full + identity * n, n * (full + identity))
        return neurons, connections, [linear(n) for n in range(neurons, 0, -1)]
    channels, height, width = out_shape
    connections = sum(_conv_branch(b, range(height), range(channels), range(width), False)[1] for b in stage.branches)

    def block(rows: int, chans: int, cols: int) -> Callable[[], _Block]:
        def worst() -> _Block:
            fan_in = stored = 0
            # every tile of the block's size; one channel reads the same neurons as any other
            # channel of its group, so single-channel tiles are checked at channel 0 only
            starts = range(0, channels, chans) if chans > 1 else range(1)
            for y0 in range(0, height, rows):
                for c0 in starts:
                    for x0 in range(0, width, cols):
                        tile = (range(y0, min(y0 + rows, height)), range(c0, min(c0 + chans, channels)),
                                range(x0, min(x0 + cols, width)))
                        terms = [_conv_branch(b, *tile, shared) for b in stage.branches]
                        fan_in = max(fan_in, sum(t[0] for t in terms))
                        stored = max(stored, sum(t[2] for t in terms))
            cores = math.ceil(height / rows) * math.ceil(channels / chans) * math.ceil(width / cols)
            return _Block(cores, rows * chans * cols, fan_in, stored)
        return worst
    candidates = ([block(r, channels, width) for r in range(height, 0, -1)]
                  + [block(1, c, width) for c in range(channels - 1, 0, -1)]
                  + [block(1, 1, w) for w in range(width - 1, 0, -1)])
    return neurons, connections, candidates


def _first(candidates: list[Callable[[], _Block]], ok: Callable[[_Block], bool]) -> _Block | None:
    """The largest block that satisfies ``ok`` (blocks shrink monotonically: binary search)."""
    lo, hi, found = 0, len(candidates) - 1, None
    cache: dict[int, _Block] = {}

    def at(i: int) -> _Block:
        if i not in cache:
            cache[i] = candidates[i]()
        return cache[i]
    while lo <= hi:
        mid = (lo + hi) // 2
        if ok(at(mid)):
            found, hi = at(mid), mid - 1
        else:
            lo = mid + 1
    return found


def map_stage(stage: Stage, chip: ChipLimits) -> LayerMapping:
    """One stage split over cores (see the module docstring).

    Example:
        >>> from torch import nn
        >>> from snnergy.structure import trace
        >>> plan = trace(nn.Sequential(nn.Linear(64, 300), nn.ReLU(), nn.Linear(300, 10)), (64,))
        >>> toy = ChipLimits("toy", 128, 256, 64 * 64 * 8, 8, 8, False, "made up")
        >>> m = map_stage(plan.stages[0], toy)
        >>> m.cores, m.binding, m.cores_by_limit
        (5, 'synaptic memory', {'neurons': 3, 'fan-in': 1, 'synaptic memory': 5})
    """
    neurons, connections, candidates = _blocks(stage, chip.shared_conv_weights)
    bits = chip.weight_bits or 1
    checks = {
        "neurons": (chip.neurons_per_core, lambda b: b.neurons <= chip.neurons_per_core),
        "fan-in": (chip.axons_per_core, lambda b: b.fan_in <= chip.axons_per_core),
        "synaptic memory": (chip.synaptic_memory_bits, lambda b: b.stored * bits <= chip.synaptic_memory_bits),
    }
    by_limit: dict[str, int | None] = {}
    for limit, (value, ok) in checks.items():
        if value is not None:
            found = _first(candidates, ok)
            by_limit[limit] = found.cores if found is not None else None
    whole = candidates[0]()
    active = [ok for value, ok in checks.values() if value is not None]
    chosen = _first(candidates, lambda b: all(ok(b) for ok in active)) if active else whole
    if None in by_limit.values() or chosen is None:
        binding = next(limit for limit, cores in by_limit.items() if cores is None) if None in by_limit.values() \
            else max(by_limit, key=lambda k: by_limit[k] or 0)
        shown = candidates[-1]()
        return LayerMapping(stage.name, stage.main.geometry.kind if stage.main.geometry else "identity", neurons,
                            connections, _stored_total(stage, chip, connections)(shown), shown.fan_in, shown.neurons,
                            None, by_limit, binding)
    binding = max(LIMITS, key=lambda k: (by_limit.get(k) or 0, -LIMITS.index(k))) if by_limit else "none"
    if chosen.cores == 1:
        binding = "none"  # one core holds the whole stage: no limit binds
    stored_total = _stored_total(stage, chip, connections)
    return LayerMapping(stage.name, stage.main.geometry.kind if stage.main.geometry else "identity", neurons,
                        connections, stored_total(chosen), chosen.fan_in, chosen.neurons, chosen.cores, by_limit,
                        binding)


def _stored_total(stage: Stage, chip: ChipLimits, connections: int) -> Callable[[_Block], int]:
    """Synapses the chip stores over all the stage's cores: the connections, or with shared conv
    weights the kernel once per core (the worst core's count times the cores, an upper bound)."""
    conv = len(stage.main.out_shape) == 3
    if not (chip.shared_conv_weights and conv):
        return lambda block: connections
    return lambda block: block.stored * block.cores


def map_plan(plan: NetworkPlan, chip: ChipLimits | str) -> NetworkMapping:
    """Every stage of ``plan`` (spiking layers and the readout) split over ``chip``'s cores.

    Args:
        plan: A network plan (``SpikingNetwork.plan()`` or ``structure.trace``).
        chip: A :class:`ChipLimits` or the name of a registered chip.

    Returns:
        The per-stage mapping, total cores and whether one chip holds it.

    Raises:
        ConfigError: An unknown chip name (listing the chips).

    Example:
        >>> from torch import nn
        >>> from snnergy.structure import trace
        >>> plan = trace(nn.Sequential(nn.Linear(64, 300), nn.ReLU(), nn.Linear(300, 10)), (64,))
        >>> m = map_plan(plan, "loihi")
        >>> [layer.cores for layer in m.layers], m.total_cores, m.fits
        ([1, 1], 2, True)
    """
    chip = chip_limits(chip) if isinstance(chip, str) else chip
    layers = tuple(map_stage(stage, chip) for stage in plan.stages)
    counts = [layer.cores for layer in layers]
    total = None if None in counts else sum(counts)
    worst = max(layers, key=lambda layer: float("inf") if layer.cores is None else layer.cores)
    return NetworkMapping(chip, layers, total, total is not None and total <= chip.cores_per_chip,
                          None if total is None else math.ceil(total / chip.cores_per_chip), worst.name)
