"""Imbalanced classes: loss weights per class, and a loader that draws classes equally."""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from visionkit._checks import check_int, check_optional_int, check_seed, describe
from visionkit.data._loaders import _seed_worker
from visionkit.exceptions import ConfigurationError, DataError

__all__ = ["balanced_loader", "class_counts", "class_weights"]

_MODES = ("balanced",)


def class_counts(dataset: Dataset[Any]) -> torch.Tensor:
    """The number of samples of each class, as an ``int64`` tensor of ``num_classes`` values.

    ``dataset`` is a visionkit data set, or any data set with its labels in ``targets``
    (torchvision's ``ImageFolder``, ``CIFAR10``, ...); the number of classes is
    ``len(dataset.classes)`` where it has ``classes``, else the largest label plus one.

    Raises:
        ConfigurationError: if ``dataset`` has no ``targets``, or they are not integer labels
            in ``0..num_classes-1``.
    """
    targets = _targets(dataset)
    classes = getattr(dataset, "classes", None)
    num_classes = len(classes) if isinstance(classes, (list, tuple)) else None
    if num_classes is None:
        num_classes = int(targets.max()) + 1 if targets.numel() else 0
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise ConfigurationError(
            f"the labels of {type(dataset).__name__} must lie in 0..{num_classes - 1} for its "
            f"{num_classes} classes, found {int(targets.min())} to {int(targets.max())}"
        )
    return torch.bincount(targets, minlength=num_classes)


def class_weights(dataset: Dataset[Any], *, mode: str = "balanced") -> torch.Tensor:
    """A ``float32`` weight per class for the loss, larger for rarer classes.

    ``mode="balanced"`` is scikit-learn's rule: ``n_samples / (n_classes * count[c])``, so
    every class contributes equally to the loss, and a data set with equal counts gets
    weights of 1. Pass them to the loss::

        loss = torch.nn.CrossEntropyLoss(weight=class_weights(data.train))
        trainer = Trainer(model, loss=loss)      # moved to the trainer's device with the model

    Args:
        dataset: The training set (see [`class_counts`][visionkit.data.class_counts] for what is
            accepted).
        mode: ``"balanced"``.

    Raises:
        DataError: if a class has no sample: its weight would be infinite.
        ConfigurationError: for another ``mode``, or a data set without labels.

    Examples:
        >>> from visionkit.data import TensorImageDataset
        >>> images = torch.zeros(100, 1, 2, 2, dtype=torch.uint8)
        >>> data = TensorImageDataset(images, torch.tensor([0] * 90 + [1] * 10), ["a", "b"])
        >>> class_weights(data)
        tensor([0.5556, 5.0000])
    """
    if not isinstance(mode, str) or mode not in _MODES:
        raise ConfigurationError(f"mode must be 'balanced', got {describe(mode)}")
    counts = class_counts(dataset)
    empty = [i for i, count in enumerate(counts.tolist()) if count == 0]
    if empty:
        classes = getattr(dataset, "classes", None)
        named = [classes[i] for i in empty] if isinstance(classes, (list, tuple)) else empty
        raise DataError(
            f"class(es) {named} have no samples in this data set, so their balanced weight "
            "would be infinite: keep only the classes present (DataSplits.subset) or add "
            "samples of them"
        )
    total = counts.sum().to(torch.float64)
    weights = total / (len(counts) * counts.to(torch.float64))
    return weights.to(torch.float32)


def balanced_loader(
    dataset: Dataset[Any],
    batch_size: int,
    *,
    seed: int = 0,
    num_samples: int | None = None,
    num_workers: int = 0,
) -> DataLoader[Any]:
    """A ``DataLoader`` that draws every class equally often, with replacement.

    Each sample is drawn with probability proportional to ``1 / count[its class]``
    (a ``WeightedRandomSampler``), so each class present makes up about the same share of
    every epoch; rare images repeat, frequent ones are left out of some epochs. An epoch is
    ``num_samples`` draws (default: ``len(dataset)``).

    The draws come from a ``torch.Generator`` seeded with ``seed`` (also the loader's
    generator, which seeds its workers): the same seed gives the same batches, and the
    ``Trainer`` saves and replays that generator, so a run resumed mid-epoch from a
    checkpoint continues exactly. Pass the loader where a data set would go::

        trainer.fit(balanced_loader(data.train, 64), data.val)

    Args:
        dataset: The training set (see [`class_counts`][visionkit.data.class_counts] for what is
            accepted).
        batch_size: Samples per batch.
        seed: Seed of the draws.
        num_samples: Draws per epoch.
        num_workers: Loader worker processes (seeded reproducibly).

    Raises:
        ConfigurationError: for a data set without labels or with no samples, or a bad
            ``batch_size``, ``num_samples``, ``num_workers`` or ``seed``.
    """
    batch_size = check_int("batch_size", batch_size, least=1)
    seed = check_seed("seed", seed)
    num_samples = check_optional_int("num_samples", num_samples, least=1)
    num_workers = check_int("num_workers", num_workers, least=0)
    counts = class_counts(dataset)
    targets = _targets(dataset)
    if not targets.numel():
        raise ConfigurationError("balanced_loader needs a data set with samples, got an empty one")
    weights = 1.0 / counts.to(torch.float64)[targets]
    generator = torch.Generator().manual_seed(seed)
    sampler = WeightedRandomSampler(
        weights.tolist(), num_samples or len(targets), replacement=True, generator=generator
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        worker_init_fn=_seed_worker if num_workers else None,
        generator=generator,
    )


def _targets(dataset: Any) -> torch.Tensor:
    """The labels of ``dataset`` as a 1-D ``int64`` tensor."""
    targets = getattr(dataset, "targets", None)
    if targets is None or not isinstance(dataset, Sized):
        raise ConfigurationError(
            "expected a data set with its labels in .targets (visionkit's data sets, "
            f"torchvision's ImageFolder or CIFAR10), got {describe(dataset)}: pass the data "
            "set itself, not a Subset or a DataLoader"
        )
    try:
        labels = torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError):
        labels = None
    if labels is None or labels.dim() != 1 or labels.is_floating_point() or labels.is_complex():
        raise ConfigurationError(
            f"the targets of {type(dataset).__name__} must be one integer label per sample, "
            f"got {describe(targets)}"
        )
    return labels.to(torch.int64)
