"""Energy-aware regularizers: the converted SNN's SynOps (``synops``) and the DNN's effective
MACs on zero-skipping hardware (``macs``), estimated differentiably during training.

Generic sparsity penalties (L1, Hoyer...) ignore that a spike in a layer with a large fan-out
costs more synaptic operations than one with a small fan-out, and that conversion divides each
layer by its normalization scale. These penalties are the counted quantity itself.

``synops``. After conversion, neuron ``i`` of activation layer ``l`` fires at the rate
``r_i = min(a_i / lambda_l, 1)`` spikes per step (the rate approximation: the IF neuron with
threshold 1 and reset by subtraction, whose rate is its normalized input, at most one spike per
step), where ``lambda_l`` is the converter's scale (the p-th percentile of the layer's non-zero
activations, :func:`snnergy.conversion.activation_scales`). Each spike costs its exact fan-out
``f_i`` into the next weighted layer, through average pooling (:func:`snnergy.counting.neuron_fanout`,
the code that counts the SNN's SynOps). Per sample::

    S = sum_l sum_i min(a_i / lambda_l, 1) * f_i        (expected SynOps per timestep)

``lambda_l`` is the converter's scale, estimated while the weights change: a running estimate
(exponential moving average of each batch's percentile, momentum 0.1). Each batch is divided by
the estimate of the batches *before* it (the first batch by its own percentile), and the estimate
is a constant in the backward pass; then the batch updates it. So the penalty is non-decreasing
in every activation: raising a layer's top activations (above ``lambda_l``) leaves the value
unchanged and gets no gradient (the rate is capped), and the gradient never pushes an activation
up. This closes a loophole of the former scale (issue 14): differentiating through the batch
percentile (``scale_gradient=True``, :func:`scale_with_gradient`, kept to reproduce runs trained
with it) made the penalty scale-invariant, but the gradient that balances it fell on the one or
two order statistics the percentile interpolates, pushing the top activations up: ``lambda``
grew (relu1 2.34 -> 3.18 on digits), fewer spikes per step, but a coarser resolution
(``lambda / T`` per spike), so the SNN needed more timesteps and the saving vanished at
iso-accuracy. With a constant scale the penalty reads ``sum_i f_i a_i / lambda_l`` below the
cap: at iso-accuracy (the timesteps ``T`` the resolution ``lambda_l / T`` needs) the SNN's SynOps
are ``T * S``, which that gradient measures. The remaining difference from the converter: the
estimate averages percentiles of training batches (64 samples, the weights still moving), the
converter takes the percentile of the whole calibration set once, after training (the two
differed by 2-9 % on digits/LeNet, issue 14).

Measured on digits/LeNet (``snnergy compare --regularizers none,synops,l1``, target 0.97, the
smallest T of 1, 2, 4, ... reaching it, ``cmos45-fp32``): strength 7e-7 now reaches the target
at T = 16 with 1.98e5 SynOps, 1.98e-7 J (with ``scale_gradient`` it never did; its best, 3e-7,
needed 2.36e5, 2.32e-7 J), relu1's scale 1.11 against 3.12. ``l1`` 0.03 still needs fewer
(1.35e5, 1.41e-7 J at T = 8). With the scale constant the gradient ``f_i / lambda_l`` grows as a
layer's activations (and, a batch later, its scale) shrink: at 1.5e-6 every layer fell silent,
as the detached variant of the former scale did at twice a useful strength; keep the strength
below that (``DEFAULT_STRENGTHS`` in :mod:`snnergy.experiments.compare`).

Trained-threshold layers (``qcfs``, ``clip``: :mod:`snnergy.layers`; the plan's
``Activation.parameters`` hold ``threshold``): the converter's scale is the threshold ``theta``
itself, so neuron ``i`` fires ``h_i / theta`` per step, exactly the converted SNN's rate (QCFS with
``T = L`` and ``v0 = theta / 2``: ``k / L`` for an output ``theta * k / L``, Bu et al. 2022,
Theorem 2), and the penalty divides by the module's live ``threshold`` parameter, found by the
activation's name at bind time. It is differentiated through ``theta`` too: raising ``theta``
lowers the rates, and the network's forward (the quantized activation) already pays the
coarser steps ``theta / L``, so the task loss, not the penalty, judges that trade. These layers
keep no running scale; on the fast path their value is one product of the map with its fan-out
per layer (:func:`~snnergy.regularizers.fused_energy.threshold_synops`: ``h <= theta``, no cap).

The readout layer does not spike. The value is ``T * S`` (SynOps of a T-step inference,
``T = penalty_timesteps``, 1 by default), or with an energy profile the energy per sample in joules, as :func:`snnergy.energy.estimate_energy` prices
the SNN with analog input::

    E = 1e-12 * (T * S * E_ac + M_in * E_mac + T * N * E_neuron)

with ``M_in`` the first layer's effective MACs on the (static) input and ``N`` the neurons
(spiking and readout) updated every step; both are constant in the weights, so they shift the
value (they matter for the budget) but not the gradient.

``macs``. Per sample, over every weighted layer ``j`` and element ``k`` of its actual input::

    M = sum_j sum_k f_jk * s(x_jk / mu_j),   s(r) = |r| / (|r| + eps),   eps = 0.1

with ``f_jk`` the exact fan-out (:func:`snnergy.counting.fanout_map`) and ``mu_j`` the p-th
percentile of the layer's non-zero input magnitudes (running value with the batch percentile's
gradient, :func:`scale_with_gradient`: ``macs`` keeps the scale-invariant form).
``s`` is a smooth
non-zero indicator: ``s(0) = 0`` and ``s -> 1`` away from 0, so ``M`` tends to the effective MACs
(:func:`snnergy.counting.effective_macs`) as ``eps -> 0``; but the exact count has no gradient,
so ``eps`` trades exactness for a usable one. With ``eps = 0.1`` an input at a tenth of its
layer's scale counts one half, one at the scale counts 0.91, and the slope at 0 is ``1/eps``:
the pull is strongest on the small inputs that are cheapest to zero (the transformed-L1 shape of
DeepHoyer, made relative to each layer's scale so that rescaling a layer cannot fake sparsity).
The first layer's input is the data: it is counted exactly (constant, no gradient), so ``M`` is in
true effective MACs. With a profile the value is ``1e-12 * M * E_mac`` joules per sample.

Budget mode (both): the penalty is the batch mean of ``max(0, value - budget)``, per sample, so
only samples over the budget are pushed down ("the most accurate network under this budget").
Otherwise it is the batch mean of the value. The strength then reads as task loss per SynOp (per
MAC, per joule).

The estimates are pure functions in :mod:`snnergy.regularizers.estimates` (the batch percentile
is :func:`snnergy.normalization.nonzero_percentile`, the converter's definition); this module
binds them to a model (:class:`SynOpsPenalty`, :class:`MacsPenalty`) and defines the registry
entries (:class:`SynOpsRegularizer`, :class:`MacsRegularizer`; :mod:`snnergy.regularizers.catalog`
registers them). Each entry has a reference path (the functions above, through autograd) and a
fast path (:mod:`snnergy.regularizers.fused_energy`: the same values, to the bit, in one autograd
node), chosen by its ``fast`` field; per-channel scales and maps of 2**24 values or more take the
reference.

References:
    Rueckauer et al. 2017, Front. Neurosci. 11:682 (rates and data-based normalization);
    Bu et al. 2022, ICLR, "Optimal ANN-SNN Conversion for High-accuracy and Ultra-low-latency
    Spiking Neural Networks" (QCFS: the rate h / theta at T = L);
    Sorbaro, Liu, Bortone, Sheik 2020, Front. Neurosci. 14:662 (a synops loss on the ANN:
    activity x fan-out); Yang, Wen, Li 2020, DeepHoyer (transformed L1).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Mapping, Sequence

import torch
from torch import Tensor, nn

from snnergy.counting import effective_macs, fanout_map, layer_geometries, readers_fanout
from snnergy.energy import ENERGY_PROFILES, EnergyProfile
from snnergy.errors import ConfigError, SnnergyError
from snnergy.normalization import Percentile
from snnergy.records import ActivityRecord, LayerGeometry
from snnergy.regularizers import compiled, fused_energy
from snnergy.regularizers.bound import PenaltyOptions
from snnergy.regularizers.estimates import (
    MACS_EPS,
    SCALE_MOMENTUM,
    budget_excess,
    expected_synops,
    scale_with_gradient,
    smooth_macs,
    update_scale,
)
from snnergy.regularizers.structure import ModelStructure, SpikingLayer, trace_structure

JOULES_PER_PICOJOULE = 1e-12

# ----------------------------------------------------------------------------- bound penalties


def _profile(options: PenaltyOptions) -> EnergyProfile | None:
    return None if options.profile is None else ENERGY_PROFILES.get(options.profile)


def _placed(cache: dict[tuple[str, torch.device, torch.dtype], Tensor], fanouts: dict[str, Tensor],
            name: str, like: Tensor) -> Tensor:
    """``fanouts[name]`` on ``like``'s device and dtype, copied there once."""
    key = (name, like.device, like.dtype)
    if key not in cache:
        cache[key] = fanouts[name].to(device=like.device, dtype=like.dtype)
    return cache[key]


def _map(maps: dict[str, Tensor], name: str, kind: str) -> Tensor:
    try:
        return maps[name]
    except KeyError:
        raise SnnergyError(
            f"the record holds no {kind} for layer '{name}' (it has {', '.join(maps) or 'none'}); "
            "record the model this penalty was bound to"
            + (" with ActivityRecorder(model, layer_inputs=True)" if kind == "input" else "")
        ) from None


class _RunningScales(ABC):
    """What both bound penalties share: per-layer running scales, updated once per batch from
    :meth:`batch_scales` (subclasses), kept across epochs (``state_dict`` for resuming), and the
    choice between the reference and the fast path (``fast``, fixed when bound)."""

    momentum: float
    options: PenaltyOptions
    fast: bool
    _scales: dict[str, Tensor]

    @property
    def scales(self) -> dict[str, Tensor]:
        """The running scale of each layer (NaN: not seen yet), copies."""
        return {name: s.clone() for name, s in self._scales.items()}

    def state_dict(self) -> dict[str, Tensor]:
        """The running scales by layer name (to resume training; NaN: not seen yet)."""
        return self.scales

    def load_state_dict(self, scales: dict[str, Tensor]) -> None:
        """Restores running scales saved by :meth:`state_dict`."""
        self._scales = {name: s.clone() for name, s in scales.items()}

    @abstractmethod
    def batch_scales(self, record: ActivityRecord) -> dict[str, Tensor]:
        """Each layer's scale observed on this batch (the percentile the running scale follows)."""

    @abstractmethod
    def values(self, record: ActivityRecord, batch: dict[str, Tensor] | None = None) -> Tensor:
        """The per-sample penalty ``(B,)`` before the budget (``batch``: :meth:`batch_scales`'s)."""

    def observe(self, record: ActivityRecord, batch: dict[str, Tensor] | None = None) -> None:
        """Updates each layer's running scale with this batch's percentile (``batch``: as
        :meth:`batch_scales` gives them, to compute them once per batch)."""
        batch = batch if batch is not None else self.batch_scales(record)
        for name, observed in batch.items():
            self._scales[name] = update_scale(self._scales.get(name), observed.detach(), self.momentum)

    @abstractmethod
    def _fused_values(self, record: ActivityRecord) -> Tensor | None:
        """The fast path: :meth:`observe` then :meth:`values` in one autograd node
        (:mod:`snnergy.regularizers.fused_energy`); ``None`` (nothing done) where the record's
        maps do not fit it."""

    def __call__(self, record: ActivityRecord) -> Tensor:
        """The batch penalty; updates the running scales with this batch. With ``fast`` the fast
        path computes it where it can, else the reference: :meth:`observe`, then :meth:`values`
        through autograd (the same value and running scales, to the bit)."""
        values = self._fused_values(record) if self.fast else None
        if values is None:
            batch = self.batch_scales(record)  # once per batch
            self.observe(record, batch)
            values = self.values(record, batch)
        return budget_excess(values, self.options.budget)


class SynOpsPenalty(_RunningScales):
    """``synops`` bound to one model (module docstring): holds fan-outs, running scales (of the
    percentile-normalized layers) and the live thresholds (of the trained-threshold layers).

    Calling it on a record returns the batch penalty (a scalar) and updates the running scales
    with that batch. :meth:`values` gives the per-sample values without touching the scales.
    ``fast``: the fast path (percentile layers in one autograd node, trained-threshold layers by
    :func:`~snnergy.regularizers.fused_energy.threshold_synops`); it is ``False`` (the reference)
    for per-channel percentile scales, whatever was asked.
    """

    def __init__(self, structure: ModelStructure, options: PenaltyOptions, momentum: float,
                 scale_gradient: bool = False, fast: bool = True,
                 thresholds: Mapping[str, Tensor] | None = None) -> None:
        self.scale_gradient = scale_gradient
        if not structure.spiking:
            raise ConfigError("the model has no activation layer feeding a weighted layer: no spikes to count")
        self.thresholds = dict(thresholds or {})
        missing = [s.name for s in structure.spiking if s.trained_threshold and s.name not in self.thresholds]
        if missing:
            raise ConfigError(f"synops: no threshold for the trained-threshold layer(s) {', '.join(missing)}; "
                              "bind the penalty with SynOpsRegularizer().bind(model, ...)")
        self.fast = fast and not options.channelwise
        self.structure, self.options, self.momentum = structure, options, momentum
        self.profile = _profile(options)
        self._fanouts = {s.name: readers_fanout(s.readers, s.neuron_shape) for s in structure.spiking}
        self._scales: dict[str, Tensor] = {}
        self._placed: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}
        self.neurons = structure.readout_neurons + sum(math.prod(s.neuron_shape) for s in structure.spiking)

    @property
    def needs_layer_inputs(self) -> bool:
        """With a profile, the first layer's input (for its MACs) must be recorded."""
        return self.profile is not None

    def _percentile_layers(self) -> list[SpikingLayer]:
        return [s for s in self.structure.spiking if s.name not in self.thresholds]

    def __call__(self, record: ActivityRecord) -> Tensor:
        """The batch penalty; then this batch updates the running scales. The value divides by
        the scales of the batches before (this batch's percentile on the first), constants in
        the backward pass; with ``scale_gradient`` (the former behaviour) the scales include
        this batch and carry its percentile's gradient. The fast path, where it applies, gives
        the same value and running scales, to the bit."""
        values = self._fused_values(record) if self.fast else None
        if values is None:
            batch = self.batch_scales(record)  # once per batch
            if self.scale_gradient:
                self.observe(record, batch)
                values = self.values(record, batch)
            else:
                values = self.values(record, batch)
                self.observe(record, batch)
        return budget_excess(values, self.options.budget)

    def _fused_values(self, record: ActivityRecord) -> Tensor | None:
        layers = self._percentile_layers()
        maps = [_map(record.activations, s.name, "activation map") for s in layers]
        trained = [s for s in self.structure.spiking if s.name in self.thresholds]
        trained_maps = [_map(record.activations, s.name, "activation map") for s in trained]
        if not fused_energy.applies(maps + trained_maps):
            return None
        synops = None
        if layers:
            names = tuple(s.name for s in layers)
            fanouts = tuple(_placed(self._placed, self._fanouts, n, a) for n, a in zip(names, maps))
            plan = fused_energy.Plan(names, fanouts, self._scales, self.momentum, self.options.percentile,
                                     self.scale_gradient, prior_scale=not self.scale_gradient)
            synops = fused_energy.synops(plan, maps)
        if trained:
            fanouts = [_placed(self._placed, self._fanouts, s.name, a) for s, a in zip(trained, trained_maps)]
            rated = fused_energy.threshold_synops(trained_maps, fanouts, [self.thresholds[s.name] for s in trained])
            synops = rated if synops is None else synops + rated
        steps = self.options.timesteps
        return self._priced(synops if steps == 1 else steps * synops, record)  # x 1 is exact: no node

    def batch_scales(self, record: ActivityRecord) -> dict[str, Tensor]:
        """Each percentile-normalized layer's scale on this batch, as the converter measures it
        (:meth:`snnergy.normalization.Percentile.batch_scale`; differentiable with
        ``scale_gradient``). Trained-threshold layers have none: their scale is the threshold."""
        normalization = self.options.normalization
        maps = {s.name: _map(record.activations, s.name, "activation map") for s in self._percentile_layers()}
        return {name: normalization.batch_scale(a if self.scale_gradient else a.detach()) for name, a in maps.items()}

    def values(self, record: ActivityRecord, batch: dict[str, Tensor] | None = None) -> Tensor:
        """Per-sample value: SynOps of ``timesteps`` steps, or joules on the profile. ``(B,)``.

        Uses the running scales as they are (a layer never seen takes this batch's percentile,
        ``batch``: :meth:`batch_scales`'s); with ``scale_gradient`` call :meth:`observe` first to
        include this batch. A trained-threshold layer divides by its live threshold.
        """
        layers = self.structure.spiking
        maps = [_map(record.activations, s.name, "activation map") for s in layers]
        if batch is None and any(s.name not in self._scales for s in self._percentile_layers()):
            batch = self.batch_scales(record)
        scales = []
        for s in layers:
            if s.name in self.thresholds:
                scales.append(self.thresholds[s.name])  # differentiable: theta is the SNN's threshold
                continue
            lam = self._scales.get(s.name, torch.tensor(math.nan, dtype=torch.float64))
            if self.scale_gradient:
                batch = batch if batch is not None else self.batch_scales(record)
                lam = scale_with_gradient(lam, batch[s.name])
            elif batch is not None:  # a scale never seen (NaN) is this batch's, a constant
                observed = batch[s.name].detach().to(lam.device)
                lam = torch.where(torch.isnan(lam), observed, lam)
            scales.append(lam)
        fanouts = [_placed(self._placed, self._fanouts, s.name, a) for s, a in zip(layers, maps)]
        return self._priced(self.options.timesteps * expected_synops(maps, fanouts, scales), record)

    def _priced(self, synops: Tensor, record: ActivityRecord) -> Tensor:
        """``T`` steps' SynOps per sample, as SynOps or, with a profile, joules."""
        if self.profile is None:
            return synops
        first = self.structure.weighted[0]
        input_macs = effective_macs(first, _map(record.layer_inputs, first.name, "input").detach())
        p, steps = self.profile, self.options.timesteps
        constant = input_macs.to(synops) * p.e_mac_pj + steps * self.neurons * p.e_neuron_pj
        return JOULES_PER_PICOJOULE * (synops * p.e_ac_pj + constant)


class MacsPenalty(_RunningScales):
    """``macs`` bound to one model (module docstring): fan-out maps and running input scales."""

    needs_layer_inputs = True

    def __init__(self, layers: Sequence[LayerGeometry], options: PenaltyOptions, eps: float, momentum: float,
                 scale_gradient: bool = True, fast: bool = True) -> None:
        self.scale_gradient, self.fast = scale_gradient, fast
        names = [g.name for g in layers]
        if len(set(names)) != len(names):
            raise ConfigError(f"a weighted layer runs twice in one forward pass ({names}); use separate modules")
        self.layers, self.options, self.eps, self.momentum = tuple(layers), options, eps, momentum
        self.profile = _profile(options)
        self._fanouts = {g.name: fanout_map(g) for g in layers}
        self._scales: dict[str, Tensor] = {}
        self._placed: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}

    def _fused_values(self, record: ActivityRecord) -> Tensor | None:
        rest = self.layers[1:]
        inputs = [_map(record.layer_inputs, g.name, "input") for g in rest]
        if not fused_energy.applies(inputs):
            return None
        first = self.layers[0]
        x0 = _map(record.layer_inputs, first.name, "input")
        f0 = _placed(self._placed, self._fanouts, first.name, x0)
        if compiled.usable([x0, f0]) and tuple(x0.shape[1:]) == tuple(first.in_shape):  # one pass, the same count
            macs = compiled.energy_pass(x0.detach(), False, 0, 1.0, f0, None, count=False, indicator=True)[3]
        else:
            macs = effective_macs(first, x0.detach()).to(x0.dtype)  # the data: exact, no gradient
        if rest:
            names = tuple(g.name for g in rest)
            fanouts = tuple(_placed(self._placed, self._fanouts, n, x) for n, x in zip(names, inputs))
            plan = fused_energy.Plan(names, fanouts, self._scales, self.momentum, self.options.percentile,
                                     self.scale_gradient, self.eps)
            macs = macs + fused_energy.smooth_macs(plan, inputs)
        return self._priced(macs)

    def batch_scales(self, record: ActivityRecord) -> dict[str, Tensor]:
        """Each weighted layer's (but the first's) input percentile on this batch (one per layer)."""
        inputs = {g.name: _map(record.layer_inputs, g.name, "input") for g in self.layers[1:]}
        normalization = Percentile(self.options.percentile)
        return {name: normalization.batch_scale(x if self.scale_gradient else x.detach()) for name, x in inputs.items()}

    def values(self, record: ActivityRecord, batch: dict[str, Tensor] | None = None) -> Tensor:
        """Per-sample value: smooth effective MACs, or joules on the profile. ``(B,)``."""
        first, rest = self.layers[0], self.layers[1:]
        x0 = _map(record.layer_inputs, first.name, "input")
        macs = effective_macs(first, x0.detach()).to(x0.dtype)  # the data: exact, no gradient
        if rest:
            inputs = [_map(record.layer_inputs, g.name, "input") for g in rest]
            scales = [self._scales.get(g.name, torch.tensor(math.nan, dtype=torch.float64)) for g in rest]
            if self.scale_gradient:
                batch = batch if batch is not None else self.batch_scales(record)
                scales = [scale_with_gradient(mu, batch[g.name]) for mu, g in zip(scales, rest)]
            fanouts = [_placed(self._placed, self._fanouts, g.name, x) for g, x in zip(rest, inputs)]
            macs = macs + smooth_macs(inputs, fanouts, scales, self.eps)
        return self._priced(macs)

    def _priced(self, macs: Tensor) -> Tensor:
        """Smooth MACs per sample, or, with a profile, joules."""
        if self.profile is None:
            return macs
        return JOULES_PER_PICOJOULE * self.profile.e_mac_pj * macs


# ----------------------------------------------------------------------------- registry entries


def _refuse_per_layer(name: str) -> ConfigError:
    return ConfigError(
        f"regularizer '{name}' depends on the model's structure and is not a per-layer function; "
        "bind it with snnergy.regularizers.bind_penalty(name, model, input_shape, options)"
    )


def _check_momentum(momentum: float) -> None:
    if not 0 < momentum <= 1:
        raise ConfigError(f"running-scale momentum must be in (0, 1], got {momentum}")


@dataclass(frozen=True)
class SynOpsRegularizer:
    """Registry entry ``synops``: the converted SNN's expected SynOps (or energy), per sample.

    Attributes:
        momentum: Weight of each batch's percentile in the running scales.
        scale_gradient: The former behaviour, kept to reproduce results trained with it: the
            scale includes this batch's percentile and its gradient
            (:func:`scale_with_gradient`), so a layer can lower the penalty by raising its top
            activations (the module docstring). ``False`` (default): the scales are constants.
        fast: The fast path (the same values, rounded differently); ``False``: the reference.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4))
        >>> penalty = SynOpsRegularizer().bind(net, (2,), PenaltyOptions(percentile=100))
        >>> rec = ActivityRecord({"1": torch.tensor([[0.0, 1.0, 2.0]])})  # lambda = max = 2
        >>> penalty(rec)  # rates 0, 1/2, 1: 1.5 spikes per step x fan-out 4 (Linear(3, 4))
        tensor(6.)

        A trained-threshold layer fires ``h / theta`` per step (QCFS: ``theta = 2``, ``L = 4``):

        >>> from snnergy.layers import QCFS
        >>> net = nn.Sequential(nn.Linear(2, 3), QCFS(levels=4, threshold=2.0), nn.Linear(3, 4))
        >>> h = net[1](torch.tensor([[0.3, 1.1, 5.0]]))  # levels 1, 2, 4 of 4: 0.5, 1, 2
        >>> SynOpsRegularizer().bind(net, (2,))(ActivityRecord({"1": h}))  # (1/4 + 1/2 + 1) x 4
        tensor(7., grad_fn=<MeanBackward0>)
    """

    momentum: float = SCALE_MOMENTUM
    scale_gradient: bool = False
    fast: bool = True
    model_aware: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_momentum(self.momentum)

    def __call__(self, a: Tensor) -> Tensor:
        raise _refuse_per_layer("synops")

    def bind(self, model: nn.Module, input_shape: tuple[int, ...], options: PenaltyOptions = PenaltyOptions()) -> SynOpsPenalty:
        """The bound penalty for ``model`` (its structure is traced once, here): a spike's
        fan-out counts every branch reading its layer, residual shortcuts included; each
        trained-threshold layer's module is found by its name, and its ``threshold`` parameter
        is used live (trained with the model)."""
        structure = trace_structure(model, input_shape)
        return SynOpsPenalty(structure, options, self.momentum, self.scale_gradient, self.fast,
                             _thresholds(model, structure))


def _thresholds(model: nn.Module, structure: ModelStructure) -> dict[str, Tensor]:
    """The ``threshold`` parameter of each trained-threshold layer's module, by the layer's name."""
    modules = dict(model.named_modules())
    found = {}
    for layer in structure.spiking:
        if not layer.trained_threshold:
            continue
        threshold = getattr(modules.get(layer.name), "threshold", None)
        if not isinstance(threshold, Tensor):
            raise ConfigError(f"synops: activation '{layer.name}' ({layer.kind}) has no module with a "
                              "'threshold' tensor; use the snnergy.layers modules (QCFS, TrainedClip)")
        found[layer.name] = threshold
    return found


@dataclass(frozen=True)
class MacsRegularizer:
    """Registry entry ``macs``: smooth effective MACs of the DNN (or their energy), per sample.

    Attributes:
        eps: Sharpness of the smooth non-zero indicator (exact as ``eps -> 0``).
        momentum: Weight of each batch's percentile in the running input scales.
        scale_gradient: Differentiate through the scales (:func:`scale_with_gradient`).
        fast: The fast path (one autograd node, the same values); ``False``: the reference.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4))
        >>> rec = ActivityRecord({}, {"0": torch.tensor([[1.0, 0.0]]), "2": torch.tensor([[0.0, 5.0, 5.0]])})
        >>> round(MacsRegularizer(eps=1e-6).bind(net, (2,))(rec).item(), 3)  # 1 x 3 + 2 x 4
        11.0
    """

    eps: float = MACS_EPS
    momentum: float = SCALE_MOMENTUM
    scale_gradient: bool = True
    fast: bool = True
    model_aware: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ConfigError(f"macs eps must be a finite number > 0, got {self.eps}")
        _check_momentum(self.momentum)

    def __call__(self, a: Tensor) -> Tensor:
        raise _refuse_per_layer("macs")

    def bind(self, model: nn.Module, input_shape: tuple[int, ...], options: PenaltyOptions = PenaltyOptions()) -> MacsPenalty:
        """The bound penalty for ``model`` (its weighted layers are read once, here)."""
        if options.timesteps != 1:
            raise ConfigError("train.penalty_timesteps applies to synops; macs counts one DNN inference")
        return MacsPenalty(layer_geometries(model, input_shape), options, self.eps, self.momentum, self.scale_gradient,
                           self.fast)
