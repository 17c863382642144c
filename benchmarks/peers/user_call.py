"""``run.py --user-call``: ``snnergy.simulate`` timed exactly as a user calls it, against the peers
as their users run them (issue 18).

For each dataset x regularizer: a LeNet is trained by snnergy (cached like ``run.py``'s nets), then

* **snnergy**: ``snnergy.convert(model, calibration)`` (99.9th percentile), then the timed call
  ``snnergy.simulate(snn, (x, y), timesteps=T)``: the whole public call, with its planning, its
  accuracy at every step (the curve), SynOps, energy and rate correlations;
* **spikingjelly_user**: SpikingJelly's own conversion (``ann2snn.FXConverter`` with
  ``RateCodingRecipe(mode="99.9%")`` on the same calibration images) and the loop of its
  ``ann2snn/examples/cnn_mnist.py``: ``reset_net``, then ``T`` calls on the batch, summing the
  outputs and counting the correct predictions after every step;
* **spikingjelly_multi** and **sinabs**: the multi-step SpikingJelly and sinabs networks of
  ``peers.py``, built from snnergy's converted stages (no accuracy bookkeeping: their bare loops).

All run in one process on the same ``--user-samples`` test images, one warm-up each, then
``--repeats`` rounds alternating over the methods; medians are reported with each peer's time
over snnergy's (``peer / snnergy`` > 1: snnergy is faster).

The held-out LeNet of issue 18 is ``conv 16 (3x3, pad 1), avgpool 2, conv 32 (3x3, pad 1),
avgpool 2, fc 64, fc 10`` (:func:`heldout_lenet`), trained on digits (its 8x8 images: 450 test
images, the first 360 timed); on Fashion-MNIST the registry ``lenet`` of the sweep is used.
"""

from __future__ import annotations

import statistics
import sys
import time
import types
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

import peers

import snnergy
from snnergy.checkpoints import load_tensors, save_tensors
from snnergy.config import ConvertConfig, DataConfig, ModelConfig, TrainConfig
from snnergy.data import DatasetSplits, calibration_set, load_dataset
from snnergy.experiments import load_run
from snnergy.models import build_model
from snnergy.pooling import plain_copy
from snnergy.training import fit

USER_COLUMNS = ("dataset", "model", "T", "samples", "method", "repeats", "median_s", "peer_over_snnergy",
                "accuracy")


def heldout_lenet(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """Issue 18's held-out LeNet: conv 16, avgpool, conv 32, avgpool, fc 64, fc 10.

    Example:
        >>> heldout_lenet((1, 8, 8), 10)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    c, h, w = input_shape
    flat = 32 * (h // 4) * (w // 4)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(c, 16, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.AvgPool2d(2)),
        ("conv2", nn.Conv2d(16, 32, 3, padding=1)), ("relu2", nn.ReLU()), ("pool2", nn.AvgPool2d(2)),
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(flat, 64)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(64, num_classes))]))


def user_model(dataset: str, regularizer: tuple[str, float], splits: DatasetSplits, epochs: int, seed: int,
               cache: Path) -> tuple[str, nn.Module, str]:
    """(model label, trained DNN, how it was obtained): the held-out LeNet on digits, the
    registry LeNet elsewhere; Adam 1e-3, batch 64, cached as safetensors."""
    heldout = dataset == "digits"
    name = "lenet-heldout" if heldout else "lenet"
    model = heldout_lenet(splits.input_shape, splits.num_classes) if heldout else \
        build_model(ModelConfig(name="lenet"), splits.input_shape, splits.num_classes)
    reg = "" if regularizer[0] == "none" else f"_{regularizer[0]}{regularizer[1]:g}"
    path = cache / f"user_{dataset}_{name}_n{len(splits.train_x)}_e{epochs}_s{seed}{reg}.safetensors"
    label = name if regularizer[0] == "none" else f"{name}+{regularizer[0]}:{regularizer[1]:g}"
    if path.exists():
        model.load_state_dict(load_tensors(path))
        return label, model.eval(), f"loaded {path}"
    start = time.perf_counter()
    torch.manual_seed(seed)
    fit(model, splits, TrainConfig(epochs=epochs, lr=1e-3, schedule="constant", regularizer=regularizer[0],
                                   strength=regularizer[1]), batch_size=64, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, model.state_dict())
    return label, model.eval(), f"trained {epochs} epoch(s) on {len(splits.train_x)} samples in " \
                                f"{time.perf_counter() - start:.0f} s, saved {path}"


def spikingjelly_converted(model: nn.Module, calibration: Tensor) -> nn.Module:
    """SpikingJelly's own 99.9 % conversion of ``model`` (its ``cnn_mnist.py`` example's recipe)."""
    sys.modules.setdefault("requests", types.ModuleType("requests"))  # ann2snn imports it for downloads only
    from spikingjelly.activation_based import ann2snn
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(calibration, torch.zeros(len(calibration))), batch_size=128)
    recipe = ann2snn.RateCodingRecipe(dataloader=loader, mode="99.9%")
    # the registry's models pool with snnergy.pooling.AvgPool2d: SpikingJelly's tracer wants torch's own module
    return ann2snn.FXConverter(recipe=recipe, device="cpu").convert(plain_copy(model)).eval()


def spikingjelly_user_loop(net: nn.Module, x: Tensor, y: Tensor, steps: int) -> float:
    """The evaluation loop of SpikingJelly's ``ann2snn/examples/cnn_mnist.py`` on one batch:
    accuracy after every step; returns the accuracy at ``steps``."""
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    out = None
    corrects = [0.0] * steps
    with torch.no_grad():
        for t in range(steps):
            step = net(x)
            out = step if out is None else out + step
            corrects[t] += (out.argmax(dim=1) == y).float().sum().item()
    return corrects[-1] / len(y)


def user_rows(dataset: str, label: str, model: nn.Module, splits: DatasetSplits, timesteps: tuple[int, ...],
              samples: int, repeats: int, calibration: int, seed: int) -> tuple[list[dict], list[str]]:
    """Timing rows (one per method and T) and notes for one trained net."""
    cal = calibration_set(splits, calibration, seed=seed)
    cal_x = cal[0] if isinstance(cal, tuple) else cal
    snn = snnergy.convert(model, cal_x, ConvertConfig())
    peers.check_dynamics(snn)
    jelly = spikingjelly_converted(model, cal_x)
    x, y = splits.test_x[:samples], splits.test_y[:samples]
    multi = peers.spikingjelly_network(snn, "m")
    sinabs = peers.sinabs_network(snn, len(x))
    rows, notes = [], []
    for steps in timesteps:
        accuracy: dict[str, float] = {}
        seen: dict[str, dict] = {}

        def ours() -> None:
            record = snnergy.simulate(snn, (x, y), timesteps=steps)
            accuracy["snnergy_simulate"] = record.accuracy[-1]
            seen.update(paths=record.paths, density={k: round(v, 3) for k, v in record.input_density.items()})

        methods: dict[str, Callable[[], object]] = {
            "snnergy_simulate": ours,
            "spikingjelly_user": lambda: accuracy.__setitem__("spikingjelly_user",
                                                              spikingjelly_user_loop(jelly, x, y, steps)),
            "spikingjelly_multi": lambda: accuracy.__setitem__("spikingjelly_multi", float(
                (peers.run_spikingjelly_multi(multi, x, steps).argmax(-1) == y).float().mean())),
            "sinabs": lambda: accuracy.__setitem__("sinabs", float(
                (peers.run_sinabs(sinabs, x, steps).argmax(-1) == y).float().mean())),
        }
        for run in methods.values():  # warm-up (snnergy builds its kernels once per machine)
            run()
        times: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(repeats):
            for name, run in methods.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(v) for name, v in times.items()}
        notes.append(f"{dataset} {label} T={steps}: snnergy paths {seen['paths']}, input density {seen['density']}")
        for name, seconds in medians.items():
            rows.append({"dataset": dataset, "model": label, "T": steps, "samples": len(x), "method": name,
                         "repeats": repeats, "median_s": f"{seconds:.6g}",
                         "peer_over_snnergy": f"{seconds / medians['snnergy_simulate']:.3f}",
                         "accuracy": f"{accuracy.get(name, float('nan')):.4f}"})
        fastest = min((n for n in medians if n != "snnergy_simulate"), key=medians.__getitem__)
        print(f"  {dataset} {label} T={steps}: snnergy {medians['snnergy_simulate'] * 1e3:.0f} ms; fastest peer "
              f"{fastest} {medians[fastest] * 1e3:.0f} ms: {medians[fastest] / medians['snnergy_simulate']:.2f}x",
              flush=True)
    return rows, notes


def run_user_call(datasets: tuple[str, ...], regularizers: tuple[tuple[str, float], ...], timesteps: tuple[int, ...],
                  samples: int, repeats: int, train_limit: int, epochs: int, calibration: int, seed: int,
                  cache: Path, checkpoints: tuple[Path, ...] = ()) -> tuple[list[dict], list[str]]:
    """Every dataset x regularizer (or, if given, each ``snnergy train`` folder of ``checkpoints``,
    e.g. a sweep's runs): the rows of :func:`user_rows` and notes."""
    rows, notes = [], []
    for folder in checkpoints:
        checkpoint = load_run(folder)
        config = checkpoint.config
        splits = load_dataset(DataConfig(dataset=config.data.dataset, train_limit=train_limit), seed=seed)
        reg = "" if config.train.regularizer == "none" else f"+{config.train.regularizer}:{config.train.strength:g}"
        label = f"{config.model.name}{reg} (run {Path(folder).name})"
        notes.append(f"{config.data.dataset} {label}: loaded {folder} ({config.train.epochs} epochs, seed {config.seed})")
        print(notes[-1], flush=True)
        more_rows, more_notes = user_rows(config.data.dataset, label, checkpoint.model.eval(), splits, timesteps,
                                          samples, repeats, calibration, seed)
        rows += more_rows
        notes += more_notes
    for dataset in datasets if not checkpoints else ():
        splits = load_dataset(DataConfig(dataset=dataset, train_limit=train_limit), seed=seed)
        for regularizer in regularizers:
            label, model, how = user_model(dataset, regularizer, splits, epochs, seed, cache)
            notes.append(f"{dataset} {label}: {how}")
            print(notes[-1], flush=True)
            more_rows, more_notes = user_rows(dataset, label, model, splits, timesteps, samples, repeats,
                                              calibration, seed)
            rows += more_rows
            notes += more_notes
    return rows, notes


def markdown_user(rows: list[dict]) -> str:
    """The user-call rows as one line per (dataset, model, T): each method's median ms and the
    fastest peer's time over snnergy's."""
    lines = ["| dataset | model | T | samples | snnergy.simulate (ms) | spikingjelly user loop (ms) | "
             "spikingjelly multi (ms) | sinabs (ms) | fastest peer / snnergy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    keyed: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        keyed.setdefault((r["dataset"], r["model"], r["T"], r["samples"]), {})[r["method"]] = r
    for (dataset, model, steps, samples), by in keyed.items():
        ms = {k: float(v["median_s"]) * 1e3 for k, v in by.items()}
        fastest = min(v for k, v in ms.items() if k != "snnergy_simulate")
        lines.append(f"| {dataset} | {model} | {steps} | {samples} | {ms['snnergy_simulate']:.0f} | "
                     f"{ms['spikingjelly_user']:.0f} | {ms['spikingjelly_multi']:.0f} | {ms['sinabs']:.0f} | "
                     f"{fastest / ms['snnergy_simulate']:.2f}x |")
    return "\n".join(lines)
