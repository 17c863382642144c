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
