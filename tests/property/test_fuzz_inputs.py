"""Fuzzing every parser of a file the tool reads: the clear error or a valid result, nothing else.

Each target takes a valid file and damages it at random (truncated, bytes flipped, inserted or
replaced, or, for JSON, a value swapped for another of any type or a key deleted), or takes random
bytes, and checks that the parser either returns a valid result or raises a
:class:`~snnergy.errors.SnnergyError` subclass: never another exception, never a hang.

Budget: ``FUZZ`` settings, 100 examples per target (10 targets: raw IDX, gzip IDX, CIFAR binary,
CIFAR Python pickle, config TOML, sweep TOML, results.json, checkpoint.json, safetensors header,
SNN spec JSON), a 2 s deadline per example (a hang fails), ``derandomize=True`` so every run tries
the same examples (a failure reproduces, and the known-gap ``xfail`` markers stay exact). The whole
file runs in about 20 s on 2 shared CPU cores (18 s of examples, measured under load).

Generated integers stay small (-3..70) or absurd (|n| >= 10^15), never in between: a mid-sized
tensor shape would make the fuzzer allocate gigabytes, which the table tests and the model-size
checks cover instead.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import pickle
import struct
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnergy.config import ExperimentConfig, config_to_dict, load_config
from snnergy.data import read_cifar_binary, read_cifar_python, read_idx
from snnergy.errors import SnnergyError
from snnergy.experiments import read_results
from snnergy.experiments.sweep import load_sweep
from snnergy.reporting import report_markdown, result_rows, sweep_report_markdown

FUZZ = settings(
    max_examples=100,
    deadline=timedelta(seconds=2),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ----------------------------------------------------------------------------- damage strategies


@st.composite
def damaged(draw: st.DrawFn, blob: bytes) -> bytes:
    """``blob`` truncated, with 1-4 bytes flipped, with bytes inserted, replaced by random bytes, or intact."""
    data = bytearray(blob)
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "random", "intact"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, max(len(data) - 1, 0)))])
    if kind == "flip" and data:
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=8))
    elif kind == "random":
        return draw(st.binary(max_size=256))
    return bytes(data)


_LEAVES = (
    st.none() | st.booleans() | st.integers(-3, 70) | st.sampled_from([10**15, -(10**15), 2**64])
    | st.floats(-1e3, 1e3) | st.sampled_from([math.nan, math.inf, -math.inf, 1e308, 5e-324]) | st.text(max_size=6)
)
JSON_VALUES = st.recursive(
    _LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside ``node`` (the root is ``()``)."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


@st.composite
def mutated_json(draw: st.DrawFn, document: Any) -> str:
    """``document`` with 1-3 values replaced by any JSON value (NaN and Infinity included) or
    deleted, as JSON text, or that text damaged byte-wise."""
    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            doc = draw(JSON_VALUES)
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(JSON_VALUES)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    text = json.dumps(doc)
    if draw(st.integers(0, 4)) == 0:
        text = draw(damaged(text.encode())).decode("utf-8", "replace")
    return text


def expect_clear_error_or(parse: Any, *args: Any) -> Any:
    """``parse(*args)``, or ``None`` when it raised a SnnergyError (any other exception fails)."""
    try:
        return parse(*args)
    except SnnergyError:
        return None


# ----------------------------------------------------------------------------- dataset files


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


VALID_IDX = idx_bytes(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))


def _check_idx(array: np.ndarray | None, content: bytes) -> None:
    """A loaded array must be exactly what the (decompressed) file's header announces."""
    if array is None:
        return
    header = 4 + 4 * array.ndim
    dims = tuple(struct.unpack(f">{array.ndim}I", content[4:header]))
    assert array.dtype == np.uint8 and array.shape == dims and array.tobytes() == content[header:]


@FUZZ
@given(blob=damaged(VALID_IDX))
def test_fuzz_idx(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(blob)
    _check_idx(expect_clear_error_or(read_idx, path), blob)


@FUZZ
@given(blob=st.one_of(damaged(gzip.compress(VALID_IDX, mtime=0)), damaged(VALID_IDX).map(lambda b: gzip.compress(b, mtime=0))))
def test_fuzz_gzip_idx(tmp_path: Path, blob: bytes) -> None:
    # damaged compressed streams, and damaged IDX content compressed intact
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(blob)
    array = expect_clear_error_or(read_idx, path)
    if array is not None:
        _check_idx(array, gzip.decompress(blob))


@FUZZ
@given(blob=damaged(b"".join(bytes([label]) + bytes(range(256)) * 12 for label in (3, 7))))
def test_fuzz_cifar_binary(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(blob)
    result = expect_clear_error_or(read_cifar_binary, path)
    if result is not None:
        images, labels = result
        assert images.shape == (len(blob) // 3073, 3, 32, 32) and labels.max() < 10


VALID_PICKLE = pickle.dumps({b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072) % 251, b"labels": [4, 9]},
                            protocol=2)


@FUZZ
@given(blob=damaged(VALID_PICKLE))
def test_fuzz_cifar_python(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob)
    result = expect_clear_error_or(read_cifar_python, path)
    if result is not None:
        images, labels = result
        assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32) and len(labels) == len(images)
        assert labels.dtype == np.int64 and (labels.size == 0 or 0 <= labels.min() <= labels.max() < 10)


# ----------------------------------------------------------------------------- TOML files

VALID_CONFIG = """seed = 3
device = "cpu"
[data]
dataset = "digits"
batch_size = 32
[train]
epochs = 2
lr = 0.01
regularizer = "l1"
strength = 0.1
[simulate]
timesteps = [4, 8]
"""

VALID_SWEEP = """description = "fuzz"
[base]
seed = 0
[base.data]
dataset = "synthetic-blobs"
[grid]
"train.regularizer" = ["none", "l1"]
seed = [0, 1]
[strengths]
l1 = [0.03, 0.1]
"""


@FUZZ
@given(blob=damaged(VALID_CONFIG.encode()))
def test_fuzz_config_toml(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(blob)
    config = expect_clear_error_or(load_config, path)
    assert config is None or isinstance(config, ExperimentConfig)


@FUZZ
@given(blob=damaged(VALID_SWEEP.encode()))
def test_fuzz_sweep_toml(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "sweep.toml"
    path.write_bytes(blob)
    sweep = expect_clear_error_or(load_sweep, path)
    assert sweep is None or all(isinstance(c, ExperimentConfig) for c in sweep.configs)


# ----------------------------------------------------------------------------- results.json

VALID_RECORD = {
    "config": {"dataset": "digits", "model": "lenet", "regularizer": "l1", "strength": 0.1, "seed": 0,
               "resolved": config_to_dict(ExperimentConfig())},
    "dnn": {"accuracy": 0.9, "sparsity": {"relu1": 0.5, "relu2": 1.0}, "macs_nominal": 12.0, "macs_dense": 10.0,
            "macs_effective": 5.0, "energy_j": {"cmos45-fp32": 2.3e-11}, "collapsed": ["relu2"], "samples": 4},
    "snn": {"timesteps": [4, 8], "accuracy": [0.8, 0.9], "synops": [1.0, 2.0], "input_macs": [3.0, 3.0],
            "neuron_updates": [40.0, 80.0], "spike_rate": {"relu1": 0.1}, "correlation": {"relu1": None},
            "energy_j": {"cmos45-fp32": [1e-11, 2e-11]}, "synops_per_layer": {"relu1": [1.0, 2.0]},
            "silent_layers": []},
}
VALID_RESULTS = [VALID_RECORD, {"config": {**VALID_RECORD["config"], "regularizer": "none", "strength": 0.0},
                                "error": "TrainingError: diverged"}]


@FUZZ
@given(text=mutated_json(VALID_RESULTS))
def test_fuzz_results_json_and_reports(tmp_path: Path, text: str) -> None:
    (tmp_path / "results.json").write_text(text)
    records = expect_clear_error_or(read_results, tmp_path)
    if records is not None:
        # what passes the schema check, every report renders
        report_markdown(records)
        sweep_report_markdown(records)
        result_rows(records)


# ----------------------------------------------------------------------------- checkpoints and SNN folders


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny trained checkpoint and its converted SNN, as file contents to damage."""
    from snnergy.config import DataConfig, ModelConfig, SimulateConfig, TrainConfig
    from snnergy.experiments import train
    from snnergy.experiments.steps import convert_checkpoint, load_run

    folder = tmp_path_factory.mktemp("saved")
    config = ExperimentConfig(data=DataConfig(dataset="synthetic-blobs"), model=ModelConfig(name="tiny-mlp"),
                              train=TrainConfig(epochs=1), simulate=SimulateConfig(timesteps=(4,)), device="cpu")
    train(config, out=folder / "run")
    convert_checkpoint(load_run(folder / "run"), config, folder / "snn")
    ckpt = folder / "run" / "checkpoint"
    return {
        "meta": json.loads((ckpt / "checkpoint.json").read_text()),
        "weights": (ckpt / "model.safetensors").read_bytes(),
        "spec": json.loads((folder / "snn" / "snn.json").read_text()),
        "snn_weights": (folder / "snn" / "snn.safetensors").read_bytes(),
    }


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_json(tmp_path: Path, saved: dict[str, Any], data: st.DataObject) -> None:
    from snnergy.training import load_checkpoint

    folder = tmp_path / "checkpoint"
    folder.mkdir(exist_ok=True)
    (folder / "model.safetensors").write_bytes(saved["weights"])
    (folder / "checkpoint.json").write_text(data.draw(mutated_json(saved["meta"])))
    expect_clear_error_or(load_checkpoint, folder)


@FUZZ
@given(part=st.sampled_from(["length", "header"]), junk=st.binary(min_size=1, max_size=8), where=st.integers(0, 10**6))
def test_fuzz_safetensors_header(tmp_path: Path, saved: dict[str, Any], part: str, junk: bytes, where: int) -> None:
    from snnergy.training import load_checkpoint

    blob = bytearray(saved["weights"])
    size = struct.unpack("<Q", blob[:8])[0]
    start, stop = (0, 8) if part == "length" else (8, 8 + size)
    at = start + where % (stop - start)
    blob[at: at + len(junk)] = junk[: stop - at]
    folder = tmp_path / "checkpoint"
    folder.mkdir(exist_ok=True)
    (folder / "checkpoint.json").write_text(json.dumps(saved["meta"]))
    (folder / "model.safetensors").write_bytes(bytes(blob))
    expect_clear_error_or(load_checkpoint, folder)


@FUZZ
@given(data=st.data())
def test_fuzz_snn_spec_json(tmp_path: Path, saved: dict[str, Any], data: st.DataObject) -> None:
    from snnergy.simulation import load_snn

    folder = tmp_path / "snn"
    folder.mkdir(exist_ok=True)
    (folder / "snn.safetensors").write_bytes(saved["snn_weights"])
    (folder / "snn.json").write_text(data.draw(mutated_json(saved["spec"])))
    expect_clear_error_or(load_snn, folder)
