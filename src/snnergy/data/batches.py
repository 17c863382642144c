"""One way to walk through data in batches, for every stage (measure, convert, simulate, count).

Data is either an ``(inputs, labels)`` pair of tensors or any iterable of ``(x, y)`` batches,
such as a :class:`~torch.utils.data.DataLoader`. :func:`batches` yields ``(x, y)`` batches;
:func:`input_batches` yields the inputs only and also takes a bare tensor of inputs or an
iterable of input tensors (calibration data).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Union

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from snnergy.errors import DataError

#: Samples per batch when a pair of tensors is sliced.
DEFAULT_BATCH = 256

#: What the stages accept as data: a DataLoader (or any iterable of ``(x, y)`` batches) or an
#: ``(inputs, labels)`` pair of tensors.
Data = Union[DataLoader, tuple[Tensor, Tensor]]


def is_pair(data: Any) -> bool:
    """Whether ``data`` is an ``(inputs, labels)`` pair of tensors (not an iterable of batches).

    Example:
        >>> is_pair((torch.zeros(3, 2), torch.zeros(3))), is_pair([(torch.zeros(3, 2), torch.zeros(3))])
        (True, False)
    """
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, Tensor) for d in data)


def batches(data: Any, batch_size: int | None = DEFAULT_BATCH) -> Iterator[tuple[Tensor, Tensor]]:
    """Yields ``(x, y)`` batches of ``data``.

    Args:
        data: An ``(inputs, labels)`` pair of tensors, or an iterable of ``(x, y)`` batches (a
            DataLoader); its batches are yielded as they come, labels as tensors.
        batch_size: Samples per batch of a pair (``None``: the whole pair as one batch).

    Raises:
        DataError: A pair whose inputs and labels differ in length, or data that is neither.

    Example:
        >>> x, y = torch.arange(5.0).view(5, 1), torch.arange(5)
        >>> [len(b) for b, _ in batches((x, y), batch_size=2)], [len(b) for b, _ in batches((x, y), None)]
        ([2, 2, 1], [5])
    """
    if is_pair(data):
        x, y = data
        if len(x) != len(y):
            raise DataError(f"data: {len(x)} inputs but {len(y)} labels")
        if batch_size is None:
            yield x, y
            return
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
        return
    if isinstance(data, Tensor) or not isinstance(data, Iterable):
        raise DataError("data must be a DataLoader (or iterable) of (inputs, labels) batches or an "
                        f"(inputs, labels) pair of tensors, got {type(data).__name__}")
    for item in data:
        if not (isinstance(item, (tuple, list)) and len(item) >= 2 and isinstance(item[0], Tensor)):
            raise DataError("data must yield (inputs, labels) batches of tensors")
        yield item[0], torch.as_tensor(item[1])


def input_batches(data: Any, batch_size: int = DEFAULT_BATCH) -> Iterator[Tensor]:
    """Yields the input batches of ``data``: a tensor of inputs (sliced into ``batch_size``), or
    an iterable of input tensors or of ``(x, y)`` batches (calibration data).

    Raises:
        DataError: An item that is neither a tensor nor an ``(x, ...)`` batch.

    Example:
        >>> [tuple(x.shape) for x in input_batches(torch.zeros(5, 2), batch_size=4)]
        [(4, 2), (1, 2)]
        >>> [tuple(x.shape) for x in input_batches([(torch.zeros(3, 2), torch.zeros(3))])]
        [(3, 2)]
    """
    if isinstance(data, Tensor):
        for i in range(0, data.shape[0], batch_size):
            yield data[i : i + batch_size]
        return
    for item in data:
        x = item[0] if isinstance(item, (tuple, list)) and item else item
        if not isinstance(x, Tensor):
            raise DataError(f"calibration batches must be tensors or (x, y) pairs, got {type(x).__name__}")
        yield x


__all__ = ["DEFAULT_BATCH", "Data", "batches", "input_batches", "is_pair"]
