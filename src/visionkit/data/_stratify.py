"""Stratified, seeded splits: every class in every split, in the requested proportions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from visionkit._checks import check_fraction, check_seed
from visionkit.data._datasets import ClassificationDataset
from visionkit.exceptions import ConfigurationError, DataError

__all__ = ["check_fractions", "held_out_counts", "stratified_indices", "stratified_splits"]

Split = tuple[ClassificationDataset, ClassificationDataset | None, ClassificationDataset | None]


def check_fractions(val_fraction: float, test_fraction: float) -> tuple[float, float]:
    """Both fractions in ``[0, 1)``, leaving a share of the images for training."""
    val_fraction = check_fraction("val_fraction", val_fraction)
    test_fraction = check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1:
        raise ConfigurationError(
            f"val_fraction + test_fraction must be below 1 so that images are left for "
            f"training, got {val_fraction} + {test_fraction}: lower one of them"
        )
    return val_fraction, test_fraction


def held_out_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int] | None:
    """How many of a class's ``n`` images go to validation and test; ``None``: too few.

    Each count is ``n * fraction`` rounded half up, at least 1 when its fraction is above
    0. At least one image stays for training: when the rounded counts leave none, the
    larger held-out count gives one up, until one is left. ``None`` when ``n`` is below
    the number of splits that need an image (1 for training, plus one per fraction > 0).
    """
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if n < needed:
        return None
    n_val, n_test = _share(n, val_fraction), _share(n, test_fraction)
    while n - n_val - n_test < 1:
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def _share(n: int, fraction: float) -> int:
    return max(1, math.floor(n * fraction + 0.5)) if fraction > 0 else 0


def stratified_indices(
    targets: torch.Tensor,
    classes: Sequence[str],
    *,
    val_fraction: float,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split sample indices by class: ``(train, val, test)``, each in ascending order.

    For each class, in label order, its samples (in data set order) are shuffled with one
    ``torch.Generator`` seeded with ``seed``, and the first `held_out_counts` go to
    validation, the next to test, the rest to training. The same targets, fractions and
    seed give the same split on every platform.

    Raises:
        ConfigurationError: for fractions outside ``[0, 1)`` or summing to 1 or more, or a
            seed ``torch.manual_seed`` refuses.
        DataError: naming every class with too few samples to appear in each requested
            split, its count, and what to do.
    """
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    seed = check_seed("seed", seed)
    generator = torch.Generator().manual_seed(seed)
    parts: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] = ([], [], [])
    too_few: list[str] = []
    for label, name in enumerate(classes):
        members = torch.nonzero(targets == label).flatten()
        counts = held_out_counts(len(members), val_fraction, test_fraction)
        if counts is None:
            too_few.append(_too_few(name, len(members), val_fraction, test_fraction))
            continue
        shuffled = members[torch.randperm(len(members), generator=generator)]
        n_val, n_test = counts
        parts[1].append(shuffled[:n_val])
        parts[2].append(shuffled[n_val : n_val + n_test])
        parts[0].append(shuffled[n_val + n_test :])
    if too_few:
        raise DataError(
            f"{len(too_few)} class(es) too small for a stratified split:\n"
            + "\n".join(f"  - {line}" for line in too_few)
        )
    train, val, test = (
        torch.cat(part).sort().values if part else torch.empty(0, dtype=torch.long)
        for part in parts
    )
    return train, val, test


def _too_few(name: str, count: int, val_fraction: float, test_fraction: float) -> str:
    splits = ["training"] + ["validation"] * (val_fraction > 0) + ["test"] * (test_fraction > 0)
    images = f"{count} image{'s' if count != 1 else ''}"
    if len(splits) == 1:
        return f"class {name!r} has no images: add images of it or remove the class"
    listed = f"{', '.join(splits[:-1])} and {splits[-1]}"
    zero = [
        f"{arg}=0"
        for arg, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction))
        if fraction > 0
    ]
    return (
        f"class {name!r} has {images}, but the {listed} splits need one each "
        f"({len(splits)} images): add {len(splits) - count} or more images of it, remove "
        f"the class, or pass {' or '.join(zero)}"
    )


def stratified_splits(
    train: ClassificationDataset,
    holdout: ClassificationDataset,
    labels: Sequence[str],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> Split:
    """Hold validation and test sets out of ``train`` with `stratified_indices`.

    ``holdout`` is ``train`` with the evaluation transform: the held-out sets are taken
    from it, so they are evaluated like a validation or test folder would be. ``labels``
    name the classes in errors as the user wrote them (class folders, CSV labels). A split
    with fraction 0 is ``None``.
    """
    if not (val_fraction or test_fraction):
        return train, None, None
    train_idx, val_idx, test_idx = stratified_indices(
        train.targets,
        labels,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    val = holdout.select(val_idx) if val_fraction else None
    test = holdout.select(test_idx) if test_fraction else None
    return train.select(train_idx), val, test
