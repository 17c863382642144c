"""Training cost of regularization (issue 8): one epoch per regularizer, as a ratio to no regularizer.

For each regularizer in ``--regularizers`` this times :func:`snnergy.training.fit` for one epoch
on the same data, from the same initial weights and seed (Adam, batch 64): what a user's
``snnergy train`` epoch costs, penalty binding and the end-of-epoch evaluation included (the
evaluation runs on ``--test-limit`` samples, the same for all, so it stays a small constant).
The runs alternate within each repeat (none, l1, ..., then again), so background load hits
all alike, and the median of each is reported with ``ratio_to_none`` = median / median of
``none``. Issue 8 aims at most 1.10.

Run from the repository root: ``PYTHONPATH=src python benchmarks/training_cost.py --smoke``.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from snnergy.config import DataConfig, ModelConfig, TrainConfig
from snnergy.data import DatasetSplits, load_dataset
from snnergy.models import build_model
from snnergy.regularizers import REGULARIZERS
from snnergy.training import fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simulator import hardware, slug  # noqa: E402

DEFAULT = ("none", "l1", "hoyer", "hoyer-square", "transformed-l1", "synops", "macs")
COLUMNS = ("regularizer", "strength", "median_s", "ratio_to_none", "repeats", "train_samples", "batches",
           "seconds_per_batch", "all_s")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Reads the command line; ``--smoke`` runs 512 digits samples once."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="digits, 512 training samples, 1 repeat")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--model", default="lenet")
    p.add_argument("--regularizers", default=",".join(DEFAULT))
    p.add_argument("--strength", type=float, default=1e-4,
                   help="the same lambda for all (the cost does not depend on its value)")
    p.add_argument("--train-limit", type=int, default=10000, help="training samples of the epoch")
    p.add_argument("--test-limit", type=int, default=256, help="samples of the end-of-epoch evaluation")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--activation", default="relu", help="the model's activation (relu, qcfs, clip)")
    p.add_argument("--levels", type=int, default=8, help="QCFS levels L")
    p.add_argument("--tag", default="")
    a = p.parse_args(argv)
    if a.smoke:
        a.dataset, a.train_limit, a.repeats = "digits", 512, 1
    a.regularizers = tuple(r.strip() for r in a.regularizers.split(",") if r.strip())
    for name in a.regularizers:
        REGULARIZERS.get(name)  # an unknown name fails here, naming the known ones
    if "none" not in a.regularizers:
        p.error("--regularizers must include 'none' (the baseline of the ratios)")
    if min(a.train_limit, a.test_limit, a.batch, a.repeats) < 1 or a.strength <= 0:
        p.error("--train-limit, --test-limit, --batch, --repeats must be >= 1 and --strength > 0")
    a.threads = a.threads or os.cpu_count() or 1
    return a


def epoch(initial: torch.nn.Module, splits: DatasetSplits, name: str, a: argparse.Namespace) -> float:
    """Seconds of one :func:`fit` epoch of a copy of ``initial`` with regularizer ``name``."""
    model = copy.deepcopy(initial)
    cfg = TrainConfig(epochs=1, lr=1e-3, regularizer=name, strength=0.0 if name == "none" else a.strength)
    start = time.perf_counter()
    fit(model, splits, cfg, batch_size=a.batch, seed=a.seed)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    """Times the epochs, prints a Markdown table and writes the CSV."""
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    load = os.getloadavg()
    print(f"training cost: {hardware(torch.device('cpu'))}, {a.threads} threads, torch {torch.__version__}, "
          f"load average {load[0]:.2f}", flush=True)
    splits = load_dataset(DataConfig(dataset=a.dataset, train_limit=a.train_limit, test_limit=a.test_limit),
                          seed=a.seed)
    torch.manual_seed(a.seed)
    initial = build_model(ModelConfig(name=a.model, activation=a.activation, levels=a.levels), splits.input_shape,
                          splits.num_classes)
    # Warm-up: every regularizer once on 4 batches, so one-off costs (first kernel calls, lazy
    # imports) stay out of the timed epochs.
    small = dataclasses.replace(splits, train_x=splits.train_x[: 4 * a.batch], train_y=splits.train_y[: 4 * a.batch])
    for name in a.regularizers:
        epoch(initial, small, name, a)
    times: dict[str, list[float]] = {name: [] for name in a.regularizers}
    for r in range(a.repeats):
        for name in a.regularizers:
            times[name].append(epoch(initial, splits, name, a))
        print(f"repeat {r + 1}/{a.repeats}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
              flush=True)
    batches = -(-len(splits.train_x) // a.batch)
    base = statistics.median(times["none"])
    rows = []
    for name, ts in times.items():
        median = statistics.median(ts)
        rows.append({"regularizer": name, "strength": 0.0 if name == "none" else a.strength,
                     "median_s": f"{median:.4f}", "ratio_to_none": f"{median / base:.3f}", "repeats": a.repeats,
                     "train_samples": len(splits.train_x), "batches": batches,
                     "seconds_per_batch": f"{median / batches:.5f}",
                     "all_s": " ".join(f"{t:.3f}" for t in ts)})
    threads = "" if a.threads == os.cpu_count() else f"_{a.threads}t"
    suffix = ("_smoke" if a.smoke else "") + (f"_{a.activation}{a.levels}" if a.activation != "relu" else "") \
        + (f"_{slug(a.tag)}" if a.tag else "")
    path = Path(a.out) / (f"training_cost_{a.dataset}_{a.model}_{hardware(torch.device('cpu'))}{threads}"
                          f"_torch-{slug(torch.__version__)}{suffix}.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print("\n| regularizer | epoch (s, median) | x none | s / batch |\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['regularizer']} | {float(row['median_s']):.2f} | {row['ratio_to_none']} | "
              f"{float(row['seconds_per_batch']) * 1000:.1f} ms |")
    print(f"\n{a.dataset} {a.model}: {len(splits.train_x)} training samples in {batches} batches of {a.batch}, "
          f"evaluation on {len(splits.test_x)}; load average at start {load}, at end {os.getloadavg()}.")
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
