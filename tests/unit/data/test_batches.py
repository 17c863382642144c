"""The one data iterator every stage walks its data with (snnergy.data.batches)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from snnergy.data import batches, input_batches
from snnergy.errors import DataError


def test_a_pair_is_sliced_or_yielded_whole() -> None:
    x, y = torch.arange(10.0).view(5, 2), torch.arange(5)
    sliced = list(batches((x, y), batch_size=2))
    assert [len(b) for b, _ in sliced] == [2, 2, 1]
    assert torch.equal(torch.cat([b for b, _ in sliced]), x) and torch.equal(torch.cat([t for _, t in sliced]), y)
    (whole_x, whole_y), = batches([x, y], batch_size=None)
    assert whole_x is x and whole_y is y


def test_a_loader_or_any_iterable_of_batches_is_yielded_as_it_comes() -> None:
    x, y = torch.rand(7, 3), torch.arange(7)
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    assert [len(b) for b, _ in batches(loader)] == [3, 3, 1]
    assert [len(b) for b, _ in batches(loader, batch_size=None)] == [3, 3, 1]
    (bx, by), = batches([(x, [0] * 7)])  # labels become tensors
    assert bx is x and torch.equal(by, torch.zeros(7, dtype=torch.long))


@pytest.mark.parametrize(
    "data,message",
    [
        ((torch.zeros(3, 2), torch.zeros(4)), "3 inputs but 4 labels"),
        (torch.zeros(3, 2), "pair of tensors, got Tensor"),
        (5, "pair of tensors, got int"),
        ([torch.zeros(3, 2)], "must yield \\(inputs, labels\\) batches"),
    ],
)
def test_bad_data_is_one_data_error(data, message: str) -> None:
    with pytest.raises(DataError, match=message):
        list(batches(data))


def test_input_batches_take_tensors_pairs_and_loaders() -> None:
    x = torch.rand(5, 2)
    assert [len(b) for b in input_batches(x, batch_size=2)] == [2, 2, 1]
    assert [b is x for b in input_batches([x, (x, None)])] == [True, True]
    loader = DataLoader(TensorDataset(x, torch.arange(5)), batch_size=4)
    assert [len(b) for b in input_batches(loader)] == [4, 1]
    with pytest.raises(DataError, match="got str"):
        list(input_batches(["nope"]))
