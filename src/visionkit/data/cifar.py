"""CIFAR-10 from its python pickle batches, read without running any code they might hold."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.data._archives import extract_tar
from visionkit.data._datasets import Stats, TensorImageDataset, normalization
from visionkit.data._splits import DataSplits, in_memory_splits
from visionkit.exceptions import DataError

__all__ = ["CIFAR10_CLASSES", "cifar10", "read_cifar_batch", "read_cifar_meta"]

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
"""CIFAR-10's class names in label order (``batches.meta``'s ``label_names``)."""
_FOLDER = "cifar-10-batches-py"
_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_TEST = "test_batch"
_META = "batches.meta"
_ARCHIVE = "cifar-10-python.tar.gz"
_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_MD5 = "c58f30108f718f92721af3b95e74349a"


def _numpy_reconstruct() -> Any:
    try:  # NumPy 2 moved it; the old name still works there, with a warning.
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


class _ForbiddenObject(pickle.UnpicklingError):
    """The file asks to build something other than NumPy arrays and plain data."""


class _SafeUnpickler(pickle.Unpickler):
    """Builds only NumPy arrays and plain data: a crafted file cannot run code."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how protocol 2 stores bytes written by Python 3
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise _ForbiddenObject(f"it asks to build {module}.{name}")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"CIFAR-10 file not found: {path}. Download the data set (download=True) or "
            "copy the complete cifar-10-batches-py folder there"
        ) from None
    except OSError as error:
        raise DataError(f"cannot read CIFAR-10 file {path}: {error}") from error
    if not raw:
        raise DataError(f"{path} is empty (0 bytes): delete it and download it again")
    try:
        loaded = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _ForbiddenObject as error:
        raise DataError(
            f"refused to read {path}: {error}, but CIFAR-10 batches hold only NumPy arrays and "
            "plain data, and unpickling other objects could run code. Download the file again"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
    ) as error:
        raise DataError(
            f"{path} is truncated or corrupt ({type(error).__name__}: {error}); delete it "
            "and download it again"
        ) from None
    if not isinstance(loaded, dict):
        raise DataError(f"{path} holds a {type(loaded).__name__}, expected a CIFAR-10 batch dict")
    return {_text(key): value for key, value in loaded.items()}


def _text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def read_cifar_batch(
    path: str | os.PathLike[str], *, num_classes: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one CIFAR-10 python batch file (``data_batch_1``, ``test_batch``, ...).

    The file is a pickled dict whose ``data`` is a ``uint8`` array ``N x 3072`` (1024 red,
    1024 green, then 1024 blue values per row, each channel row-major) and ``labels`` a list
    of ``N`` ints. It is unpickled with a restricted unpickler that builds only NumPy arrays
    and plain values, so a file crafted to run code is refused instead.

    Args:
        path: The batch file.
        num_classes: Labels must lie in ``0..num_classes-1``.

    Returns:
        ``(images, labels)``: ``uint8`` images ``N x 3 x 32 x 32`` and ``int64`` labels.

    Raises:
        DataError: if the file is missing, empty, truncated, not a CIFAR-10 batch, or holds
            a label outside ``0..num_classes-1``; the message names the file.
    """
    path = Path(path)
    batch = _unpickle(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(
            f"{path} is not a CIFAR-10 batch: expected the keys 'data' (a NumPy array) and "
            f"'labels', found {sorted(batch)}"
        )
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{path}: expected data as uint8 of shape (N, 3072), found {data.dtype} of shape "
            f"{data.shape}; the file is damaged or not from CIFAR-10"
        )
    targets = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if targets.shape != (data.shape[0],):
        raise DataError(
            f"{path} holds {data.shape[0]} images but {targets.numel()} labels; the file is "
            "damaged: download it again"
        )
    _check_labels(targets, num_classes, path)
    if not (data.flags.writeable and data.flags.c_contiguous):
        data = np.array(data, copy=True)
    images = torch.from_numpy(data).view(-1, 3, 32, 32)
    return images, targets


def _check_labels(targets: torch.Tensor, num_classes: int, path: Path) -> None:
    bad = torch.nonzero((targets < 0) | (targets >= num_classes)).flatten()
    if bad.numel():
        row = int(bad[0])
        raise DataError(
            f"{path}: labels must lie in 0..{num_classes - 1}, found {int(targets[row])} at "
            f"row {row} ({bad.numel()} bad labels in all); the file is damaged or from "
            "another data set"
        )


def read_cifar_meta(path: str | os.PathLike[str]) -> list[str]:
    """The class names in a CIFAR-10 ``batches.meta`` file (its ``label_names``)."""
    path = Path(path)
    meta = _unpickle(path)
    names = meta.get("label_names")
    if not isinstance(names, list) or not names:
        raise DataError(
            f"{path} is not a CIFAR-10 batches.meta file: expected a 'label_names' list, "
            f"found keys {sorted(meta)}"
        )
    return [_text(name) for name in names]


def cifar10(
    root: str | os.PathLike[str],
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    normalize: Stats = None,
    download: bool = False,
) -> DataSplits:
    """CIFAR-10 as in-memory train / validation / test sets (``uint8``, 3 x 32 x 32).

    Reads the python pickle batches ``data_batch_1`` .. ``data_batch_5``, ``test_batch``
    and ``batches.meta`` from ``root/cifar-10-batches-py/`` (where torchvision downloads
    them) or straight from ``root``. When neither holds them but ``root`` holds the official
    archive ``cifar-10-python.tar.gz`` (copied there for an offline machine, or downloaded
    with ``download=True``), the archive is extracted into ``root`` first, safely: every
    member is checked before anything is written (see the data guide), and an interrupted
    extraction leaves no half folder behind. CIFAR-10 ships no validation set, so
    ``val_fraction`` of the 50,000 training images (5,000 by default, as in most CIFAR
    recipes) is held out with a split seeded by ``seed``. The class names come from
    ``batches.meta`` when it is there. W3 keeps two classes with
    ``cifar10(root).subset(["airplane", "bird"])``.

    Args:
        root: Folder holding the batches or the archive, or where to download it.
        val_fraction: Share of the training images held out for validation.
        seed: Seed of the validation split.
        normalize: ``(mean, std)`` per channel, e.g. from
            [`compute_mean_std`][visionkit.data.compute_mean_std]; ``None`` keeps pixels in
            ``[0, 1]``.
        download: If no batches are found, download the archive (or keep the one in
            ``root`` if its MD5 checksum is right) and extract it.

    Raises:
        DataError: if a batch file is missing or damaged, or the archive is damaged or
            holds a member that could write outside ``root``; the message names it.
    """
    root = Path(root)
    folder = _find(root)
    if folder is None:
        archive = root / _ARCHIVE
        if download:  # also checks the MD5 of an archive already there, fetches a bad one again
            _download(root)
        if archive.is_file():
            extract_tar(archive, root)
        folder = _locate(root, archive if archive.is_file() else None)
    classes = _classes(folder)
    mean, std = normalization(normalize)
    parts = [read_cifar_batch(folder / name, num_classes=len(classes)) for name in _TRAIN]
    train_files = TensorImageDataset(
        torch.cat([images for images, _ in parts]),
        torch.cat([labels for _, labels in parts]),
        classes,
        mean=mean,
        std=std,
    )
    del parts
    test_images, test_labels = read_cifar_batch(folder / _TEST, num_classes=len(classes))
    test = TensorImageDataset(test_images, test_labels, classes, mean=mean, std=std)
    return in_memory_splits(train_files, test, val_fraction=val_fraction, seed=seed)


def _find(root: Path) -> Path | None:
    for candidate in (root / _FOLDER, root):
        if any((candidate / name).is_file() for name in [*_TRAIN, _TEST]):
            return candidate
    return None


def _locate(root: Path, archive: Path | None) -> Path:
    folder = _find(root)
    if folder is not None:
        return folder
    if archive is not None:
        raise DataError(
            f"{archive} was extracted but holds no CIFAR-10 batches: expected "
            f"{_FOLDER}/{_TRAIN[0]} and the other batch files in it. It is not the CIFAR-10 "
            f"python archive: delete it and download {_URL}"
        )
    raise DataError(
        f"no CIFAR-10 batches found in {root / _FOLDER} or {root}: expected "
        f"{', '.join(_TRAIN)}, {_TEST} and {_META}. Pass download=True to fetch them, copy "
        f"the archive {_ARCHIVE} into {root} (it is extracted for you), or point root at "
        "the folder that holds the batches"
    )


def _classes(folder: Path) -> list[str]:
    meta = folder / _META
    return read_cifar_meta(meta) if meta.is_file() else list(CIFAR10_CLASSES)


def _download(root: Path) -> None:  # pragma: no cover - needs the network
    from torchvision.datasets.utils import download_url

    download_url(_URL, str(root), filename=_ARCHIVE, md5=_MD5)
