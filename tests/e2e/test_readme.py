"""The README's quick start runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_quick_start_runs(capsys) -> None:
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert code, "the quick start has a python block"
    namespace: dict = {}
    exec(compile(code[0], str(README), "exec"), namespace)  # noqa: S102 - our own README
    dnn, result = namespace["dnn"], namespace["result"]
    assert dnn.accuracy > 0.9
    assert result.timesteps == [16, 32, 64, 128] and len(result.synops) == 4
    assert "loihi" in result.energy_j
    assert capsys.readouterr().out  # it printed its results


def test_quick_start_own_model_block_runs(tmp_path, monkeypatch) -> None:
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from snnergy import DataConfig, load_dataset

    class MyNet(nn.Module):  # functional ReLU, torch.flatten and a residual addition
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8 * 8 * 8, 10)

        def forward(self, x):
            h = F.relu(self.conv1(x))
            h = F.relu(self.conv2(h) + h)
            return self.fc(torch.flatten(h, 1))

    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(code) >= 2, "the quick start shows the own-model calls"
    splits = load_dataset(DataConfig(dataset="digits"))
    torch.manual_seed(0)
    namespace = {
        "snnergy": __import__("snnergy"),
        "my_model": MyNet().eval(),
        "loader": DataLoader(TensorDataset(splits.train_x[:256], splits.train_y[:256]), batch_size=64),
        "test_loader": DataLoader(TensorDataset(splits.test_x[:64], splits.test_y[:64]), batch_size=32),
    }
    monkeypatch.chdir(tmp_path)
    exec(compile(code[1], str(README), "exec"), namespace)  # noqa: S102 - our own README
    result = namespace["result"]
    assert result.timesteps == [1, 2, 4, 8, 16, 32, 64, 128]
    assert (tmp_path / "model.nir").is_file()
    assert len(namespace["snn2"].stages) == len(namespace["snn"].stages)
