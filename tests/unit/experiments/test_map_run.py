"""run_plan / map_run: a training run and its converted SNN map alike; bad folders are one error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snnergy.cli import main
from snnergy.errors import CheckpointError, ConfigError
from snnergy.experiments import map_run, run_plan


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hw")
    run, snn = root / "run", root / "snn"
    assert main(["train", "--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--epochs", "1",
                 "--device", "cpu", "--quiet", "--out", str(run)]) == 0
    assert main(["convert", str(run), "--device", "cpu", "--out", str(snn)]) == 0
    return run, snn


def test_run_and_converted_snn_map_alike(runs: tuple[Path, Path], tmp_path: Path) -> None:
    run, snn = runs
    # tiny-mlp on synthetic blobs (1x8x8, 4 classes): fc1 64 -> 16, fc2 16 -> 4. On Loihi each
    # stage fits one core (16 <= 1,024 neurons, fan-in 64 <= 4,096, 1,024 x 8 bits <= 128 KB).
    from_run, from_snn = map_run(run, "loihi"), map_run(snn, "loihi", tmp_path / "m.json")
    assert [(m.name, m.neurons, m.connections, m.fan_in, m.cores) for m in from_run.layers] == \
        [("fc1", 16, 1024, 64, 1), ("fc2", 4, 64, 16, 1)]
    assert from_run.layers == from_snn.layers and from_run.total_cores == 2 and from_run.fits
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["total_cores"] == 2 and written["chip"]["name"] == "loihi" and written["fits"] is True
    assert [layer["binding"] for layer in written["layers"]] == ["none", "none"]
    assert [s.name for s in run_plan(snn).stages] == ["fc1", "fc2"]


def test_bad_folder_and_chip_are_one_error(runs: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such folder"):
        run_plan(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="neither a converted SNN"):
        run_plan(tmp_path)
    with pytest.raises(ConfigError, match="chips with published core limits: loihi"):
        map_run(runs[0], "cmos45-fp32")
