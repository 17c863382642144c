"""GPU check and harness (issue 18 item 3): the fused time loop against the reference, SpikingJelly and the DNN.

Prepared for a lent CUDA machine (torch present, no internet): one command, JSON in ``$OUT``.

1. **Equivalence.** A Fashion-MNIST LeNet (trained here, 1 epoch on ``--train-limit`` images,
   Adam 1e-3, batch 64; converted with ``ConvertConfig()``) is simulated on ``--check-batch``
   test images for ``--check-steps`` steps by ``Simulator(mode="looped")`` with the fused scan
   (:mod:`snnergy.simulation.fused_scan`, ``SNNERGY_FUSED_SCAN=auto`` selects it on CUDA) and by
   :func:`snnergy.simulation.simulate_reference` (the plain loop): every spike count, final count
   and readout potential must be equal (``looped_equal``). The batched path is compared with the
   fused scan on and off (``batched_fused_equals_loop``: the same currents, so equal) and with the
   reference (``batched_spikes_differing``: cuDNN may round a batched call's last bit differently).
2. **Harness.** Batch ``--batch`` (1024) test images, for each ``T`` in ``--timesteps`` (64, 256):
   ``snnergy_fused`` (``Simulator(mode="batched")``, fused scan), ``snnergy_loop`` (the same with
   ``SNNERGY_FUSED_SCAN=off``), ``spikingjelly_multi`` / ``spikingjelly_single`` (if importable;
   :mod:`benchmarks.peers.peers` builds them from the same converted stages), ``dense_looped``
   and ``dense_big_batch`` (the DNN floor). One warm-up each (compilation included there), then
   ``--repeats`` rounds alternating over the methods, ``torch.cuda.synchronize()`` around each
   run; medians. ``fused_vs_spikingjelly_multi`` = SpikingJelly's median / snnergy's (the issue
   aims at 1.5 or more at T = 64). What the chunk budget (``simulator.CHUNK_ELEMENTS``; 2**27
   on CUDA, two groups of samples here) costs on a GPU: ``snnergy_fused_groups<g>`` (``--groups``)
   runs the batch in ``g`` groups of 16 steps a chunk, ``snnergy_fused_2^<k>`` (``--budgets``)
   with chunks of at most 2**k values (2**24, the former CUDA budget: groups of about 80 samples).

Without CUDA it runs on the CPU (``--smoke``: 32 images, T = 8, 1 repeat; with
``TRITON_INTERPRET=1`` the fused scan is forced with ``SNNERGY_FUSED_SCAN=always`` and runs in
Triton's interpreter, else it is off): a check of the script, not a figure. SpikingJelly and the
data come from ``benchmarks/gpu/vendor`` when present (``bash benchmarks/gpu/vendor.sh`` copies
them there; see docs/benchmarks.md, GPU section).

Run from the repository root: ``python benchmarks/gpu/run.py`` (or ``bash benchmarks/gpu/run.sh``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENDOR = HERE / "vendor"
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks"), str(ROOT / "benchmarks" / "peers")]
if VENDOR.is_dir():
    sys.path.insert(0, str(VENDOR))  # pure-Python peers (SpikingJelly, loguru) copied by vendor.sh
    if (VENDOR / "fashion-mnist").is_dir() and not os.environ.get("SNNERGY_DATA"):
        os.environ["SNNERGY_DATA"] = str(VENDOR)

import torch  # noqa: E402

from snnergy.config import ConvertConfig, DataConfig, ModelConfig, TrainConfig  # noqa: E402
from snnergy.conversion import convert, fold_batchnorm  # noqa: E402
from snnergy.data import calibration_set, load_dataset  # noqa: E402
from snnergy.models import build_model  # noqa: E402
from snnergy.simulation import Simulator, fused_scan, simulate_reference  # noqa: E402
from snnergy.simulation import simulator  # noqa: E402
from snnergy.training import fit  # noqa: E402
from simulator import dense_big_batch, dense_looped, hardware  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU check of the script: 32 images, T = 8, 1 repeat")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--timesteps", default="64,256")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--train-limit", type=int, default=10000)
    p.add_argument("--check-batch", type=int, default=256)
    p.add_argument("--check-steps", type=int, default=64)
    p.add_argument("--groups", default="1,4", help="sample groups per batch also timed ('' for none)")
    p.add_argument("--budgets", default="24", help="log2 chunk budgets also timed ('' for none)")
    p.add_argument("--out", default=os.environ.get("OUT") or str(HERE / "results"))
    a = p.parse_args(argv)
    a.timesteps = tuple(int(t) for t in a.timesteps.split(","))
    a.groups = tuple(int(g) for g in a.groups.split(",") if g.strip())
    a.budgets = tuple(int(k) for k in a.budgets.split(",") if k.strip())
    if a.smoke:
        a.batch, a.timesteps, a.repeats, a.train_limit, a.check_batch, a.check_steps = 32, (8,), 1, 512, 16, 8
    return a


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(methods: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, dict]:
    """One warm-up each, then ``repeats`` alternating rounds; median and all seconds per method."""
    for run in methods.values():
        run()
        sync(device)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, run in methods.items():
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(ts), "all_s": ts} for name, ts in times.items()}


def with_switch(value: str, run: Callable[[], object]) -> Callable[[], object]:
    """``run`` under ``SNNERGY_FUSED_SCAN=value`` (read at every scan)."""
    def call() -> object:
        before = os.environ.get(fused_scan.SWITCH)
        os.environ[fused_scan.SWITCH] = value
        try:
            return run()
        finally:
            if before is None:
                del os.environ[fused_scan.SWITCH]
            else:
                os.environ[fused_scan.SWITCH] = before
    return call


def grouped(snn, steps: int, batch: int, groups: int) -> Simulator:
    """A batched simulator whose chunks hold ``batch / groups`` samples (rounded up) x 16 steps."""
    widest = Simulator(snn, [steps])._widest
    return Simulator(snn, [steps], mode="batched", max_elements=simulator.CHUNK_STEPS * -(-batch // groups) * widest)


def with_budget(elements: int, run: Callable[[], object]) -> Callable[[], object]:
    """``run`` with chunks of at most ``elements`` elements on every device type."""
    def call() -> object:
        before = dict(simulator.CHUNK_ELEMENTS)
        simulator.CHUNK_ELEMENTS.update({k: elements for k in before})
        try:
            return run()
        finally:
            simulator.CHUNK_ELEMENTS.update(before)
    return call


def equivalence(snn, x, steps: int, on: str) -> dict:
    """The fused scan against the reference loop and against the batched PyTorch loop."""
    looped = with_switch(on, lambda: Simulator(snn, [steps], mode="looped").run(x))()
    reference = with_switch("off", lambda: simulate_reference(snn, x, [steps]))()
    fused_batched = with_switch(on, lambda: Simulator(snn, [steps], mode="batched").run(x))()
    loop_batched = with_switch("off", lambda: Simulator(snn, [steps], mode="batched").run(x))()

    def same(a, b) -> bool:
        return torch.equal(a.potentials, b.potentials) and all(
            torch.equal(a.spike_counts[k], b.spike_counts[k]) and torch.equal(a.final_counts[k], b.final_counts[k])
            for k in b.spike_counts)

    differing = sum(int((fused_batched.final_counts[k] != reference.final_counts[k]).sum())
                    for k in reference.final_counts)
    return {"images": int(x.shape[0]), "steps": steps, "looped_equal": same(looped, reference),
            "batched_fused_equals_loop": same(fused_batched, loop_batched),
            "batched_neurons_with_other_counts": differing,
            "spikes": {k: float(c[-1].sum()) for k, c in reference.spike_counts.items()}}


def write(result: dict, a: argparse.Namespace, device: torch.device) -> Path:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"gpu_{hardware(device)}_torch-{torch.__version__.replace('+', '-')}{'_smoke' if a.smoke else ''}.json"
    path.write_text(json.dumps(result, indent=2))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # on a CPU the kernel runs only in Triton's interpreter (TRITON_INTERPRET=1): a check of the script
    interpreter = os.environ.get("TRITON_INTERPRET") == "1" and fused_scan.has_triton()
    on = "auto" if device.type == "cuda" else "always" if interpreter else "off"
    print(f"gpu harness: {hardware(device)}, torch {torch.__version__}, fused scan {on}", flush=True)
    splits = load_dataset(DataConfig(dataset=a.dataset, train_limit=a.train_limit), seed=0)
    torch.manual_seed(0)
    dnn = build_model(ModelConfig(name="lenet"), splits.input_shape, splits.num_classes)
    start = time.perf_counter()
    fit(dnn, splits, TrainConfig(epochs=1, lr=1e-3, schedule="constant"), batch_size=64, seed=0, device=device)
    trained_s = time.perf_counter() - start
    dnn = dnn.cpu().eval()
    snn = convert(dnn, calibration_set(splits, 1024, seed=0), ConvertConfig()).to(device)
    dnn = fold_batchnorm(dnn, splits.input_shape).eval().to(device)  # the floor: the BN-folded DNN
    result: dict = {"device": hardware(device), "torch": torch.__version__, "python": platform.python_version(),
                    "dataset": a.dataset, "model": "lenet", "train_samples": len(splits.train_x),
                    "train_s": trained_s, "smoke": a.smoke}
    with torch.no_grad():
        x_check = splits.test_x[: a.check_batch].to(device)
        start = time.perf_counter()
        result["equivalence"] = equivalence(snn, x_check, a.check_steps, on)
        result["equivalence_s"] = time.perf_counter() - start  # the compilations happen here
        print(f"equivalence: {result['equivalence']}", flush=True)
        write(result, a, device)
        x = splits.test_x[: a.batch].to(device)
        y = splits.test_y[: a.batch].to(device)
        try:
            import peers
            single, multi = peers.spikingjelly_network(snn, "s"), peers.spikingjelly_network(snn, "m")
            result["spikingjelly"] = "importable"
        except ImportError as err:
            single = multi = None
            result["spikingjelly"] = f"not importable: {err}"
        rows = []
        for steps in a.timesteps:
            fused_sim = Simulator(snn, [steps], mode="batched")
            loop_sim = Simulator(snn, [steps], mode="batched")
            methods: dict[str, Callable[[], object]] = {
                "snnergy_fused": with_switch(on, lambda s=fused_sim: s.run(x)),
                "snnergy_loop": with_switch("off", lambda s=loop_sim: s.run(x)),
                "dense_looped": dense_looped(dnn, x, steps),
                "dense_big_batch": dense_big_batch(dnn, x, steps),
            }
            variants = {f"groups{g}": grouped(snn, steps, x.shape[0], g) for g in a.groups}
            variants.update({f"2^{k}": Simulator(snn, [steps], mode="batched", max_elements=2**k) for k in a.budgets})
            for label, sim in variants.items():
                methods[f"snnergy_fused_{label}"] = with_budget(sim.max_elements,
                                                                with_switch(on, lambda s=sim: s.run(x)))
            if multi is not None:
                methods["spikingjelly_multi"] = lambda n=steps: peers.run_spikingjelly_multi(multi, x, n)
                methods["spikingjelly_single"] = lambda n=steps: peers.run_spikingjelly_single(single, x, n)
            medians = timed(methods, a.repeats, device)
            fused = fused_sim.run(x).potentials[-1]
            row = {"T": steps, "batch": int(x.shape[0]), "repeats": a.repeats, "methods": medians,
                   "accuracy": float((fused.argmax(1) == y).float().mean())}
            floor = min(medians["dense_looped"]["median_s"], medians["dense_big_batch"]["median_s"])
            row["fused_vs_floor"] = medians["snnergy_fused"]["median_s"] / floor
            row["loop_vs_fused"] = medians["snnergy_loop"]["median_s"] / medians["snnergy_fused"]["median_s"]
            if multi is not None:
                row["fused_vs_spikingjelly_multi"] = (medians["spikingjelly_multi"]["median_s"]
                                                      / medians["snnergy_fused"]["median_s"])
                sj = peers.run_spikingjelly_multi(multi, x, steps)
                row["same_predictions_as_spikingjelly"] = float((sj.argmax(1) == fused.argmax(1)).float().mean())
            best = min((n for n in medians if n.startswith("snnergy_fused")), key=lambda n: medians[n]["median_s"])
            row["best_fused"] = best
            if multi is not None:
                row["best_fused_vs_spikingjelly_multi"] = (medians["spikingjelly_multi"]["median_s"]
                                                           / medians[best]["median_s"])
            for label, sim in variants.items():
                other = with_budget(sim.max_elements, with_switch(on, lambda s=sim: s.run(x)))()
                row[f"same_predictions_{label}"] = float((other.potentials[-1].argmax(1) == fused.argmax(1)).float().mean())
                row[f"chunking_{label}"] = with_budget(sim.max_elements, lambda s=sim: s._chunking(x.shape[0], x.device))()
            row["chunking_default"] = fused_sim._chunking(x.shape[0], x.device)
            rows.append(row)
            result["timing"] = rows
            write(result, a, device)  # after every T: a run stopped later keeps what it measured
            print(json.dumps({k: v for k, v in row.items() if k != "methods"}), flush=True)
            for name, m in medians.items():
                print(f"  T={steps} {name:20s} {m['median_s'] * 1000:9.2f} ms "
                      f"({x.shape[0] * steps / m['median_s']:,.0f} sample-steps/s)", flush=True)
        result["timing"] = rows
    print(f"Wrote {write(result, a, device)}")
    return 0 if result["equivalence"]["looped_equal"] and result["equivalence"]["batched_fused_equals_loop"] else 1


if __name__ == "__main__":
    sys.exit(main())
