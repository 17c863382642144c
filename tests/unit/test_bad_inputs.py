"""Every file the CLI reads, damaged every way we could think of: exit code 2, one error line.

Each case builds one bad file (or folder) next to good ones, runs the command that reads it, and
checks the contract of :mod:`snnergy.errors`: exit code 2, exactly one stderr line starting with
``snnergy: error:`` that names the bad file, and no traceback. Hostile files (a pickle whose
``__reduce__`` runs a command) must also leave no trace of having run.

Cases per kind (the ``kind`` part of each test id): idx, cifar, config, sweep, checkpoint, snn,
results, store. Cases marked ``xfail(strict=True)`` are known gaps in modules this file's author
does not own; each names the fix it needs, and turns into a failure (XPASS) once the fix lands, so
the marker is removed then.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import pickle
import shutil
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from snnergy.cli import main

# A case builds its files under a fresh folder and returns (argv, the path the message must name).
Build = Callable[[Path, "Fixtures"], tuple[list[str], Path]]


@dataclass(frozen=True)
class Fixtures:
    """Good files to damage: a trained run folder and its converted SNN folder."""

    run: Path
    snn: Path


@dataclass(frozen=True)
class Case:
    kind: str
    name: str
    build: Build
    gap: str | None = None  # the fix a known gap needs (the case is then a strict xfail)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    folder = tmp_path_factory.mktemp("good")
    run, snn = folder / "run", folder / "snn"
    assert main(["train", "--dataset", "synthetic-blobs", "--model", "tiny-mlp", "--epochs", "1", "--device", "cpu",
                 "--quiet", "--out", str(run)]) == 0
    assert main(["convert", str(run), "--device", "cpu", "--out", str(snn)]) == 0
    return Fixtures(run, snn)


# ----------------------------------------------------------------------------- IDX (MNIST files)

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    """IDX bytes: 0, 0, type, ndim, big-endian uint32 dims, then the data."""
    return bytes([0, 0, type_byte, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def mnist(folder: Path, replace: dict[int, bytes] | None = None, gz: tuple[int, ...] = ()) -> list[Path]:
    """Four valid IDX files of (6|4, 5, 5) images, some replaced or gzip-compressed; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [np.full((6, 5, 5), 7, np.uint8), np.arange(6, dtype=np.uint8), np.full((4, 5, 5), 9, np.uint8),
              np.arange(4, dtype=np.uint8)]
    paths = []
    for i, (name, array) in enumerate(zip(IDX_NAMES, arrays)):
        blob = (replace or {}).get(i, idx(array))
        path = folder / (name + ".gz" if i in gz else name)
        path.write_bytes(gzip.compress(blob, mtime=0) if i in gz and i not in (replace or {}) else blob)
        paths.append(path)
    return paths


def idx_case(name: str, index: int, blob: bytes | Callable[[bytes], bytes], gz: bool = False) -> Case:
    def build(tmp: Path, _: Fixtures) -> tuple[list[str], Path]:
        good = idx([np.full((6, 5, 5), 7, np.uint8), np.arange(6, dtype=np.uint8), np.full((4, 5, 5), 9, np.uint8),
                    np.arange(4, dtype=np.uint8)][index])
        data = blob(gzip.compress(good, mtime=0) if gz else good) if callable(blob) else blob
        paths = mnist(tmp / "data", {index: data}, gz=(index,) if gz else ())
        return ["train", "--dataset", "mnist", "--data-dir", str(tmp / "data")], paths[index]
    return Case("idx", name, build)


def _flip_middle(blob: bytes) -> bytes:
    middle = len(blob) // 2
    return blob[:middle] + bytes(b ^ 0xFF for b in blob[middle:middle + 8]) + blob[middle + 8:]


IDX_CASES = [
    idx_case("truncated-data", 0, lambda b: b[:-7]),  # 6*5*5 = 150 data bytes announced, 143 present
    idx_case("truncated-header", 0, lambda b: b[:6]),
    idx_case("empty", 1, b""),
    # 10^4 x 10^4 x 10^4 = 10^12 elements announced: refused from the header, nothing allocated
    idx_case("oversized-header", 0, b"\x00\x00\x08\x03" + struct.pack(">III", 10**4, 10**4, 10**4)),
    idx_case("zero-dimension", 2, b"\x00\x00\x08\x03" + struct.pack(">III", 4, 0, 5)),
    idx_case("wrong-magic", 0, lambda b: b"\x12\x34" + b[2:]),
    idx_case("wrong-dtype-float", 0, lambda b: b[:2] + b"\x0d" + b[3:]),
    idx_case("wrong-ndim", 0, lambda b: b[:3] + b"\x02" + b[4:]),
    idx_case("trailing-bytes", 3, lambda b: b + b"\x00\x01"),
    idx_case("corrupt-gzip", 0, _flip_middle, gz=True),
    idx_case("truncated-gzip", 0, lambda b: b[: len(b) // 2], gz=True),
    idx_case("gzip-of-garbage", 1, lambda b: gzip.compress(b"\xff" * 64), gz=True),
    idx_case("labels-as-images", 0, idx(np.arange(6, dtype=np.uint8))),  # wrong shape: 1-D
    idx_case("count-mismatch", 1, idx(np.arange(5, dtype=np.uint8))),  # 6 images, 5 labels
    idx_case("label-out-of-range", 3, idx(np.array([0, 1, 2, 10], np.uint8))),  # 10 classes: 0..9
]

# ----------------------------------------------------------------------------- CIFAR-10 batches

BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def _record_bytes(labels: list[int]) -> bytes:
    return b"".join(bytes([label]) + bytes(3072) for label in labels)


class _RunsCommand:
    """A pickle payload: unpickling it runs ``touch marker`` (must never happen)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


class _CallsNdarray:
    """A pickle payload calling ``numpy.ndarray(shape)``: an uninitialized array of any size."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (np.ndarray, ((2, 3072), "B"))


def cifar_case(name: str, blob: Callable[[Path], bytes], binary: bool) -> Case:
    def build(tmp: Path, _: Fixtures) -> tuple[list[str], Path]:
        folder = tmp / "cifar"
        folder.mkdir()
        for batch in BATCHES:
            if binary:
                (folder / f"{batch}.bin").write_bytes(_record_bytes([1, 2]))
            else:
                good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}
                (folder / batch).write_bytes(pickle.dumps(good, protocol=2))
        bad = folder / ("data_batch_3.bin" if binary else "data_batch_3")
        bad.write_bytes(blob(tmp))
        return ["train", "--dataset", "cifar10", "--data-dir", str(folder)], bad
    return Case("cifar", name, build)


def _pickled(batch: object) -> Callable[[Path], bytes]:
    return lambda tmp: pickle.dumps(batch, protocol=2)


CIFAR_CASES = [
    cifar_case("binary-truncated", lambda tmp: _record_bytes([1, 2])[:-5], binary=True),
    cifar_case("binary-empty", lambda tmp: b"", binary=True),
    cifar_case("binary-label-out-of-range", lambda tmp: _record_bytes([1, 11]), binary=True),
    cifar_case("python-os-system-payload",
               lambda tmp: pickle.dumps({b"data": _RunsCommand(tmp / "marker"), b"labels": [0]}, protocol=2), binary=False),
    cifar_case("python-ndarray-call", _pickled({b"data": _CallsNdarray(), b"labels": [0, 1]}), binary=False),
    cifar_case("python-wrong-dtype", _pickled({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}), binary=False),
    cifar_case("python-wrong-shape", _pickled({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), binary=False),
    cifar_case("python-label-count", _pickled({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), binary=False),
    cifar_case("python-huge-label", _pickled({b"data": np.zeros((1, 3072), np.uint8), b"labels": [2**70]}), binary=False),
    cifar_case("python-not-a-dict", _pickled([1, 2, 3]), binary=False),
    cifar_case("python-truncated", lambda tmp: pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                                              b"labels": [0, 1]}, protocol=2)[:3000], binary=False),
    cifar_case("python-garbage", lambda tmp: os.urandom(0) + b"\x80\x02garbage" * 10, binary=False),
]

# ----------------------------------------------------------------------------- config and sweep TOML


def toml_case(kind: str, name: str, text: str | bytes | None, gap: str | None = None) -> Case:
    def build(tmp: Path, _: Fixtures) -> tuple[list[str], Path]:
        path = tmp / "file.toml"
        if text is None:
            path.mkdir()
        elif isinstance(text, bytes):
            path.write_bytes(text)
        elif text != "<missing>":
            path.write_text(text)
        if kind == "config":
            return ["train", "--config", str(path), "--dataset", "synthetic-blobs", "--model", "tiny-mlp"], path
        return ["sweep", str(path), "--dry-run", "--out", str(tmp / "out")], path
    return Case(kind, name, build, gap)


DEEP = "a = " + "[" * 5000 + "]" * 5000

CONFIG_CASES = [
    toml_case("config", "missing", "<missing>"),
    toml_case("config", "a-directory", None),
    toml_case("config", "not-utf8", b"seed = 1\n\xff\xfe"),
    toml_case("config", "not-toml", "[train\nepochs = 1"),
    toml_case("config", "nested-too-deep", DEEP),
    toml_case("config", "oversized", "# padding\n" * 200_000),  # 2 MB > the 1 MiB a config may have
    toml_case("config", "unknown-key", "[train]\nlr_rate = 0.1"),
    toml_case("config", "wrong-type", "[train]\nepochs = \"ten\""),
    toml_case("config", "wrong-shape", "[simulate]\ntimesteps = 8"),
    toml_case("config", "nan", "[train]\nlr = nan"),
    toml_case("config", "inf", "[train]\nstrength = inf"),
    toml_case("config", "out-of-range", "[data]\nbatch_size = 0"),
    toml_case("config", "empty-timesteps", "[simulate]\ntimesteps = []"),
    toml_case("config", "unknown-choice", "[convert]\nreset = \"half\""),
]

SWEEP_CASES = [
    toml_case("sweep", "missing", "<missing>"),
    toml_case("sweep", "a-directory", None),
    toml_case("sweep", "not-toml", "[grid\nseed = [0]"),
    toml_case("sweep", "nested-too-deep", DEEP),
    toml_case("sweep", "unknown-table", "[gird]\nseed = [0]"),
    toml_case("sweep", "empty-list", "[grid]\nseed = []"),
    toml_case("sweep", "nan-strength", "[grid]\n\"train.regularizer\" = [\"l1\"]\n[strengths]\nl1 = [nan]"),
    toml_case("sweep", "wrong-type", "[base.train]\nepochs = \"x\""),
    toml_case("sweep", "out-of-range-grid", "[grid]\n\"data.batch_size\" = [32, 0]"),
]

# ----------------------------------------------------------------------------- DNN checkpoints


def _meta(run: Path) -> Path:
    return run / "checkpoint" / "checkpoint.json"


def _weights(run: Path) -> Path:
    return run / "checkpoint" / "model.safetensors"


def checkpoint_case(name: str, damage: Callable[[Path], Path], gap: str | None = None) -> Case:
    def build(tmp: Path, good: Fixtures) -> tuple[list[str], Path]:
        run = tmp / "run"
        shutil.copytree(good.run, run)
        named = damage(run)
        return ["convert", str(run), "--device", "cpu", "--out", str(tmp / "snn")], named
    return Case("checkpoint", name, build, gap)


def edit_meta(change: Callable[[dict], object]) -> Callable[[Path], Path]:
    def damage(run: Path) -> Path:
        meta = json.loads(_meta(run).read_text())
        result = change(meta)
        _meta(run).write_text(result if isinstance(result, str) else json.dumps(meta))
        return _meta(run)
    return damage


def write_weights(change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], Path]:
    def damage(run: Path) -> Path:
        from safetensors.torch import load_file

        tensors = load_file(str(_weights(run)))
        change(tensors)
        save_file(tensors, str(_weights(run)))
        return _weights(run)
    return damage


def raw_weights(blob: Callable[[bytes], bytes]) -> Callable[[Path], Path]:
    def damage(run: Path) -> Path:
        _weights(run).write_bytes(blob(_weights(run).read_bytes()))
        return _weights(run)
    return damage


def _first(tensors: dict[str, torch.Tensor]) -> str:
    return sorted(tensors)[0]


def _remove(path: Path) -> Path:
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    return path


CHECKPOINT_CASES = [
    checkpoint_case("missing-folder", lambda run: _remove(run)),
    checkpoint_case("json-truncated", edit_meta(lambda m: json.dumps(m)[:50])),
    checkpoint_case("json-not-utf8", lambda run: (_meta(run).write_bytes(b"{\xff\xfe}"), _meta(run))[1]),
    checkpoint_case("json-a-list", edit_meta(lambda m: "[1, 2]")),
    checkpoint_case("json-wrong-format", edit_meta(lambda m: m.__setitem__("format", "pytorch"))),
    checkpoint_case("json-nan-lr", edit_meta(lambda m: json.dumps(m).replace('"lr": 0.01', '"lr": NaN'))),
    checkpoint_case("json-unknown-key", edit_meta(lambda m: m["config"]["train"].__setitem__("lr_rate", 1))),
    checkpoint_case("json-missing-model", edit_meta(lambda m: m.pop("model"))),
    checkpoint_case("json-negative-shape", edit_meta(lambda m: m["model"].__setitem__("input_shape", [1, -8, 8]))),
    checkpoint_case("weights-missing", lambda run: _remove(_weights(run))),
    checkpoint_case("weights-truncated", raw_weights(lambda b: b[: len(b) // 2])),
    checkpoint_case("weights-empty", raw_weights(lambda b: b"")),
    checkpoint_case("weights-header-size-huge", raw_weights(lambda b: struct.pack("<Q", 2**62) + b[8:])),
    checkpoint_case("weights-header-garbage", raw_weights(lambda b: struct.pack("<Q", 10) + b"not json!!" + b[8:])),
    checkpoint_case("weights-nan", write_weights(lambda t: t[_first(t)].fill_(float("nan")))),
    checkpoint_case("weights-wrong-shape", write_weights(lambda t: t.__setitem__(_first(t), torch.zeros(3, 3)))),
    checkpoint_case("weights-extra-tensor", write_weights(lambda t: t.__setitem__("extra.weight", torch.zeros(2)))),
    checkpoint_case("json-nested-too-deep", edit_meta(lambda m: "[" * 100_000 + "]" * 100_000)),
    checkpoint_case("json-history-not-a-list", edit_meta(lambda m: m.__setitem__("history", 5))),
    checkpoint_case("json-fractional-shape", edit_meta(lambda m: m["model"].__setitem__("input_shape", [1.5, 8, 8]))),
    checkpoint_case("json-newer-version", edit_meta(lambda m: m.__setitem__("version", 99))),
    # 10^12 classes: the model would need terabytes; refuse before allocating
    checkpoint_case("json-huge-model", edit_meta(lambda m: m["model"].__setitem__("num_classes", 10**12))),
    checkpoint_case("weights-int-dtype", write_weights(lambda t: t.__setitem__(_first(t), t[_first(t)].to(torch.int32)))),
]

# ----------------------------------------------------------------------------- converted SNN folders


def snn_case(name: str, damage: Callable[[Path], Path], gap: str | None = None) -> Case:
    def build(tmp: Path, good: Fixtures) -> tuple[list[str], Path]:
        folder = tmp / "snn"
        shutil.copytree(good.snn, folder)
        named = damage(folder)
        return ["simulate", str(folder), "--timesteps", "4", "--max-samples", "8", "--device", "cpu", "--quiet"], named
    return Case("snn", name, build, gap)


def edit_spec(change: Callable[[dict], object], file: str = "snn.json") -> Callable[[Path], Path]:
    def damage(folder: Path) -> Path:
        spec = json.loads((folder / file).read_text())
        result = change(spec)
        (folder / file).write_text(result if isinstance(result, str) else json.dumps(spec))
        return folder / file
    return damage


def snn_weights(change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], Path]:
    def damage(folder: Path) -> Path:
        from safetensors.torch import load_file

        tensors = load_file(str(folder / "snn.safetensors"))
        change(tensors)
        save_file(tensors, str(folder / "snn.safetensors"))
        return folder / "snn.safetensors"
    return damage


def _stage(spec: dict, key: str, value: object) -> None:
    spec["stages"][0]["layer"][key] = value


def _huge_linear(spec: dict) -> None:
    """Input (10**5,), fc1 10**5 -> 10**5, fc2 10**5 -> 4: the shapes fit, fc1 alone is 40 GB."""
    spec["input_shape"] = [10**5]
    spec["stages"][0]["pre"] = []
    spec["stages"][0]["layer"].update(in_features=10**5, out_features=10**5)
    spec["stages"][1]["layer"]["in_features"] = 10**5


SNN_CASES = [
    snn_case("spec-missing", lambda f: _remove(f / "snn.json")),
    snn_case("spec-truncated", edit_spec(lambda s: json.dumps(s)[:40])),
    snn_case("spec-wrong-format", edit_spec(lambda s: s.__setitem__("format", "sinabs"))),
    snn_case("spec-missing-layer", edit_spec(lambda s: s["stages"][0].pop("layer"))),
    snn_case("spec-nan-threshold", edit_spec(lambda s: json.dumps(s).replace('"threshold": 1.0', '"threshold": NaN'))),
    snn_case("spec-unknown-layer", edit_spec(lambda s: _stage(s, "kind", "lstm"))),
    # the spec and the weights disagree: the message names the folder holding both
    snn_case("spec-wrong-width", lambda f: (edit_spec(lambda s: _stage(s, "in_features", 65))(f), f)[1]),
    snn_case("weights-truncated", lambda f: ((f / "snn.safetensors").write_bytes(b"\x10" + bytes(7)), f / "snn.safetensors")[1]),
    snn_case("weights-nan", snn_weights(lambda t: t[_first(t)].fill_(float("inf")))),
    snn_case("config-not-json", lambda f: ((f / "config.json").write_text("{{"), f / "config.json")[1]),
    snn_case("config-unknown-key", edit_spec(lambda c: c.__setitem__("dataz", 1), "config.json")),
    snn_case("config-zero-timesteps", edit_spec(lambda c: c["simulate"].__setitem__("timesteps", [0]), "config.json")),
    snn_case("spec-nested-too-deep", edit_spec(lambda s: "[" * 100_000 + "]" * 100_000)),
    snn_case("spec-flatten-out-of-range",
             edit_spec(lambda s: s["stages"][0]["pre"].__setitem__(0, {"op": "flatten", "start_dim": 5, "end_dim": -1}))),
    snn_case("spec-threshold-overflows-float32", edit_spec(lambda s: s["neuron"].__setitem__("threshold", 1e308))),
    snn_case("spec-unhashable-kind", edit_spec(lambda s: _stage(s, "kind", []))),
    # consistent shapes, but fc1 holds 10**10 float32 weights (40 GB) against a file of a few KB: refused unallocated
    snn_case("spec-huge-linear", edit_spec(_huge_linear)),
    # 10**10 elements per input sample: refused before the dummy forward allocates them
    snn_case("spec-huge-input", edit_spec(lambda s: s.__setitem__("input_shape", [1, 10**5, 10**5]))),
]

# ----------------------------------------------------------------------------- results.json


def results_case(name: str, text: str | bytes | Callable[[list], object], gap: str | None = None) -> Case:
    def build(tmp: Path, _: Fixtures) -> tuple[list[str], Path]:
        out = tmp / "out"
        out.mkdir()
        path = out / "results.json"
        if callable(text):
            records = [good_record()]
            result = text(records)
            path.write_text(result if isinstance(result, str) else json.dumps(records))
        elif isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return ["report", str(out)], path
    return Case("results", name, build, gap)


def good_record() -> dict:
    """A valid record (docs/design.md schema), T = 4 and 8."""
    return {
        "config": {"dataset": "digits", "model": "lenet", "regularizer": "l1", "strength": 0.1, "seed": 0},
        "dnn": {"accuracy": 0.9, "sparsity": {"relu1": 0.5}, "macs_nominal": 12.0, "macs_dense": 10.0,
                "macs_effective": 5.0, "energy_j": {"cmos45-fp32": 2.3e-11}},
        "snn": {"timesteps": [4, 8], "accuracy": [0.8, 0.9], "synops": [1.0, 2.0], "input_macs": [3.0, 3.0],
                "neuron_updates": [40.0, 80.0], "spike_rate": {"relu1": 0.1}, "energy_j": {"cmos45-fp32": [1e-11, 2e-11]}},
    }


RESULTS_CASES = [
    results_case("not-json", "[{"),
    results_case("not-utf8", b"[\xff]"),
    results_case("not-a-list", '{"config": {}}'),
    results_case("record-not-an-object", "[1]"),
    results_case("no-config", lambda r: r[0].pop("config")),
    results_case("config-missing-key", lambda r: r[0]["config"].pop("seed")),
    results_case("wrong-type", lambda r: r[0]["dnn"].__setitem__("accuracy", "high")),
    results_case("out-of-range", lambda r: r[0]["dnn"].__setitem__("accuracy", 1.5)),
    results_case("negative-energy", lambda r: r[0]["dnn"]["energy_j"].__setitem__("cmos45-fp32", -1.0)),
    results_case("nan", lambda r: json.dumps(r).replace('"macs_effective": 5.0', '"macs_effective": NaN')),
    results_case("infinity", lambda r: json.dumps(r).replace('"synops": [1.0, 2.0]', '"synops": [1.0, Infinity]')),
    results_case("series-length", lambda r: r[0]["snn"].__setitem__("accuracy", [0.8])),
    results_case("no-timesteps", lambda r: r[0]["snn"].__setitem__("timesteps", [])),
    results_case("nested-too-deep", "[" * 100_000 + "]" * 100_000),
]

# ----------------------------------------------------------------------------- the SQLite sweep store


def store_case(name: str, make: Callable[[Path], None], command: str = "report") -> Case:
    def build(tmp: Path, _: Fixtures) -> tuple[list[str], Path]:
        out = tmp / "out"
        out.mkdir()
        make(out / "sweep.sqlite")
        if command == "report":
            return ["report", str(out)], out / "sweep.sqlite"
        sweep = tmp / "s.toml"
        sweep.write_text("[grid]\nseed = [0]\n")
        return ["sweep", str(sweep), "--dry-run", "--out", str(out)], out / "sweep.sqlite"
    return Case("store", name, build)


def _sql(script: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        db = sqlite3.connect(path)
        db.executescript(script)
        db.commit()
        db.close()
    return make


def _with_row(record: str, status: str = "finished") -> Callable[[Path], None]:
    def make(path: Path) -> None:
        from snnergy.experiments.sweep_store import SweepStore

        SweepStore(path).close()  # a real, empty store
        db = sqlite3.connect(path)
        db.execute("INSERT INTO runs (id, status, config, record, error, started_at, finished_at, wall_s) "
                   "VALUES ('abc', 'finished', '{}', ?, NULL, 't0', 't1', 1.0)", (record,))
        db.execute("PRAGMA ignore_check_constraints = ON")
        db.execute("UPDATE runs SET status = ?", (status,))
        db.commit()
        db.close()
    return make


STORE_CASES = [
    store_case("not-sqlite", lambda p: p.write_bytes(b"SQLite format 2\0" + b"junk" * 500)),
    store_case("not-sqlite-dry-run", lambda p: p.write_bytes(b"\0" * 4096), command="sweep"),
    store_case("no-meta-table", _sql("CREATE TABLE other (x)")),
    store_case("newer-schema", _sql("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); "
                                    "INSERT INTO meta VALUES ('schema_version', '2')")),
    store_case("runs-lacks-columns", _sql("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); "
                                          "INSERT INTO meta VALUES ('schema_version', '1'); CREATE TABLE runs (id TEXT)")),
    store_case("runs-lacks-columns-dry-run", _sql(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES ('schema_version', '1'); "
        "CREATE TABLE runs (id TEXT)"), command="sweep"),
    store_case("row-malformed-json", _with_row("{not json")),
    store_case("row-not-a-record", _with_row(json.dumps({"config": {"seed": 0}, "dnn": {"accuracy": 0.5}}))),
    store_case("row-nan", _with_row(json.dumps(good_record()).replace('"accuracy": 0.9', '"accuracy": NaN'))),
    store_case("row-unknown-status", _with_row(json.dumps(good_record()), status="running"), command="sweep"),
]

CASES = IDX_CASES + CIFAR_CASES + CONFIG_CASES + SWEEP_CASES + CHECKPOINT_CASES + SNN_CASES + RESULTS_CASES + STORE_CASES


def _param(case: Case):  # type: ignore[no-untyped-def]
    marks = [pytest.mark.xfail(strict=True, reason=f"known gap: {case.gap}")] if case.gap else []
    return pytest.param(case, id=f"{case.kind}-{case.name}", marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_file_exits_2_with_one_line_naming_it(
    case: Case, fixtures: Fixtures, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SNNERGY_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # any default output folder lands here
    argv, named = case.build(tmp_path, fixtures)
    capsys.readouterr()
    code = main([*argv, *(["--out", str(tmp_path / "o")] if argv[0] == "train" else [])])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("snnergy: error: "), err
    assert str(named) in lines[0] and "Traceback" not in err
    assert not (tmp_path / "marker").exists()  # a hostile pickle's command never ran


def test_case_counts_per_kind() -> None:
    # The figures the reliability note quotes; update both together.
    counts = {kind: sum(c.kind == kind for c in CASES) for kind in dict.fromkeys(c.kind for c in CASES)}
    assert counts == {"idx": 15, "cifar": 12, "config": 14, "sweep": 9, "checkpoint": 23, "snn": 18,
                      "results": 14, "store": 10}


# ----------------------------------------------------------------------------- no code from data

SOURCE = Path(__file__).resolve().parents[2] / "src" / "snnergy"
# Calls that can run code a file brings with it. The one deliberate exception: `snnergy convert
# --model FILE.py:FACTORY` imports the user's own Python file (code the user chose to run, not data).
CODE_FROM_DATA = {"pickle.load", "pickle.loads", "torch.load", "yaml.load", "marshal.loads", "eval", "exec",
                  "importlib.import_module", "importlib.util.spec_from_file_location", "runpy.run_path"}
ALLOWED = {("interop/model_file.py", "importlib.util.spec_from_file_location")}


def _called_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, target = [], node.func
            while isinstance(target, ast.Attribute):
                parts.append(target.attr)
                target = target.value
            if isinstance(target, ast.Name):
                names.add(".".join([target.id, *reversed(parts)]))
    return names


def test_no_module_unpickles_or_evaluates_file_contents() -> None:
    found = {(str(path.relative_to(SOURCE)), name)
             for path in SOURCE.rglob("*.py") for name in _called_names(ast.parse(path.read_text()))
             if name in CODE_FROM_DATA or name.endswith(("allow_pickle", "np.load", "numpy.load"))}
    assert found <= ALLOWED, found - ALLOWED
    # the only unpickler is the CIFAR parser's, which resolves numpy's array globals and nothing else
    unpicklers = [path.name for path in SOURCE.rglob("*.py") if "pickle.Unpickler" in path.read_text()]
    assert unpicklers == ["parsers.py"]
