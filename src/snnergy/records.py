"""Records the pipeline stages hand each other: shapes, activity, operation counts, results.

Stages exchange these plain records, never each other's classes: ``counting`` takes an
:class:`ActivityRecord` and :class:`LayerGeometry` shapes, ``energy`` sees only :class:`OpCounts`,
and ``reporting`` reads the ``to_dict`` form of :class:`DNNRecord` and :class:`SNNRecord` from
``results.json`` (schema in docs/design.md). Every count is *per sample*.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from torch import Tensor


@dataclass(frozen=True)
class LayerGeometry:
    """The shapes of one weighted layer (Conv2d or Linear): all that counting needs.

    Args:
        name: The layer's qualified module name in its model (e.g. ``"features.0"``).
        kind: ``"conv2d"`` or ``"linear"``.
        in_shape: Per-sample input shape, ``(C, H, W)`` or ``(F,)``.
        out_shape: Per-sample output shape, ``(C, H, W)`` or ``(F,)``.
        kernel_size, stride, padding, dilation: ``(h, w)`` pairs (conv only).
        groups: Convolution groups (conv only).

    Example:
        >>> LayerGeometry("fc", "linear", (4,), (3,)).in_shape
        (4,)
    """

    name: str
    kind: Literal["conv2d", "linear"]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel_size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


@dataclass(frozen=True)
class PoolGeometry:
    """An average pooling between spiking neurons and the next weighted layer.

    Args:
        in_shape: Per-sample input shape ``(C, H, W)``.
        kernel_size, stride, padding: ``(h, w)`` pairs, as ``nn.AvgPool2d``.

    Example:
        >>> PoolGeometry((6, 8, 8), (2, 2), (2, 2)).padding
        (0, 0)
    """

    in_shape: tuple[int, int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)


@dataclass
class ActivityRecord:
    """Activation maps of one forward pass, by qualified module name; layout ``(B, ...)``.

    Attributes:
        activations: Output of every activation module (post-ReLU maps), in forward order.
        layer_inputs: The actual input of every weighted layer (Conv2d/Linear), in forward order;
            this is what a zero-skipping accelerator sees (after pooling, flattening...).
    """

    activations: dict[str, Tensor] = field(default_factory=dict)
    layer_inputs: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class OpCounts:
    """Operations per sample, the only input of the energy estimate.

    Attributes:
        macs: Multiply-accumulates (charged ``E_mac``): the DNN's effective MACs, or the SNN's
            ``input_macs`` (analog first layer).
        synops: Synaptic operations, i.e. accumulates triggered by spikes (charged ``E_ac``).
        neuron_updates: Neuron state updates, neurons x timesteps (charged ``E_neuron``).

    Example:
        >>> OpCounts(macs=2.0) + OpCounts(synops=3.0)
        OpCounts(macs=2.0, synops=3.0, neuron_updates=0.0)
    """

    macs: float = 0.0
    synops: float = 0.0
    neuron_updates: float = 0.0

    def __add__(self, other: OpCounts) -> OpCounts:
        return OpCounts(
            self.macs + other.macs,
            self.synops + other.synops,
            self.neuron_updates + other.neuron_updates,
        )


@dataclass
class LayerCounts:
    """Per-layer DNN measurement of one weighted layer, per sample.

    Attributes:
        macs_nominal: ``C_out*H_out*W_out*C_in/groups*k_h*k_w`` (padding included, as ptflops).
        macs_dense: MACs with every input non-zero, padding excluded (NeuroBench "Dense").
        macs_effective: Sum over non-zero inputs of each input's fan-out (zero-skipping).
        input_density: Fraction of the layer's inputs that are non-zero.
    """

    macs_nominal: float
    macs_dense: float
    macs_effective: float
    input_density: float


@dataclass
class DNNRecord:
    """What ``measure`` reports of a trained DNN (the ``dnn`` part of ``results.json``).

    Attributes:
        accuracy: Top-1 accuracy on the evaluated split, in [0, 1].
        sparsity: Fraction of exact zeros in each activation map, by layer name.
        macs_nominal, macs_dense, macs_effective: Totals over weighted layers, per sample.
        energy_j: ``macs_effective * E_mac`` in joules per sample, by energy profile; on a
            memory-aware profile the total compute + memory.
        layers: Per-layer counts, by weighted layer name.
        samples: Number of evaluated samples.
        accuracy_snn_samples: Top-1 accuracy on the samples the SNN is simulated on (the first
            ``snn_samples`` of the split, ``simulate.max_samples``): the reference of the
            iso-accuracy target, so that DNN and SNN are judged on the same images.
        snn_samples: How many samples ``accuracy_snn_samples`` is over.
        energy_breakdown_j: Only for the profiles with a memory level: ``energy_j`` split into
            ``compute`` (``macs_effective * E_mac``) and ``memory`` (one weight read per
            effective MAC, ``macs_effective * E_read``; :func:`~snnergy.energy.compute_memory_split`).
        collapsed: Derived, not passed: the activation layers whose every activation is zero on the
            evaluated samples (sparsity exactly 1). A network with such a layer has *collapsed*: its
            output no longer depends on its input, and its "savings" are not a trade-off to report.

    Example:
        >>> DNNRecord(0.1, {"relu1": 0.4, "relu2": 1.0}, 10.0, 10.0, 2.0, {}).collapsed
        ['relu2']
    """

    accuracy: float
    sparsity: dict[str, float]
    macs_nominal: float
    macs_dense: float
    macs_effective: float
    energy_j: dict[str, float]
    layers: dict[str, LayerCounts] = field(default_factory=dict)
    samples: int = 0
    accuracy_snn_samples: float | None = None
    snn_samples: int = 0
    energy_breakdown_j: dict[str, dict[str, float]] = field(default_factory=dict)
    collapsed: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.collapsed = [name for name, value in self.sparsity.items() if value >= 1.0]

    @property
    def mean_sparsity(self) -> float:
        """Unweighted mean of the per-layer sparsities (0 when there is no activation layer)."""
        return sum(self.sparsity.values()) / len(self.sparsity) if self.sparsity else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, keys as in docs/design.md's results schema."""
        return asdict(self)


@dataclass(frozen=True)
class SNNCurve:
    """An SNN's accuracy, SynOps and energy after every step ``t = 1..T_max`` (``T_max``: the largest
    reported T), for the iso-accuracy question "at which smallest t does it reach the target?",
    which a coarse list of T would answer too late (docs/design.md).

    Attributes:
        timesteps: The t of the curve, increasing: every integer ``1..T_max`` (a coarser grid,
            still holding every reported T, only when the counts at every t would not fit in memory).
        accuracy: Readout accuracy after each t.
        synops: SynOps per sample over steps 1..t.
        energy_j: Joules per sample on each profile after each t.

    Example:
        >>> SNNCurve([1, 2], [0.5, 0.9], [10.0, 20.0], {"p": [1e-9, 2e-9]}).synops[-1]
        20.0
    """

    timesteps: list[int]
    accuracy: list[float]
    synops: list[float]
    energy_j: dict[str, list[float]]


@dataclass
class SNNRecord:
    """What ``simulate`` reports of a converted SNN (the ``snn`` part of ``results.json``).

    Every list is aligned with ``timesteps``: the value after simulating that many steps.

    Attributes:
        timesteps: The reported T values, increasing.
        accuracy: Top-1 accuracy of the readout after each T.
        synops: Synaptic operations per sample, cumulated over steps 1..T.
        input_macs: MACs of the analog first layer per sample (computed once per sample for a
            static analog input; 0 with spiking input, whose first layer performs SynOps).
        neuron_updates: Spiking neurons x T.
        spike_rate: Spikes per neuron per step of each spiking layer, at the largest T.
        energy_j: Joules per sample on each profile, at each T.
        synops_per_layer: SynOps per sample caused by each spiking layer's spikes, at each T.
        correlation: Pearson correlation between each layer's DNN activation (normalized) and
            its SNN rate at the largest T: a conversion-quality diagnostic.
        input: ``"analog"`` or ``"poisson"``.
        samples: Number of simulated samples.
        silent_layers: Spiking layers with no non-zero activation on the conversion's calibration
            data (normalized with scale 1 instead of dividing by zero): a collapsed network.
        paths: How the simulator computed each stage's currents: ``"batched"``, ``"looped"`` or
            ``"event"`` (event-driven, cost following SynOps). How fast the run was, not what it
            computed: every path gives the same spikes.
        input_density: Fraction of each stage's inputs that were non-zero where its path was
            chosen (the analog first stage has none).
        energy_breakdown_j: By profile, ``energy_j`` split into its terms at each T
            (:func:`~snnergy.energy.energy_breakdown`): ``input_layer`` (``input_macs * E_mac``),
            ``spiking_layers`` (``synops * E_ac``), ``neuron_updates`` (``neuron_updates * E_neuron``),
            and on a profile with a memory level ``memory`` (``(input_macs + synops) * E_read +
            neuron_updates * E_state``).
        curve: Accuracy, SynOps and energy at every step up to the largest T (:class:`SNNCurve`).
    """

    timesteps: list[int]
    accuracy: list[float]
    synops: list[float]
    input_macs: list[float]
    neuron_updates: list[float]
    spike_rate: dict[str, float]
    energy_j: dict[str, list[float]]
    synops_per_layer: dict[str, list[float]] = field(default_factory=dict)
    correlation: dict[str, float] = field(default_factory=dict)
    input: str = "analog"
    samples: int = 0
    silent_layers: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)
    input_density: dict[str, float] = field(default_factory=dict)
    energy_breakdown_j: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    curve: SNNCurve | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, keys as in docs/design.md's results schema."""
        return asdict(self)
