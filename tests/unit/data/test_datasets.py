"""Tests for snnergy.data: parsers on files the tests write, loaders, splits, subsets, loaders."""

from __future__ import annotations

import codecs
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnergy import data
from snnergy.config import DataConfig
from snnergy.data import (
    DATASETS,
    DatasetSplits,
    calibration_set,
    load_dataset,
    make_loader,
    read_cifar_binary,
    read_cifar_python,
    read_idx,
)
from snnergy.errors import ConfigError, DataError

# ----------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0x00 0x00 0x08 ndim, big-endian uint32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path: Path, blob: bytes, gz: bool = False) -> Path:
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(blob) if gz else blob)
    return path


def write_mnist(folder: Path, *, n_train: int = 6, n_test: int = 4, gz: bool = False,
                n_train_labels: int | None = None, bad_label: int | None = None,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Writes the four IDX files of a tiny MNIST-like set of (4, 5) images; returns the arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 4, 5), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train_labels or n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 4, 5), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    if bad_label is not None:
        arrays["t10k-labels-idx1-ubyte"][-1] = bad_label
    for name, array in arrays.items():
        write(folder / name, idx_bytes(array), gz)
    return arrays


def cifar_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def _write_marker(path: str) -> None:
    Path(path).write_text("payload ran")


class _CallsFunction:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_write_marker, (str(self.marker),))


class _CallsSystem:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SNNERGY_DATA", raising=False)


# ----------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    images = np.random.default_rng(0).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    got_images = read_idx(write(tmp_path / "img", idx_bytes(images), gz))
    got_labels = read_idx(write(tmp_path / "lab", idx_bytes(labels), gz))
    assert got_images.dtype == np.uint8 and got_images.shape == (3, 4, 5)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_read_idx_detects_gzip_without_suffix(tmp_path: Path) -> None:
    labels = np.array([1, 2], dtype=np.uint8)
    path = tmp_path / "labels"
    path.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(path), labels)


def test_read_idx_truncated(tmp_path: Path) -> None:
    # 3 images of 4 x 5 = 60 data bytes; dropping the last one leaves 59.
    blob = idx_bytes(np.zeros((3, 4, 5), np.uint8))
    path = write(tmp_path / "img", blob[:-1])
    with pytest.raises(DataError, match="truncated: expected 60 bytes of data, found 59") as err:
        read_idx(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_trailing_bytes(tmp_path: Path, gz: bool) -> None:
    path = write(tmp_path / "lab", idx_bytes(np.arange(4, dtype=np.uint8)) + b"\x00\x01", gz)
    with pytest.raises(DataError, match="2 trailing bytes after the 4 bytes") as err:
        read_idx(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("magic, found", [(b"\x00\x00\x08\x02", "0x00000802"),
                                          (b"\x12\x34\x08\x03", "0x12340803")])
def test_read_idx_wrong_magic(tmp_path: Path, magic: bytes, found: str) -> None:
    path = write(tmp_path / "x", magic + (1).to_bytes(4, "big") * 3 + b"\x00")
    with pytest.raises(DataError, match=f"{found}.*expected 0x00000801.* or 0x00000803") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_wrong_dtype_byte(tmp_path: Path) -> None:
    # 0x0D is IDX float32: two float labels = 8 bytes.
    path = write(tmp_path / "x", b"\x00\x00\x0d\x01" + (2).to_bytes(4, "big") + bytes(8))
    with pytest.raises(DataError, match=r"0x0d \(float\), expected 0x08 \(unsigned byte\)") as err:
        read_idx(path)
    assert str(path) in str(err.value) and "0x00000d01" in str(err.value)


@pytest.mark.parametrize("damage", ["flip", "cut", "not-gzip"])
def test_read_idx_corrupt_gzip(tmp_path: Path, damage: str) -> None:
    blob = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 10, 10))))
    if damage == "flip":
        blob[len(blob) // 2] ^= 0xFF
    elif damage == "cut":
        blob = blob[: len(blob) - 12]
    else:
        blob = bytearray(b"plain text, not gzip")
    path = tmp_path / "img.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_rejects_absurd_dims_before_allocating(tmp_path: Path) -> None:
    # 10^5 x 10^4 x 10^4 = 10^13 elements announced, 0 present: refused from the header alone.
    dims = b"".join(d.to_bytes(4, "big") for d in (10**5, 10**4, 10**4))
    path = write(tmp_path / "x", b"\x00\x00\x08\x03" + dims)
    with pytest.raises(DataError, match="10000000000000 elements, more than"):
        read_idx(path)


@pytest.mark.parametrize("blob, pattern", [
    (b"\x00\x00\x08\x03" + bytes(4) + (1).to_bytes(4, "big") * 2, "contain a zero"),
    (b"\x00\x00", "expected a 4-byte IDX header, found 2"),
    (b"\x00\x00\x08\x03" + bytes(5), "expected 12 bytes of dimensions"),
])
def test_read_idx_bad_header(tmp_path: Path, blob: bytes, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        read_idx(write(tmp_path / "x", blob))


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "absent")


@st.composite
def damaged_idx(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A valid IDX file, gzip or not, then truncated, mutated, extended or replaced."""
    shape = draw(st.sampled_from([(5,), (2, 3, 4), (1, 1, 1)]))
    valid = idx_bytes(np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape))
    gz = draw(st.booleans())
    blob = bytearray(gzip.compress(valid, mtime=0) if gz else valid)
    kind = draw(st.sampled_from(["truncate", "mutate", "append", "random", "intact"]))
    if kind == "truncate":
        blob = blob[: draw(st.integers(0, len(blob)))]
    elif kind == "mutate":
        for _ in range(draw(st.integers(1, 3))):
            blob[draw(st.integers(0, len(blob) - 1))] = draw(st.integers(0, 255))
    elif kind == "append":
        blob += draw(st.binary(min_size=1, max_size=8))
    elif kind == "random":
        blob = bytearray(draw(st.binary(max_size=64)))
    return bytes(blob), gz


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=damaged_idx())
def test_read_idx_fuzz_loads_correctly_or_raises_data_error(tmp_path: Path, case: tuple[bytes, bool]) -> None:
    blob, gz = case
    path = tmp_path / ("fuzz.gz" if gz else "fuzz")
    path.write_bytes(blob)
    try:
        array = read_idx(path)
    except DataError as err:
        assert str(path) in str(err)
        return
    # Loaded: the content must be exactly the header's dims followed by their data bytes.
    content = gzip.decompress(blob) if gz or blob[:2] == b"\x1f\x8b" else blob
    header_len = 4 + 4 * array.ndim
    dims = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(array.ndim))
    assert array.shape == dims and len(content) == header_len + array.size
    assert array.tobytes() == content[header_len:]


# ----------------------------------------------------------------------------- IDX datasets


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_loads_from_data_dir(tmp_path: Path, gz: bool, no_env: None) -> None:
    arrays = write_mnist(tmp_path, gz=gz)
    splits = DATASETS.get("mnist")(tmp_path, 0)
    assert splits.input_shape == (1, 4, 5) and len(splits.train) == 6 and len(splits.test) == 4
    assert splits.train_x.dtype == torch.float32 and splits.train_y.dtype == torch.int64
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.float32) / 255)
    torch.testing.assert_close(splits.train_x[:, 0], expected)
    assert splits.test_y.tolist() == [0, 1, 2, 3] and splits.classes == tuple("0123456789")


def test_fashion_mnist_found_through_env_and_data_dir_wins(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    env_arrays = write_mnist(tmp_path / "env" / "fashion-mnist", seed=1)
    monkeypatch.setenv("SNNERGY_DATA", str(tmp_path / "env"))
    from_env = DATASETS.get("fashion-mnist")(None, 0)
    assert from_env.classes[0] == "T-shirt/top" and from_env.classes[9] == "Ankle boot"
    assert from_env.train_x[0, 0, 0, 0].item() == pytest.approx(
        env_arrays["train-images-idx3-ubyte"][0, 0, 0] / 255)
    given_arrays = write_mnist(tmp_path / "given", seed=2)
    from_given = DATASETS.get("fashion-mnist")(tmp_path / "given", 0)
    np.testing.assert_allclose(from_given.test_x[:, 0].numpy(),
                               given_arrays["t10k-images-idx3-ubyte"] / np.float32(255), rtol=1e-6)


def test_idx_count_mismatch_names_both_files(tmp_path: Path, no_env: None) -> None:
    write_mnist(tmp_path, n_train=6, n_train_labels=5)
    with pytest.raises(DataError, match="holds 6 images but .* holds 5 labels") as err:
        DATASETS.get("mnist")(tmp_path, 0)
    message = str(err.value)
    assert "train-images-idx3-ubyte" in message and "train-labels-idx1-ubyte" in message


def test_idx_label_out_of_range_names_both_files(tmp_path: Path, no_env: None) -> None:
    write_mnist(tmp_path, bad_label=10)  # 10 classes: labels 0..9
    with pytest.raises(DataError, match=r"\[0, 10\], but the dataset has 10 classes") as err:
        DATASETS.get("mnist")(tmp_path, 0)
    assert "t10k-labels-idx1-ubyte" in str(err.value) and "t10k-images-idx3-ubyte" in str(err.value)


def test_idx_images_file_holding_labels(tmp_path: Path, no_env: None) -> None:
    write_mnist(tmp_path)
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(np.zeros(6, np.uint8)))
    with pytest.raises(DataError, match=r"must hold \(N, H, W\) images"):
        DATASETS.get("mnist")(tmp_path, 0)


def test_missing_fashion_mnist_lists_every_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given, env = tmp_path / "given", tmp_path / "env"
    given.mkdir()
    write(given / "train-images-idx3-ubyte", idx_bytes(np.zeros((1, 2, 2), np.uint8)))
    monkeypatch.setenv("SNNERGY_DATA", str(env))
    # the loader reads the constant from the submodule that defines it, so patch it there
    monkeypatch.setattr(data.datasets, "FASHION_MNIST_APT_DIR", tmp_path / "apt")
    with pytest.raises(DataError) as err:
        DATASETS.get("fashion-mnist")(given, 0)
    message = str(err.value)
    assert message.startswith("fashion-mnist: cannot find train-labels-idx1-ubyte[.gz]")
    for folder in (given, env / "fashion-mnist", tmp_path / "apt"):
        assert str(folder) in message
    assert "apt-get install dataset-fashion-mnist" in message and "$SNNERGY_DATA/fashion-mnist" in message


def test_missing_mnist_without_env(no_env: None) -> None:
    with pytest.raises(DataError, match=r"\$SNNERGY_DATA/mnist: not set") as err:
        load_dataset(DataConfig(dataset="mnist"))
    assert "--data-dir" in str(err.value) and "apt-get" not in str(err.value)


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs `apt-get install dataset-fashion-mnist`")
def test_real_fashion_mnist(no_env: None) -> None:
    splits = load_dataset(DataConfig(dataset="fashion-mnist"))
    assert (len(splits.train), len(splits.test), splits.input_shape) == (60000, 10000, (1, 28, 28))
    assert splits.train_x.min() >= 0 and splits.train_x.max() == 1
    assert splits.train_y.bincount().tolist() == [6000] * 10  # Fashion-MNIST is balanced


# ----------------------------------------------------------------------------- CIFAR-10


def test_cifar_binary_loader(tmp_path: Path, no_env: None) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    batches = {}
    for i, name in enumerate(data.CIFAR_BATCHES):
        pixels, labels = cifar_rows(2, seed=i)
        batches[name] = (pixels, labels)
        rows = np.concatenate([labels[:, None].astype(np.uint8), pixels], axis=1)
        (folder / f"{name}.bin").write_bytes(rows.tobytes())
    splits = DATASETS.get("cifar10")(tmp_path, 0)
    # 5 training batches x 2 records = 10.
    assert splits.train_x.shape == (10, 3, 32, 32) and splits.test_x.shape == (2, 3, 32, 32)
    pixels, labels = batches["data_batch_3"]
    # Record layout: 1024 red, 1024 green, 1024 blue bytes, rows of 32.
    assert splits.train_x[4, 1, 0, 5].item() == pytest.approx(pixels[0, 1024 + 5] / 255)
    assert splits.train_y[4:6].tolist() == labels.tolist()
    assert splits.classes[0] == "airplane" and splits.num_classes == 10


@pytest.mark.parametrize("blob, pattern", [(bytes(3072), "not a positive multiple of the 3073"),
                                           (b"\x0a" + bytes(3072), r"labels range over \[10, 10\]")])
def test_cifar_binary_rejects(tmp_path: Path, blob: bytes, pattern: str) -> None:
    path = tmp_path / "test_batch.bin"
    path.write_bytes(blob)
    with pytest.raises(DataError, match=pattern) as err:
        read_cifar_binary(path)
    assert str(path) in str(err.value)


def test_cifar_python_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "env" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate(data.CIFAR_BATCHES):
        pixels, labels = cifar_rows(3, seed=10 + i)
        batch = {b"batch_label": b"x", b"data": pixels, b"labels": labels.tolist(), b"filenames": [b"a"] * 3}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    monkeypatch.setenv("SNNERGY_DATA", str(tmp_path / "env"))
    splits = load_dataset(DataConfig(dataset="cifar10"))
    assert splits.train_x.shape == (15, 3, 32, 32) and splits.test_y.shape == (3,)
    pixels, labels = cifar_rows(3, seed=15)  # test_batch was written with seed 10 + 5
    torch.testing.assert_close(splits.test_x.reshape(3, -1), torch.from_numpy(pixels / np.float32(255)))
    assert splits.test_y.tolist() == labels.tolist()


def python2_batch(pixels: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled as CIFAR's Python 2 files are: ``numpy.core`` globals, raw str data."""
    def short(b: bytes) -> bytes:  # SHORT_BINSTRING: a Python 2 str, bytes under encoding="bytes"
        return b"U" + bytes([len(b)]) + b

    raw = pixels.tobytes()
    dims = b"(" + b"".join(b"J" + d.to_bytes(4, "little") for d in pixels.shape) + b"t"
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + short(b"b")
             + b"\x87R(K\x01" + dims + b"cnumpy\ndtype\n" + short(b"u1") + b"K\x00K\x01\x87R(K\x03"
             + short(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T"
             + len(raw).to_bytes(4, "little") + raw + b"tb")
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return b"\x80\x02}(" + short(b"data") + array + short(b"labels") + label_list + b"u."


def test_cifar_python_reads_python2_pickles(tmp_path: Path) -> None:
    pixels, labels = cifar_rows(2, seed=3)
    path = tmp_path / "test_batch"
    path.write_bytes(python2_batch(pixels, labels.tolist()))
    images, got_labels = read_cifar_python(path)
    np.testing.assert_array_equal(images, pixels.reshape(2, 3, 32, 32))
    assert got_labels.dtype == np.int64 and got_labels.tolist() == labels.tolist()


@pytest.mark.parametrize("payload, refused", [(_CallsSystem, "system"), (_CallsFunction, "_write_marker")])
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, payload: type, refused: str) -> None:
    marker = tmp_path / "marker"
    pixels, _ = cifar_rows(1, seed=0)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": pixels, b"labels": [payload(marker)]}, protocol=2))
    with pytest.raises(DataError, match=f"refusing to load .*{refused}.*only plain arrays") as err:
        read_cifar_python(path)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_malicious_pickle_payload_is_live(tmp_path: Path) -> None:
    # Control: the payload above really runs under a plain unpickler, so its absence means refusal.
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(_CallsFunction(marker), protocol=2))
    assert marker.read_text() == "payload ran"


def test_pickle_codecs_encode_only_for_latin1(tmp_path: Path) -> None:
    class Rot13:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (codecs.encode, ("abc", "rot13"))

    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": Rot13(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="not a readable CIFAR-10 Python batch"):
        read_cifar_python(path)


@pytest.mark.parametrize("batch, pattern", [
    ([1, 2], "expected a pickled dict, found list"),
    ({b"data": np.zeros((1, 3072), np.uint8)}, "lacks b'data' or b'labels'"),
    ({b"data": np.zeros((1, 3072), np.float32), b"labels": [0]}, "uint8 \\(N, 3072\\) array, found float32"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [12]}, r"labels range over \[12, 12\]"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [b"x"]}, "must be a list of ints"),
])
def test_cifar_python_validates_structure(tmp_path: Path, batch: object, pattern: str) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=pattern):
        read_cifar_python(path)


def test_cifar_python_garbage_is_data_error(tmp_path: Path) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(b"\x80\x02}q\x00(")  # a protocol-2 pickle cut mid-stream
    with pytest.raises(DataError, match="not a readable CIFAR-10 Python batch"):
        read_cifar_python(path)


def test_missing_cifar_lists_subfolders(tmp_path: Path, no_env: None) -> None:
    with pytest.raises(DataError, match="cannot find data_batch_1") as err:
        load_dataset(DataConfig(dataset="cifar10", data_dir=str(tmp_path)))
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)
    assert "cifar.html" in str(err.value)


# ----------------------------------------------------------------------------- generated datasets


def test_digits_fixed_stratified_split() -> None:
    a, b = DATASETS.get("digits")(None, 0), DATASETS.get("digits")(None, 7)
    # 1797 images; test_size 0.25 -> ceil(449.25) = 450 test, 1347 train.
    assert a.train_x.shape == (1347, 1, 8, 8) and a.test_x.shape == (450, 1, 8, 8)
    assert a.train_x.min() == 0 and a.train_x.max() == 1  # 0..16 divided by 16
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    full = torch.cat([a.train_y, a.test_y]).bincount() / 1797
    for labels in (a.train_y, a.test_y):
        share = labels.bincount(minlength=10) / len(labels)
        assert (share - full).abs().max() < 0.01


def test_synthetic_blobs_deterministic_and_learnable() -> None:
    a, b, c = (DATASETS.get("synthetic-blobs")(None, s) for s in (3, 3, 4))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert a.train_x.shape == (256, 1, 8, 8) and a.test_x.shape == (128, 1, 8, 8)
    assert a.train_y.bincount().tolist() == [64] * 4 and a.test_y.bincount().tolist() == [32] * 4
    assert a.train_x.min() >= 0 and a.train_x.max() <= 1
    # The brightest quadrant (top-left, top-right, bottom-left, bottom-right) is the label.
    quadrants = a.train_x[:, 0].reshape(-1, 2, 4, 2, 4).sum(dim=(2, 4)).reshape(-1, 4)
    assert torch.equal(quadrants.argmax(dim=1), a.train_y)


# ----------------------------------------------------------------------------- subsets and loaders


def test_load_dataset_limits() -> None:
    config = DataConfig(dataset="synthetic-blobs", train_limit=50, test_limit=1000)
    first, again, other = load_dataset(config, 1), load_dataset(config, 1), load_dataset(config, 2)
    assert len(first.train) == 50 and len(first.test) == 128  # test_limit above N keeps all
    assert torch.equal(first.train_x, again.train_x) and not torch.equal(first.train_x, other.train_x)
    full = DATASETS.get("synthetic-blobs")(None, 1)
    rows = (first.train_x.reshape(50, 1, -1) == full.train_x.reshape(1, 256, -1)).all(dim=2)
    assert rows.any(dim=1).all()  # every kept sample is a sample of the full split
    with pytest.raises(ConfigError, match="train_limit"):
        load_dataset(DataConfig(dataset="synthetic-blobs", train_limit=0))
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        load_dataset(DataConfig(dataset="nope"))


def test_registered_names() -> None:
    assert set(DATASETS.names()) == {"digits", "fashion-mnist", "mnist", "cifar10", "synthetic-blobs"}


def test_calibration_set() -> None:
    splits = DATASETS.get("synthetic-blobs")(None, 0)
    x = calibration_set(splits, 20, seed=5)
    assert x.shape == (20, 1, 8, 8)
    assert torch.equal(x, calibration_set(splits, 20, seed=5))
    assert not torch.equal(x, calibration_set(splits, 20, seed=6))
    assert len(torch.unique(x.reshape(20, -1), dim=0)) == 20  # without replacement
    everything = calibration_set(splits, 10_000)
    assert torch.equal(everything, splits.train_x) and everything.data_ptr() != splits.train_x.data_ptr()
    with pytest.raises(ConfigError):
        calibration_set(splits, 0)


def test_make_loader_shuffle_reproducible() -> None:
    x, y = torch.arange(10.0).reshape(10, 1, 1, 1), torch.arange(10)

    def order(loader: torch.utils.data.DataLoader) -> list[int]:
        return torch.cat([yb for _, yb in loader]).tolist()

    assert order(make_loader(x, y, 3)) == list(range(10))
    a, b = make_loader(x, y, 3, shuffle=True, seed=1), make_loader(x, y, 3, shuffle=True, seed=1)
    first = order(a)
    assert first == order(b) and sorted(first) == list(range(10))
    assert order(a) == order(b)  # second epochs also agree
    assert first != order(make_loader(x, y, 3, shuffle=True, seed=2))
    with pytest.raises(ConfigError):
        make_loader(x, y, 0)


def test_dataset_splits_validates() -> None:
    x, y = torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64)
    with pytest.raises(DataError, match="2 images but 1 labels"):
        DatasetSplits("t", x, y[:1], x, y, 1, ("a",))
    with pytest.raises(DataError, match="float32"):
        DatasetSplits("t", x.double(), y, x, y, 1, ("a",))


@pytest.mark.parametrize("shuffle", [False, True])
def test_make_loader_gives_the_batches_of_a_default_dataloader(shuffle: bool) -> None:
    # 23 samples in batches of 5: the last one holds 3; two epochs, differently shuffled
    x, y = torch.randn(23, 1, 4, 4), torch.arange(23) * 7
    ours = make_loader(x, y, batch_size=5, shuffle=shuffle, seed=3)
    generator = torch.Generator().manual_seed(3) if shuffle else None
    default = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=shuffle, generator=generator)
    for _ in range(2):
        got, expected = list(ours), list(default)
        assert len(got) == len(expected) == 5
        for (xb, yb), (xe, ye) in zip(got, expected):
            assert torch.equal(xb, xe) and torch.equal(yb, ye) and xb.dtype == xe.dtype and yb.dtype == ye.dtype
