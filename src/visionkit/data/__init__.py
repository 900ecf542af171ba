"""Data: data set factories, splits with label maps, and fast loaders.

Every factory returns a :class:`DataSplits` with ``train``, ``val`` and ``test`` sets and the
class names. In-memory data sets (:class:`TensorImageDataset`) keep images as ``uint8`` and
take the trainer's fast path.
"""

from visionkit.data._datasets import ClassificationDataset, TensorImageDataset
from visionkit.data._idx import read_idx
from visionkit.data._loaders import (
    BatchAugment,
    EpochLoader,
    InMemoryLoader,
    SeededSampler,
    epoch_permutation,
    make_loader,
)
from visionkit.data._splits import DataSplits, split_indices
from visionkit.data.mnist import fashion_mnist, mnist, mnist_sample

__all__ = [
    "BatchAugment",
    "ClassificationDataset",
    "DataSplits",
    "EpochLoader",
    "InMemoryLoader",
    "SeededSampler",
    "TensorImageDataset",
    "epoch_permutation",
    "fashion_mnist",
    "make_loader",
    "mnist",
    "mnist_sample",
    "read_idx",
    "split_indices",
]
