"""End to end: a user's own model file and safetensors weights -> convert -> simulate -> export-nir."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from snnergy.cli import main
from snnergy.interop import load_model_file
from snnergy.simulation import load_snn

MODEL_FILE = '''
from collections import OrderedDict
from torch import nn


def build(num_classes=10):
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.AvgPool2d(2)),
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(8 * 4 * 4, 32)), ("relu2", nn.ReLU()),
        ("fc2", nn.Linear(32, num_classes)),
    ]))


HIDDEN = 32
'''


@pytest.fixture()
def user_model(tmp_path: Path) -> tuple[Path, Path]:
    """``my_net.py`` and weights drawn under seed 123 (a fresh factory call draws others)."""
    source = tmp_path / "my_net.py"
    source.write_text(MODEL_FILE)
    torch.manual_seed(123)
    model = load_model_file(f"{source}:build")
    weights = tmp_path / "my_net.safetensors"
    save_file(model.state_dict(), str(weights))
    return source, weights


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_model_file_converts_simulates_and_exports(tmp_path: Path, user_model: tuple[Path, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    source, weights = user_model
    out = tmp_path / "mine"
    code, text, _ = run(["convert", "--model-file", f"{source}:build", "--weights", str(weights),
                         "--dataset", "digits", "--device", "cpu", "--out", str(out)], capsys)
    assert code == 0, text
    assert "converted 3 layers" in text
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["name"] == f"{source}:build" and config["data"]["dataset"] == "digits"
    # the SNN's rate model reproduces the logits of the model with the *saved* weights
    snn = load_snn(out)
    model = load_model_file(f"{source}:build", weights)
    x = torch.rand(16, 1, 8, 8)
    assert torch.allclose(snn(x), model(x), atol=1e-4)

    code, text, _ = run(["simulate", str(out), "--timesteps", "4,16", "--max-samples", "40", "--device", "cpu",
                         "--quiet"], capsys)
    assert code == 0, text
    record = json.loads((out / "results.json").read_text())[0]
    assert record["config"]["model"] == f"{source}:build" and record["snn"]["timesteps"] == [4, 16]
    assert record["snn"]["samples"] == 40

    nir = pytest.importorskip("nir", reason="the optional package nir is not installed")
    code, text, _ = run(["export-nir", str(out), "--out", str(tmp_path / "mine.nir")], capsys)
    assert code == 0 and "wrote" in text
    graph = nir.read(tmp_path / "mine.nir")
    assert {"conv1", "relu1", "fc1", "relu2", "fc2", "input", "output"} <= set(graph.nodes)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing-file", "model file '.*nope.py' not found"),
        ("missing-factory", "defines no 'make'; functions and classes defined there: build"),
        ("no-colon", "must be given as FILE.py:FACTORY"),
        ("wrong-keys", r"weights do not match the model \(missing: \['conv1.bias'"),
        ("wrong-shape", "tensor 'fc2.weight' has shape \\(3, 32\\), the model expects \\(10, 32\\)"),
        ("pickle", "safetensors files only \\(nothing is unpickled\\)"),
        ("corrupt", "not a valid safetensors file"),
        ("no-run", "give either RUN"),
        ("weights-with-run", "--weights goes with --model-file"),
    ],
)
def test_model_file_errors_are_one_line(case: str, expected: str, tmp_path: Path, user_model: tuple[Path, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    source, weights = user_model
    spec, argv_weights = f"{source}:build", str(weights)
    tensors = load_model_file(spec).state_dict()
    if case == "missing-file":
        spec = f"{tmp_path}/nope.py:build"
    elif case == "missing-factory":
        spec = f"{source}:make"
    elif case == "no-colon":
        spec = str(source)
    elif case == "wrong-keys":
        save_file({k: v for k, v in tensors.items() if k != "conv1.bias"}, str(tmp_path / "w.safetensors"))
        argv_weights = str(tmp_path / "w.safetensors")
    elif case == "wrong-shape":
        save_file({**tensors, "fc2.weight": torch.zeros(3, 32)}, str(tmp_path / "w.safetensors"))
        argv_weights = str(tmp_path / "w.safetensors")
    elif case == "pickle":
        argv_weights = str(tmp_path / "w.pt")
    elif case == "corrupt":
        (tmp_path / "w.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
        argv_weights = str(tmp_path / "w.safetensors")
    argv = ["convert", "--model-file", spec, "--weights", argv_weights, "--dataset", "digits", "--device", "cpu",
            "--out", str(tmp_path / "out")]
    if case == "no-run":
        argv = ["convert", "--out", str(tmp_path / "out")]
    elif case == "weights-with-run":
        argv = ["convert", str(tmp_path), "--weights", argv_weights, "--out", str(tmp_path / "out")]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.startswith("snnergy: error: ") and err.count("\n") == 1
    assert re.search(expected, err), err
    assert not (tmp_path / "out").exists()


def test_a_failing_model_file_and_export_of_a_non_snn_folder(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nraise RuntimeError('no GPU here')\n")
    code, _, err = run(["convert", "--model-file", f"{broken}:build", "--weights", str(tmp_path / "w.safetensors"),
                        "--dataset", "digits", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "failed to run: RuntimeError: no GPU here" in err
    not_a_module = tmp_path / "const.py"
    not_a_module.write_text("def build():\n    return 42\n")
    code, _, err = run(["convert", "--model-file", f"{not_a_module}:build", "--weights", str(tmp_path / "w.safetensors"),
                        "--dataset", "digits", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "returned a int, not a torch nn.Module" in err
    code, _, err = run(["export-nir", str(tmp_path), "--out", str(tmp_path / "x.nir")], capsys)
    assert code == 2 and "no converted network here (snn.json); run `snnergy convert` first" in err
