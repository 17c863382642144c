"""Simulator throughput benchmark (issue 3): snnergy's SNN simulator against two yardsticks.

Throughput is counted in *sample-steps per second*: ``samples x T / seconds`` for one run of a
batch of ``samples`` inputs over ``T`` timesteps. Every number is compared, in the same process
and the same repeats, with

* the **reference**: :func:`snnergy.simulation.simulate_reference`, the plain step-by-step loop
  (``ratio_to_reference`` = method / reference, the speed-up; issue 3 expects well over 3x);
* the **dense floor**: the faster of ``dense_looped`` (the DNN's forward pass called ``T`` times
  on the batch) and ``dense_big_batch`` (one forward over the batch repeated ``T`` times), i.e.
  what the same dense arithmetic costs without any spiking bookkeeping (``ratio_to_floor`` =
  method / floor; issue 3 aims at >= 0.67, "within 1.5x").

The DNN of the floor is the trained model with its BatchNorms folded
(:func:`snnergy.conversion.fold_batchnorm`), so it does the same Conv/Linear work per step as the
SNN. ``dense_big_batch`` runs in chunks whose widest activation holds at most ``2**26`` floats
(256 MiB, the bound snnergy's dataset runner puts on one layer's spike train); a chunk is a whole
number of copies of the batch and is built before the clock starts.

snnergy methods: ``snnergy_looped`` / ``snnergy_batched`` / ``snnergy_event`` / ``snnergy_auto`` are
:func:`snnergy.simulation.simulate_batch` with that ``mode`` (``auto`` times both ways for each
stage on every call, as a one-off ``simulate_batch`` does); ``snnergy_auto_planned`` reuses one
:class:`snnergy.simulation.Simulator` whose paths were chosen during the warm-up (what the dataset
runner does after its first batch); ``experiments_simulate`` is
:func:`snnergy.experiments.simulate` on ``(x, y)``: simulation in memory-bounded sub-batches,
rate correlations, SynOps counting and energy, so the overhead of the whole pipeline is visible.

Timing: ``time.perf_counter`` (CUDA synchronized when ``--device cuda``), one warm-up run per
method, then ``--repeats`` repeats; within a repeat the methods run one after the other, so
background load hits all alike; the median is reported. The reference may run on fewer repeats
(``--reference-repeats``) and a smaller batch (``--reference-batch``); its sample-steps/s are then
those of that batch (the output says so). Its warm-up runs ``min(T, 8)`` steps: every step does the
same layer calls, so that warms the same kernels.

Run from the repository root: ``PYTHONPATH=src python benchmarks/simulator.py --smoke``.
See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from snnergy.config import ConvertConfig, DataConfig, ModelConfig, TrainConfig
from snnergy.conversion import convert, fold_batchnorm
from snnergy.data import DatasetSplits, calibration_set, load_dataset
from snnergy.experiments import simulate as simulate_pipeline
from snnergy.models import build_model
from snnergy.records import SNNRecord
from snnergy.simulation import Simulator, SpikingNetwork, simulate_batch, simulate_reference
from snnergy.training import fit

#: Floats the widest activation of one ``dense_big_batch`` chunk may hold (256 MiB in float32).
DENSE_MAX_ELEMENTS = 2**26
#: Steps of the reference's warm-up run.
REFERENCE_WARMUP_STEPS = 8
COLUMNS = ("model", "T", "method", "sample_steps_per_s", "ratio_to_floor", "ratio_to_reference",
           "repeats", "batch", "median_s")
FLOOR_METHODS = ("dense_looped", "dense_big_batch")


@dataclass(frozen=True)
class Settings:
    """One benchmark run; see :func:`parse_args` for the meaning of each field."""

    dataset: str
    models: tuple[str, ...]
    timesteps: tuple[int, ...]
    batch: int
    repeats: int
    reference_batch: int
    reference_repeats: int
    train_limit: int
    calibration: int
    lr: float
    threads: int
    device: str
    seed: int
    smoke: bool
    tag: str


@dataclass(frozen=True)
class Method:
    """A timed callable that simulates (or densely evaluates) ``batch`` samples over ``T`` steps."""

    name: str
    run: Callable[[], object]
    batch: int
    repeats: int
    warmup: Callable[[], object]


@dataclass(frozen=True)
class Row:
    """One measured method at one (model, T)."""

    model: str
    timesteps: int
    method: str
    batch: int
    repeats: int
    median_s: float

    @property
    def throughput(self) -> float:
        """Sample-steps per second of the median run."""
        return self.batch * self.timesteps / self.median_s


# ---------------------------------------------------------------------------- dense floor


def widest_activation(model: nn.Sequential, input_shape: Sequence[int], device: torch.device) -> int:
    """Largest per-sample element count among the input and every child's output of ``model``."""
    x = torch.zeros((1, *input_shape), device=device)
    widest = x.numel()
    with torch.no_grad():
        for child in model:
            x = child(x)
            widest = max(widest, x.numel())
    return widest


def dense_looped(dnn: nn.Module, x: Tensor, steps: int) -> Callable[[], object]:
    """The DNN forward pass on ``x`` called ``steps`` times."""

    @torch.no_grad()
    def run() -> None:
        for _ in range(steps):
            dnn(x)

    return run


def dense_big_batch(dnn: nn.Sequential, x: Tensor, steps: int) -> Callable[[], object]:
    """One DNN forward over ``x`` repeated ``steps`` times, chunked to ``DENSE_MAX_ELEMENTS``."""
    widest = widest_activation(dnn, x.shape[1:], x.device)
    copies = max(1, min(steps, DENSE_MAX_ELEMENTS // (widest * x.shape[0])))
    full = x.repeat(copies, *([1] * (x.dim() - 1)))
    rest = x.repeat(steps % copies, *([1] * (x.dim() - 1))) if steps % copies else None

    @torch.no_grad()
    def run() -> None:
        for _ in range(steps // copies):
            dnn(full)
        if rest is not None:
            dnn(rest)

    return run


# ---------------------------------------------------------------------------- methods


def methods_for(snn: SpikingNetwork, dnn: nn.Sequential, x: Tensor, y: Tensor, steps: int,
                settings: Settings) -> tuple[list[Method], Simulator, list[SNNRecord]]:
    """The timed methods for one (model, T), in the order they alternate within a repeat.

    Also returns the simulator of ``snnergy_auto_planned``, whose ``paths`` the warm-up fills, and
    a list that holds the record of the latest ``experiments_simulate`` run.
    """
    x_ref = x[: settings.reference_batch]
    warm = min(steps, REFERENCE_WARMUP_STEPS)
    planned = Simulator(snn, [steps], mode="auto")
    batch, repeats = len(x), settings.repeats
    records: list[SNNRecord] = []

    def sim(mode: str) -> Callable[[], object]:
        return lambda: simulate_batch(snn, x, [steps], mode=mode)

    def pipeline() -> None:
        records[:] = [simulate_pipeline(snn, (x, y), timesteps=[steps], device=settings.device)]

    out = [
        Method("reference", lambda: simulate_reference(snn, x_ref, [steps]), len(x_ref),
               min(settings.reference_repeats, repeats), lambda: simulate_reference(snn, x_ref, [warm])),
        Method("snnergy_looped", sim("looped"), batch, repeats, sim("looped")),
        Method("snnergy_batched", sim("batched"), batch, repeats, sim("batched")),
        Method("snnergy_event", sim("event"), batch, repeats, sim("event")),
        Method("snnergy_auto", sim("auto"), batch, repeats, sim("auto")),
        Method("snnergy_auto_planned", lambda: planned.run(x), batch, repeats, lambda: planned.run(x)),
        Method("experiments_simulate", pipeline, batch, repeats, pipeline),
    ]
    looped, big = dense_looped(dnn, x, steps), dense_big_batch(dnn, x, steps)
    out += [Method("dense_looped", looped, batch, repeats, looped),
            Method("dense_big_batch", big, batch, repeats, big)]
    return out, planned, records


def measure(methods: list[Method], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per method: one warm-up each, then ``repeats`` rounds over all methods."""

    def timed(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for method in methods:
        method.warmup()
    times: dict[str, list[float]] = {m.name: [] for m in methods}
    for r in range(repeats):
        for method in methods:
            if r < method.repeats:
                times[method.name].append(timed(method.run))
    return {name: statistics.median(ts) for name, ts in times.items()}


# ---------------------------------------------------------------------------- setup


def prepare(name: str, splits: DatasetSplits,
            settings: Settings) -> tuple[SpikingNetwork, nn.Sequential, Tensor, Tensor, str]:
    """Trains ``name`` for one epoch, converts it; returns SNN, folded DNN, test batch, a summary."""
    device = torch.device(settings.device)
    start = time.perf_counter()
    torch.manual_seed(settings.seed)
    model = build_model(ModelConfig(name=name), splits.input_shape, splits.num_classes)
    log = fit(model, splits, TrainConfig(epochs=1, lr=settings.lr), batch_size=64, seed=settings.seed,
              device=device)
    calibration = calibration_set(splits, settings.calibration, seed=settings.seed).to(device)
    snn = convert(model, calibration, ConvertConfig())
    dnn = fold_batchnorm(model, splits.input_shape).to(device)
    x = splits.test_x[: settings.batch].to(device)
    y = splits.test_y[: settings.batch].to(device)
    summary = (f"{name}: {len(splits.train_x)} training samples, 1 epoch, "
               f"DNN test accuracy {log[-1].test_accuracy:.3f} "
               f"(train + convert {time.perf_counter() - start:.0f} s)")
    return snn, dnn, x, y, summary


def activity(record: SNNRecord) -> str:
    """One line on the simulated batch: SNN accuracy and mean spike rate at the largest T."""
    rates = record.spike_rate
    mean = sum(rates.values()) / max(len(rates), 1)
    return (f"T={record.timesteps[-1]}: SNN accuracy {record.accuracy[-1]:.3f} "
            f"on {record.samples} test samples, "
            f"spike rate per neuron-step {mean:.4f} (mean over {len(rates)} layers)")


def bench(settings: Settings) -> tuple[list[Row], list[str]]:
    """Runs every model and T; returns the rows and the notes printed alongside them."""
    device = torch.device(settings.device)
    rows: list[Row] = []
    notes: list[str] = []
    splits = load_dataset(DataConfig(dataset=settings.dataset, train_limit=settings.train_limit),
                          seed=settings.seed)
    for name in settings.models:
        snn, dnn, x, y, summary = prepare(name, splits, settings)
        notes.append(summary)
        print(summary, flush=True)
        for steps in settings.timesteps:
            methods, planned, records = methods_for(snn, dnn, x, y, steps, settings)
            start = time.perf_counter()
            medians = measure(methods, settings.repeats, device)
            for m in methods:
                rows.append(Row(name, steps, m.name, m.batch, m.repeats, medians[m.name]))
            paths = ", ".join(f"{stage} {path}" for stage, path in planned.paths.items())
            line = f"{name} {activity(records[-1])}; auto plan: {paths}"
            notes.append(line)
            print(f"{line} [{time.perf_counter() - start:.0f} s]", flush=True)
    return rows, notes


# ---------------------------------------------------------------------------- output


def ratios(rows: list[Row]) -> list[dict[str, object]]:
    """CSV records with throughput and the ratios to the floor and the reference of each (model, T)."""
    out = []
    for row in rows:
        group = [r for r in rows if (r.model, r.timesteps) == (row.model, row.timesteps)]
        floor = max(r.throughput for r in group if r.method in FLOOR_METHODS)
        reference = next(r.throughput for r in group if r.method == "reference")
        out.append({"model": row.model, "T": row.timesteps, "method": row.method,
                    "sample_steps_per_s": f"{row.throughput:.6g}",
                    "ratio_to_floor": f"{row.throughput / floor:.4f}",
                    "ratio_to_reference": f"{row.throughput / reference:.4f}",
                    "repeats": row.repeats, "batch": row.batch, "median_s": f"{row.median_s:.6g}"})
    return out


def markdown(records: list[dict[str, object]]) -> str:
    """The records as a Markdown table."""
    head = ["model", "T", "method", "batch", "sample-steps/s", "x floor", "x reference", "repeats"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * 5) + "|"]
    for r in records:
        cells = [r["model"], r["T"], r["method"], r["batch"], f"{float(r['sample_steps_per_s']):,.0f}",
                 f"{float(r['ratio_to_floor']):.2f}", f"{float(r['ratio_to_reference']):.2f}", r["repeats"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def slug(text: str) -> str:
    """Lower-case ``text`` with every run of characters other than ``[a-z0-9.]`` turned into ``-``."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"


def hardware(device: torch.device) -> str:
    """``<model>_<n>c`` for the CPU (from /proc/cpuinfo), or the CUDA device's name."""
    if device.type == "cuda":
        return slug(torch.cuda.get_device_name(device))
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1]
                break
    except OSError:
        pass
    return f"{slug(name)}_{os.cpu_count()}c"


def result_path(settings: Settings) -> str:
    """CSV file name: hardware, threads when not all cores, torch version, ``_smoke``, the tag."""
    device = torch.device(settings.device)
    threads = "" if device.type == "cuda" or settings.threads == os.cpu_count() else f"_{settings.threads}t"
    suffix = ("_smoke" if settings.smoke else "") + (f"_{settings.tag}" if settings.tag else "")
    return f"simulator_{hardware(device)}{threads}_torch-{slug(torch.__version__)}{suffix}.csv"


def write_csv(records: list[dict[str, object]], path: Path) -> None:
    """Writes the records to ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(records)


# ---------------------------------------------------------------------------- CLI


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, Path]:
    """Reads the command line; ``--smoke`` overrides dataset, T, batch, repeats and training size."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="CPU smoke run (digits, T=8,16, batch 64, 1 repeat, tiny training; ~30 s)")
    p.add_argument("--models", default="lenet,vgg", help="comma-separated model names")
    p.add_argument("--timesteps", default="64,256", help="comma-separated T values")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--batch", type=int, default=256, help="test samples simulated per run")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    p.add_argument("--reference-batch", type=int, default=None, help="reference batch (default: --batch)")
    p.add_argument("--reference-repeats", type=int, default=None,
                   help="reference repeats (default: --repeats)")
    p.add_argument("--train-limit", type=int, default=10000, help="training samples for the 1 epoch")
    p.add_argument("--calibration", type=int, default=512, help="calibration samples for conversion")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: all cores; 1 with --smoke)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results", help="folder of the result CSV")
    p.add_argument("--tag", default="", help="suffix for the CSV name (e.g. a reduced setting)")
    a = p.parse_args(argv)
    if a.smoke:
        a.dataset, a.timesteps, a.batch, a.repeats, a.train_limit = "digits", "8,16", 64, 1, 500
        a.threads = a.threads or 1
    a.threads = a.threads or os.cpu_count() or 1
    timesteps = _ints(a.timesteps)
    models = tuple(m.strip() for m in a.models.split(",") if m.strip())
    if not models or not timesteps or min(timesteps) < 1 or a.batch < 1 or a.repeats < 1:
        p.error("need at least one model, T >= 1, --batch >= 1 and --repeats >= 1")
    ref_batch = min(a.batch, a.reference_batch or a.batch)
    ref_repeats = a.reference_repeats or a.repeats
    if ref_batch < 1 or ref_repeats < 1 or a.threads < 1:
        p.error("--reference-batch, --reference-repeats and --threads must be >= 1")
    settings = Settings(a.dataset, models, timesteps, a.batch, a.repeats, ref_batch, ref_repeats,
                        a.train_limit, a.calibration, a.lr, a.threads, a.device, a.seed, a.smoke,
                        slug(a.tag) if a.tag else "")
    return settings, Path(a.out)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark, prints the Markdown table and writes the CSV."""
    settings, out = parse_args(argv)
    torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    if load is not None and device.type == "cpu" and load[0] + settings.threads > (os.cpu_count() or 1) + 0.5:
        print(f"Warning: load average {load[0]:.1f} on {os.cpu_count()} cores: other processes compete with "
              f"the {settings.threads} torch thread(s): timings are slowed and noisy, multi-threaded ones "
              "can be distorted many times over (threads wait for each other); compare ratios, "
              "or use fewer --threads.", flush=True)
    print(f"snnergy simulator benchmark: {hardware(device)}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {settings}", flush=True)
    rows, notes = bench(settings)
    records = ratios(rows)
    path = out / result_path(settings)
    write_csv(records, path)
    print()
    print(markdown(records))
    print()
    if settings.reference_batch < settings.batch or settings.reference_repeats < settings.repeats:
        smaller = settings.reference_batch < settings.batch
        print(f"Note: the reference was measured on batch {settings.reference_batch} with "
              f"{min(settings.reference_repeats, settings.repeats)} repeat(s)"
              + ("; its sample-steps/s are those of that batch (a smaller batch is less efficient "
                 "per sample, which favours snnergy)." if smaller else "."))
    print("x floor = throughput / max(dense_looped, dense_big_batch); "
          "x reference = throughput / reference.")
    for note in notes:
        print(f"- {note}")
    end_load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"Load average at start {load}, at end {end_load}; total {time.perf_counter() - start:.0f} s.")
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
