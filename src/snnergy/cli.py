"""Command line: argument parsing only; every command calls the library.

Errors a user can cause print one line (``snnergy: error: ...``) and exit with code 2.
Any config field can be overridden by dotted path after the named options, e.g.
``snnergy train --train.weight_decay 1e-4 --data.batch_size 128``.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snnergy._version import __version__
from snnergy.config import ExperimentConfig, apply_overrides, load_config
from snnergy.errors import ConfigError, SnnergyError

# Named options and the config field each one sets (dotted path).
TRAIN_OPTIONS: dict[str, tuple[str, type, str]] = {
    "dataset": ("data.dataset", str, "dataset name (digits, fashion-mnist, mnist, cifar10, ...)"),
    "data-dir": ("data.data_dir", str, "folder with the dataset's files"),
    "batch-size": ("data.batch_size", int, "batch size"),
    "model": ("model.name", str, "model name (mlp, lenet, vgg, ...)"),
    "width": ("model.width", float, "channel/unit multiplier of the model"),
    "regularizer": ("train.regularizer", str, "activity regularizer (none, l1, l2, hoyer, hoyer-square, transformed-l1, synops, macs)"),
    "strength": ("train.strength", float, "regularizer strength lambda"),
    "epochs": ("train.epochs", int, "training epochs"),
    "lr": ("train.lr", float, "learning rate"),
    "optimizer": ("train.optimizer", str, "adam or sgd"),
    "weight-decay": ("train.weight_decay", float, "weight decay"),
}
SNN_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "timesteps": ("simulate.timesteps", None, "largest T (reports 1, 2, 4, ..., T) or a comma-separated list of T"),
    "input": ("simulate.input", str, "analog (constant current) or poisson"),
    "max-samples": ("simulate.max_samples", int, "simulate at most this many test samples"),
    "percentile": ("convert.percentile", float, "normalization percentile (100 = max)"),
}
COMMON_OPTIONS: dict[str, tuple[str, type, str]] = {
    "seed": ("seed", int, "random seed (data order, initialization, Poisson input)"),
    "device": ("device", str, "auto, cpu or cuda"),
}

EPILOG = {
    "train": """\
        examples:
          snnergy train --dataset digits --model lenet --epochs 20 --out runs/digits
          snnergy train --dataset fashion-mnist --model lenet --regularizer hoyer-square \\
                        --strength 1e-3 --epochs 5 --out runs/hs
          snnergy train --config my.toml --train.weight_decay 1e-4 --out runs/wd

        writes OUT/checkpoint/ (safetensors + JSON), OUT/results.json, OUT/results.csv, OUT/config.json""",
    "compare": """\
        examples:
          snnergy compare                                   # digits, lenet, none/l1/hoyer/hoyer-square
          snnergy compare --dataset fashion-mnist --model lenet \\
                          --regularizers none,l1,hoyer,hoyer-square --epochs 5 --out runs/fm
          snnergy compare --regularizers none,l1 --strengths 0.1,1 --timesteps 8,32,128 --input poisson
          snnergy compare --regularizers none,l1@0.1,hoyer-square@0.01,hoyer-square@0.03

        writes OUT/results.json, OUT/results.csv, OUT/report.md, OUT/plots/*.png, OUT/config.json
        and one checkpoint per configuration in OUT/runs/<regularizer>-<strength>/checkpoint""",
    "convert": """\
        examples:
          snnergy convert runs/hs --percentile 99.9 --out runs/hs-snn
          snnergy convert runs/hs --percentile 100 --channelwise --reset zero --out runs/hs-max

        RUN is a folder written by `snnergy train` (or its checkpoint/ subfolder); calibration data
        is drawn from the training split of the checkpoint's dataset. Writes OUT/snn.safetensors,
        OUT/snn.json and OUT/config.json""",
    "simulate": """\
        examples:
          snnergy simulate runs/hs-snn --timesteps 256              # reports T = 1, 2, 4, ..., 256
          snnergy simulate runs/hs-snn --timesteps 16,32,64 --input poisson --max-samples 1000

        writes OUT/results.json and OUT/results.csv (OUT defaults to the SNN folder)""",
    "sweep": """\
        examples:
          snnergy sweep sweeps/digits_small.toml --workers 2 --out runs/digits   # resumes if runs/digits exists
          snnergy sweep sweeps/fashion_mnist.toml --dry-run                     # validate, list, run nothing
          snnergy sweep sweeps/fashion_mnist.toml --ray auto --out runs/fm      # Ray tasks (pip install 'snnergy[ray]')
          snnergy sweep sweeps/fashion_mnist.toml --out runs/fm --retry-failed   # rerun the failed ones too

        SWEEP is a TOML file: [base] (a config, same tables as --config files), [grid] (dotted keys to
        lists; the product is taken) and [strengths] (regularizer -> strengths). Each finished
        configuration is committed to OUT/sweep.sqlite at once (a killed sweep resumes; finished ones
        are skipped). Writes OUT/results.json, OUT/results.csv, OUT/report.md, OUT/plots/*.png,
        OUT/summary.csv, OUT/layers.csv, OUT/sweep.json and OUT/runs/<id>/checkpoint""",
    "report": """\
        examples:
          snnergy report runs/fm                                   # report.md + plots from runs/fm/sweep.sqlite
          snnergy report runs/fm --profile loihi --target-drop 0.02
          snnergy report runs/fm --target-accuracy 0.88

        Reads OUT/sweep.sqlite (or OUT/results.json where there is no store) and writes OUT/report.md,
        OUT/plots/*.png, OUT/summary.csv and OUT/layers.csv: mean ± std over seeds, Pareto fronts of
        accuracy vs SNN energy and vs DNN effective MACs per regularizer, the smallest T reaching the
        target, and which regularizer reaches it for the least energy""",
    "profiles": """\
        examples:
          snnergy profiles          # every energy profile with its per-operation energies and source""",
}


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors exit with code 2 and one line, as ours do."""


def _add_config_options(parser: argparse.ArgumentParser, options: dict[str, tuple[str, Any, str]]) -> None:
    for flag, (path, kind, text) in options.items():
        parser.add_argument(f"--{flag}", dest=path, type=kind or _timesteps, default=None, help=text)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def _timesteps(text: str) -> list[int]:
    """``"256"`` -> powers of two up to 256 (and 256); ``"16,32"`` -> that list.

    Example:
        >>> _timesteps("20"), _timesteps("8,32")
        ([1, 2, 4, 8, 16, 20], [8, 32])
    """
    try:
        values = [int(t) for t in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or comma-separated integers, got '{text}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"timesteps must be >= 1, got '{text}'")
    if len(values) > 1:
        return sorted(set(values))
    top, ts, t = values[0], [], 1
    while t < top:
        ts.append(t)
        t *= 2
    return ts + [top]


def build_parser() -> argparse.ArgumentParser:
    """The ``snnergy`` parser with one subcommand per pipeline step."""
    parser = Parser(
        prog="snnergy",
        description="Train DNNs with activity regularizers, convert them to SNNs, and compare their energy.",
    )
    parser.add_argument("--version", action="version", version=f"snnergy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=text,
            description=text,
            epilog=textwrap.dedent(EPILOG.get(name, "")),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    train = command("train", "train a DNN with an activity regularizer and measure it")
    train.add_argument("--config", type=Path, help="TOML config file (named options override it)")
    _add_config_options(train, TRAIN_OPTIONS)
    _add_config_options(train, COMMON_OPTIONS)
    train.add_argument("--out", type=Path, default=Path("runs/train"), help="output folder (default runs/train)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    compare = command("compare", "the main job: train each regularizer, convert, simulate, report")
    compare.add_argument("--config", type=Path, help="TOML config file (named options override it)")
    _add_config_options(compare, TRAIN_OPTIONS)
    _add_config_options(compare, SNN_OPTIONS)
    _add_config_options(compare, COMMON_OPTIONS)
    compare.add_argument("--regularizers", type=_names, default=None, help="comma-separated names, or name@strength (default none,l1,hoyer,hoyer-square)")
    compare.add_argument("--strengths", type=_floats, default=None, help="comma-separated strengths for every regularizer but none (default: each one's grid)")
    compare.add_argument("--profile", default="cmos45-fp32", help="energy profile of the report and plots")
    compare.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder (default runs/compare)")
    compare.add_argument("--quiet", action="store_true", help="no progress output")

    convert = command("convert", "convert a trained DNN checkpoint to a spiking network")
    convert.add_argument("run", type=Path, help="folder written by snnergy train")
    convert.add_argument("--percentile", dest="convert.percentile", type=float, default=None, help="normalization percentile of non-zero activations (100 = max; default 99.9)")
    convert.add_argument("--channelwise", dest="convert.channelwise", action="store_const", const=True, default=None, help="one scale per channel")
    convert.add_argument("--reset", dest="convert.reset", choices=["subtract", "zero"], default=None, help="neuron reset (default subtract)")
    convert.add_argument("--calibration-size", dest="data.calibration_size", type=int, default=None, help="training samples used for normalization")
    convert.add_argument("--data-dir", dest="data.data_dir", type=str, default=None, help="folder with the dataset's files")
    _add_config_options(convert, COMMON_OPTIONS)
    convert.add_argument("--out", type=Path, required=True, help="output folder for the SNN")

    simulate = command("simulate", "simulate a converted SNN: accuracy, SynOps and energy at each T")
    simulate.add_argument("snn", type=Path, help="folder written by snnergy convert")
    _add_config_options(simulate, SNN_OPTIONS)
    simulate.add_argument("--data-dir", dest="data.data_dir", type=str, default=None, help="folder with the dataset's files")
    _add_config_options(simulate, COMMON_OPTIONS)
    simulate.add_argument("--profile", default="cmos45-fp32", help="energy profile of the printed table")
    simulate.add_argument("--out", type=Path, default=None, help="output folder (default: the SNN folder)")
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")

    sweep = command("sweep", "run a grid of configurations from a sweep file; resumes; report at the end")
    sweep.add_argument("sweep", type=Path, help="sweep file (TOML)")
    sweep.add_argument("--out", type=Path, default=None, help="run folder (default runs/<sweep file name>)")
    sweep.add_argument("--workers", type=int, default=1, help="configurations run at once, each in its own process (default 1: in this process); with --ray, the CPUs of a local Ray instance")
    sweep.add_argument("--ray", metavar="auto|local|ADDRESS", default=None, help="run as Ray tasks: join the running cluster or start a local one (auto), always start one (local), or a cluster address")
    sweep.add_argument("--retry-failed", action="store_true", help="run configurations stored as failed again")
    sweep.add_argument("--no-checkpoints", action="store_true", help="do not keep each configuration's checkpoint")
    sweep.add_argument("--dry-run", action="store_true", help="validate the sweep and list its configurations; run nothing")
    sweep.add_argument("--profile", default="cmos45-fp32", help="energy profile of the report")
    sweep.add_argument("--target-drop", type=float, default=0.01, help="report target: unregularized DNN accuracy minus this (default 0.01)")
    sweep.add_argument("--quiet", action="store_true", help="no progress output")

    report = command("report", "write report.md and plots of a sweep (or compare) folder from its stored results")
    report.add_argument("out", type=Path, help="folder written by snnergy sweep")
    report.add_argument("--profile", default="cmos45-fp32", help="energy profile of every energy column")
    report.add_argument("--target-drop", type=float, default=0.01, help="target: unregularized DNN accuracy minus this (default 0.01)")
    report.add_argument("--target-accuracy", type=float, default=None, help="an absolute target accuracy instead")

    command("profiles", "list the energy profiles with their sources")
    return parser


def parse_overrides(extra: Sequence[str]) -> dict[str, str]:
    """Turns ``['--train.lr', '3e-4', '--data.batch_size=32']`` into dotted overrides.

    Example:
        >>> parse_overrides(["--train.lr", "3e-4", "--data.batch_size=32"])
        {'train.lr': '3e-4', 'data.batch_size': '32'}
    """
    overrides: dict[str, str] = {}
    items = list(extra)
    while items:
        item = items.pop(0)
        if not item.startswith("--") or "." not in item:
            raise ConfigError(f"unrecognized argument '{item}'")
        key, sep, value = item[2:].partition("=")
        if not sep:
            if not items:
                raise ConfigError(f"option '{item}' needs a value")
            value = items.pop(0)
        overrides[key] = value
    return overrides


def resolve_config(args: argparse.Namespace, extra: Sequence[str]) -> ExperimentConfig:
    """The config file (or defaults), then the named options, then dotted overrides."""
    config = load_config(args.config) if getattr(args, "config", None) else ExperimentConfig()
    named: dict[str, Any] = {
        path: value
        for path, value in vars(args).items()
        if "." in path or path in COMMON_OPTIONS_PATHS
        if value is not None
    }
    config = apply_overrides(config, named)
    return apply_overrides(config, parse_overrides(extra))


COMMON_OPTIONS_PATHS = {path for path, _, _ in COMMON_OPTIONS.values()}


def _run_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from snnergy import experiments
    from snnergy.reporting import markdown_table

    config = resolve_config(args, extra)
    out = args.out
    trained = experiments.train(config, out=out, progress=not args.quiet)
    dnn = experiments.measure_trained(trained)
    experiments.write_config(out, config)
    experiments.write_results(out, [experiments.result_record(config, dnn)])
    history = [vars(h) for h in trained.history]
    print(
        markdown_table(
            history,
            ["epoch", "task_loss", "penalty", "train_accuracy", "test_accuracy", "sparsity", "seconds"],
        )
    )
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
    print(markdown_table(rows, ["name", "e_mac_pj", "e_ac_pj", "e_neuron_pj", "spiking", "source"]))
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

    config = resolve_config(args, extra)
    grid = compare_grid(args.regularizers or list(experiments.DEFAULT_REGULARIZERS), args.strengths)
    start = time.perf_counter()

    def report(record: dict[str, Any]) -> None:
        if args.quiet:
            return
        cfg = record["config"]
        what = f"{cfg['regularizer']} {cfg['strength']:g}"
        if "error" in record:
            print(f"[{time.perf_counter() - start:6.1f}s] {what}: FAILED: {record['error']}", file=sys.stderr)
        else:
            snn = record["snn"]
            print(
                f"[{time.perf_counter() - start:6.1f}s] {what}: DNN {record['dnn']['accuracy']:.4f}, "
                f"SNN {snn['accuracy'][-1]:.4f} at T={snn['timesteps'][-1]}",
                file=sys.stderr,
            )

    records = experiments.compare(
        config, grid=grid, out=args.out, profile=args.profile, progress=not args.quiet, on_result=report
    )
    print(format_summary(records, args.profile))
    print(f"\n{len(records)} configurations in {time.perf_counter() - start:.1f} s; wrote {args.out}/ (report.md, plots/)")
    return 0 if all("error" not in r for r in records) else 1


def _run_convert(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from snnergy import experiments

    checkpoint = experiments.load_run(args.run)
    overrides = {path: value for path, value in vars(args).items() if ("." in path or path in COMMON_OPTIONS_PATHS) and value is not None}
    config = apply_overrides(apply_overrides(checkpoint.config, overrides), parse_overrides(extra))
    snn = experiments.convert_checkpoint(checkpoint, config, args.out)
    print(f"converted {len(snn.stages)} layers (percentile {config.convert.percentile}, reset {config.convert.reset}); wrote {args.out}/")
    for name, scale in snn.scales.items():
        print(f"  {name}: scale {scale[0]:.4g}" if len(scale) == 1 else f"  {name}: {len(scale)} channel scales, max {max(scale):.4g}")
    if snn.silent_layers:
        print(f"warning: silent on calibration data (collapsed): {', '.join(snn.silent_layers)}", file=sys.stderr)
    return 0


def _run_simulate(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from snnergy import experiments
    from snnergy.reporting import markdown_table

    snn, config = experiments.load_converted(args.snn)
    overrides = {path: value for path, value in vars(args).items() if ("." in path or path in COMMON_OPTIONS_PATHS) and value is not None}
    config = apply_overrides(apply_overrides(config, overrides), parse_overrides(extra))
    out = args.out or args.snn
    record = experiments.simulate_converted(snn, config, out, progress=not args.quiet)
    rows = [
        {"T": t, "accuracy": a, "synops": s, "input_macs": m, "energy_j": e}
        for t, a, s, m, e in zip(record.timesteps, record.accuracy, record.synops, record.input_macs, record.energy_j[args.profile])
    ]
    print(markdown_table(rows, ["T", "accuracy", "synops", "input_macs", "energy_j"], ["T", "accuracy", "SynOps", "input MACs", f"energy (J, {args.profile})"]))
    print(f"\n{record.samples} samples, {record.input} input; wrote {out}/results.json")
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
            {"id": config_hash(c)[:12], "dataset": c.data.dataset, "model": c.model.name, "regularizer": c.train.regularizer,
             "strength": c.train.strength, "seed": c.seed, "stored": statuses.get(config_hash(c), "")}
            for c in sweep.configs
        ]
        print(markdown_table(rows, ["id", "dataset", "model", "regularizer", "strength", "seed", "stored"]))
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
        progress=not args.quiet, on_outcome=say,
    )
    print(
        f"{summary.total} configurations: {summary.finished} finished and {summary.failed} failed now, "
        f"{summary.skipped} already stored; {time.perf_counter() - start:.1f} s; wrote {out}/"
        + (" (report.md, plots/)" if summary.report else "")
    )
    return 0 if summary.failed == 0 else 1


def _run_report(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from snnergy.experiments import read_results
    from snnergy.experiments.sweep_store import STORE_FILE, SweepStore
    from snnergy.reporting.report import write_sweep_report

    if extra:
        raise ConfigError(f"unrecognized arguments: {' '.join(extra)}")
    if (args.out / STORE_FILE).is_file():
        with SweepStore(args.out / STORE_FILE, readonly=True) as store:
            records = store.records(include_failed=True)
    elif (args.out / "results.json").is_file():
        records = read_results(args.out)
    else:
        raise ConfigError(f"{args.out}: neither {STORE_FILE} nor results.json here; run `snnergy sweep` first")
    path = write_sweep_report(args.out, records, args.profile, args.target_drop, args.target_accuracy)
    finished = sum("error" not in r for r in records)
    print(f"{finished} finished and {len(records) - finished} failed runs; wrote {path} and {args.out}/plots/")
    return 0


COMMANDS = {
    "train": _run_train,
    "compare": _run_compare,
    "convert": _run_convert,
    "simulate": _run_simulate,
    "profiles": _run_profiles,
    "sweep": _run_sweep,
    "report": _run_report,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``snnergy`` and ``python -m snnergy``; returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        return COMMANDS[args.command](args, extra)
    except SnnergyError as err:
        print(f"snnergy: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("snnergy: interrupted; finished results and checkpoints are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
