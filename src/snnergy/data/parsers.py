"""Dataset file parsers: bytes on disk to validated numpy arrays.

:func:`read_idx` reads MNIST-style IDX files (raw or gzip-compressed); :func:`read_cifar_binary`
and :func:`read_cifar_python` read CIFAR-10 batches, the Python ones with an unpickler that
resolves only numpy's array-rebuilding globals, so no code from the file runs. Headers, sizes and
labels are all checked, and anything wrong is one :class:`~snnergy.errors.DataError` naming the
file.
"""

from __future__ import annotations

import codecs
import gzip
import io
import pickle
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from snnergy.errors import DataError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

MAX_IDX_ELEMENTS = 10**8
# A CIFAR-10 batch is 10000 records of 3073 bytes (about 30 MB); a file 30 times larger is refused
# before it is read.
MAX_CIFAR_BATCH_BYTES = 1 << 30
_IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int",
              0x0D: "float", 0x0E: "double"}


def _open_maybe_gzip(path: Path) -> IO[bytes]:
    """Opens ``path`` for binary reading, decompressing when it is (or is named) gzip."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(2)
        return gzip.open(path, "rb") if path.suffix == ".gz" or head == b"\x1f\x8b" else open(path, "rb")
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err}") from None


def _read_exactly(stream: IO[bytes], n: int) -> bytearray:
    """Reads up to ``n`` bytes in chunks, so a short file never costs ``n`` bytes of memory."""
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(min(n - len(buf), 1 << 24))
        if not chunk:
            break
        buf += chunk
    return buf


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file of unsigned bytes (the MNIST format), raw or gzip-compressed.

    The header is a magic number ``0x00000801`` (1-D, labels) or ``0x00000803`` (3-D, images),
    then one big-endian uint32 per dimension (LeCun et al., http://yann.lecun.com/exdb/mnist/).
    The data must be exactly ``prod(dims)`` bytes: a truncated file, trailing bytes, another magic
    or element type, zero or absurd (> 10^8 elements) dimensions and a corrupt gzip stream are each
    a :class:`DataError` naming the file.

    Args:
        path: The ``.idx`` file, or its ``.gz`` (detected by name or by the gzip signature).

    Returns:
        A uint8 array of shape ``dims``: ``(N,)`` labels or ``(N, H, W)`` images.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "labels").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 9]))
        >>> read_idx(folder / "labels")
        array([7, 2, 9], dtype=uint8)
    """
    path = Path(path)
    stream = _open_maybe_gzip(path)
    try:
        with stream:
            header = bytes(_read_exactly(stream, 4))
            if len(header) < 4:
                raise DataError(f"{path}: truncated: expected a 4-byte IDX header, found {len(header)}")
            magic = int.from_bytes(header, "big")
            expected = "expected 0x00000801 (labels) or 0x00000803 (images)"
            if header[:2] != b"\0\0":
                hint = " (it looks gzip-compressed)" if header[:2] == b"\x1f\x8b" else ""
                raise DataError(f"{path}: not an IDX file: magic 0x{magic:08x}{hint}, {expected}")
            if header[2] != 0x08:
                kind = _IDX_TYPES.get(header[2], "unknown type")
                raise DataError(f"{path}: IDX element type byte 0x{header[2]:02x} ({kind}), expected "
                                f"0x08 (unsigned byte): magic 0x{magic:08x}, {expected}")
            if header[3] not in (1, 3):
                raise DataError(f"{path}: IDX magic 0x{magic:08x} has {header[3]} dimensions, {expected}")
            dim_bytes = bytes(_read_exactly(stream, 4 * header[3]))
            if len(dim_bytes) < 4 * header[3]:
                raise DataError(f"{path}: truncated: expected {4 * header[3]} bytes of dimensions "
                                f"after the magic, found {len(dim_bytes)}")
            dims = tuple(int.from_bytes(dim_bytes[i:i + 4], "big") for i in range(0, 4 * header[3], 4))
            count = int(np.prod(dims, dtype=object))
            if min(dims) == 0:
                raise DataError(f"{path}: IDX dimensions {dims} contain a zero")
            if count > MAX_IDX_ELEMENTS:
                raise DataError(f"{path}: IDX dimensions {dims} give {count} elements, more than "
                                f"the {MAX_IDX_ELEMENTS} this reader accepts")
            data = _read_exactly(stream, count)
            if len(data) < count:
                raise DataError(f"{path}: truncated: expected {count} bytes of data, found {len(data)}")
            extra = len(_read_exactly(stream, 1 << 20))
            if extra:
                more = "+" if extra == 1 << 20 else ""
                raise DataError(f"{path}: {extra}{more} trailing bytes after the {count} bytes of data "
                                f"its header {dims} announces")
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: corrupt or unreadable gzip stream: {err}") from None
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def read_cifar_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR-10 binary batch: records of 1 label byte + 3072 pixel bytes (R, G, B planes).

    Args:
        path: A ``data_batch_<i>.bin`` or ``test_batch.bin`` file (Krizhevsky 2009,
            https://www.cs.toronto.edu/~kriz/cifar.html).

    Returns:
        ``(images, labels)``: uint8 ``(N, 3, 32, 32)`` and int64 ``(N,)`` with labels in ``[0, 10)``.
    """
    path = Path(path)
    raw = _read_bounded(path, MAX_CIFAR_BATCH_BYTES)
    record = 1 + 3 * 32 * 32
    if not raw or len(raw) % record:
        raise DataError(f"{path}: size {len(raw)} bytes is not a positive multiple of the "
                        f"{record}-byte CIFAR-10 record (1 label + 3072 pixels)")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, 0].astype(np.int64)
    check_labels(labels, 10, path)
    return rows[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def _read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of ``path``; a missing, unreadable or over-``limit`` file is a :class:`DataError`."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise DataError(f"{path}: {size} bytes, more than the {limit} a CIFAR-10 batch may have")
        return path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err}") from None


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` inside a pickle: only :func:`_safe_reconstruct` accepts it, so
    a pickle cannot call ``ndarray(shape)`` itself (an uninitialized, arbitrarily large array)."""


_NDARRAY = _NdarrayToken()


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``_reconstruct`` as numpy's own pickles call it: an empty ``ndarray`` that the pickle's
    ``BUILD`` then fills from its raw bytes (so the array is never larger than the file)."""
    if subtype is not _NDARRAY or shape != (0,):
        raise pickle.UnpicklingError("_reconstruct is allowed only for an empty numpy.ndarray, "
                                     f"got {type(subtype).__name__} of shape {shape!r}")
    return _reconstruct(np.ndarray, shape, dtype)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as numpy's protocol-2 pickles use it (raw bytes as latin-1 text), only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode allowed for latin-1 text only, not {encoding!r}")
    return codecs.encode(text, "latin1")


_PICKLE_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a plain numpy array needs; nothing else runs."""

    def __init__(self, file: IO[bytes], path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"refusing to load {self._path}: it references {module}.{name}; "
                            "only plain arrays are allowed") from None


def read_cifar_python(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR-10 Python batch without executing code from the file.

    The batch is a protocol-2 pickle (written by Python 2) of a dict with ``b'data'``, a uint8
    ``(N, 3072)`` array, and ``b'labels'``, N ints. It is unpickled with ``encoding="bytes"`` by an
    unpickler that resolves only numpy's array-rebuilding globals; any other global (``os.system``,
    ``builtins.eval``...) is a :class:`DataError` raised before anything is called. The file is
    read whole first (at most 1 GiB), so no length field in it can make the unpickler allocate more
    than the file holds, and arrays are rebuilt only the way numpy pickles them (empty, then filled
    from the file's bytes).

    Args:
        path: A ``data_batch_<i>`` or ``test_batch`` file (Krizhevsky 2009).

    Returns:
        ``(images, labels)``: uint8 ``(N, 3, 32, 32)`` and int64 ``(N,)`` with labels in ``[0, 10)``.
    """
    path = Path(path)
    raw = _read_bounded(path, MAX_CIFAR_BATCH_BYTES)
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(raw), path).load()
    except DataError:
        raise
    except Exception as err:  # any malformed pickle: UnpicklingError, EOFError, ValueError, MemoryError...
        raise DataError(f"{path}: not a readable CIFAR-10 Python batch: "
                        f"{type(err).__name__}: {str(err)[:200]}") from None
    try:
        return _batch_arrays(batch, path)
    except RecursionError:
        raise DataError(f"{path}: not a CIFAR-10 Python batch: nested too deeply") from None


def _batch_arrays(batch: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Checks an unpickled CIFAR-10 batch and returns its ``(images, labels)``."""
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        keys = sorted(repr(k)[:40] for k in list(batch)[:20])
        raise DataError(f"{path}: the dict lacks b'data' or b'labels' (keys: {keys})")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape[1:] == (3072,)):
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' must be a uint8 (N, 3072) array, found {found}")
    if not isinstance(labels, (list, np.ndarray)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
        raise DataError(f"{path}: b'labels' must be a list of ints")
    try:
        label_array = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (OverflowError, ValueError):
        raise DataError(f"{path}: b'labels' hold values beyond 64-bit integers") from None
    if len(label_array) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(label_array)} labels")
    check_labels(label_array, 10, path)
    return data.reshape(-1, 3, 32, 32), label_array


def check_labels(labels: np.ndarray, num_classes: int, where: Path | str) -> None:
    """Raises unless every label lies in ``[0, num_classes)``."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: labels range over [{labels.min()}, {labels.max()}], but the "
                        f"dataset has {num_classes} classes (labels 0..{num_classes - 1})")
