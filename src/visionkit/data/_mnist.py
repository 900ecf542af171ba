"""MNIST and Fashion-MNIST from their IDX files, and the MNIST sample bundled with visionkit."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch

from visionkit._checks import check_bool, check_path
from visionkit.data._datasets import Stats, TensorImageDataset, normalization
from visionkit.data._idx import read_idx
from visionkit.data._splits import DataSplits, in_memory_splits, split_indices
from visionkit.exceptions import DataError

__all__ = ["FASHION_MNIST_CLASSES", "MNIST_CLASSES", "fashion_mnist", "mnist", "mnist_sample"]

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def mnist(
    root: str | os.PathLike[str],
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    normalize: Stats = None,
    download: bool = False,
) -> DataSplits:
    """MNIST digits as in-memory train / validation / test sets.

    Reads the four IDX files, gzipped or not, from ``root/MNIST/raw/`` (torchvision's
    layout) or straight from ``root``. MNIST ships no validation set, so ``val_fraction``
    of the 60,000 training digits is held out with a split seeded by ``seed`` (the W1 tutorial
    holds out 20%).

    Args:
        root: Folder holding the files, or where to download them.
        val_fraction: Share of the training files held out for validation.
        seed: Seed of the validation split; the same seed always gives the same split.
        normalize: ``(mean, std)`` to normalize with, e.g. ``(0.1302, 0.3069)`` as in
            the W2 tutorial; ``None`` keeps pixels in ``[0, 1]`` like ``ToTensor``.
        download: Download the files with torchvision (checksums verified) if missing.

    Raises:
        DataError: if a file is missing or damaged, holds no images, labels that are not
            integers, or training and test images of different sizes; the message names it.
        ConfigurationError: if ``val_fraction`` is not in ``[0, 1)``, ``seed`` is not an
            integer, ``normalize`` is not ``(mean, std)`` with finite values and positive
            ``std``, or ``root`` is not a path.
    """
    return _idx_splits(root, "MNIST", MNIST_CLASSES, val_fraction, seed, normalize, download)


def fashion_mnist(
    root: str | os.PathLike[str],
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    normalize: Stats = None,
    download: bool = False,
) -> DataSplits:
    """Fashion-MNIST, read like `mnist` from ``root/FashionMNIST/raw/`` or ``root``."""
    return _idx_splits(
        root, "FashionMNIST", FASHION_MNIST_CLASSES, val_fraction, seed, normalize, download
    )


def mnist_sample(
    *, val_fraction: float = 0.2, seed: int = 0, normalize: Stats = None
) -> DataSplits:
    """A real MNIST sample that ships inside visionkit: no download needed.

    It holds the first 5,000 digits of the MNIST test set (Y. LeCun, C. Cortes and
    C. J. C. Burges; CC BY-SA 3.0): the first 4,000 are the training files (of which
    ``val_fraction`` is held out for validation, seeded) and the last 1,000 the test set.

    Examples:
        >>> data = mnist_sample()
        >>> len(data.train), len(data.val), len(data.test)
        (3200, 800, 1000)
    """
    split_indices(0, val_fraction, seed=seed)  # check the split arguments before reading
    package = resources.files("visionkit.data") / "_sample"
    with resources.as_file(package) as folder:
        images = read_idx(folder / "mnist-sample-images-idx3-ubyte.gz")
        labels = read_idx(folder / "mnist-sample-labels-idx1-ubyte.gz")
    full = _dataset(images, labels, MNIST_CLASSES, normalize)
    train_files, test = full.select(range(4000)), full.select(range(4000, len(full)))
    return in_memory_splits(train_files, test, val_fraction=val_fraction, seed=seed)


def _idx_splits(
    root: str | os.PathLike[str],
    folder: str,
    classes: list[str],
    val_fraction: float,
    seed: int,
    normalize: Stats,
    download: bool,
) -> DataSplits:
    root = check_path("root", root)
    split_indices(0, val_fraction, seed=seed)  # check the split arguments before any reading
    normalization(normalize)
    if check_bool("download", download):
        _download(root, folder)
    location = _locate(root, folder)
    files = {split: (_pick(location, i), _pick(location, lb)) for split, (i, lb) in _FILES.items()}
    loaded = {
        split: _dataset(read_idx(paths[0]), read_idx(paths[1]), classes, normalize, files=paths)
        for split, paths in files.items()
    }
    train, test = loaded["train"], loaded["test"]
    if train.image_shape != test.image_shape:
        raise DataError(
            f"the training images in {location} are {_shape(train.image_shape)} but the test "
            f"images {_shape(test.image_shape)}: the files come from different data sets; "
            "download the complete data set again (download=True)"
        )
    return in_memory_splits(train, test, val_fraction=val_fraction, seed=seed)


def _shape(shape: tuple[int, int, int]) -> str:
    return "x".join(map(str, shape[1:]))


def _dataset(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    normalize: Stats,
    *,
    files: tuple[Path | str, Path | str] = ("the sample images", "the sample labels"),
) -> TensorImageDataset:
    images_file, labels_file = files
    if images.dim() != 3 or images.dtype != torch.uint8:
        raise DataError(
            f"expected MNIST images as uint8 of shape (N, 28, 28), got {images.dtype} "
            f"{tuple(images.shape)}"
        )
    if images.shape[0] == 0 or min(images.shape[1:]) < 1:
        raise DataError(
            f"{images_file} holds no images (shape {tuple(images.shape)}): the file is damaged or "
            "incomplete; download the data set again (download=True)"
        )
    if labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise DataError(
            f"expected {labels_file} to hold one integer label per image, got {labels.dtype} "
            f"of shape {tuple(labels.shape)}: the label file is not an MNIST label file"
        )
    if labels.shape != images.shape[:1]:
        raise DataError(
            f"the image file holds {images.shape[0]} images but the label file "
            f"{labels.shape[0] if labels.dim() else 0} labels; the two files do not belong together"
        )
    mean, std = normalization(normalize)
    return TensorImageDataset(images.unsqueeze(1), labels.long(), classes, mean=mean, std=std)


def _locate(root: Path, folder: str) -> Path:
    for candidate in (root / folder / "raw", root / "raw", root):
        if any(_exists(candidate, name) for name in _FILES["train"] + _FILES["test"]):
            return candidate
    raise DataError(
        f"no {folder} files found in {root} or {root / folder / 'raw'}: expected "
        f"{', '.join(_FILES['train'] + _FILES['test'])} (optionally .gz). "
        "Pass download=True to fetch them, or point root at the folder that holds them."
    )


def _exists(folder: Path, name: str) -> bool:
    return (folder / name).is_file() or (folder / f"{name}.gz").is_file()


def _pick(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"missing file {folder / name} (or {name}.gz): the folder holds "
        f"{sorted(p.name for p in folder.iterdir()) if folder.is_dir() else 'nothing'}. "
        "Download the complete data set (download=True) or copy the missing file there."
    )


def _download(root: Path, folder: str) -> None:  # pragma: no cover - needs the network
    from torchvision import datasets

    cls = {"MNIST": datasets.MNIST, "FashionMNIST": datasets.FashionMNIST}[folder]
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except (RuntimeError, OSError) as error:  # torchvision reports failed mirrors so
        raise DataError(
            f"cannot download {folder} into {root}: {error}. Without network access, copy "
            "the four files there by hand and call again with download=False"
        ) from error
