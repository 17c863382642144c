"""Datasets: the registry of image datasets, their file parsers, splits, subsets and loaders.

Every dataset gives a :class:`DatasetSplits` of float32 images ``(N, C, H, W)`` in ``[0, 1]``
(never mean-subtracted: the SNN's analog input and the zero-skipping counts need non-negative
inputs) and int64 labels. Files are only read, never downloaded: a missing file is one
:class:`~snnergy.errors.DataError` that says where it looked and how to get the files. Parsers
validate everything they read (IDX headers and sizes, CIFAR record sizes, pickled structure) and
load CIFAR's Python pickles without executing code. :func:`batches` (and :func:`input_batches`)
is the one way every stage walks through data in batches.
"""

from snnergy.data.batches import DEFAULT_BATCH, Data, batches, input_batches, is_pair
from snnergy.data.datasets import (
    CIFAR10_CLASSES,
    CIFAR_BATCHES,
    DATASETS,
    DIGIT_CLASSES,
    FASHION_MNIST_APT_DIR,
    FASHION_MNIST_CLASSES,
    IDX_FILES,
    DatasetLoader,
    DatasetSplits,
    calibration_set,
    load_cifar10,
    load_dataset,
    load_digits_dataset,
    load_fashion_mnist,
    load_mnist,
    load_synthetic_blobs,
    make_loader,
)
from snnergy.data.parsers import MAX_IDX_ELEMENTS, read_cifar_binary, read_cifar_python, read_idx

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR_BATCHES",
    "DATASETS",
    "DEFAULT_BATCH",
    "DIGIT_CLASSES",
    "FASHION_MNIST_APT_DIR",
    "FASHION_MNIST_CLASSES",
    "IDX_FILES",
    "MAX_IDX_ELEMENTS",
    "Data",
    "DatasetLoader",
    "DatasetSplits",
    "batches",
    "calibration_set",
    "input_batches",
    "is_pair",
    "load_cifar10",
    "load_dataset",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "load_synthetic_blobs",
    "make_loader",
    "read_cifar_binary",
    "read_cifar_python",
    "read_idx",
]
