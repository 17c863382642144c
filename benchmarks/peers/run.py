"""Peer benchmark (issue 8): snnergy against SpikingJelly and sinabs, counts against NeuroBench and sinabs.

For each dataset and model: trains the DNN with snnergy (or loads it from ``--cache``), converts
it with snnergy, builds SpikingJelly (single-step and multi-step) and sinabs networks from the
*same* converted weights (:mod:`peers`), and in one process, alternating, times for each ``T``:

* ``dense_looped`` / ``dense_big_batch``: the BN-folded DNN's forward ``T`` times on the batch,
  or once on the batch repeated ``T`` times; the faster is the **dense floor**;
* ``snnergy_<mode>``: a reused :class:`snnergy.simulation.Simulator` for every mode snnergy has
  (``auto`` plans during the warm-up);
* ``spikingjelly_single``, ``spikingjelly_multi``, ``sinabs``.

Each row has the accuracy at ``T`` on the timed batch, the fraction of predictions equal to
snnergy's looped mode, sample-steps per second (``batch * T / median seconds``) and
``time_vs_floor`` = median seconds / floor's median seconds (1.0 = as fast as the floor, 2.0 =
twice as slow: the issue's "x floor").

Counts (on ``--count-samples`` test samples): snnergy's ``macs_dense`` / ``macs_effective``
(:func:`snnergy.experiments.measure`) against NeuroBench's ``Dense`` / ``Effective_MACs``, on a
float64 copy of the trained DNN (NeuroBench sums in the model's dtype); snnergy's per-layer
SynOps against sinabs's synops hooks on the same spikes, and against snnergy's own simulation.

Run with the peer venv (``bash benchmarks/peers/setup.sh``), from the repository root::

    benchmarks/peers/.venv/bin/python benchmarks/peers/run.py --smoke

See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # peers.py; ../simulator.py (dense floor, file names)

import peers  # noqa: E402
from simulator import dense_big_batch, dense_looped, hardware, slug  # noqa: E402

from snnergy.checkpoints import load_tensors, save_tensors  # noqa: E402
from snnergy.config import ConvertConfig, DataConfig, ModelConfig, TrainConfig  # noqa: E402
from snnergy.conversion import convert, fold_batchnorm  # noqa: E402
from snnergy.data import DatasetSplits, calibration_set, load_dataset  # noqa: E402
from snnergy.experiments import load_run, measure, simulate  # noqa: E402
from snnergy.models import build_model  # noqa: E402
from snnergy.simulation import Simulator, SpikingNetwork  # noqa: E402
from snnergy.simulation import simulator as simulator_module  # noqa: E402
from snnergy.training import fit  # noqa: E402

TIMING_COLUMNS = ("dataset", "model", "T", "method", "batch", "repeats", "median_s", "sample_steps_per_s",
                  "time_vs_floor", "accuracy", "same_as_snnergy")
COUNT_COLUMNS = ("dataset", "model", "check", "layer", "snnergy", "peer", "difference", "relative", "note")
FLOOR = ("dense_looped", "dense_big_batch")


@dataclass(frozen=True)
class Settings:
    """One harness run; see :func:`parse_args` for the meaning of each field."""

    datasets: tuple[str, ...]
    models: tuple[str, ...]
    timesteps: tuple[int, ...]
    batch: int
    vgg_batch: int
    repeats: int
    train_limit: int
    epochs: int
    regularizers: tuple[tuple[str, float], ...]
    checkpoints: tuple[Path, ...]
    calibration: int
    count_samples: int
    count_timesteps: int
    threads: int
    seed: int
    cache: Path
    smoke: bool
    tag: str
    user_call: bool = False
    user_samples: int = 360


@dataclass
class Method:
    """A timed simulation (or dense pass) returning the readout ``(B, classes)`` or ``None``."""

    name: str
    run: Callable[[], Tensor | None]
    paths: dict[str, str] | None = None  # snnergy: the path of each stage (after the warm-up)


# ---------------------------------------------------------------------------- models


def trained(dataset: str, name: str, splits: DatasetSplits, s: Settings,
            regularizer: tuple[str, float] = ("none", 0.0)) -> tuple[nn.Sequential, str]:
    """The DNN trained by snnergy (Adam 1e-3, constant rate, batch 64, with ``regularizer`` at its
    strength), cached as safetensors."""
    model = build_model(ModelConfig(name=name), splits.input_shape, splits.num_classes)
    reg = "" if regularizer[0] == "none" else f"_{regularizer[0]}{regularizer[1]:g}"
    path = s.cache / f"{dataset}_{name}_n{s.train_limit}_e{s.epochs}_s{s.seed}{reg}.safetensors"
    if path.exists():
        model.load_state_dict(load_tensors(path))
        return model.eval(), f"loaded {path}"
    start = time.perf_counter()
    torch.manual_seed(s.seed)
    fit(model, splits, TrainConfig(epochs=s.epochs, lr=1e-3, schedule="constant", regularizer=regularizer[0],
                                   strength=regularizer[1]), batch_size=64, seed=s.seed)
    save_tensors(path, model.state_dict())
    return model.eval(), f"trained {s.epochs} epoch(s) on {len(splits.train_x)} samples in " \
                         f"{time.perf_counter() - start:.0f} s, saved {path}"


def label(name: str, regularizer: tuple[str, float]) -> str:
    """The model column: ``lenet`` or ``lenet+l1:0.1``."""
    return name if regularizer[0] == "none" else f"{name}+{regularizer[0]}:{regularizer[1]:g}"


# ---------------------------------------------------------------------------- timing


def methods_for(snn: SpikingNetwork, dnn: nn.Sequential, x: Tensor, steps: int) -> list[Method]:
    """Every timed method for one (net, T), in the order they alternate within a repeat."""
    out = [Method("dense_looped", _none(dense_looped(dnn, x, steps))),
           Method("dense_big_batch", _none(dense_big_batch(dnn, x, steps)))]
    for mode in simulator_module.MODES:
        sim = Simulator(snn, [steps], mode=mode)
        out.append(Method(f"snnergy_{mode}", lambda sim=sim: sim.run(x).potentials[-1], sim.paths))
    single = peers.spikingjelly_network(snn, "s")
    multi = peers.spikingjelly_network(snn, "m")
    sinabs = peers.sinabs_network(snn, x.shape[0])
    out += [Method("spikingjelly_single", lambda: peers.run_spikingjelly_single(single, x, steps)),
            Method("spikingjelly_multi", lambda: peers.run_spikingjelly_multi(multi, x, steps)),
            Method("sinabs", lambda: peers.run_sinabs(sinabs, x, steps))]
    return out


def _none(fn: Callable[[], object]) -> Callable[[], None]:
    return lambda: (fn(), None)[1]


def measure_methods(methods: list[Method], repeats: int) -> tuple[dict[str, float], dict[str, Tensor | None]]:
    """Median seconds per method (one warm-up each, then alternating repeats) and warm-up outputs."""
    outputs = {m.name: m.run() for m in methods}
    times: dict[str, list[float]] = {m.name: [] for m in methods}
    for _ in range(repeats):
        for m in methods:
            start = time.perf_counter()
            m.run()
            times[m.name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}, outputs


def timing_rows(dataset: str, model: str, steps: int, x: Tensor, y: Tensor, dnn: nn.Sequential,
                medians: dict[str, float], outputs: dict[str, Tensor | None], repeats: int) -> list[dict]:
    """CSV rows for one (dataset, model, T)."""
    floor = min(medians[m] for m in FLOOR)
    with torch.no_grad():
        dense_pred = dnn(x).argmax(-1)
    reference = outputs["snnergy_looped"].argmax(-1)
    rows = []
    for name, seconds in medians.items():
        pred = dense_pred if outputs[name] is None else outputs[name].argmax(-1)
        rows.append({"dataset": dataset, "model": model, "T": steps, "method": name, "batch": len(x),
                     "repeats": repeats, "median_s": f"{seconds:.6g}",
                     "sample_steps_per_s": f"{len(x) * steps / seconds:.6g}",
                     "time_vs_floor": f"{seconds / floor:.4f}",
                     "accuracy": f"{float((pred == y).float().mean()):.4f}",
                     "same_as_snnergy": "" if outputs[name] is None else
                     f"{float((pred == reference).float().mean()):.4f}"})
    return rows


# ---------------------------------------------------------------------------- counts


def count_rows(dataset: str, name: str, model: nn.Sequential, snn: SpikingNetwork, x: Tensor, y: Tensor,
               steps: int) -> list[dict]:
    """snnergy's MACs against NeuroBench, and its per-layer SynOps against sinabs's hooks."""
    rows = []

    def row(check: str, layer: str, ours: float, theirs: float, note: str = "") -> None:
        rows.append({"dataset": dataset, "model": name, "check": check, "layer": layer,
                     "snnergy": f"{ours:.10g}", "peer": f"{theirs:.10g}", "difference": f"{ours - theirs:.6g}",
                     "relative": f"{peers.relative_difference(ours, theirs):.3g}", "note": note})

    model64 = copy.deepcopy(model).double().eval()
    x64 = x.double()
    record = measure(model64, (x64, y))
    bench = peers.neurobench_synops(model64, x64, y, batch_size=len(x))
    row("neurobench_dense", "total", record.macs_dense, bench.dense)
    row("neurobench_effective_macs", "total", record.macs_effective,
        bench.effective_macs + bench.effective_acs,
        f"NeuroBench Effective_MACs {bench.effective_macs:.10g} + Effective_ACs {bench.effective_acs:.10g}")
    for layer, counts in record.layers.items():
        dense, effective = bench.layers[layer]
        row("neurobench_dense", layer, counts.macs_dense, dense)
        row("neurobench_effective_macs", layer, counts.macs_effective, effective)
    bench32 = peers.neurobench_synops(copy.deepcopy(model).eval(), x, y, batch_size=len(x))
    row("neurobench_effective_macs_float32", "total", record.macs_effective,
        bench32.effective_macs + bench32.effective_acs, "NeuroBench on the float32 model, one batch")

    per_layer, _ = peers.sinabs_synops(snn, x, steps)
    own = simulate(snn, (x, y), timesteps=[steps]).synops_per_layer
    for c in per_layer:
        if c.source is None:
            row("sinabs_input_layer", c.layer, float("nan"), c.sinabs,
                "analog input: sinabs weights input values by fan-out every step; snnergy counts "
                "input_macs once (definitions differ, not compared)")
            continue
        row("sinabs_synops_same_spikes", c.layer, c.snnergy, c.sinabs, f"spikes of {c.source}, T={steps}")
        row("sinabs_synops_own_simulation", c.layer, own[c.source][-1], c.sinabs,
            "snnergy.experiments.simulate's own spikes")
    return rows


# ---------------------------------------------------------------------------- output


def markdown(timing: list[dict]) -> str:
    """Timing rows as the issue's table: sample-steps/s (x floor), accuracy, per (dataset, model, T)."""
    lines = ["| dataset | model | T | batch | method | sample-steps/s | x floor | accuracy | same as snnergy |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in timing:
        lines.append(f"| {r['dataset']} | {r['model']} | {r['T']} | {r['batch']} | {r['method']} | "
                     f"{float(r['sample_steps_per_s']):,.0f} | {float(r['time_vs_floor']):.2f} | "
                     f"{float(r['accuracy']):.3f} | {r['same_as_snnergy'] or '-'} |")
    return "\n".join(lines)


def markdown_counts(counts: list[dict]) -> str:
    """Count rows as a Markdown table."""
    lines = ["| dataset | model | check | layer | snnergy | peer | difference | note |",
             "|---|---|---|---|---:|---:|---:|---|"]
    for r in counts:
        lines.append(f"| {r['dataset']} | {r['model']} | {r['check']} | {r['layer']} | {r['snnergy']} | "
                     f"{r['peer']} | {r['difference']} | {r['note']} |")
    return "\n".join(lines)


def write_csv(rows: list[dict], columns: Sequence[str], path: Path) -> None:
    """Writes ``rows`` to ``path`` (folder created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def stem(s: Settings) -> str:
    """``<cpu>_<n>c[_<k>t]-torch<version>[_smoke][_<tag>]``."""
    threads = "" if s.threads == os.cpu_count() else f"_{s.threads}t"
    return (f"{hardware(torch.device('cpu'))}{threads}-torch{slug(torch.__version__)}"
            + ("_smoke" if s.smoke else "") + (f"_{s.tag}" if s.tag else ""))


# ---------------------------------------------------------------------------- main


def nets(s: Settings) -> Iterator[tuple[str, str, str, nn.Module, DatasetSplits, str]]:
    """(dataset, model name, label, trained DNN, its data, how it was obtained) for every net to time:
    each ``--checkpoints`` folder if given, else every dataset x model x regularizer."""
    for folder in s.checkpoints:
        checkpoint = load_run(folder)
        config = checkpoint.config
        splits = load_dataset(DataConfig(dataset=config.data.dataset, train_limit=s.train_limit), seed=s.seed)
        regularizer = (config.train.regularizer, config.train.strength)
        yield (config.data.dataset, config.model.name,
               label(config.model.name, regularizer) + f" (run {Path(folder).name})",
               checkpoint.model.eval(), splits, f"loaded {folder} ({config.train.epochs} epochs, seed {config.seed})")
    for dataset in s.datasets if not s.checkpoints else ():
        splits = load_dataset(DataConfig(dataset=dataset, train_limit=s.train_limit), seed=s.seed)
        for name in s.models:
            for regularizer in s.regularizers:
                model, how = trained(dataset, name, splits, s, regularizer)
                yield dataset, name, label(name, regularizer), model, splits, how


def run(s: Settings) -> tuple[list[dict], list[dict], list[str]]:
    """Every net and T: timing rows, count rows and notes."""
    timing, counts, notes = [], [], []
    for dataset, name, tag, model, splits, how in nets(s):
        snn = convert(model, calibration_set(splits, s.calibration, seed=s.seed), ConvertConfig())
        peers.check_dynamics(snn)
        dnn = fold_batchnorm(model, splits.input_shape).eval()
        batch = s.vgg_batch if name == "vgg" else s.batch
        x, y = splits.test_x[:batch], splits.test_y[:batch]
        note = f"{dataset} {tag}: {how}"
        notes.append(note)
        print(note, flush=True)
        start = time.perf_counter()
        xc, yc = splits.test_x[: s.count_samples], splits.test_y[: s.count_samples]
        counts += count_rows(dataset, tag, model, snn, xc, yc, s.count_timesteps)
        print(f"  counts on {len(xc)} samples, T={s.count_timesteps} [{time.perf_counter() - start:.0f} s]",
              flush=True)
        for steps in s.timesteps:
            start = time.perf_counter()
            methods = methods_for(snn, dnn, x, steps)
            medians, outputs = measure_methods(methods, s.repeats)
            timing += timing_rows(dataset, tag, steps, x, y, dnn, medians, outputs, s.repeats)
            paths = next(m.paths for m in methods if m.name == "snnergy_auto")
            notes.append(f"{dataset} {tag} T={steps}: snnergy_auto paths {paths}")
            print(f"  T={steps}, batch {len(x)}: timed [{time.perf_counter() - start:.0f} s]; auto: {paths}",
                  flush=True)
    return timing, counts, notes


def _list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, Path]:
    """Reads the command line; ``--smoke`` shrinks everything to a check of the harness."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="harness check: digits, T=8,16, batch 32, 1 repeat, 500 training samples")
    p.add_argument("--datasets", default="digits,fashion-mnist")
    p.add_argument("--models", default="lenet,vgg")
    p.add_argument("--timesteps", default="64,256")
    p.add_argument("--batch", type=int, default=256, help="test samples per timed run (LeNet)")
    p.add_argument("--vgg-batch", type=int, default=64, help="test samples per timed run for VGG")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    p.add_argument("--train-limit", type=int, default=10000, help="training samples")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--checkpoints", default="",
                   help="comma-separated `snnergy train` folders to time instead of training (e.g. a sweep's runs)")
    p.add_argument("--regularizers", default="none",
                   help="comma-separated NAME[:STRENGTH] trained per model, e.g. none,l1:0.1,synops:3e-7")
    p.add_argument("--calibration", type=int, default=512, help="calibration samples for conversion")
    p.add_argument("--count-samples", type=int, default=64, help="test samples for the count checks")
    p.add_argument("--count-timesteps", type=int, default=32, help="T of the SynOps check")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=str(HERE / "cache"), help="folder of trained DNN weights")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--tag", default="")
    p.add_argument("--user-call", action="store_true",
                   help="time snnergy.simulate as a user calls it against SpikingJelly's own conversion and loop "
                        "(user_call.py; issue 18) instead of the Simulator modes")
    p.add_argument("--user-samples", type=int, default=360, help="test images of each --user-call run")
    a = p.parse_args(argv)
    if a.smoke:
        a.datasets, a.timesteps, a.batch, a.vgg_batch, a.repeats = "digits", "8,16", 32, 16, 1
        a.train_limit, a.count_samples, a.count_timesteps = 500, 16, 8
    steps = tuple(int(t) for t in _list(a.timesteps))
    if not steps or min(steps) < 1 or min(a.batch, a.vgg_batch, a.repeats, a.count_samples) < 1:
        p.error("need T >= 1, batches >= 1, --repeats >= 1 and --count-samples >= 1")
    regularizers = tuple((r.split(":")[0], float(r.split(":")[1]) if ":" in r else 0.0)
                         for r in _list(a.regularizers))
    if not regularizers:
        p.error("--regularizers needs at least one entry (none for no regularizer)")
    s = Settings(_list(a.datasets), _list(a.models), steps, a.batch, a.vgg_batch, a.repeats, a.train_limit,
                 a.epochs, regularizers, tuple(Path(c) for c in _list(a.checkpoints)), a.calibration, a.count_samples, a.count_timesteps, a.threads or os.cpu_count() or 1,
                 a.seed, Path(a.cache), a.smoke, slug(a.tag) if a.tag else "", user_call=a.user_call,
                 user_samples=a.user_samples)
    return s, Path(a.out)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the harness, prints both tables, writes the CSVs and a Markdown file."""
    s, out = parse_args(argv)
    torch.set_num_threads(s.threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    load = os.getloadavg()
    print(f"peer benchmark: {hardware(torch.device('cpu'))}, {s.threads} threads, torch {torch.__version__}, "
          f"load average {load[0]:.2f}; {s}", flush=True)
    if load[0] + s.threads > (os.cpu_count() or 1) + 0.5:
        print("Warning: other processes compete for the cores: absolute speeds are slowed and noisy; "
              "the ratios are measured alternating, but are not final.", flush=True)
    if s.user_call:
        return main_user_call(s, out)
    timing, counts, notes = run(s)
    name = stem(s)
    write_csv(timing, TIMING_COLUMNS, out / f"{name}.csv")
    write_csv(counts, COUNT_COLUMNS, out / f"{name}_counts.csv")
    text = "\n\n".join([markdown(timing), markdown_counts(counts)])
    (out / f"{name}.md").write_text(text + "\n")
    print()
    print(text)
    for note in notes:
        print(f"- {note}")
    print(f"Load average at start {load}, at end {os.getloadavg()}.")
    print(f"Wrote {out / name}.csv, {name}_counts.csv and {name}.md")
    return 0


def main_user_call(s: Settings, out: Path) -> int:
    """``--user-call``: :mod:`user_call`'s table, CSV and Markdown (``<stem>_user-call``)."""
    import user_call

    rows, notes = user_call.run_user_call(s.datasets, s.regularizers, s.timesteps, s.user_samples, s.repeats,
                                          s.train_limit, s.epochs, s.calibration, s.seed, s.cache, s.checkpoints)
    name = stem(s) + "_user-call"
    write_csv(rows, user_call.USER_COLUMNS, out / f"{name}.csv")
    text = user_call.markdown_user(rows)
    (out / f"{name}.md").write_text(text + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    print()
    print(text)
    for note in notes:
        print(f"- {note}")
    print(f"Load average at end {os.getloadavg()}. Wrote {out / name}.csv and {name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
