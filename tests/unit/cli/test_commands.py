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
