"""The ``snnergy`` argument parser: named options, examples, config resolution.

Any config field can be overridden by dotted path after the named options, e.g.
``snnergy train --train.weight_decay 1e-4 --data.batch_size 128``.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snnergy._version import __version__
from snnergy.config import (ACTIVATION_NAMES, RESETS, ExperimentConfig, apply_overrides, check_quantize, doubling_timesteps,
                            load_config, parse_size)
from snnergy.errors import ConfigError

# Named options and the config field each one sets (dotted path).
def _run_folder(text: str) -> str:
    """argparse type of ``--init-from`` and ``--distill``: the folder as an absolute path (sweep workers and the
    recorded config then find it from anywhere)."""
    return str(Path(text).expanduser().resolve())


TRAIN_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "dataset": ("data.dataset", str, "dataset name (digits, fashion-mnist, mnist, cifar10, ...)"),
    "data-dir": ("data.data_dir", str, "folder with the dataset's files"),
    "batch-size": ("data.batch_size", int, "batch size"),
    "model": ("model.name", str, "model name (mlp, lenet, vgg, ...)"),
    "width": ("model.width", float, "channel/unit multiplier of the model"),
    "activation": ("model.activation", str, "relu, qcfs (trained threshold, quantized to --levels) or clip (trained threshold)"),
    "levels": ("model.levels", int, "QCFS quantization levels L (default 8)"),
    "regularizer": ("train.regularizer", str, "activity regularizer (none, l1, l2, hoyer, hoyer-square, transformed-l1, synops, macs)"),
    "strength": ("train.strength", float, "regularizer strength lambda"),
    "epochs": ("train.epochs", int, "training epochs"),
    "lr": ("train.lr", float, "learning rate"),
    "optimizer": ("train.optimizer", str, "adam or sgd"),
    "weight-decay": ("train.weight_decay", float, "weight decay"),
    "init-from": ("train.init_from", _run_folder, "start from the weights of this run's checkpoint (a snnergy train folder, or OUT/runs/<id> of a compare)"),
    "distill": ("train.distill", _run_folder, "knowledge distillation from this run's model as the teacher (a snnergy train folder, or OUT/runs/<id> of a compare)"),
    "distill-temperature": ("train.distill_temperature", float, "distillation softmax temperature T > 0 (default 4)"),
    "distill-weight": ("train.distill_weight", float, "share w of the distillation term, in [0, 1] (default 0.5): (1-w) CE + w T^2 KL"),
}


def _byte_size(text: str) -> int:
    """argparse type of ``--max-memory``: ``512MiB``, ``2GB``, ``1.5GiB`` or bytes."""
    try:
        return parse_size(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _quantize(text: str) -> list[int]:
    """argparse type of ``--quantize``: comma-separated weight widths (``simulate.quantize`` checks them).

    Example:
        >>> _quantize("8,4")
        [8, 4]
    """
    try:
        return list(check_quantize([int(t) for t in _names(text)] if _names(text) else None))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"expected comma-separated weight widths, integers in [2, 16] "
                                         f"(e.g. 8,4), got '{text}'") from None


SNN_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "timesteps": ("simulate.timesteps", None, "largest T (reports 1, 2, 4, ..., T) or a comma-separated list of T"),
    "input": ("simulate.input", str, "analog (constant current) or poisson"),
    "max-samples": ("simulate.max_samples", int, "simulate at most this many test samples"),
    "max-memory": ("simulate.max_memory", _byte_size, "memory the simulation may use, e.g. 2GiB (default: a quarter of the RAM)"),
    "percentile": ("convert.percentile", float, "normalization percentile (100 = max)"),
    "quantize": ("simulate.quantize", _quantize, "also simulate the SNN with its weights quantized to these widths, "
                 "comma-separated, e.g. 8,4 (results.json snn.quantized; the report's quantization table)"),
}
FINETUNE_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "epochs": ("finetune.epochs", int, "passes over the (limited) training split (default 1)"),
    "lr": ("finetune.lr", float, "Adam learning rate (default 1e-4)"),
    "strength": ("finetune.strength", float, "price of one SynOp of the T-step inference in the loss (default 0)"),
    "train-limit": ("finetune.train_limit", int, "training samples per epoch (default: all)"),
    "slope": ("finetune.slope", float, "the arctan surrogate's alpha (default 2)"),
    "v0": ("convert.v0", float, "initial membrane potential, a fraction of the threshold in [0, 1) (default: the conversion's)"),
    "max-samples": ("simulate.max_samples", int, "simulate at most this many test samples"),
    "data-dir": ("data.data_dir", str, "folder with the dataset's files"),
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
          snnergy train --activation qcfs --levels 8 --out runs/qcfs          # trained thresholds
          snnergy train --activation qcfs --init-from runs/train --epochs 10 --out runs/ft  # from a ReLU run
          snnergy train --activation qcfs --levels 4 --distill runs/train --out runs/kd       # ReLU run as teacher
          snnergy train --tensorboard runs/tb/digits --out runs/digits && tensorboard --logdir runs/tb

        writes OUT/checkpoint/ (safetensors + JSON), OUT/results.json (with the per-epoch log,
        train.history), OUT/results.csv, OUT/config.json""",
    "compare": """\
        examples:
          snnergy compare                                   # digits, lenet: relu none/l1/hoyer/hoyer-square, qcfs L=4 none/synops
          snnergy compare --activations relu,qcfs --levels 4,8 --widths 0.25,0.5,1 \
                          --regularizers none,synops            # activations x levels x widths x regularizers
          snnergy compare --dataset fashion-mnist --model lenet \\
                          --regularizers none,l1,hoyer,hoyer-square --epochs 5 --out runs/fm
          snnergy compare --regularizers none,l1 --strengths 0.1,1 --timesteps 8,32,128 --input poisson
          snnergy compare --regularizers none,l1@0.1,hoyer-square@0.01,hoyer-square@0.03
          snnergy compare --activation qcfs --levels 8 --regularizers none,l1  # every configuration QCFS

        writes OUT/results.json, OUT/results.csv, OUT/report.md, OUT/plots/*.png, OUT/config.json,
        the sweep store OUT/sweep.sqlite with OUT/sweep.json (compare runs as a sweep: a killed
        compare resumes), and one checkpoint per configuration in OUT/runs/<label>/checkpoint (label:
        the activation when not relu, qcfs with its levels, w<width> when not 1, then
        <regularizer>-<strength>, e.g. qcfs4-w0.5-synops-7e-07)""",
    "convert": """\
        examples:
          snnergy convert runs/hs --percentile 99.9 --out runs/hs-snn
          snnergy convert runs/hs --percentile 100 --channelwise --reset zero --out runs/hs-max
          snnergy convert --model-file my_net.py:build --weights my_net.safetensors \\
                          --dataset fashion-mnist --out runs/mine

        RUN is a folder written by `snnergy train` (or its checkpoint/ subfolder); calibration data
        is drawn from the training split of the checkpoint's dataset. Instead of RUN, your own model:
        --model-file runs FILE.py and calls FACTORY() (with input_shape=, num_classes= if it takes
        them), --weights loads a safetensors file of its state_dict (nothing is unpickled) and
        calibration data come from --dataset. Writes OUT/snn.safetensors, OUT/snn.json and
        OUT/config.json""",
    "finetune": """\
        examples:
          snnergy train --out runs/train && snnergy finetune runs/train --timesteps 8 --out runs/ft8
          snnergy finetune runs/train --timesteps 8 --epochs 4 --lr 1e-4 --strength 3e-7 --v0 0.5 --out runs/ft8e
          snnergy finetune runs/hs-snn --timesteps 6 --train-limit 10000 --out runs/hs-ft6
          snnergy simulate runs/ft8 --timesteps 32                 # the simulator judges the result

        RUN is a training run (converted first with its saved config, as snnergy convert does) or a
        converted SNN folder. The SNN is unrolled for T steps (IF, its reset and v0) with the arctan
        surrogate gradient (Fang et al. 2021); its weights and one threshold per spiking layer are
        trained (Adam) on the readout's cross-entropy + strength x its SynOps per sample (exact
        fan-out). Writes OUT/snn.safetensors, OUT/snn.json (thresholds folded into the weights),
        OUT/config.json and OUT/results.json, and prints the simulator's accuracy and SynOps
        before and after, at T = 1, 2, 4, ..., T""",
    "export-nir": """\
        examples:
          snnergy export-nir runs/mine --out mine.nir
          snnergy export-nir runs/mine --for norse --out mine-norse.nir   # SumPool2d, batch-keeping Flatten
          python -c "import nir; print(nir.read('mine.nir').nodes.keys())"

        SNN is a folder written by `snnergy convert`. Writes a NIR graph (HDF5): Input, Conv2d /
        Affine / Linear with the normalization folded in, AvgPool2d / SumPool2d, Flatten, IF neurons
        (r = 1, v_threshold = 1, v_reset = 0, metadata snnergy_reset = subtract or zero: NIR's IF
        resets to v_reset, so readers that ignore the metadata reset to zero) and Output (the last
        layer's current each step; the prediction is the argmax of its sum). Needs the optional
        package nir: pip install 'snnergy[nir]'""",
    "quantize": """\
        examples:
          snnergy quantize runs/hs-snn --bits 8 --out runs/hs-int8
          snnergy quantize runs/hs-snn --bits 4 --per-channel --out runs/hs-int4c
          snnergy simulate runs/hs-int8 --timesteps 64

        SNN is a folder written by `snnergy convert`. Every weight (each layer's and shortcut's) is
        rounded to a signed BITS-bit grid: scale = max|w| / (2^(BITS-1) - 1) per layer (or per output
        channel), w_q = clamp(round(w / scale)) * scale (Jacob et al. 2018; Krishnamoorthi 2018);
        biases and thresholds stay float. Writes OUT/snn.safetensors, OUT/snn.json (its
        weight_quantization) and OUT/config.json (convert.weight_bits). The same at conversion:
        snnergy convert RUN --weight-bits 8 [--per-channel-weights]""",
    "hardware": """\
        examples:
          snnergy hardware runs/hs --profile loihi
          snnergy hardware runs/hs-snn --profile speck --out hs-speck.json

        RUN is a training run or a converted SNN folder. Each spiking layer and the readout is split
        over cores within the chip's published neurons, fan-in axons and synaptic memory per core
        (limits not published are not checked); prints cores per layer, the binding limit and
        whether the network fits one chip (docs/design.md, "Core mapping").""",
    "simulate": """\
        examples:
          snnergy simulate runs/hs-snn --timesteps 256              # reports T = 1, 2, 4, ..., 256
          snnergy simulate runs/hs-snn --timesteps 16,32,64 --input poisson --max-samples 1000
          snnergy simulate runs/hs-snn --quantize 8,4 --dnn runs/hs --out runs/hs-q  # + int8/int4, the DNN
          snnergy report runs/hs-q                 # report.md: quantized accuracy, cores, compute vs memory

        writes OUT/results.json and OUT/results.csv (OUT defaults to the SNN folder); the record holds
        the cores on every chip (snn.cores), with --quantize the quantized SNNs (snn.quantized) and with
        --dnn the DNN (dnn)""",
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
        accuracy vs SNN energy (over all configurations and per activation/width/regularizer family)
        and vs DNN effective MACs, the smallest t reaching the target, and which configuration
        (activation, levels, width, regularizer, strength) reaches it for the least energy""",
    "metrics": """\
        examples:
          snnergy metrics runs/train                                    # print NeuroBench-style JSON
          snnergy metrics runs/compare/runs/none-0 --format neurobench --out none-0.json

        RUN is a folder written by `snnergy train` or one configuration of a compare/sweep
        (OUT/runs/<id>, where they also write neurobench.json). Prints (and with --out writes) the
        run's results with NeuroBench 2.3's metric names and structure, per sample: Footprint,
        ParameterCount, ConnectionSparsity, ClassificationAccuracy, ActivationSparsity(ByLayer) and
        SynapticOperations {Effective_MACs, Effective_ACs, Dense}, for the DNN and for the SNN at its
        largest T, with units, the mapping from results.json and where the definitions differ
        (docs/neurobench.md).""",
    "profiles": """\
        examples:
          snnergy profiles          # every energy profile with its per-operation energies and source""",
}


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors exit with code 2 and one line, as ours do."""


def _add_config_options(parser: argparse.ArgumentParser, options: dict[str, tuple[str, Any, str]],
                        skip: Sequence[str] = ()) -> None:
    for flag, (path, kind, text) in options.items():
        if flag in skip:
            continue
        parser.add_argument(f"--{flag}", dest=path, type=kind or _timesteps, default=None, help=text)
    if options is TRAIN_OPTIONS:
        parser.add_argument("--channelwise-threshold", dest="model.channelwise_threshold", action="store_const",
                            const=True, default=None, help="one trained threshold per channel (qcfs, clip)")


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def _activations(text: str) -> list[str]:
    """argparse type of ``compare --activations``: names in :data:`~snnergy.config.ACTIVATION_NAMES`.

    Example:
        >>> _activations("relu,qcfs")
        ['relu', 'qcfs']
    """
    names = _names(text)
    unknown = [n for n in names if n not in ACTIVATION_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown activation '{unknown[0] if unknown else text}'; known: {', '.join(ACTIVATION_NAMES)}")
    return names


def _levels(text: str) -> list[int]:
    """argparse type of ``compare --levels``: comma-separated QCFS levels, integers >= 1.

    Example:
        >>> _levels("4,8")
        [4, 8]
    """
    try:
        values = [int(t) for t in _names(text)]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1 (QCFS levels L), got '{text}'")
    return values


def _widths(text: str) -> list[float]:
    """argparse type of ``compare --widths``: comma-separated width factors, finite and > 0.

    Example:
        >>> _widths("0.25,0.5,1")
        [0.25, 0.5, 1.0]
    """
    values = _floats(text)
    if not values or any(not (0 < v < float("inf")) for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated width factors > 0, got '{text}'")
    return values


def _timesteps(text: str) -> list[int]:
    """``"256"`` -> powers of two up to 256 (and 256, :func:`~snnergy.config.doubling_timesteps`);
    ``"16,32"`` -> that list (``simulate.timesteps`` checks it).

    Example:
        >>> _timesteps("20"), _timesteps("8,32")
        ([1, 2, 4, 8, 16, 20], [8, 32])
    """
    try:
        values = [int(t) for t in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or comma-separated integers, got '{text}'") from None
    if len(values) != 1:
        return values
    try:
        return list(doubling_timesteps(values[0]))
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


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
    train.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                       help="also log each epoch's losses, accuracies and per-layer sparsity to TensorBoard "
                            "event files in DIR (pip install 'snnergy[tensorboard]')")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    compare = command("compare", "the main job: train each regularizer, convert, simulate, report")
    compare.add_argument("--config", type=Path, help="TOML config file (named options override it)")
    _add_config_options(compare, TRAIN_OPTIONS, skip=("levels",))
    _add_config_options(compare, SNN_OPTIONS)
    _add_config_options(compare, COMMON_OPTIONS)
    compare.add_argument("--regularizers", type=_names, default=None, help="comma-separated names, or name@strength (default none,l1,hoyer,hoyer-square)")
    compare.add_argument("--strengths", type=_floats, default=None, help="comma-separated strengths for every regularizer but none (default: each one's grid)")
    compare.add_argument("--activations", type=_activations, default=None, help=f"comma-separated activations crossed with the regularizers ({', '.join(ACTIVATION_NAMES)}; default relu,qcfs when no regularizers are given, else --activation's)")
    compare.add_argument("--levels", type=_levels, default=None, help="comma-separated QCFS levels L crossed with qcfs (default 4 in the default comparison, else model.levels, 8)")
    compare.add_argument("--widths", type=_widths, default=None, help="comma-separated model width factors crossed with everything (default --width, 1)")
    compare.add_argument("--profile", default="cmos45-fp32", help="energy profile of the report and plots")
    compare.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder (default runs/compare)")
    compare.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                         help="each configuration's per-epoch training log as TensorBoard event files in "
                              "DIR/<run folder> (pip install 'snnergy[tensorboard]')")
    compare.add_argument("--quiet", action="store_true", help="no progress output")

    convert = command("convert", "convert a trained DNN checkpoint to a spiking network")
    convert.add_argument("run", type=Path, nargs="?", default=None, help="folder written by snnergy train (or use --model-file)")
    convert.add_argument("--model-file", metavar="FILE.py:FACTORY", default=None, help="your own model: a Python file and the function in it that returns the nn.Module")
    convert.add_argument("--weights", type=Path, default=None, help="safetensors weights of --model-file's model (its state_dict)")
    convert.add_argument("--dataset", dest="data.dataset", default=None, help="calibration dataset of --model-file (default digits)")
    convert.add_argument("--percentile", dest="convert.percentile", type=float, default=None, help="normalization percentile of non-zero activations (100 = max; default 99.9)")
    convert.add_argument("--channelwise", dest="convert.channelwise", action="store_const", const=True, default=None, help="one scale per channel")
    convert.add_argument("--reset", dest="convert.reset", choices=RESETS, default=None, help="neuron reset (default subtract)")
    convert.add_argument("--v0", dest="convert.v0", type=float, default=None, help="initial membrane potential, a fraction of the threshold in [0, 1) (default 1/2 with trained thresholds qcfs/clip, else 0)")
    convert.add_argument("--weight-bits", dest="convert.weight_bits", type=int, default=None, help="quantize the SNN's weights to this many bits, 2-16 (symmetric, per layer; default: float32)")
    convert.add_argument("--per-channel-weights", dest="convert.weight_per_channel", action="store_const", const=True, default=None, help="with --weight-bits: one quantization scale per output channel")
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
    simulate.add_argument("--dnn", type=Path, default=None, metavar="RUN", help="the snnergy train folder the SNN was "
                          "converted from: its DNN is measured on the same test split and recorded beside the SNN, "
                          "so that `snnergy report OUT` compares the two (compute vs memory energy included)")
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
    sweep.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                       help="each configuration's per-epoch training log as TensorBoard event files in "
                            "DIR/<run folder> (pip install 'snnergy[tensorboard]')")
    sweep.add_argument("--quiet", action="store_true", help="no progress output")

    report = command("report", "write report.md and plots of a sweep (or compare) folder from its stored results")
    report.add_argument("out", type=Path, help="folder written by snnergy sweep")
    report.add_argument("--profile", default="cmos45-fp32", help="energy profile of every energy column")
    report.add_argument("--target-drop", type=float, default=0.01, help="target: unregularized DNN accuracy minus this (default 0.01)")
    report.add_argument("--target-accuracy", type=float, default=None, help="an absolute target accuracy instead")

    finetune = command("finetune", "fine-tune a converted SNN through its IF neurons for T steps (surrogate gradient, SynOps penalty)")
    finetune.add_argument("run", type=Path, help="folder written by snnergy train (or a compare's runs/<id>), or by snnergy convert")
    finetune.add_argument("--timesteps", dest="finetune.timesteps", type=int, required=True, help="T of the unrolled network (>= 1); the simulation then reports 1, 2, 4, ..., T")
    _add_config_options(finetune, FINETUNE_OPTIONS)
    _add_config_options(finetune, COMMON_OPTIONS)
    finetune.add_argument("--profile", default="cmos45-fp32", help="energy profile of the printed table")
    finetune.add_argument("--out", type=Path, required=True, help="output folder for the fine-tuned SNN")
    finetune.add_argument("--quiet", action="store_true", help="no progress bars")

    export = command("export-nir", "write a converted SNN as a NIR graph (Neuromorphic Intermediate Representation)")
    export.add_argument("snn", type=Path, help="folder written by snnergy convert")
    export.add_argument("--out", type=Path, required=True, help="the .nir file to write")
    export.add_argument("--for", dest="reader", choices=("nir", "sinabs", "norse", "snntorch"), default=None,
                        help="write for this reader (default nir: snnergy's subset); sinabs, norse, snntorch: "
                             "average pooling as SumPool2d with 1/k^2 folded into the next layer; norse, snntorch: "
                             "also Flatten(start_dim=1), keeping the batch")
    export.add_argument("--pooling", choices=("avg", "sum"), default=None, help="average pooling as AvgPool2d (avg) or "
                        "SumPool2d with 1/k^2 folded into the next layer (sum); overrides --for")

    quantize = command("quantize", "quantize the weights of a converted SNN (symmetric, per layer or per channel)")
    quantize.add_argument("snn", type=Path, help="folder written by snnergy convert")
    quantize.add_argument("--bits", type=int, required=True, help="weight width, an integer in [2, 16]")
    quantize.add_argument("--per-channel", action="store_true", help="one scale per output channel (default: one per layer)")
    quantize.add_argument("--out", type=Path, required=True, help="output folder for the quantized SNN")
    hardware = command("hardware", "core-mapping estimate: cores per layer on a neuromorphic chip, and whether it fits")
    hardware.add_argument("run", type=Path, help="folder written by snnergy train (or a compare's runs/<id>), or by snnergy convert")
    hardware.add_argument("--profile", required=True, help="chip with published core limits: loihi, loihi2, spinnaker2, speck")
    hardware.add_argument("--out", type=Path, default=None, help="also write the mapping to this JSON file")

    metrics = command("metrics", "a run's results as NeuroBench metrics (JSON): footprint, sparsity, MACs/ACs, accuracy")
    metrics.add_argument("run", type=Path, help="folder written by snnergy train, or a compare/sweep OUT/runs/<id>")
    metrics.add_argument("--format", default="neurobench", help="output format (default and only one: neurobench)")
    metrics.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")

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
