"""Training: task loss + strength x activity penalty, evaluation, and DNN checkpoints.

The loss of a batch is ``cross_entropy + strength * penalty(record)``, where the record holds the
post-ReLU activations (and, for ``macs``, the weighted layers' inputs) recorded by
:class:`~snnergy.activity.ActivityRecorder` during the same forward pass, and ``penalty`` is the
regularizer bound to the model once before training (:func:`snnergy.regularizers.bind_penalty`;
the conventions and formulas are documented in :mod:`snnergy.regularizers`).
A non-finite loss stops training with a :class:`~snnergy.errors.TrainingError`; the checkpoint of
the last finished epoch, written atomically, stays untouched.

Before the first step of a fresh run, the weights come from ``train.init_from`` when it names a
run (:func:`init_from_run`), and every trained threshold (QCFS, trained clip) the checkpoint did
not provide starts from the first training batch (:func:`snnergy.layers.initialize_thresholds`).
A resumed run restores its thresholds with the rest of its state and initializes nothing.

With ``train.distill`` (knowledge distillation, Hinton, Vinyals & Dean 2015, :mod:`snnergy.distillation`)
the cross-entropy becomes ``(1 - w) * CE + w * T^2 * KL(teacher_T || student_T)``: the teacher is
loaded once before training (:func:`load_teacher`), in eval mode on the training device, without
gradients and outside the optimizer, and its logits are computed per batch under ``torch.no_grad()``.
Without a teacher the loop is the one above, term for term.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from snnergy.activity import ActivityRecorder
from snnergy.checkpoints import check_state, load_state_into, load_tensors, read_json, save_tensors, write_json
from snnergy.config import ConvertConfig, ExperimentConfig, TrainConfig, config_from_dict, config_to_dict
from snnergy.data import DatasetSplits, make_loader
from snnergy.distillation import distillation_loss
from snnergy.errors import CheckpointError, ConfigError, TrainingError
from snnergy.layers import initialize_thresholds, is_trained_threshold
from snnergy.models import build_model
from snnergy.regularizers import REGULARIZERS, PenaltyOptions, bind_penalty, compiled, handing_off
from snnergy.train_state import TrainState

CHECKPOINT_FORMAT = "snnergy-dnn"
CHECKPOINT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "checkpoint.json"


@dataclass(frozen=True)
class EpochLog:
    """One line of the training log.

    Attributes:
        epoch: 1-based epoch number.
        task_loss: Mean cross-entropy over the epoch's batches.
        penalty: Mean activity penalty (before multiplying by the strength).
        train_accuracy: Accuracy on the training batches, in training mode.
        test_accuracy: Accuracy on the test split after the epoch, in eval mode.
        sparsity: Fraction of exact zeros over all recorded activation maps of the epoch.
        lr: Learning rate used in the epoch.
        seconds: Wall time of the epoch.
        distillation: Mean distillation term ``T^2 * KL(teacher_T || student_T)`` (before
            multiplying by ``train.distill_weight``); 0 without a teacher.
        layer_sparsity: By activation layer, its fraction of exact zeros over the epoch's
            training batches (``sparsity`` pools them); empty in logs written before it existed.
    """

    epoch: int
    task_loss: float
    penalty: float
    train_accuracy: float
    test_accuracy: float
    sparsity: float
    lr: float
    seconds: float
    distillation: float = 0.0
    layer_sparsity: dict[str, float] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """Maps ``"auto" | "cpu" | "cuda"`` to a device; asking for CUDA without one is an error.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{name}' was asked for, but no CUDA device is available")
        return torch.device(name)
    raise ConfigError(f"unknown device '{name}'; use auto, cpu or cuda")


def seed_everything(seed: int) -> torch.Generator:
    """Seeds Python, NumPy and torch; returns a torch generator seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    raise ConfigError(f"unknown optimizer '{cfg.optimizer}'; use adam or sgd")


def _lr_at(cfg: TrainConfig, step: int, total_steps: int) -> float:
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * step / max(total_steps, 1)))
    raise ConfigError(f"unknown schedule '{cfg.schedule}'; use cosine or constant")


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy of ``model`` over ``loader`` in eval mode (the mode is restored after).

    Returns:
        Accuracy in [0, 1]; 0 for an empty loader.
    """
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
        logits = model(x.to(device))
        correct += int((logits.argmax(dim=1).cpu() == y).sum())
        total += len(y)
    model.train(was_training)
    return correct / total if total else 0.0


def fit(
    model: nn.Module,
    splits: DatasetSplits,
    cfg: TrainConfig,
    *,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    on_epoch: Callable[[nn.Module, EpochLog], None] | None = None,
    convert_config: ConvertConfig | None = None,
    resume: TrainState | None = None,
    on_state: Callable[[TrainState], None] | None = None,
    init_thresholds: bool = True,
) -> list[EpochLog]:
    """Trains ``model`` in place on ``splits.train``; returns the per-epoch log.

    Args:
        model: A network whose activation modules the recorder sees (``nn.ReLU``, ``QCFS``, ``TrainedClip``).
        splits: Train and test tensors (the test split is evaluated after each epoch).
        cfg: Optimizer, schedule, regularizer and strength; with ``cfg.distill`` the teacher run
            of knowledge distillation (loaded here, again on resume: keep its folder unchanged).
        batch_size: Training batch size.
        seed: Seeds the shuffling order.
        device: Where to train.
        progress: Show a progress bar over batches.
        on_epoch: Called after each finished epoch (e.g. to write a checkpoint).
        convert_config: The conversion that will follow (``None``: defaults): the ``synops``
            penalty divides each layer by a running estimate of ``percentile`` (per channel with
            ``channelwise``), as the converter will.
        resume: Continue a run from this state (:mod:`snnergy.train_state`): weights, optimizer,
            random states, penalty estimates and the log of the finished epochs; the returned
            log includes those epochs. A state with every epoch finished trains nothing.
        on_state: Called after each finished epoch with the state to resume from (e.g. to save it).
        init_thresholds: Without ``resume``: start each trained threshold that ``cfg.init_from``
            did not load from the first training batch (:func:`snnergy.layers.initialize_thresholds`);
            ``False`` keeps the model's thresholds as they are.

    Raises:
        TrainingError: The loss became NaN or inf (the message names the epoch and batch).
        ConfigError: Unknown optimizer, schedule or regularizer, or penalty options that do not
            apply to the regularizer (e.g. a budget for ``l1``).
        CheckpointError: ``cfg.init_from`` holds no checkpoint, or one that does not fit the model;
            ``cfg.distill`` holds no readable checkpoint, or a teacher of another input shape or
            class count (raised before any training step).
    """
    REGULARIZERS.get(cfg.regularizer)  # fail before training on a typo
    options = PenaltyOptions.from_configs(cfg, convert_config)
    if cfg.epochs < 0 or cfg.lr <= 0 or cfg.strength < 0:
        raise ConfigError("train.epochs must be >= 0, train.lr > 0 and train.strength >= 0")
    device = torch.device(device)
    teacher = load_teacher(cfg.distill, splits.input_shape, splits.num_classes, device) if cfg.distill else None
    model.to(device)
    loader = make_loader(splits.train_x, splits.train_y, batch_size, shuffle=True, seed=seed)
    if resume is None:
        loaded = init_from_run(model, cfg.init_from) if cfg.init_from is not None else set()
        if init_thresholds:
            _start_thresholds(model, loader, loaded, device)
    optimizer = _optimizer(model, cfg)
    test_loader = make_loader(splits.test_x, splits.test_y, max(batch_size, 256))
    regularize = cfg.regularizer != "none" and cfg.strength > 0
    # bound once: model-aware penalties read the model's structure here
    penalty_of = bind_penalty(cfg.regularizer, model, splits.input_shape, options) if regularize else None
    inputs = penalty_of is not None and penalty_of.needs_layer_inputs
    total_steps, step = cfg.epochs * len(loader), 0
    history: list[EpochLog] = []
    if resume is not None:
        step, history = _restore(resume, model, optimizer, loader, penalty_of)
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        model.train()
        start = time.perf_counter()
        sums = {"task": 0.0, "penalty": 0.0, "distill": 0.0, "correct": 0, "seen": 0, "zeros": 0, "elements": 0}
        layer_zeros: dict[str, list[int]] = {}  # per activation layer: zeros, elements
        lr = _lr_at(cfg, step, total_steps)
        # hooks only around the training batches: evaluation below records nothing
        with ActivityRecorder(model, activations=True, layer_inputs=inputs, detach=False) as recorder:
            bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
            for batch, (x, y) in enumerate(bar, start=1):
                for group in optimizer.param_groups:
                    group["lr"] = _lr_at(cfg, step, total_steps)
                x, y = x.to(device), y.to(device)
                logits = model(x)
                record = recorder.record()
                task = F.cross_entropy(logits, y)
                penalty = penalty_of(record) if penalty_of is not None else torch.zeros((), device=device)
                if teacher is None:
                    loss = task + cfg.strength * penalty
                else:
                    with torch.no_grad():
                        target = teacher(x)
                    parts = distillation_loss(logits, target, y, cfg.distill_temperature, cfg.distill_weight, task)
                    loss = parts.total + cfg.strength * penalty
                    sums["distill"] += float(parts.soft.detach()) * len(y)
                if not bool(torch.isfinite(loss)):
                    soft = f", distillation {float(parts.soft.detach()):.4g}" if teacher is not None else ""
                    raise TrainingError(
                        f"training diverged: loss is {float(loss.detach())} at epoch {epoch}, batch {batch} "
                        f"(task loss {float(task.detach()):.4g}, penalty {float(penalty.detach()):.4g}{soft}); "
                        "lower train.lr or train.strength. The last finished epoch's checkpoint is kept."
                    )
                optimizer.zero_grad(set_to_none=True)
                with handing_off():  # the penalty's gradient at QCFS / clip maps: in their own backward
                    loss.backward()
                optimizer.step()
                step += 1
                n = len(y)
                sums["task"] += float(task.detach()) * n
                sums["penalty"] += float(penalty.detach()) * n
                sums["correct"] += int((logits.argmax(1) == y).sum())
                sums["seen"] += n
                for name, act in record.activations.items():
                    zeros = _zeros(act)
                    sums["zeros"] += zeros
                    sums["elements"] += act.numel()
                    counts = layer_zeros.setdefault(name, [0, 0])
                    counts[0] += zeros
                    counts[1] += act.numel()
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        seen = max(sums["seen"], 1)
        log = EpochLog(
            epoch=epoch,
            task_loss=sums["task"] / seen,
            penalty=sums["penalty"] / seen,
            train_accuracy=sums["correct"] / seen,
            test_accuracy=evaluate(model, test_loader, device),
            sparsity=sums["zeros"] / max(sums["elements"], 1),
            lr=lr,
            seconds=time.perf_counter() - start,
            distillation=sums["distill"] / seen,
            layer_sparsity={name: z / max(n, 1) for name, (z, n) in layer_zeros.items()},
        )
        history.append(log)
        if on_epoch is not None:
            on_epoch(model, log)
        if on_state is not None:
            on_state(_snapshot(epoch, step, model, optimizer, loader, penalty_of, history))
    model.eval()
    return history


def init_from_run(model: nn.Module, run: str | Path) -> set[str]:
    """Loads the weights of the checkpoint in ``run`` into ``model`` (``train.init_from``).

    ``run`` is a folder written by ``snnergy train`` (``run/checkpoint``), its checkpoint folder, or
    one configuration's folder of a compare or sweep (``OUT/runs/<id>``). Every tensor of the
    checkpoint must exist in ``model`` with its shape; every tensor of ``model`` must come from it,
    except trained thresholds (a ReLU checkpoint starts a QCFS or clip model: its thresholds are
    left for :func:`snnergy.layers.initialize_thresholds`).

    Returns:
        The names of the tensors loaded.

    Raises:
        CheckpointError: No checkpoint in ``run``, or one that does not fit ``model`` (naming the
            folder and the first mismatching tensor).

    Example:
        >>> import tempfile
        >>> from snnergy.config import ExperimentConfig, ModelConfig
        >>> relu, qcfs = (build_model(ModelConfig("tiny-mlp", activation=a), (1, 2, 2), 3) for a in ("relu", "qcfs"))
        >>> run = Path(tempfile.mkdtemp())
        >>> save_checkpoint(run / "checkpoint", relu, ExperimentConfig(model=ModelConfig("tiny-mlp")),
        ...                 input_shape=(1, 2, 2), num_classes=3)
        >>> sorted(init_from_run(qcfs, run))  # relu1.threshold is left to the data
        ['fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight']
        >>> bool(torch.equal(qcfs.fc1.weight, relu.fc1.weight))
        True
    """
    folder = find_checkpoint(run, "train.init_from")
    source = load_checkpoint(folder).model.state_dict()
    target = model.state_dict()
    thresholds = {f"{n}.threshold" if n else "threshold" for n, m in model.named_modules() if is_trained_threshold(m)}
    where = f"train.init_from: {folder}"
    extra = sorted(set(source) - set(target))
    if extra:
        raise CheckpointError(f"{where}: the checkpoint's tensor '{extra[0]}' has no place in this model "
                              "(another architecture or activation?)")
    missing = sorted(set(target) - set(source) - thresholds)
    if missing:
        raise CheckpointError(f"{where}: this model's tensor '{missing[0]}' is not in the checkpoint "
                              "(another architecture?)")
    wrong = [n for n in sorted(source) if tuple(source[n].shape) != tuple(target[n].shape)]
    if wrong:
        name = wrong[0]
        raise CheckpointError(f"{where}: tensor '{name}' has shape {tuple(source[name].shape)} in the checkpoint, "
                              f"this model expects {tuple(target[name].shape)} (another width, dataset or "
                              "channelwise setting?)")
    model.load_state_dict(source, strict=False)
    return set(source)


def find_checkpoint(run: str | Path, key: str) -> Path:
    """The checkpoint folder of ``run``: ``run`` itself when it holds a checkpoint, else
    ``run/checkpoint`` (a ``snnergy train`` folder, or ``OUT/runs/<id>`` of a compare or sweep).

    Args:
        run: The folder a config key names (``train.init_from``, ``train.distill``).
        key: That key, for the error message.

    Raises:
        CheckpointError: Neither holds a checkpoint (naming ``key``, the folder and both places looked at).

    Example:
        >>> find_checkpoint("/nonexistent", "train.distill")
        Traceback (most recent call last):
        ...
        snnergy.errors.CheckpointError: train.distill: /nonexistent: no checkpoint there (expected /nonexistent/checkpoint/checkpoint.json or /nonexistent/checkpoint.json; for a compare or sweep folder, name one configuration: OUT/runs/<id>)
    """
    folder = Path(run)
    if not (folder / META_FILE).is_file() and (folder / "checkpoint" / META_FILE).is_file():
        folder = folder / "checkpoint"
    if not (folder / META_FILE).is_file():
        raise CheckpointError(
            f"{key}: {run}: no checkpoint there (expected {Path(run) / 'checkpoint' / META_FILE} or "
            f"{Path(run) / META_FILE}; for a compare or sweep folder, name one configuration: OUT/runs/<id>)"
        )
    return folder


def load_teacher(run: str | Path, input_shape: tuple[int, ...], num_classes: int,
                 device: torch.device | str = "cpu") -> nn.Module:
    """The teacher of knowledge distillation (``train.distill``): the model of ``run``'s checkpoint,
    built from its own saved config (any width, activation or registry model), in eval mode on
    ``device``, with gradients off.

    ``run`` is found like ``train.init_from`` (:func:`find_checkpoint`). Loading draws no random
    numbers from the global generators (the model is built under ``torch.random.fork_rng``), so a
    distilled run starts from the same state as one without a teacher.

    Args:
        run: A ``snnergy train`` folder, its ``checkpoint/`` subfolder, or ``OUT/runs/<id>``.
        input_shape: The student's per-sample input shape; the teacher's must equal it.
        num_classes: The student's class count; the teacher's must equal it.
        device: Where the training runs.

    Raises:
        CheckpointError: No checkpoint in ``run``, a corrupt one, or a teacher of another input
            shape or class count (naming the folder and both shapes).

    Example:
        >>> import tempfile
        >>> from snnergy.config import ExperimentConfig, ModelConfig
        >>> run = Path(tempfile.mkdtemp())
        >>> save_checkpoint(run / "checkpoint", build_model(ModelConfig("tiny-mlp"), (1, 2, 2), 3),
        ...                 ExperimentConfig(model=ModelConfig("tiny-mlp")), input_shape=(1, 2, 2), num_classes=3)
        >>> teacher = load_teacher(run, (1, 2, 2), 3)
        >>> teacher.training, any(p.requires_grad for p in teacher.parameters())
        (False, False)
        >>> load_teacher(run, (1, 2, 2), 4)
        Traceback (most recent call last):
        ...
        snnergy.errors.CheckpointError: train.distill: ...: the teacher takes inputs of shape (1, 2, 2) with 3 classes, this run's data have shape (1, 2, 2) with 4 classes (another dataset?)
    """
    folder = find_checkpoint(run, "train.distill")
    try:
        with torch.random.fork_rng(devices=[]):
            checkpoint = load_checkpoint(folder)
    except CheckpointError as err:
        raise CheckpointError(f"train.distill: {err}") from None
    if tuple(checkpoint.input_shape) != tuple(input_shape) or checkpoint.num_classes != num_classes:
        raise CheckpointError(
            f"train.distill: {folder}: the teacher takes inputs of shape {tuple(checkpoint.input_shape)} with "
            f"{checkpoint.num_classes} classes, this run's data have shape {tuple(input_shape)} with {num_classes} "
            "classes (another dataset?)"
        )
    teacher = checkpoint.model.to(device).eval()
    teacher.requires_grad_(False)
    return teacher


def _start_thresholds(model: nn.Module, loader: DataLoader, loaded: set[str], device: torch.device) -> None:
    """Starts the trained thresholds not in ``loaded`` from the first training batch: the batch the
    first step will see (the shuffling generator's state is given back)."""
    names = [n for n, m in model.named_modules() if is_trained_threshold(m) and f"{n}.threshold" not in loaded]
    if not names:
        return
    state = loader.generator.get_state() if loader.generator is not None else None
    try:
        first = next(iter(loader), None)
    finally:
        if state is not None:
            loader.generator.set_state(state)
    if first is not None:
        model.train()
        initialize_thresholds(model, first[0].to(device), names)


def _zeros(act: torch.Tensor) -> int:
    """The number of zeros of a map, exactly. On a CPU with the compiled kernels one read of the map
    (:func:`snnergy.regularizers.compiled.zero_count`: 0.10 against 0.26 ms per LeNet step, issue 18);
    else its size minus the sum of ``|sgn(a)|``, a float sum of 0s and 1s (exact: float32 below
    2**24 elements, float64 above); about a third of the cost of ``(a == 0).sum()`` on CPU (issue
    8). ``sgn(NaN)`` is 0, so a map whose sum is NaN is counted with ``==`` instead."""
    act = act.detach()
    if act.dim() > 0 and compiled.usable([act]):
        return compiled.zero_count(act)
    if math.isnan(float(act.sum())):
        return int((act == 0).sum())
    total = act.sign().abs_().sum(dtype=torch.float64 if act.numel() >= 2**24 else torch.float32)
    return act.numel() - int(total)


def _snapshot(epoch: int, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
              penalty: Any, history: list[EpochLog]) -> TrainState:
    scales = penalty.state_dict() if hasattr(penalty, "state_dict") else {}
    return TrainState(
        epoch=epoch, step=step, model={k: v.detach().clone() for k, v in model.state_dict().items()},
        optimizer=optimizer.state_dict(), loader_rng=loader.generator.get_state(), torch_rng=torch.get_rng_state(),
        penalty=scales, history=[asdict(h) for h in history],
    )


def _restore(state: TrainState, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
             penalty: Any) -> tuple[int, list[EpochLog]]:
    """Loads ``state`` into the run's objects; returns the optimizer step and the epoch log."""
    where = f"training state after epoch {state.epoch}"
    load_state_into(model, state.model, where)
    try:
        optimizer.load_state_dict(state.optimizer)
        loader.generator.set_state(state.loader_rng)
        torch.set_rng_state(state.torch_rng)
        history = [EpochLog(**h) for h in state.history]
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"{where}: does not fit this run ({err})") from None
    if len(history) != state.epoch:
        raise CheckpointError(f"{where}: holds {len(history)} epoch logs")
    if state.penalty:
        if not hasattr(penalty, "load_state_dict"):
            raise CheckpointError(f"{where}: holds penalty estimates but this run's penalty keeps none")
        penalty.load_state_dict(state.penalty)
    return state.step, history


def save_checkpoint(
    folder: str | Path,
    model: nn.Module,
    config: ExperimentConfig,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    history: list[EpochLog] | None = None,
) -> None:
    """Writes ``folder/model.safetensors`` and ``folder/checkpoint.json``, each atomically.

    The JSON holds the resolved config and what is needed to rebuild the model from the
    registry (name, width, input shape, class count); nothing is pickled.
    """
    folder = Path(folder)
    save_tensors(folder / WEIGHTS_FILE, model.state_dict())
    write_json(
        folder / META_FILE,
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model": {
                "name": config.model.name,
                "width": config.model.width,
                "input_shape": list(input_shape),
                "num_classes": num_classes,
            },
            "config": config_to_dict(config),
            "history": [asdict(h) for h in history or []],
        },
    )


@dataclass
class Checkpoint:
    """A loaded DNN checkpoint."""

    model: nn.Module
    config: ExperimentConfig
    input_shape: tuple[int, ...]
    num_classes: int
    history: list[dict[str, Any]]


def load_checkpoint(folder: str | Path) -> Checkpoint:
    """Rebuilds the model from ``folder/checkpoint.json`` and loads its safetensors weights.

    Raises:
        CheckpointError: Missing or malformed files, or weights that do not fit the model.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found (expected {META_FILE} and {WEIGHTS_FILE})")
    meta = read_json(folder / META_FILE)
    where = str(folder / META_FILE)
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{where}: not a snnergy DNN checkpoint (format '{CHECKPOINT_FORMAT}' expected)")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{where}: checkpoint version {meta.get('version')!r}, this snnergy reads {CHECKPOINT_VERSION}")
    try:
        spec = meta["model"]
        input_shape, num_classes = tuple(spec["input_shape"]), spec["num_classes"]
        if len(input_shape) not in (1, 3) or not all(type(v) is int and v > 0 for v in (*input_shape, num_classes)):
            raise ValueError(f"input_shape must be 1 or 3 positive integers and num_classes a positive integer, "
                             f"got {spec['input_shape']!r} and {spec['num_classes']!r}")
        history = meta.get("history", [])
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise ValueError("'history' must be a list of objects")
        config = config_from_dict(ExperimentConfig, meta["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: missing or malformed entry ({err})") from None
    except ConfigError as err:
        raise CheckpointError(f"{where}: {err}") from None
    weights = folder / WEIGHTS_FILE
    try:
        with torch.device("meta"):  # size the model without allocating it
            probe = build_model(config.model, input_shape, num_classes)  # type: ignore[arg-type]
    except ConfigError as err:
        raise CheckpointError(f"{where}: {err}") from None
    tensors = load_tensors(weights)
    check_state(probe, tensors, f"{where} vs {weights}")  # before allocating the model the JSON describes
    model = build_model(config.model, input_shape, num_classes)  # type: ignore[arg-type]
    load_state_into(model, tensors, str(weights))
    model.eval()
    return Checkpoint(model, config, input_shape, num_classes, history)
