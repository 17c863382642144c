"""Training-step cost per regularizer (issue 18 item 4), in CPU time: robust on a loaded machine.

:mod:`training_cost` times whole epochs in wall-clock seconds; on a shared machine (other jobs
on the same cores) its ratios swing by 20 % or more. This script times the training step itself
(forward with the activity recorder, penalty, backward, Adam) as the process's CPU time
(``time.process_time``) with one thread by default, so time spent waiting for a core is not
counted. Each run is ``--batches`` steps from the same initial weights; the runs alternate
(none, l1, ..., none, l1, ...) for ``--rounds`` rounds in one process, and each regularizer's
figure is the median over the rounds of its time divided by that round's ``none``, with the
middle half of those ratios (their quartiles: how far this machine's noise moves them).

``--kernels both`` also runs every regularizer with ``SNNERGY_KERNELS=off`` (switched per run, in
the same rounds): the model's poolings, QCFS and trained clip, and the penalties, in PyTorch
operations alone (:mod:`snnergy.pooling`, :mod:`snnergy.threshold_kernels` and
:mod:`snnergy.regularizers.compiled` not used), and adds each figure divided by that ``none``:
what the compiled kernels save. The unregularized runs of both train to the same weights, to the
bit (checked before timing).

``--floor`` adds the stand-in penalties of ``penalty_floor.py`` (lower bounds of a penalty's cost
in this step), with the kernels on.

Run from the repository root: ``PYTHONPATH=src python benchmarks/training_step.py``
(``--activation qcfs`` for trained thresholds). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from typing import Sequence

import torch
import torch.nn.functional as F

from snnergy.activity import ActivityRecorder
from snnergy.config import DataConfig, ModelConfig
from snnergy.data import load_dataset
from snnergy.models import build_model
from snnergy import native
from snnergy.regularizers import REGULARIZERS, PenaltyOptions, bind_penalty, handing_off

from penalty_floor import FLOORS, bind_floor  # beside this script: python puts its folder on the path

DEFAULT = "none,l1,l2,hoyer,hoyer-square,transformed-l1,synops,macs"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--model", default="lenet")
    p.add_argument("--activation", default="relu", help="relu, qcfs or clip")
    p.add_argument("--levels", type=int, default=8, help="QCFS levels L")
    p.add_argument("--regularizers", default=DEFAULT, help="must include none (the baseline)")
    p.add_argument("--strength", type=float, default=1e-4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=10, help="training steps per timed run")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--kernels", default="auto", choices=["auto", "both"],
                   help=f"both: also time every regularizer with {native.SWITCH}=off (PyTorch operations alone)")
    p.add_argument("--floor", action="store_true",
                   help=f"also time the stand-in penalties of penalty_floor.py ({', '.join(FLOORS)}): lower bounds")
    a = p.parse_args(argv)
    a.regularizers = [r.strip() for r in a.regularizers.split(",") if r.strip()]
    for name in a.regularizers:
        REGULARIZERS.get(name)  # an unknown name fails here, naming the known ones
    if "none" not in a.regularizers:
        p.error("--regularizers must include 'none'")
    if a.floor:
        a.regularizers += list(FLOORS)
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    splits = load_dataset(DataConfig(dataset=a.dataset, train_limit=a.batch * a.batches, test_limit=64), seed=0)
    torch.manual_seed(0)
    initial = build_model(ModelConfig(name=a.model, activation=a.activation, levels=a.levels),
                          splits.input_shape, splits.num_classes)
    batches = list(zip(splits.train_x.split(a.batch), splits.train_y.split(a.batch)))

    variants = [""] + (["kernels off"] if a.kernels == "both" else [])

    def run(name: str, variant: str = "") -> float:
        return train(name, variant)[0]

    def train(name: str, variant: str) -> tuple[float, torch.nn.Module]:
        if not variant:
            return _train(name)
        saved = os.environ.get(native.SWITCH)
        os.environ[native.SWITCH] = "off"  # read at every call: PyTorch operations from here on
        try:
            return _train(name)
        finally:
            if saved is None:
                del os.environ[native.SWITCH]
            else:
                os.environ[native.SWITCH] = saved

    def _train(name: str) -> tuple[float, torch.nn.Module]:
        torch.manual_seed(0)  # the same dropout masks in every run
        model = copy.deepcopy(initial).train()
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)
        if name in FLOORS:
            penalty = bind_floor(name, model, splits.input_shape)
        else:
            penalty = None if name == "none" else bind_penalty(name, model, splits.input_shape, PenaltyOptions())
        inputs = penalty is not None and getattr(penalty, "needs_layer_inputs", False)
        with ActivityRecorder(model, activations=True, layer_inputs=inputs, detach=False) as recorder:
            start = time.process_time()
            for x, y in batches:
                logits = model(x)
                record = recorder.record()
                loss = F.cross_entropy(logits, y)
                if penalty is not None:
                    loss = loss + a.strength * penalty(record)
                bool(torch.isfinite(loss))  # as fit() checks every step
                optimizer.zero_grad(set_to_none=True)
                with handing_off():  # as training.fit
                    loss.backward()
                optimizer.step()
            return time.process_time() - start, model

    if len(variants) > 1:  # the model's kernels give PyTorch's bits: the same weights unregularized
        trained = [train("none", v)[1] for v in variants]
        if not all(torch.equal(p, q) for p, q in zip(trained[0].parameters(), trained[1].parameters())):
            raise SystemExit("the model trained to different weights with the kernels on and off")
    # the stand-ins time today's kernels: with the kernels on only
    runs = [(name, v) for name in a.regularizers for v in variants if not (v and name in FLOORS)]
    for name, v in runs:  # warm-up
        run(name, v)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for _ in range(a.rounds):
        for name, v in runs:
            times[(name, v)].append(run(name, v))
    print(f"{a.dataset} {a.model} {a.activation}{a.levels if a.activation == 'qcfs' else ''}, batch {a.batch}, "
          f"{a.threads} thread(s), CPU time, {a.batches} steps x {a.rounds} rounds alternating")
    other = " | x none with kernels off" if len(variants) > 1 else ""
    print(f"\n| regularizer | ms / step (median) | x none (median of per-round ratios) | middle half of them{other} |\n"
          f"|---|---:|---:|---:|{'---:|' if other else ''}")
    for (name, v), ts in times.items():
        ratios = [t / b for t, b in zip(ts, times[("none", v)])]
        ratio = statistics.median(ratios)
        low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratio, ratio, ratio)
        cells = (f"| {name}{f' ({v})' if v else ''} | {statistics.median(ts) / a.batches * 1000:.2f} | {ratio:.3f} "
                 f"| {low:.3f} to {high:.3f} |")
        if other:
            base = times[("none", "kernels off")]
            cells += f" {statistics.median(t / b for t, b in zip(ts, base)):.3f} |"
        print(cells)
    return 0


if __name__ == "__main__":
    sys.exit(main())
