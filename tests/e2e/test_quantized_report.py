"""End to end: `compare --quantize` and `simulate --quantize --dnn`, their results.json fields and the
report's quantization, core-mapping and compute-vs-memory tables, on a tiny net."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snnergy.cli import main
from snnergy.reporting.schema import check_records

# tiny-mlp at width 80: flatten - fc1 (64 -> 16 x 80 = 1,280) - relu - fc2 (1,280 -> 4), on synthetic-blobs.
TINY = ["--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--width", "80", "--epochs", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("qreport")
    argv = ["compare", *TINY, "--regularizers", "none", "--timesteps", "4,16", "--quiet"]
    assert main([*argv, "--quantize", "8,4", "--out", str(root / "q")]) == 0
    assert main([*argv, "--out", str(root / "plain")]) == 0
    return root / "q", root / "plain"


def test_compare_records_the_quantized_variants(compared: tuple[Path, Path]) -> None:
    quantized, plain = compared
    [record] = check_records(json.loads((quantized / "results.json").read_text()), "q")
    [default] = check_records(json.loads((plain / "results.json").read_text()), "plain")
    snn = record["snn"]
    assert record["config"]["resolved"]["simulate"]["quantize"] == [8, 4]
    assert list(snn["quantized"]) == ["8", "4"]
    for bits, variant in snn["quantized"].items():
        assert variant["bits"] == int(bits) and variant["per_channel"] is False
        assert variant["timesteps"] == [4, 16] and len(variant["accuracy"]) == 2
        assert variant["curve"]["timesteps"] == list(range(1, 17)) and len(variant["curve"]["accuracy"]) == 16
        assert set(variant["energy_j"]) == set(snn["energy_j"])
    # The default is unchanged: no quantized part, and the float32 SNN's figures are the same either way.
    assert "quantized" not in default["snn"] and default["config"]["resolved"]["simulate"]["quantize"] == []
    for key in ("accuracy", "synops", "curve"):
        assert default["snn"][key] == snn[key]


def test_compare_records_cores_by_hand(compared: tuple[Path, Path]) -> None:
    # loihi: fc1 1,280 neurons > 1,024 per core -> ceil(1,280 / 1,024) = 2 cores (neurons bind; fan-in 64,
    #   1,280 x 64 x 8 bits = 655,360 <= 1,048,576 alone need 1); fc2 4 neurons reading 1,280 <= 4,096,
    #   4 x 1,280 x 8 = 40,960 bits: 1 core. Total 3 of 128: fits.
    # loihi2 (8,192 neurons/core), spinnaker2 (655,360 bits <= its 1,048,576), speck (a core per layer): 1 + 1.
    [record] = json.loads((compared[0] / "results.json").read_text())
    cores = record["snn"]["cores"]
    assert [(m["name"], m["cores"], m["binding"]) for m in cores["loihi"]["layers"]] == [
        ("fc1", 2, "neurons"), ("fc2", 1, "none")]
    assert {chip: (c["total_cores"], c["fits"]) for chip, c in cores.items()} == {
        "loihi": (3, True), "loihi2": (2, True), "spinnaker2": (2, True), "speck": (2, True)}
    report = (compared[0] / "report.md").read_text()
    assert "| relu w80 | 3/128 fits; most: fc1 (neurons) | 2/128 fits (one core per stage) |" in report
    assert "| relu w80 | fc1 | 2 (neurons) | 1 | 1 | 1 |" in report
    assert "## Weight quantization" in report and "int4 acc at iso-T" in report
    assert "## Weight quantization" not in (compared[1] / "report.md").read_text()


def test_simulate_quantize_with_the_dnn_then_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, snn, out = tmp_path / "run", tmp_path / "snn", tmp_path / "q"
    assert main(["train", *TINY, "--quiet", "--out", str(run)]) == 0
    assert main(["convert", str(run), "--out", str(snn)]) == 0
    assert main(["simulate", str(snn), "--timesteps", "4,8", "--quantize", "4", "--dnn", str(run), "--quiet",
                 "--profile", "cmos45-fp32-sram", "--out", str(out)]) == 0
    [record] = check_records(json.loads((out / "results.json").read_text()), "q")
    assert list(record["snn"]["quantized"]) == ["4"] and record["snn"]["cores"]["loihi"]["total_cores"] == 3
    assert set(record["dnn"]["energy_breakdown_j"]["cmos45-fp32-sram"]) == {"compute", "memory"}
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "Compute vs memory on `cmos45-fp32-sram`" in report and "| relu w80 none | " in report
    assert "### Weight quantization" in report and "### Core mapping" in report
    capsys.readouterr()
    # A folder of another network is refused before simulating.
    other = tmp_path / "other"
    assert main(["train", *TINY[:-4], "--epochs", "1", "--device", "cpu", "--quiet", "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["simulate", str(snn), "--dnn", str(other), "--quiet", "--out", str(tmp_path / "x")]) == 2
    assert "--dnn" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.parametrize("value", ["8,x", "8,1", ""])
def test_bad_quantize_option_exits_2_with_one_line(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error, before any work
        main(["compare", *TINY, "--quantize", value, "--quiet", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --quantize: expected comma-separated weight widths, integers in [2, 16] (e.g. 8,4), got '{value}'" in err
