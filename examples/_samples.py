"""Where the examples find the real sample data when ``--data-root`` is not given.

The samples live in ``../shared/data`` beside the repository (or wherever the environment
variable ``VISIONKIT_SHARED_DATA`` points); see that folder's README.
"""

from __future__ import annotations

import os
from pathlib import Path

from visionkit.data import (
    CIFAR10_CLASSES,
    DataSplits,
    TensorImageDataset,
    read_cifar_batch,
    read_cifar_meta,
    split_indices,
)

SHARED_DATA = Path(
    os.environ.get("VISIONKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def shared_sample(name: str) -> Path:
    """The sample ``name`` under the shared data folder; exit with a clear message if absent."""
    path = SHARED_DATA / name
    if not path.exists():
        raise SystemExit(
            f"error: sample data not found at {path}. Pass --data-root with your own copy of "
            "the data set, clone visionkit beside its shared/ folder, or set "
            "VISIONKIT_SHARED_DATA to the folder that holds the samples"
        )
    return path


def cifar10_sample(batch_file: Path, *, seed: int = 0) -> DataSplits:
    """One CIFAR-10 batch file as splits: the last 20% is the test set, 20% of the rest val.

    The 200-image ``cifar10_batches/sample_batch`` gives 128 / 32 / 40 images.
    """
    images, labels = read_cifar_batch(batch_file)
    meta = batch_file.parent / "batches.meta"
    classes = read_cifar_meta(meta) if meta.is_file() else CIFAR10_CLASSES
    full = TensorImageDataset(images, labels, classes)
    n_train = len(full) - len(full) // 5
    train_idx, val_idx = split_indices(n_train, 0.2, seed=seed)
    test = full.select(range(n_train, len(full)))
    return DataSplits(full.select(train_idx), full.select(val_idx), test, list(classes))
