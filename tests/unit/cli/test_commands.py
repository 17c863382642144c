from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from snnergy.cli import main


def test_train_writes_checkpoint_and_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(
        ["train", "--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--epochs", "1",
         "--regularizer", "l1", "--strength", "0.1", "--device", "cpu", "--quiet",
         "--train.lr", "0.01", "--out", str(out)]
    )
    assert code == 0
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 1
    record = records[0]
    assert record["config"]["regularizer"] == "l1" and record["config"]["strength"] == 0.1
    assert record["config"]["resolved"]["train"]["lr"] == 0.01
    dnn = record["dnn"]
    for key in ("accuracy", "sparsity", "macs_nominal", "macs_dense", "macs_effective", "energy_j"):
        assert key in dnn
    assert dnn["macs_effective"] <= dnn["macs_dense"] <= dnn["macs_nominal"]
    assert "cmos45-fp32" in dnn["energy_j"]
    assert (out / "checkpoint" / "model.safetensors").is_file()
    assert (out / "results.csv").read_text().startswith("dataset,")
    assert json.loads((out / "config.json").read_text())["train"]["regularizer"] == "l1"
    printed = capsys.readouterr().out
    assert "test_accuracy" in printed and "macs_effective" in printed


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["train", "--regularizer", "l3"], "unknown regularizer 'l3'"),
        (["train", "--train.lrr", "1"], "unknown config key 'train.lrr'"),
        (["train", "--bogus"], "unrecognized argument '--bogus'"),
        (["train", "--config", "/nonexistent.toml"], "config file not found"),
        (["train", "--dataset", "mnist", "--data-dir", "/nonexistent"], "train-images-idx3-ubyte"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SNNERGY_DATA", str(tmp_path))
    assert main([*argv, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("snnergy: error:") and message in err
    assert "Traceback" not in err


def test_profiles_lists_every_profile(capsys: pytest.CaptureFixture[str]) -> None:
    from snnergy.energy import ENERGY_PROFILES

    assert main(["profiles"]) == 0
    printed = capsys.readouterr().out
    for name in ENERGY_PROFILES.names():
        assert name in printed


def test_python_dash_m_help() -> None:
    done = subprocess.run([sys.executable, "-m", "snnergy", "train", "--help"], capture_output=True, text=True, check=True)
    assert "examples:" in done.stdout and "--regularizer" in done.stdout


def test_compare_checks_names_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--profile", "tpu", "--out", str(tmp_path)]) == 2
    assert "unknown energy profile 'tpu'" in capsys.readouterr().err
    assert main(["compare", "--regularizers", "none,l3", "--out", str(tmp_path)]) == 2
    assert "unknown regularizer 'l3'" in capsys.readouterr().err
    assert main(["compare", "--regularizers", "l1@much", "--out", str(tmp_path)]) == 2
    assert "expected name@number" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_truncated_dataset_file_exits_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import struct

    import numpy as np

    def idx(array: np.ndarray, magic: int) -> bytes:
        return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()

    images, labels = np.zeros((4, 5, 5), np.uint8), np.arange(4, dtype=np.uint8)
    for split in ("train", "t10k"):
        (tmp_path / f"{split}-images-idx3-ubyte").write_bytes(idx(images, 0x803))
        (tmp_path / f"{split}-labels-idx1-ubyte").write_bytes(idx(labels, 0x801))
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-7])  # 4*5*5 = 100 data bytes expected, 93 left
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--quiet", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "truncated" in err and "Traceback" not in err


def test_train_with_qcfs_from_a_relu_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file

    common = ["--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--epochs", "1", "--device", "cpu", "--quiet"]
    assert main(["train", *common, "--out", str(tmp_path / "relu")]) == 0
    code = main(["train", *common, "--activation", "qcfs", "--levels", "4", "--channelwise-threshold",
                 "--init-from", str(tmp_path / "relu"), "--out", str(tmp_path / "qcfs")])
    assert code == 0
    resolved = json.loads((tmp_path / "qcfs" / "results.json").read_text())[0]["config"]["resolved"]
    assert resolved["model"]["activation"] == "qcfs" and resolved["model"]["levels"] == 4
    assert resolved["model"]["channelwise_threshold"] is True
    assert resolved["train"]["init_from"] == str((tmp_path / "relu").resolve())
    weights = load_file(str(tmp_path / "qcfs" / "checkpoint" / "model.safetensors"))
    assert weights["relu1.threshold"].shape == (16,)  # tiny-mlp: 16 hidden units, one theta each
    capsys.readouterr()
    # a folder without a checkpoint: one line naming it
    assert main(["train", *common, "--activation", "qcfs", "--init-from", str(tmp_path),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("snnergy: error:") and "train.init_from" in err and str(tmp_path) in err
    assert "Traceback" not in err
    assert main(["train", *common, "--activation", "gelu", "--out", str(tmp_path / "o")]) == 2
    assert "model.activation: unknown activation 'gelu'" in capsys.readouterr().err


def test_train_distills_from_a_run_and_compare_takes_the_same_options(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from snnergy.cli import build_parser, resolve_config

    common = ["--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--epochs", "1", "--device", "cpu", "--quiet"]
    assert main(["train", *common, "--out", str(tmp_path / "relu")]) == 0
    capsys.readouterr()
    assert main(["train", *common, "--activation", "qcfs", "--distill", str(tmp_path / "relu"),
                 "--distill-temperature", "2", "--distill-weight", "0.7", "--out", str(tmp_path / "kd")]) == 0
    resolved = json.loads((tmp_path / "kd" / "results.json").read_text())[0]["config"]["resolved"]["train"]
    assert resolved["distill"] == str((tmp_path / "relu").resolve())
    assert (resolved["distill_temperature"], resolved["distill_weight"]) == (2.0, 0.7)
    header = capsys.readouterr().out.splitlines()[0]
    assert "| distillation |" in header and "| penalty |" in header  # the per-epoch log shows the term
    # compare accepts the same options (every configuration distils from the same teacher)
    parser = build_parser()
    args, extra = parser.parse_known_args(["compare", "--distill", "relu", "--distill-weight", "0.25"])
    train = resolve_config(args, extra).train
    assert train.distill == str(Path("relu").resolve()) and train.distill_weight == 0.25
    # bad values: one line each, no traceback
    for flag, value, message in (("--distill-temperature", "0", "train.distill_temperature must be a finite number > 0"),
                                 ("--distill-weight", "1.5", "train.distill_weight must be a number in [0, 1]"),
                                 ("--distill", str(tmp_path / "none"), "train.distill: ")):
        assert main(["train", *common, "--distill", str(tmp_path / "relu"), flag, value,
                     "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("snnergy: error:") and message in err and "Traceback" not in err


def test_convert_v0_option_reaches_the_snn_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--epochs", "1",
                 "--device", "cpu", "--quiet", "--out", str(run)]) == 0
    assert main(["convert", str(run), "--v0", "0.25", "--device", "cpu", "--out", str(tmp_path / "snn")]) == 0
    assert json.loads((tmp_path / "snn" / "snn.json").read_text())["neuron"]["v0"] == 0.25
    assert main(["convert", str(run), "--device", "cpu", "--out", str(tmp_path / "snn0")]) == 0
    assert json.loads((tmp_path / "snn0" / "snn.json").read_text())["neuron"]["v0"] == 0.0  # ReLU: 0
    capsys.readouterr()
    assert main(["convert", str(run), "--v0", "1", "--out", str(tmp_path / "bad")]) == 2
    assert "convert.v0 must be a fraction of the threshold in [0, 1)" in capsys.readouterr().err


def test_convert_weight_bits_and_quantize_write_snns_that_simulate_runs(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--epochs", "1",
                 "--device", "cpu", "--quiet", "--out", str(run)]) == 0
    assert main(["convert", str(run), "--weight-bits", "8", "--per-channel-weights", "--device", "cpu",
                 "--out", str(tmp_path / "int8")]) == 0
    assert json.loads((tmp_path / "int8" / "snn.json").read_text())["weight_quantization"] == {"bits": 8, "per_channel": True}
    assert main(["convert", str(run), "--device", "cpu", "--out", str(tmp_path / "fp32")]) == 0
    assert main(["quantize", str(tmp_path / "fp32"), "--bits", "4", "--out", str(tmp_path / "int4")]) == 0
    assert json.loads((tmp_path / "int4" / "snn.json").read_text())["weight_quantization"] == {"bits": 4, "per_channel": False}
    assert main(["simulate", str(tmp_path / "int4"), "--timesteps", "4", "--quiet"]) == 0
    [record] = json.loads((tmp_path / "int4" / "results.json").read_text())
    assert record["config"]["resolved"]["convert"]["weight_bits"] == 4  # results.json records the width
    capsys.readouterr()
    assert main(["quantize", str(tmp_path / "fp32"), "--bits", "1", "--out", str(tmp_path / "bad")]) == 2
    assert "bits must be an integer in [2, 16], got 1" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path / "int4"), "--bits", "8", "--out", str(tmp_path / "bad")]) == 2
    assert "already quantized to 4 bits" in capsys.readouterr().err


def test_finetune_writes_an_snn_that_simulate_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, out = tmp_path / "run", tmp_path / "ft"
    assert main(["train", "--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--epochs", "1",
                 "--device", "cpu", "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["finetune", str(run), "--timesteps", "4", "--epochs", "2", "--lr", "1e-3", "--strength", "1e-4",
                 "--train-limit", "64", "--v0", "0.5", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy before" in printed and "SynOps after" in printed and "thresholds" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["finetune"] == {"timesteps": 4, "epochs": 2, "lr": 1e-3, "strength": 1e-4, "train_limit": 64,
                                  "slope": 2.0}
    assert json.loads((out / "snn.json").read_text())["neuron"]["v0"] == 0.5
    assert main(["simulate", str(out), "--timesteps", "4", "--quiet", "--out", str(tmp_path / "sim")]) == 0
    [tuned] = json.loads((out / "results.json").read_text())
    [judged] = json.loads((tmp_path / "sim" / "results.json").read_text())
    assert judged["snn"]["accuracy"] == tuned["snn"]["accuracy"]  # the simulator's figures, both times


@pytest.mark.parametrize("make,argv,message", [
    (None, ["--timesteps", "4"], "no such folder"),
    ("empty", ["--timesteps", "4"], "neither a converted SNN (snn.json"),
    ("run", ["--timesteps", "0"], "finetune.timesteps must be >= 1"),
    ("run", ["--timesteps", "4", "--epochs", "0"], "finetune.epochs must be an integer >= 1"),
    ("run", [], "the following arguments are required: --timesteps"),
])
def test_finetune_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str | None,
                                                  argv: list[str], message: str) -> None:
    folder = tmp_path / "x"
    if make == "empty":
        folder.mkdir()
    elif make == "run":
        assert main(["train", "--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--epochs", "1",
                     "--device", "cpu", "--quiet", "--out", str(folder)]) == 0
    capsys.readouterr()
    try:
        code = main(["finetune", str(folder), *argv, "--device", "cpu", "--quiet", "--out", str(tmp_path / "o")])
    except SystemExit as exit:  # argparse's own usage errors
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--epochs", "1"],
        ["compare", "--regularizers", "none", "--epochs", "1"],
        ["convert", "RUN"],
        ["simulate", "RUN"],
        ["sweep", "SWEEP"],
    ],
)
def test_out_that_is_a_file_is_one_clear_error(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # issue 15: `snnergy train --out FILE` ended in a traceback (mkdir on a file)
    taken = tmp_path / "taken.txt"
    taken.write_text("not a folder")
    (tmp_path / "sweep.toml").write_text('[base]\ndata.dataset = "synthetic-blobs"\nmodel.name = "tiny-mlp"\n')
    argv = [a.replace("RUN", str(tmp_path)).replace("SWEEP", str(tmp_path / "sweep.toml")) for a in argv]
    for out in (taken, taken / "sub"):
        assert main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("snnergy: error: --out") and "is a file, not a folder" in err and "Traceback" not in err
    assert taken.read_text() == "not a folder"


def test_report_of_a_file_and_export_to_a_folder_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "taken.txt"
    taken.write_text("x")
    assert main(["report", str(taken)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["export-nir", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "is a folder: give the .nir file to write" in capsys.readouterr().err


def test_convert_and_simulate_refuse_another_runs_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # issue 15: converting into a folder of another run overwrote the SNN but kept its old
    # results.json/results.csv, which then described a different network
    run = tmp_path / "run"
    common = ["--device", "cpu"]
    assert main(["train", "--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--epochs", "1", "--quiet",
                 *common, "--out", str(run)]) == 0
    snn = tmp_path / "snn"
    assert main(["convert", str(run), *common, "--out", str(snn)]) == 0
    assert main(["simulate", str(snn), "--timesteps", "4", "--quiet", *common]) == 0
    spec = (snn / "snn.json").read_text()
    results = (snn / "results.json").read_text()
    capsys.readouterr()
    # another conversion (percentile 100) into the simulated folder: refused, nothing written
    assert main(["convert", str(run), "--percentile", "100", *common, "--out", str(snn)]) == 2
    err = capsys.readouterr().err
    assert "holds the results of another run" in err and "convert.percentile: 99.9 stored, 100.0 now" in err
    assert (snn / "snn.json").read_text() == spec and (snn / "results.json").read_text() == results
    # the same conversion again, and the same network simulated with other T: allowed
    assert main(["convert", str(run), *common, "--out", str(snn)]) == 0
    assert main(["simulate", str(snn), "--timesteps", "2", "--quiet", *common]) == 0
    # simulating into the folder of another network: refused
    other = tmp_path / "snn100"
    assert main(["convert", str(run), "--percentile", "100", *common, "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["simulate", str(snn), "--timesteps", "2", "--quiet", *common, "--out", str(other)]) == 2
    assert "holds the results of another run (snn.json" in capsys.readouterr().err
    assert not (other / "results.json").exists()
    # a folder with results but no config.json saying whose: refused
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "results.csv").write_text("dataset\n")
    assert main(["convert", str(run), *common, "--out", str(stray)]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_compare_checks_the_memory_budget_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # issue 15: --max-memory 1KB trained every configuration to the end, then failed each at simulation
    out = tmp_path / "c"
    assert main(["compare", "--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--regularizers", "none,l1@0.1",
                 "--epochs", "1", "--max-memory", "1KB", "--device", "cpu", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "over half of simulate.max_memory = 1.0 KiB" in err and "checked before training" in err
    assert not (out / "runs").exists() and not (out / "results.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["--widths", "0"], "argument --widths: expected comma-separated width factors > 0, got '0'"),
    (["--widths", "0.5,nan"], "argument --widths: expected comma-separated width factors > 0"),
    (["--activations", "foo"], "argument --activations: unknown activation 'foo'; known: relu, qcfs, clip"),
    (["--levels", "0"], "argument --levels: expected comma-separated integers >= 1 (QCFS levels L), got '0'"),
    (["--levels", "4,x"], "argument --levels: expected comma-separated integers >= 1"),
])
def test_compare_model_axes_are_parsed(argv: list[str], message: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_compare_levels_need_qcfs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # checked before any training: one line, exit 2
    assert main(["compare", "--activations", "relu", "--levels", "4", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("snnergy: error: levels [4] apply to qcfs only") and "Traceback" not in err
    from snnergy.cli.parser import build_parser

    args = build_parser().parse_args(["compare", "--activations", "relu,qcfs", "--levels", "4,8", "--widths", "0.25,0.5,1"])
    assert (args.activations, args.levels, args.widths) == (["relu", "qcfs"], [4, 8], [0.25, 0.5, 1.0])


def test_hardware_prints_the_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--epochs", "1",
                 "--device", "cpu", "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    out = tmp_path / "hw" / "loihi.json"
    assert main(["hardware", str(run), "--profile", "loihi", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # tiny-mlp: fc1 (16 neurons) and fc2 (4) take one Loihi core each: 2 of 128.
    assert "| fc1 | linear | 16 |" in printed and "2 of 128 cores on loihi: fits one chip" in printed
    assert json.loads(out.read_text())["total_cores"] == 2
    assert main(["hardware", str(run), "--profile", "cmos45-fp32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("snnergy: error:") and "loihi, loihi2, spinnaker2, speck" in err
    assert main(["hardware", str(run), "--profile", "loihi", "--out", str(tmp_path)]) == 2
    assert "is a folder: give the .json file" in capsys.readouterr().err
