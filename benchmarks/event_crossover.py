"""Where the event-driven path starts to pay (issue 8): the input density below which a layer's
currents cost less computed from its active inputs than with one dense Conv/Linear call.

For each layer of LeNet and VGG on 28x28 inputs (the pooling before a layer included, as the
converted network has it) and each input density, times the ``"batched"`` and ``"event"`` paths
of :class:`snnergy.simulation.Simulator` as it runs them (image-shaped spikes channels last,
pooled by strided additions; a Flatten before a Linear folded into its columns,
:class:`snnergy.simulation.folding.BatchedLayer`; a convolution reading the pooled spikes) on the
same random 0/1 spike rows (one warm-up, then the best of ``--repeats``), alternating within one
process, and prints the ratio event / batched (below 1: event is faster). ``snnergy.simulation.simulator.EVENT_DENSITY``, the density below
which ``mode="auto"`` takes the event path, comes from these crossovers.

Run from the repository root: ``PYTHONPATH=src python benchmarks/event_crossover.py [--smoke]``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from snnergy.simulation import SpikingStage, kernels
from snnergy.simulation.events import EventTable
from snnergy.simulation.folding import BatchedLayer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from simulator import hardware, slug  # noqa: E402

#: (name, weightless ops, layer, per-sample input shape): LeNet on Fashion-MNIST and VGG blocks.
LAYERS: list[tuple[str, list[nn.Module], nn.Module, tuple[int, ...]]] = [
    ("lenet conv2 (pool 2, 6->16, 5x5)", [nn.AvgPool2d(2)], nn.Conv2d(6, 16, 5), (6, 28, 28)),
    ("lenet fc1 (pool 2, 400->120)", [nn.AvgPool2d(2), nn.Flatten()], nn.Linear(400, 120), (16, 10, 10)),
    ("lenet fc2 (120->84)", [], nn.Linear(120, 84), (120,)),
    ("vgg conv1_2 (32->32, 3x3, 28x28)", [], nn.Conv2d(32, 32, 3, padding=1), (32, 28, 28)),
    ("vgg conv2_1 (pool 2, 32->64, 3x3)", [nn.AvgPool2d(2)], nn.Conv2d(32, 64, 3, padding=1), (32, 28, 28)),
    ("vgg conv3_2 (128->128, 3x3, 7x7)", [], nn.Conv2d(128, 128, 3, padding=1), (128, 7, 7)),
]
DENSITIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


def best_of(fn: Callable[[], object], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2048, help="input rows (steps x samples) per call")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--densities", default=",".join(f"{d:g}" for d in DENSITIES),
                   help="comma-separated input densities (fractions)")
    p.add_argument("--smoke", action="store_true", help="2 layers, 2 densities, 256 rows, 1 repeat")
    p.add_argument("--out", default=str(HERE / "results"))
    a = p.parse_args(argv)
    threads = a.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    if not kernels.prepare():  # else the tables would time their PyTorch stand-in
        p.error(f"the compiled kernels are unavailable: {kernels.unavailable_reason()}")
    densities = tuple(float(d) for d in a.densities.split(",") if d.strip())
    if not densities or not all(0 < d <= 1 for d in densities):
        p.error(f"--densities must be fractions in (0, 1], got {a.densities!r}")
    layers, rows, repeats = LAYERS, a.rows, a.repeats
    if a.smoke:
        layers, densities, rows, repeats = LAYERS[:2], (0.02, 0.2), 256, 1
    torch.manual_seed(0)
    results = []
    print(f"event vs batched: {hardware(torch.device('cpu'))}, {threads} threads, torch {torch.__version__}, "
          f"{rows} rows per call, best of {repeats}")
    print("| layer | " + " | ".join(f"{d:.0%}" for d in densities) + " | crossover |")
    print("|---|" + "---:|" * (len(densities) + 1))
    for name, pre, layer, shape in layers:
        stage = SpikingStage("s", "r", nn.Sequential(*pre), layer, True).eval()
        layout = len(shape) == 3  # the simulator keeps image-shaped spikes channels last
        table = EventTable(stage, shape, channels_last=layout)
        batched: Callable[[torch.Tensor], torch.Tensor] = BatchedLayer(pre, layer, shape, layout)
        ratios = []
        for d in densities:
            x = (torch.rand(rows, *shape) < d).float()
            if layout:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                dense = best_of(lambda: batched(x), repeats)
                event = best_of(lambda: table(x), repeats)
            ratios.append(event / dense)
            results.append({"layer": name, "density": d, "rows": rows, "batched_s": f"{dense:.6g}",
                            "event_s": f"{event:.6g}", "event_over_batched": f"{event / dense:.4f}"})
        below = [d for d, r in zip(densities, ratios) if r < 1]
        crossover = f"> {below[-1]:.0%}" if below else f"< {densities[0]:.0%}"
        print(f"| {name} | " + " | ".join(f"{r:.2f}" for r in ratios) + f" | {crossover} |", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    threads_tag = "" if threads == os.cpu_count() else f"_{threads}t"
    path = out / (f"event_crossover_{hardware(torch.device('cpu'))}{threads_tag}_torch-{slug(torch.__version__)}"
                  + ("_smoke" if a.smoke else "") + ".csv")
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
