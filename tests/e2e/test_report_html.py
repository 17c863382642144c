"""report.html in a real browser: headless Chromium loads it from file://, with no console message
and no script error; the verdict is visible in the first screen; sorting and hover tips work; and a
screenshot of it is not blank.

Chromium is Debian's package ``chromium`` (``.ci/run`` installs it); where it is absent, every test
here skips and says so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from snnergy.reporting import write_report

CHROMIUM = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium: `apt-get install chromium` "
                                "(.ci/run installs it)")

WINDOW = (1280, 1000)
VERDICT_BACKGROUND = (0xEE, 0xF5, 0xFC)  # html.STYLE's --verdict


def record(reg: str, strength: float, acc: list[float], energy: list[float], dataset: str = "digits") -> dict:
    """A finished record, curve at t = 1..4 (listed T = 2, 4), input layer 1e-8 J at every t."""
    listed = [energy[1], energy[3]]
    return {
        "config": {"dataset": dataset, "model": "lenet", "regularizer": reg, "strength": strength, "seed": 0},
        "dnn": {"accuracy": 0.97, "sparsity": {"relu1": 0.5, "relu2": 0.6}, "macs_dense": 100.0, "macs_effective": 50.0,
                "energy_j": {"p": 2e-7 * (1 + strength)}},
        "snn": {"timesteps": [2, 4], "accuracy": [acc[1], acc[3]], "synops": [10.0, 20.0], "input_macs": [5.0, 5.0],
                "neuron_updates": [8.0, 16.0], "energy_j": {"p": listed},
                "energy_breakdown_j": {"p": {"input_layer": [1e-8, 1e-8], "spiking_layers": [e - 1e-8 for e in listed],
                                             "neuron_updates": [0.0, 0.0]}},
                "spike_rate": {"relu1": 0.1, "relu2": 0.05}, "correlation": {"relu1": 0.99, "relu2": 0.98},
                "curve": {"timesteps": [1, 2, 3, 4], "accuracy": acc, "synops": [5.0, 10.0, 15.0, 20.0],
                          "energy_j": {"p": energy}}},
    }


# A dataset name that would run a script if it were not escaped.
EVIL = 'digits<img src=x onerror="document.title=\'pwned\'">'
RECORDS = [
    record("none", 0.0, [0.5, 0.9, 0.96, 0.97], [0.5e-7, 1e-7, 1.5e-7, 2e-7], EVIL),
    record("l1", 0.1, [0.6, 0.965, 0.97, 0.97], [0.3e-7, 0.6e-7, 0.9e-7, 1.2e-7], EVIL),
    record("hoyer", 0.5, [0.4, 0.93, 0.962, 0.968], [0.4e-7, 0.8e-7, 1.2e-7, 1.6e-7], EVIL),
]

PROBE = """<script>
(function(){
var out={};
var v=document.getElementById('verdict'),r=v.getBoundingClientRect(),cs=getComputedStyle(v);
out.verdict={top:r.top,height:r.height,width:r.width,display:cs.display,visibility:cs.visibility,
  text:v.textContent.indexOf('Lowest SNN energy')>=0};
var table=document.querySelector('table.sortable'),heads=table.tHead.rows[0].cells,col=-1;
for(var i=0;i<heads.length;i++){if(heads[i].textContent==='SNN energy (J)')col=i;}
heads[col].click();
out.sorted=Array.prototype.map.call(table.tBodies[0].rows,function(row){return parseFloat(row.cells[col].textContent);});
heads[col].click();
out.reversed=Array.prototype.map.call(table.tBodies[0].rows,function(row){return parseFloat(row.cells[col].textContent);});
var point=document.querySelector('svg .pt');
point.dispatchEvent(new MouseEvent('mouseover',{bubbles:true,clientX:10,clientY:10}));
var tip=document.querySelector('.tip');
out.tip={text:tip.textContent,display:getComputedStyle(tip).display};
var key=document.querySelector('figure.chart .key');key.click();
out.hidden=getComputedStyle(key.closest('figure').querySelector('svg g.series[data-series="0"]')).display;
out.title=document.title;out.images=document.querySelectorAll('img').length;
document.getElementById('probe').textContent=JSON.stringify(out);
})();
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with its own profile, logging console messages to stderr."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}",
               f"--window-size={WINDOW[0]},{WINDOW[1]}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def console_lines(stderr: str) -> list[str]:
    """The page's console messages and script errors in Chromium's log (``INFO:CONSOLE``)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report(out, RECORDS, profile="p")
    return out / "report.html"


def test_opens_without_console_errors(report: Path, tmp_path: Path) -> None:
    run = chromium(tmp_path, "--dump-dom", report.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    assert console_lines(run.stderr) == []
    dom = run.stdout
    assert re.search(r'<html[^>]* data-ready="1"', dom), "the page's script did not run to its end"
    assert '<pre id="page-errors"></pre>' in dom  # nothing recorded by the page's error hook
    assert not re.search(r"<img\b", dom) and "&lt;img src=x" in dom  # the dataset name stayed text


def test_verdict_visible_sorting_and_tips(report: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe.html"  # a copy with a probe run after the page's own script
    probe.write_text(report.read_text().replace("</body>", f'<pre id="probe"></pre>{PROBE}</body>'))
    run = chromium(tmp_path, "--dump-dom", probe.as_uri())
    assert console_lines(run.stderr) == []
    found = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, re.S)
    assert found is not None and found.group(1), run.stdout[-2000:]
    out = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    verdict = out["verdict"]
    assert verdict["display"] != "none" and verdict["visibility"] == "visible" and verdict["text"]
    assert verdict["width"] > 0 and verdict["height"] > 0 and 0 <= verdict["top"] < WINDOW[1]  # in the first screen
    # SNN energy at the largest T (fixed T): none 2e-07, l1 1.2e-07, hoyer 1.6e-07 J
    assert out["sorted"] == [1.2e-07, 1.6e-07, 2e-07] and out["reversed"] == [2e-07, 1.6e-07, 1.2e-07]
    assert out["tip"]["display"] == "block" and re.match(r"(DNN|SNN) .*(accuracy|at T = )", out["tip"]["text"])
    assert out["hidden"] == "none"  # a legend click hides its series
    assert out["images"] == 0 and out["title"] == "snnergy report"


def test_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    run = chromium(tmp_path, f"--screenshot={shot}", report.as_uri())
    assert shot.is_file(), run.stderr[-2000:]
    assert console_lines(run.stderr) == []
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    gray = pixels.mean(axis=2)
    # a blank page is one colour: variance 0; this one has text, tables and the verdict's box
    assert gray.std() > 10 and (gray < 128).mean() > 0.005
    verdict = (np.abs(pixels - VERDICT_BACKGROUND).max(axis=2) <= 2).mean()
    assert verdict > 0.05  # the verdict's background covers a good part of the first screen
