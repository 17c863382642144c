"""Typed configuration: one frozen dataclass per stage, nested in :class:`ExperimentConfig`.

A config is read from a TOML file (:func:`load_config`) or built in code, then overridden by
dotted paths (``train.lr=3e-4``, :func:`apply_overrides`). An unknown key or a value of the wrong
type is a :class:`~snnergy.errors.ConfigError` that names the key, and so is a value out of its range
or set of choices (checked when each dataclass is built, e.g. ``data.batch_size = 0`` or
``convert.reset = "half"``), so a bad config fails before any training starts. Each run saves its
resolved config (:func:`config_to_dict`) beside its results.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import sys
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Mapping, TypeVar

from snnergy.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

C = TypeVar("C")

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "constant")
#: Neuron resets (``convert.reset``); :mod:`snnergy.simulation` uses these names.
RESETS = ("subtract", "zero")
#: Input encodings of the simulation (``simulate.input``); :mod:`snnergy.simulation` uses these names.
INPUTS = ("analog", "poisson")
#: Activations of the models (``model.activation``); the keys of :data:`snnergy.structure.ACTIVATIONS`
#: (a test checks it), built by :func:`snnergy.layers.make_activation`.
ACTIVATION_NAMES = ("relu", "qcfs", "clip")
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a 64-bit seed


def _require(ok: bool, key: str, expect: str, value: Any) -> None:
    """Raises ``ConfigError("<key> must be <expect>, got <value>")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key} must be {expect}, got {value!r}")


def _one_of(value: Any, allowed: tuple[str, ...], key: str, what: str) -> None:
    """Raises ``ConfigError("<key>: unknown <what> 'x'; allowed: ...")`` unless ``value`` is allowed."""
    if value not in allowed:
        raise ConfigError(f"{key}: unknown {what} {value!r}; allowed: {', '.join(allowed)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any, allow_none: bool = False) -> bool:
    return (allow_none and value is None) or (_is_int(value) and value >= 1)


def _number(value: Any, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False) -> bool:
    """A finite real number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return (value > low if low_open else value >= low) and value <= high


@dataclass(frozen=True)
class DataConfig:
    """Which dataset and how to batch it.

    Attributes:
        dataset: Name in :data:`snnergy.data.DATASETS`.
        data_dir: Folder with the dataset's files (IDX, CIFAR batches); ``None`` searches
            ``$SNNERGY_DATA/<dataset>`` and the Debian package location.
        batch_size: Samples per batch, training and evaluation.
        calibration_size: Training samples drawn for conversion's data-based normalization.
        train_limit: Use at most this many training samples (``None``: all), for quick runs.
        test_limit: Evaluate on at most this many test samples (``None``: all).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    batch_size: int = 64
    calibration_size: int = 512
    train_limit: int | None = None
    test_limit: int | None = None

    def __post_init__(self) -> None:
        _require(_positive_int(self.batch_size), "data.batch_size", "an integer >= 1", self.batch_size)
        _require(_positive_int(self.calibration_size), "data.calibration_size", "an integer >= 1",
                 self.calibration_size)
        for key in ("train_limit", "test_limit"):
            value = getattr(self, key)
            _require(_positive_int(value, allow_none=True), f"data.{key}", "at least 1 or None", value)


@dataclass(frozen=True)
class ModelConfig:
    """Which architecture; it is sized from the dataset's input shape and class count.

    Attributes:
        name: Name in :data:`snnergy.models.MODELS`.
        width: Multiplier on the number of channels/units (1.0 is the documented default size).
        activation: The models' activation, in :data:`ACTIVATION_NAMES`: ``"relu"``, ``"qcfs"``
            (quantization-clip-floor-shift, Bu et al. ICLR 2022) or ``"clip"`` (trained clipping,
            Ho & Chang 2021); the last two train their threshold ``theta`` (the converted SNN's).
        levels: QCFS quantization levels ``L`` (other activations ignore it).
        channelwise_threshold: One trained ``theta`` per channel instead of one per layer
            (``relu`` ignores it).
    """

    name: str = "lenet"
    width: float = 1.0
    activation: str = "relu"
    levels: int = 8
    channelwise_threshold: bool = False

    def __post_init__(self) -> None:
        _require(_number(self.width, 0.0, low_open=True), "model.width", "a positive finite number",
                 self.width)
        _one_of(self.activation, ACTIVATION_NAMES, "model.activation", "activation")
        _require(_positive_int(self.levels), "model.levels", "an integer >= 1", self.levels)
        _require(isinstance(self.channelwise_threshold, bool), "model.channelwise_threshold", "true or false",
                 self.channelwise_threshold)


@dataclass(frozen=True)
class TrainConfig:
    """Training: task loss + ``strength`` x activity penalty.

    Attributes:
        epochs: Passes over the training split (the default suits the small digits set: LeNet
            reaches about 97 % there; for Fashion-MNIST a handful of epochs is enough).
        lr: Initial learning rate (Adam 1e-2 with the cosine schedule reaches about 97 % on digits
            in 30 epochs; 3e-3 stays near 92 % in 20).
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``).
        momentum: SGD momentum.
        weight_decay: L2 weight decay (coupled, as in ``torch.optim``).
        schedule: ``"cosine"`` (annealed to 0 over the run) or ``"constant"``.
        regularizer: Name in :data:`snnergy.regularizers.REGULARIZERS`.
        strength: The regularizer's weight lambda.
        layer_weights: Optional weight per activation layer (in forward order) for the penalty
            (per-layer regularizers only).
        budget: Energy-aware regularizers (``synops``, ``macs``) only: penalize per sample just
            what exceeds this value, in the penalty's unit: SynOps of ``penalty_timesteps`` steps
            (per timestep by default), effective MACs, or joules per sample with
            ``penalty_profile``. ``None`` (default): penalize the whole value.
        penalty_profile: Energy-aware regularizers only: an energy profile name; the penalty
            becomes the estimated energy per sample in joules on it (``None``: operation counts).
        penalty_timesteps: ``synops`` only: the value counts a T-step inference (SynOps, or energy
            with ``penalty_profile``); 1 (default) gives SynOps per timestep.
        init_from: A run folder of ``snnergy train`` (or its ``checkpoint/`` subfolder, or one
            configuration's folder of a compare/sweep) whose weights start this training instead
            of a random initialization (same architecture; the activation may differ: a ReLU
            checkpoint starts a QCFS model, whose thresholds then start from data). ``None``:
            random initialization.
        distill: A run folder (found exactly like ``init_from``) whose model is the teacher of
            knowledge distillation (Hinton, Vinyals & Dean 2015): the task loss becomes
            ``(1 - distill_weight) * CE + distill_weight * T^2 * KL(teacher_T || student_T)``
            with both softmaxes at temperature ``T = distill_temperature``. The teacher keeps its
            own architecture and activation (same input shape and class count). ``None``: no
            distillation.
        distill_temperature: The softmax temperature ``T`` of distillation, > 0.
        distill_weight: The share ``w`` of the distillation term in the task loss, in [0, 1].
    """

    epochs: int = 30
    lr: float = 1e-2
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    regularizer: str = "none"
    strength: float = 0.0
    layer_weights: tuple[float, ...] | None = None
    budget: float | None = None
    penalty_profile: str | None = None
    penalty_timesteps: int = 1
    init_from: str | None = None
    distill: str | None = None
    distill_temperature: float = 4.0
    distill_weight: float = 0.5

    def __post_init__(self) -> None:
        _require(_is_int(self.epochs) and self.epochs >= 0, "train.epochs", "an integer >= 0", self.epochs)
        _require(_number(self.lr, 0.0, low_open=True), "train.lr", "a finite number > 0", self.lr)
        for key in ("momentum", "weight_decay", "strength"):
            _require(_number(getattr(self, key), 0.0), f"train.{key}", "a finite number >= 0", getattr(self, key))
        _one_of(self.optimizer, OPTIMIZERS, "train.optimizer", "optimizer")
        _one_of(self.schedule, SCHEDULES, "train.schedule", "schedule")
        if self.layer_weights is not None:
            _require(all(_number(w, 0.0) for w in self.layer_weights), "train.layer_weights",
                     "finite numbers >= 0", self.layer_weights)
        if self.budget is not None:
            _require(_number(self.budget, 0.0), "train.budget", "a finite number >= 0 or None", self.budget)
        _require(_positive_int(self.penalty_timesteps), "train.penalty_timesteps", "an integer >= 1",
                 self.penalty_timesteps)
        if self.init_from is not None:
            _require(isinstance(self.init_from, str) and bool(self.init_from.strip()), "train.init_from",
                     "a run folder (a non-empty string) or None", self.init_from)
        if self.distill is not None:
            _require(isinstance(self.distill, str) and bool(self.distill.strip()), "train.distill",
                     "a run folder (a non-empty string) or None", self.distill)
        _require(_number(self.distill_temperature, 0.0, low_open=True), "train.distill_temperature",
                 "a finite number > 0", self.distill_temperature)
        _require(_number(self.distill_weight, 0.0, 1.0), "train.distill_weight", "a number in [0, 1]",
                 self.distill_weight)


@dataclass(frozen=True)
class ConvertConfig:
    """DNN-to-SNN conversion (Rueckauer et al. 2017).

    Attributes:
        percentile: Percentile of each layer's non-zero activations used as its scale
            (100 is the maximum, Diehl et al. 2015).
        channelwise: One scale per output channel instead of per layer.
        reset: ``"subtract"`` (reset by subtraction) or ``"zero"``.
        v0: Initial membrane potential as a fraction of the threshold, in [0, 1): every neuron
            starts at ``v0 * threshold``. ``None``: 1/2 when the net has trained-threshold
            activations (QCFS, trained clip: Bu et al., ICLR 2022; Hao et al., ICLR 2023), else 0
            (Rueckauer et al. 2017).
        weight_bits: Quantize the converted SNN's weights to this many bits, an integer in
            [2, 16] (symmetric uniform, biases in float: Jacob et al., CVPR 2018; Krishnamoorthi
            2018); ``None``: float32 weights, no quantization.
        weight_per_channel: With ``weight_bits``, one quantization scale per output channel
            instead of one per layer.
    """

    percentile: float = 99.9
    channelwise: bool = False
    reset: str = "subtract"
    v0: float | None = None
    weight_bits: int | None = None
    weight_per_channel: bool = False

    def __post_init__(self) -> None:
        _require(_number(self.percentile, 0.0, 100.0, low_open=True), "convert.percentile", "in (0, 100]",
                 self.percentile)
        _one_of(self.reset, RESETS, "convert.reset", "reset")
        _require(self.v0 is None or (_number(self.v0, 0.0, 1.0) and self.v0 < 1.0), "convert.v0",
                 "a fraction of the threshold in [0, 1) or None", self.v0)
        _require(self.weight_bits is None or (_is_int(self.weight_bits) and 2 <= self.weight_bits <= 16),
                 "convert.weight_bits", "an integer in [2, 16] or None", self.weight_bits)
        _require(isinstance(self.weight_per_channel, bool), "convert.weight_per_channel", "true or false",
                 self.weight_per_channel)


def doubling_timesteps(largest: int) -> tuple[int, ...]:
    """The reported T for a largest T: powers of two below it, then it (``--timesteps T``).

    Example:
        >>> doubling_timesteps(128)[-3:], doubling_timesteps(20)
        ((32, 64, 128), (1, 2, 4, 8, 16, 20))
    """
    if isinstance(largest, bool) or not isinstance(largest, numbers.Integral) or largest < 1:
        raise ConfigError(f"simulate.timesteps must be >= 1, got {largest!r}")
    largest = int(largest)
    return tuple(1 << k for k in range(largest.bit_length()) if 1 << k < largest) + (largest,)


def check_timesteps(timesteps: Any) -> tuple[int, ...]:
    """The reported T values, sorted and unique; each an integer >= 1 (else :class:`ConfigError`).

    The one check of ``simulate.timesteps``: :class:`SimulateConfig` applies it, and so does
    the simulator to timesteps given to it directly.

    Example:
        >>> check_timesteps([8, 2, 8])
        (2, 8)
    """
    values = list(timesteps) if isinstance(timesteps, Iterable) and not isinstance(timesteps, (str, bytes)) else None
    _require(bool(values) and all(isinstance(t, numbers.Integral) and not isinstance(t, bool) and t >= 1
                                  for t in values),  # type: ignore[union-attr]
             "simulate.timesteps", "a non-empty list of integers >= 1", timesteps)
    return tuple(sorted({int(t) for t in values}))  # type: ignore[union-attr]


#: Weight widths ``simulate.quantize`` accepts (those of :data:`snnergy.simulation.quantize.BITS`).
QUANTIZE_BITS = range(2, 17)


def check_quantize(widths: Any) -> tuple[int, ...]:
    """``simulate.quantize`` as unique widths, widest first; each an integer in [2, 16], else one
    :class:`ConfigError` naming the key.

    Example:
        >>> check_quantize([4, 8, 4])
        (8, 4)
        >>> check_quantize([8, 1])
        Traceback (most recent call last):
        ...
        snnergy.errors.ConfigError: simulate.quantize must be a list of weight widths, integers in [2, 16] (e.g. [8, 4]), got [8, 1]
    """
    values = list(widths) if isinstance(widths, Iterable) and not isinstance(widths, (str, bytes)) else None
    _require(values is not None and all(_is_int(b) and b in QUANTIZE_BITS for b in values), "simulate.quantize",
             "a list of weight widths, integers in [2, 16] (e.g. [8, 4])", widths)
    return tuple(sorted({int(b) for b in values}, reverse=True))  # type: ignore[union-attr]


@dataclass(frozen=True)
class SimulateConfig:
    """SNN simulation.

    Attributes:
        timesteps: The T values to report (stored sorted and unique); the simulation runs to the
            largest. :func:`doubling_timesteps` gives 1, 2, 4, ..., T.
        input: ``"analog"`` (constant current) or ``"poisson"`` (Bernoulli spikes).
        max_samples: Simulate at most this many test samples (``None``: all).
        max_memory: Bytes the simulation may use; batches are split to fit, and a request too
            large for one sample is refused before allocating (``None``: a quarter of the RAM).
        quantize: Weight widths (each an integer in [2, 16]) at which the converted SNN is also
            simulated, its weights quantized after conversion (``convert.weight_per_channel``
            picks per-layer or per-channel scales): ``results.json`` then holds ``snn.quantized``,
            one record per width. Stored unique, widest first; empty (default): float32 only.
    """

    timesteps: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    input: str = "analog"
    max_samples: int | None = None
    max_memory: int | None = None
    quantize: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "timesteps", check_timesteps(self.timesteps))
        _one_of(self.input, INPUTS, "simulate.input", "simulation input")
        _require(_positive_int(self.max_samples, allow_none=True), "simulate.max_samples",
                 "at least 1 or None", self.max_samples)
        _require(_positive_int(self.max_memory, allow_none=True), "simulate.max_memory",
                 "a positive number of bytes or None", self.max_memory)
        object.__setattr__(self, "quantize", check_quantize(self.quantize))


@dataclass(frozen=True)
class FinetuneConfig:
    """SNN-in-the-loop fine-tuning of the converted network (:mod:`snnergy.finetuning`), between
    conversion and simulation.

    The converted SNN is unrolled for ``timesteps`` steps (IF neurons, its reset and ``v0``) with a
    surrogate gradient for the spikes (the arctan of Fang et al., ICCV 2021); its weights and one
    threshold per spiking layer are trained with Adam on the cross-entropy of the readout plus
    ``strength`` x its own SynOps per sample.

    Attributes:
        timesteps: T of the unrolled network; 0 (default) means no fine-tuning.
        epochs: Passes over the (limited) training split.
        lr: Adam's learning rate.
        strength: Weight of the SynOps penalty, per SynOp of the T-step inference (so a strength
            is an energy per operation when the loss is read in joules); 0: accuracy only.
        train_limit: Training samples drawn per epoch (``None``: the whole training split).
        slope: The arctan surrogate's ``alpha``: the spike's derivative is
            ``alpha / 2 / (1 + (pi / 2 * alpha * (v - theta))**2)`` (SpikingJelly's default 2).
    """

    timesteps: int = 0
    epochs: int = 1
    lr: float = 1e-4
    strength: float = 0.0
    train_limit: int | None = None
    slope: float = 2.0

    def __post_init__(self) -> None:
        _require(_is_int(self.timesteps) and self.timesteps >= 0, "finetune.timesteps",
                 "an integer >= 0 (0: no fine-tuning)", self.timesteps)
        _require(_positive_int(self.epochs), "finetune.epochs", "an integer >= 1", self.epochs)
        _require(_number(self.lr, 0.0, low_open=True), "finetune.lr", "a finite number > 0", self.lr)
        _require(_number(self.strength, 0.0), "finetune.strength", "a finite number >= 0", self.strength)
        _require(_positive_int(self.train_limit, allow_none=True), "finetune.train_limit", "at least 1 or None",
                 self.train_limit)
        _require(_number(self.slope, 0.0, low_open=True), "finetune.slope", "a finite number > 0", self.slope)


@dataclass(frozen=True)
class LoggingConfig:
    """Where a run's training logs go (``--tensorboard DIR``). Not part of
    :class:`ExperimentConfig`: logs do not change what a run computes, so a configuration's
    identity (``config_hash``), its resume and its results are the same with or without them.

    Attributes:
        tensorboard: A folder for TensorBoard event files (optional extra ``snnergy[tensorboard]``):
            per epoch the task loss, the penalty, the accuracies, the learning rate and the
            sparsity of every activation layer. ``None`` (default): no TensorBoard log.

    Example:
        >>> LoggingConfig(tensorboard="runs/tb").tensorboard
        'runs/tb'
        >>> LoggingConfig(tensorboard=" ")
        Traceback (most recent call last):
        ...
        snnergy.errors.ConfigError: logging.tensorboard must be a folder (a non-empty string) or None, got ' '
    """

    tensorboard: str | None = None

    def __post_init__(self) -> None:
        if self.tensorboard is not None:
            _require(isinstance(self.tensorboard, str) and bool(self.tensorboard.strip()), "logging.tensorboard",
                     "a folder (a non-empty string) or None", self.tensorboard)


@dataclass(frozen=True)
class ExperimentConfig:
    """One configuration end to end: data, model, training, conversion, (SNN fine-tuning,) simulation.

    Attributes:
        seed: Seeds data splits, initialization and Poisson input.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        profiles: Energy profiles to report (``None``: every registered profile).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    convert: ConvertConfig = field(default_factory=ConvertConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    seed: int = 0
    device: str = "auto"
    profiles: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _require(_is_int(self.seed) and 0 <= self.seed <= MAX_SEED, "seed", f"an integer in [0, {MAX_SEED}]",
                 self.seed)
        if self.simulate.quantize and self.convert.weight_bits is not None:
            raise ConfigError(f"simulate.quantize = {list(self.simulate.quantize)} simulates quantized copies of the "
                              f"float32 SNN, but convert.weight_bits = {self.convert.weight_bits} already quantizes it; "
                              "give one of the two")


def config_to_dict(config: Any) -> dict[str, Any]:
    """The JSON/TOML-ready form of a config (tuples become lists).

    Example:
        >>> config_to_dict(ConvertConfig())
        {'percentile': 99.9, 'channelwise': False, 'reset': 'subtract', 'v0': None, 'weight_bits': None, 'weight_per_channel': False}
    """
    return dataclasses.asdict(config, dict_factory=lambda items: {k: _plain(v) for k, v in items})


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def config_from_dict(cls: type[C], data: Mapping[str, Any], where: str = "") -> C:
    """Builds ``cls`` from a nested mapping; unknown keys and wrong types are errors.

    Args:
        cls: A config dataclass, e.g. :class:`ExperimentConfig`.
        data: Nested mapping as read from TOML or JSON.
        where: Prefix for error messages (the dotted path of ``data``).

    Example:
        >>> config_from_dict(TrainConfig, {"lr": 0.01, "epochs": 2}).lr
        0.01
        >>> config_from_dict(TrainConfig, {"lr_rate": 0.01})
        Traceback (most recent call last):
        ...
        snnergy.errors.ConfigError: unknown config key 'lr_rate'; allowed: epochs, lr, optimizer, momentum, weight_decay, schedule, regularizer, strength, layer_weights, budget, penalty_profile, penalty_timesteps, init_from, distill, distill_temperature, distill_weight
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"config section '{where or cls.__name__}' must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in known:
            raise ConfigError(f"unknown config key '{path}'; allowed: {', '.join(known)}")
        kwargs[key] = _coerce(hints[key], value, path)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    """Checks ``value`` against the type ``hint`` (converting ints to floats, lists to tuples)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if is_dataclass(hint):
        return config_from_dict(hint, value, path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"bad value for '{path}': {value!r}")
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}' expects a list, got {value!r}")
        return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"config key '{path}' expects a finite number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{path}' expects an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{path}' expects true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{path}' expects a string, got {value!r}")
        return value
    raise ConfigError(f"config key '{path}' has an unsupported type {hint!r}")  # pragma: no cover


def load_config(path: str | Path) -> ExperimentConfig:
    """Reads an :class:`ExperimentConfig` from a TOML file.

    Raises:
        ConfigError: The file is missing, is not valid TOML, or holds an unknown key or a
            value of the wrong type (the message names the file and the key).
    """
    path = Path(path)
    data = read_toml(path, "config file")
    try:
        return config_from_dict(ExperimentConfig, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


MAX_TOML_BYTES = 1 << 20  # configs and sweep files are a few KB; refuse anything absurd unread


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Reads a TOML file (config or sweep): a missing, unreadable, oversized (> 1 MiB), non-UTF-8,
    malformed or absurdly nested file is one :class:`ConfigError` naming the file.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "x.toml"
        >>> _ = path.write_text("seed = 3")
        >>> read_toml(path, "config file")
        {'seed': 3}
    """
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ConfigError(f"{path}: {what} is not a regular file")
        if size > MAX_TOML_BYTES:
            raise ConfigError(f"{path}: {what} of {size} bytes, more than the {MAX_TOML_BYTES} a TOML file may have")
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the {what}: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a valid TOML file: {err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a valid TOML file: nested too deeply") from None


def apply_overrides(config: C, overrides: Mapping[str, Any]) -> C:
    """Returns a copy of ``config`` with fields replaced by dotted path.

    String values (from the command line) are parsed as TOML values when they parse, so
    ``"3e-4"`` becomes a float, ``"[1, 2]"`` a list, and a bare word stays a string.

    Example:
        >>> cfg = apply_overrides(ExperimentConfig(), {"train.lr": "3e-4", "data.dataset": "mnist"})
        >>> cfg.train.lr, cfg.data.dataset
        (0.0003, 'mnist')
    """
    data = config_to_dict(config)
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for i, part in enumerate(parents):
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"unknown config section '{'.'.join(parents[: i + 1])}'")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"unknown config key '{dotted}'; allowed: {', '.join(node)}")
        node[leaf] = parse_value(value) if isinstance(value, str) else value
    return config_from_dict(type(config), data)


def parse_value(text: str) -> Any:
    """Parses a command-line value as a TOML value, falling back to the plain string.

    Example:
        >>> parse_value("1e-3"), parse_value("[1, 2]"), parse_value("hoyer"), parse_value("true")
        (0.001, [1, 2], 'hoyer', True)
    """
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def with_changes(config: C, **changes: Any) -> C:
    """``dataclasses.replace`` under a verb name, for readability at call sites."""
    return replace(config, **changes)


def env_setting(variable: str, allowed: tuple[str, ...]) -> str:
    """The value of the environment switch ``variable``, lower-cased: one of ``allowed``, the first
    (the default) when unset or empty.

    Raises:
        ConfigError: Any other value, naming the variable and the allowed values.

    Example:
        >>> env_setting("SNNERGY_NO_SUCH_SWITCH", ("auto", "off"))
        'auto'
    """
    value = os.environ.get(variable, "").strip().lower() or allowed[0]
    if value not in allowed:
        raise ConfigError(f"environment variable {variable}={os.environ[variable]!r}: "
                          f"allowed values are {', '.join(allowed)}")
    return value


def parse_size(text: str | int) -> int:
    """Bytes from ``"512MiB"``, ``"2GB"``, ``"1.5GiB"``, ``"4096"`` (bytes) or an int.

    Example:
        >>> parse_size("512MiB"), parse_size("2GB"), parse_size(1024)
        (536870912, 2000000000, 1024)
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        raw = str(text).strip()
        units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "KB": 10**3, "MB": 10**6, "GB": 10**9,
                 "TB": 10**12, "B": 1}
        unit = next((u for u in units if raw.upper().endswith(u)), "")
        number = raw[: len(raw) - len(unit)].strip()
        try:
            value = int(float(number) * units.get(unit, 1))
        except (ValueError, OverflowError):
            raise ConfigError(f"{text!r} is not a size (e.g. 512MiB, 2GB or bytes)") from None
    if value <= 0:
        raise ConfigError(f"a size must be positive, got {text!r}")
    return value
