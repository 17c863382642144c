"""One function per ``snnergy`` command: each resolves its config and calls the library."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snnergy.config import apply_overrides
from snnergy.errors import ConfigError

from snnergy.cli.parser import COMMON_OPTIONS_PATHS, parse_overrides, resolve_config


def check_out(args: argparse.Namespace) -> None:
    """Refuses, before any work, an ``--out`` (or ``report``'s folder) that is a file, or for
    ``export-nir``, ``hardware`` and ``metrics`` a folder (they write one file)."""
    from snnergy.experiments.store import check_not_a_file

    out = getattr(args, "out", None)
    if out is None:
        return
    if args.command in ("export-nir", "hardware", "metrics"):
        if Path(out).is_dir():
            kind = ".nir" if args.command == "export-nir" else ".json"
            raise ConfigError(f"--out {out} is a folder: give the {kind} file to write")
        check_not_a_file(Path(out).parent)
    else:
        check_not_a_file(out)


def _run_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from snnergy import experiments
    from snnergy.reporting import markdown_table

    from snnergy.config import LoggingConfig

    config = resolve_config(args, extra)
    out = args.out
    log_config = LoggingConfig(tensorboard=str(args.tensorboard) if args.tensorboard is not None else None)
    trained = experiments.train(config, out=out, progress=not args.quiet, log_config=log_config)
    if trained.resumed_from:
        print(f"resumed from {out}/checkpoint after epoch {trained.resumed_from} of {config.train.epochs}", file=sys.stderr)
    dnn = experiments.measure_trained(trained)
    experiments.write_config(out, config)
    experiments.write_results(out, [experiments.result_record(config, dnn, history=trained.history)])
    history = [vars(h) for h in trained.history]
    columns = ["epoch", "task_loss", "penalty", "train_accuracy", "test_accuracy", "sparsity", "seconds"]
    if config.train.distill is not None:  # the distillation term T^2 KL, beside the penalty
        columns.insert(3, "distillation")
    print(markdown_table(history, columns))
    print()
    rows = [
        {"layer": name, "sparsity": dnn.sparsity.get(name)} for name in dnn.sparsity
    ]
    print(markdown_table(rows, ["layer", "sparsity"]))
    print()
    layer_rows = [{"layer": name, **vars(c)} for name, c in dnn.layers.items()]
    layer_rows.append(
        {"layer": "total", "macs_nominal": dnn.macs_nominal, "macs_dense": dnn.macs_dense, "macs_effective": dnn.macs_effective}
    )
    print(markdown_table(layer_rows, ["layer", "macs_nominal", "macs_dense", "macs_effective", "input_density"]))
    print(
        f"\naccuracy {dnn.accuracy:.4f} on {dnn.samples} test samples; "
        f"effective/dense MACs {dnn.macs_effective / dnn.macs_dense:.3f}; wrote {out}/"
    )
    return 0


def _run_profiles(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from snnergy.experiments import describe_profiles
    from snnergy.reporting import markdown_table

    if extra:
        raise ConfigError(f"unrecognized arguments: {' '.join(extra)}")
    rows = describe_profiles()
    print(markdown_table(rows, ["name", "e_mac_pj", "e_ac_pj", "e_neuron_pj", "spiking", "memory",
                             "e_weight_read_pj", "e_state_pj", "source"]))
    return 0


def compare_grid(entries: Sequence[str], strengths: Sequence[float] | None) -> list[tuple[str, float]]:
    """(regularizer, strength) pairs from ``--regularizers`` and ``--strengths``.

    An entry ``name@s`` is that one strength; a plain ``name`` takes ``--strengths`` when given,
    else its default grid; ``none`` always runs once at strength 0.

    Example:
        >>> compare_grid(["none", "l1@0.1", "hoyer"], [0.01, 0.02])
        [('none', 0.0), ('l1', 0.1), ('hoyer', 0.01), ('hoyer', 0.02)]
    """
    from snnergy.experiments import default_grid

    grid: list[tuple[str, float]] = []
    for entry in entries:
        name, at, value = entry.partition("@")
        if at:
            try:
                grid.append((name, float(value)))
            except ValueError:
                raise ConfigError(f"bad strength in '{entry}': expected name@number, e.g. l1@0.1") from None
        elif name == "none":
            grid.append(("none", 0.0))
        elif strengths is not None:
            grid += [(name, s) for s in strengths]
        else:
            grid += default_grid([name])
    return grid


def _run_compare(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from snnergy import experiments
    from snnergy.reporting import format_summary

    from snnergy.reporting import config_label

    config = resolve_config(args, extra)
    grid = None
    if args.regularizers or args.strengths is not None:
        grid = compare_grid(args.regularizers or list(experiments.DEFAULT_REGULARIZERS), args.strengths)
    start = time.perf_counter()

    def report(record: dict[str, Any]) -> None:
        if args.quiet:
            return
        what = config_label(record)
        if "error" in record:
            print(f"[{time.perf_counter() - start:6.1f}s] {what}: FAILED: {record['error']}", file=sys.stderr)
        else:
            snn = record["snn"]
            quantized = "".join(f", int{bits} {part['accuracy'][-1]:.4f}" for bits, part in snn.get("quantized", {}).items())
            print(
                f"[{time.perf_counter() - start:6.1f}s] {what}: DNN {record['dnn']['accuracy']:.4f}, "
                f"SNN {snn['accuracy'][-1]:.4f}{quantized} at T={snn['timesteps'][-1]}",
                file=sys.stderr,
            )

    records = experiments.compare(
        config, grid=grid, activations=args.activations, levels=args.levels, widths=args.widths,
        out=args.out, profile=args.profile, progress=not args.quiet, on_result=report, tensorboard=args.tensorboard,
    )
    print(format_summary(records, args.profile))
    print(f"\n{len(records)} configurations in {time.perf_counter() - start:.1f} s; wrote {args.out}/ (report.md, report.html, plots/)")
    return 0 if all("error" not in r for r in records) else 1


def _run_convert(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from snnergy import experiments

    if args.model_file is not None or args.run is None:
        return _run_convert_model_file(args, extra)
    if args.weights is not None:
        raise ConfigError("--weights goes with --model-file; a RUN folder holds its own weights")
    checkpoint = experiments.load_run(args.run)
    overrides = {path: value for path, value in vars(args).items() if ("." in path or path in COMMON_OPTIONS_PATHS) and value is not None}
    config = apply_overrides(apply_overrides(checkpoint.config, overrides), parse_overrides(extra))
    snn = experiments.convert_checkpoint(checkpoint, config, args.out)
    print(f"converted {len(snn.stages)} layers (percentile {config.convert.percentile}, reset {config.convert.reset}); wrote {args.out}/")
    if snn.weight_bits is not None:
        print(f"  weights quantized to {snn.weight_bits} bits ({'per channel' if snn.weight_per_channel else 'per layer'})")
    for name, scale in snn.scales.items():
        print(f"  {name}: scale {scale[0]:.4g}" if len(scale) == 1 else f"  {name}: {len(scale)} channel scales, max {max(scale):.4g}")
    if snn.silent_layers:
        print(f"warning: silent on calibration data (collapsed): {', '.join(snn.silent_layers)}", file=sys.stderr)
    return 0


def _run_convert_model_file(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``snnergy convert --model-file FILE.py:FACTORY --weights W.safetensors --dataset D``."""
    from snnergy import experiments

    if args.run is not None or args.model_file is None or args.weights is None:
        raise ConfigError("give either RUN (a snnergy train folder) or --model-file FILE.py:FACTORY "
                          "with --weights WEIGHTS.safetensors, e.g. snnergy convert --model-file "
                          "my_net.py:build --weights my_net.safetensors --dataset fashion-mnist --out runs/mine")
    config = resolve_config(args, extra)
    snn = experiments.convert_model_file(args.model_file, args.weights, config, args.out)
    print(f"converted {len(snn.stages)} layers of {args.model_file} (percentile {config.convert.percentile}, "
          f"reset {config.convert.reset}, calibration on {config.data.dataset}); wrote {args.out}/")
    if snn.silent_layers:
        print(f"warning: silent on calibration data (collapsed): {', '.join(snn.silent_layers)}", file=sys.stderr)
    return 0


def _run_export_nir(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from snnergy import experiments

    if extra:
        raise ConfigError(f"unrecognized arguments: {' '.join(extra)}")
    snn = experiments.export_run_nir(args.snn, args.out, reader=args.reader, pooling=args.pooling)
    print(f"wrote {args.out}: {len(snn.stages)} weighted layers, IF neurons with reset "
          f"'{snn.neuron.reset}' (NIR metadata snnergy_reset)"
          + (f", for {args.reader}" if args.reader else "") + (f", pooling {args.pooling}" if args.pooling else ""))
    return 0


def _run_quantize(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from snnergy import experiments

    if extra:
        raise ConfigError(f"unrecognized arguments: {' '.join(extra)}")
    snn = experiments.quantize_converted(args.snn, args.bits, args.per_channel, args.out)
    print(f"quantized the weights of {len(snn.stages)} layers to {snn.weight_bits} bits "
          f"({'per channel' if snn.weight_per_channel else 'per layer'}; biases float); wrote {args.out}/")
    return 0


def _run_simulate(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from snnergy import experiments
    from snnergy.reporting import markdown_table

    snn, config = experiments.load_converted(args.snn)
    overrides = {path: value for path, value in vars(args).items() if ("." in path or path in COMMON_OPTIONS_PATHS) and value is not None}
    config = apply_overrides(apply_overrides(config, overrides), parse_overrides(extra))
    out = args.out or args.snn
    record = experiments.simulate_converted(snn, config, out, progress=not args.quiet, dnn_run=args.dnn)
    rows = [
        {"T": t, "accuracy": a, "synops": s, "input_macs": m, "energy_j": e}
        for t, a, s, m, e in zip(record.timesteps, record.accuracy, record.synops, record.input_macs, record.energy_j[args.profile])
    ]
    print(markdown_table(rows, ["T", "accuracy", "synops", "input_macs", "energy_j"], ["T", "accuracy", "SynOps", "input MACs", f"energy (J, {args.profile})"]))
    print(f"\n{record.samples} samples, {record.input} input; wrote {out}/results.json")
    if config.simulate.quantize:
        print(f"also simulated with {', '.join(f'int{b}' for b in config.simulate.quantize)} weights "
              f"(snn.quantized; `snnergy report {out}` tabulates them with the cores on each chip)")
    if record.paths:
        print("paths: " + ", ".join(
            f"{name} {path}" + (f" ({100 * record.input_density[name]:.1f} % inputs active)" if name in record.input_density else "")
            for name, path in record.paths.items()))
    return 0


def _run_sweep(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from snnergy.experiments.sweep import config_hash, load_sweep, run_sweep
    from snnergy.experiments.sweep_store import STORE_FILE, SweepStore
    from snnergy.reporting import markdown_table

    if extra:
        raise ConfigError(f"unrecognized arguments: {' '.join(extra)}; sweep settings go in the sweep file")
    sweep = load_sweep(args.sweep)
    out = args.out or Path("runs") / args.sweep.stem
    if args.dry_run:
        store = out / STORE_FILE
        statuses: dict[str, str] = {}
        if store.is_file():
            with SweepStore(store, readonly=True) as opened:
                statuses = opened.statuses()
        rows = [
            {"id": config_hash(c)[:12], "dataset": c.data.dataset, "model": c.model.name,
             "activation": f"qcfs{c.model.levels}" if c.model.activation == "qcfs" else c.model.activation,
             "width": c.model.width, "regularizer": c.train.regularizer,
             "strength": c.train.strength, "seed": c.seed, "stored": statuses.get(config_hash(c), "")}
            for c in sweep.configs
        ]
        print(markdown_table(rows, ["id", "dataset", "model", "activation", "width", "regularizer", "strength", "seed", "stored"]))
        print(f"\n{len(rows)} configurations in {args.sweep}; {sum(bool(r['stored']) for r in rows)} already stored in {out}/")
        return 0
    start = time.perf_counter()

    def say(outcome: Any) -> None:
        if not args.quiet and outcome.status == "failed":
            from tqdm.auto import tqdm

            tqdm.write(f"[{time.perf_counter() - start:6.1f}s] FAILED {outcome.id[:12]}: {outcome.error.splitlines()[0]}", file=sys.stderr)

    summary = run_sweep(
        sweep, out, workers=args.workers, ray=args.ray, retry_failed=args.retry_failed,
        checkpoints=not args.no_checkpoints, profile=args.profile, drop=args.target_drop,
        progress=not args.quiet, on_outcome=say, tensorboard=args.tensorboard,
    )
    print(
        f"{summary.total} configurations: {summary.finished} finished and {summary.failed} failed now, "
        f"{summary.skipped} already stored; {time.perf_counter() - start:.1f} s; wrote {out}/"
        + (" (report.md, report.html, plots/)" if summary.report else "")
    )
    return 0 if summary.failed == 0 else 1


def _run_report(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from snnergy.experiments import read_results
    from snnergy.experiments.sweep import read_layout
    from snnergy.experiments.sweep_store import STORE_FILE, SweepStore
    from snnergy.reporting import write_report

    if extra:
        raise ConfigError(f"unrecognized arguments: {' '.join(extra)}")
    if (args.out / STORE_FILE).is_file():
        with SweepStore(args.out / STORE_FILE, readonly=True) as store:
            records = store.records(include_failed=True)
        style = read_layout(args.out).report
    elif (args.out / "results.json").is_file():
        records, style = read_results(args.out), "sweep"
    else:
        raise ConfigError(f"{args.out}: neither {STORE_FILE} nor results.json here; run `snnergy sweep` first")
    path = write_report(args.out, records, args.profile, args.target_drop, args.target_accuracy, style=style)
    finished = sum("error" not in r for r in records)
    print(f"{finished} finished and {len(records) - finished} failed runs; wrote {path}, {path.with_name('report.html')} and {args.out}/plots/")
    return 0


def _run_finetune(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``snnergy finetune RUN --timesteps T``: unroll, fine-tune, simulate before and after."""
    from snnergy import experiments
    from snnergy.reporting import markdown_table

    overrides = {path: value for path, value in vars(args).items()
                 if ("." in path or path in COMMON_OPTIONS_PATHS) and value is not None}
    done = experiments.finetune_folder(args.run, args.out, {**overrides, **parse_overrides(extra)},
                                       progress=not args.quiet)
    print(markdown_table([vars(e) for e in done.result.history],
                         ["epoch", "loss", "task_loss", "synops", "train_accuracy", "seconds"]))
    print("\nthresholds (x the converted network's): " + ", ".join(
        f"{name} {value:.3f}" for name, value in done.result.thresholds.items()))
    before, after = done.before, done.after
    rows = [{"T": t, "accuracy_before": before.accuracy[k], "accuracy_after": after.accuracy[k],
             "synops_before": before.synops[k], "synops_after": after.synops[k],
             "energy_before": before.energy_j[args.profile][k], "energy_after": after.energy_j[args.profile][k]}
            for k, t in enumerate(after.timesteps)]
    print()
    print(markdown_table(rows, list(rows[0]), ["T", "accuracy before", "accuracy after", "SynOps before",
                                               "SynOps after", f"energy before (J, {args.profile})",
                                               f"energy after (J, {args.profile})"]))
    print(f"\nsimulated {after.samples} test samples, {after.input} input; wrote {args.out}/ "
          f"(snn.safetensors, snn.json, config.json, results.json): `snnergy simulate {args.out}` runs it")
    return 0


def _run_hardware(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``snnergy hardware RUN --profile CHIP``: cores per layer and the verdict."""
    from snnergy import experiments
    from snnergy.reporting import markdown_table

    if extra:
        raise ConfigError(f"unrecognized arguments: {' '.join(extra)}")
    mapping = experiments.map_run(args.run, args.profile, args.out)
    chip = mapping.chip
    rows = [{"layer": m.name, "kind": m.kind, "neurons": m.neurons, "synapses": m.synapses, "fan_in": m.fan_in,
             "per_core": m.neurons_per_core, "cores": "-" if m.cores is None else m.cores, "binding": m.binding}
            for m in mapping.layers]
    print(markdown_table(rows, list(rows[0]), ["layer", "kind", "neurons", "synapses stored", "fan-in (worst core)",
                                               "neurons (worst core)", "cores", "binding limit"]))
    if mapping.total_cores is None:
        print(f"\ndoes not fit {chip.name}: a single block of '{mapping.binding_layer}' exceeds a core's limits")
    else:
        verdict = "fits one chip" if mapping.fits else f"does not fit one chip: needs {mapping.chips} chips"
        print(f"\n{mapping.total_cores} of {chip.cores_per_chip} cores on {chip.name}: {verdict}; "
              f"most cores: {mapping.binding_layer}")
    print(f"limits: neurons/core {chip.neurons_per_core}, fan-in/core {chip.axons_per_core}, synaptic memory/core "
          f"{chip.synaptic_memory_bits} bits, {chip.weight_bits}-bit weights"
          f"{', shared conv kernels' if chip.shared_conv_weights else ''} (None: not published, not checked)")
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0


def _run_metrics(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``snnergy metrics RUN --format neurobench``: the run's results as NeuroBench metrics (JSON)."""
    import json

    from snnergy.experiments.metrics import run_metrics

    if extra:
        raise ConfigError(f"unrecognized arguments: {' '.join(extra)}")
    print(json.dumps(run_metrics(args.run, args.format, args.out), indent=2))
    if args.out is not None:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


COMMANDS = {
    "train": _run_train,
    "compare": _run_compare,
    "convert": _run_convert,
    "simulate": _run_simulate,
    "profiles": _run_profiles,
    "export-nir": _run_export_nir,
    "quantize": _run_quantize,
    "sweep": _run_sweep,
    "report": _run_report,
    "finetune": _run_finetune,
    "hardware": _run_hardware,
    "metrics": _run_metrics,
}
