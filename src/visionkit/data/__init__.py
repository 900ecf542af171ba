"""Data: data set factories, splits with label maps, and fast loaders.

Every factory returns a [`DataSplits`][visionkit.data.DataSplits] with ``train``, ``val`` and
``test`` sets and the class names. In-memory data sets
([`TensorImageDataset`][visionkit.data.TensorImageDataset]) keep images as ``uint8`` and take the
trainer's fast path. Transform presets live in [`visionkit.data.presets`][visionkit.data.presets].
"""

from visionkit.data import presets
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
from visionkit.data._mnist import fashion_mnist, mnist, mnist_sample
from visionkit.data._splits import DataSplits, split_indices
from visionkit.data.cifar import CIFAR10_CLASSES, cifar10, read_cifar_batch, read_cifar_meta
from visionkit.data.csv_data import image_csv
from visionkit.data.folder import IMAGE_EXTENSIONS, ImageFolderDataset, image_folder
from visionkit.data.imbalance import balanced_loader, class_counts, class_weights
from visionkit.data.presets import preprocess_from_transform
from visionkit.data.stats import compute_mean_std

__all__ = [
    "CIFAR10_CLASSES",
    "IMAGE_EXTENSIONS",
    "BatchAugment",
    "ClassificationDataset",
    "DataSplits",
    "EpochLoader",
    "ImageFolderDataset",
    "InMemoryLoader",
    "SeededSampler",
    "TensorImageDataset",
    "balanced_loader",
    "cifar10",
    "class_counts",
    "class_weights",
    "compute_mean_std",
    "epoch_permutation",
    "fashion_mnist",
    "image_csv",
    "image_folder",
    "make_loader",
    "mnist",
    "mnist_sample",
    "preprocess_from_transform",
    "presets",
    "read_cifar_batch",
    "read_cifar_meta",
    "read_idx",
    "split_indices",
]
