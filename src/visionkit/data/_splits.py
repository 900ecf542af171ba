"""The split container every data set factory returns, and the seeded validation split."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from visionkit._checks import check_fraction, check_int, check_seed, describe
from visionkit.data._datasets import ClassificationDataset, TensorImageDataset
from visionkit.exceptions import ConfigurationError

__all__ = ["DataSplits", "in_memory_splits", "split_in_place", "split_indices"]


def split_indices(
    n: int, val_fraction: float, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle ``range(n)`` with ``seed`` and cut off ``val_fraction`` for validation.

    The same ``n``, fraction and seed always give the same split, on every platform
    (it uses a seeded ``torch.Generator``, not the global random state). As in the W1 tutorial,
    the validation set gets ``floor(val_fraction * n)`` samples.

    Returns:
        ``(train_indices, val_indices)``, disjoint, together covering ``range(n)``.

    Raises:
        ConfigurationError: if ``n`` is not an integer >= 0, ``val_fraction`` is not a
            number in ``[0, 1)`` (``nan``, ``inf``, ``True`` and strings are refused), or
            ``seed`` is not an integer that ``torch.manual_seed`` accepts.

    Examples:
        >>> train, val = split_indices(10, 0.2, seed=0)
        >>> len(train), len(val), sorted(train.tolist() + val.tolist()) == list(range(10))
        (8, 2, True)
    """
    n = check_int("the number of samples", n, least=0)
    val_fraction = check_fraction("val_fraction", val_fraction)
    seed = check_seed("seed", seed)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_val = int(val_fraction * n)
    return order[n_val:], order[:n_val]


def split_in_place(
    dataset: TensorImageDataset, val_fraction: float, *, seed: int = 0
) -> tuple[TensorImageDataset, TensorImageDataset | None]:
    """`split_indices` applied to an in-memory data set without copying its images.

    Reorders ``dataset``'s images and labels **in place** (so pass a data set nothing else
    uses), then returns the training and validation sets as two views of that one buffer:
    ``train[i]`` is the original sample ``train_indices[i]`` and ``val[i]`` the original
    ``val_indices[i]``, exactly as ``dataset.select(...)`` would give, but the peak memory
    stays near one copy of the images instead of two.

    Returns:
        ``(train, val)``; ``val`` is ``None`` when ``val_fraction`` holds out no sample.
    """
    train_idx, val_idx = split_indices(len(dataset), val_fraction, seed=seed)
    order = torch.cat([val_idx, train_idx])
    _permute_rows_(dataset.images, order)
    _permute_rows_(dataset.targets, order)
    n_val = len(val_idx)
    return _rows(dataset, slice(n_val, None)), _rows(dataset, slice(0, n_val)) if n_val else None


def in_memory_splits(
    train_files: TensorImageDataset,
    test: TensorImageDataset,
    *,
    val_fraction: float,
    seed: int,
) -> DataSplits:
    """Splits of a data set that ships train and test files but no validation set.

    ``val_fraction`` of the training files is held out with a split seeded by ``seed``,
    in place (`split_in_place`): the freshly read images are reordered, not copied.
    """
    train, val = split_in_place(train_files, val_fraction, seed=seed)
    return DataSplits(
        train=train,
        val=val,
        test=test,
        classes=list(train_files.classes),
        mean=tuple(train_files.mean) if train_files.mean else None,
        std=tuple(train_files.std) if train_files.std else None,
    )


def _rows(dataset: TensorImageDataset, rows: slice) -> TensorImageDataset:
    return dataset.derive(dataset.images[rows], dataset.targets[rows])


def _permute_rows_(tensor: torch.Tensor, order: torch.Tensor, block: int = 4096) -> None:
    """``tensor[:] = tensor[order]`` in place, with two blocks of rows as scratch memory.

    Fills the rows block by block. The rows a block needs lie at or after its start; the
    rows it overwrites that are still to be placed move into the places the needed rows
    left, and ``where`` / ``holder`` track which original row sits where.
    """
    n = tensor.shape[0]
    if n == 0:  # nothing to move (and view(0, -1) would be ambiguous)
        return
    if not tensor.is_contiguous():
        tensor.copy_(tensor[order])
        return
    rows_of = tensor.view(n, -1)
    where = torch.arange(n)  # where[r]: current position of original row r
    holder = torch.arange(n)  # holder[p]: original row now at position p
    for start in range(0, n, block):
        end = min(start + block, n)
        wanted = order[start:end]
        source = where[wanted]
        inside = source < end
        vacated = source[~inside]
        needed = torch.zeros(end - start, dtype=torch.bool)
        needed[source[inside] - start] = True
        displaced = torch.arange(start, end)[~needed]
        rows = rows_of.index_select(0, source)
        rows_of.index_copy_(0, vacated, rows_of.index_select(0, displaced))
        rows_of[start:end] = rows
        moved_ids = holder[displaced]
        where[moved_ids], holder[vacated] = vacated, moved_ids
        where[wanted], holder[start:end] = torch.arange(start, end), wanted


@dataclass(frozen=True)
class DataSplits:
    """Train, validation and test sets of one data set, with their class names.

    Every factory in [`visionkit.data`][visionkit.data] returns one. Splits that a data set does not
    have are ``None``.

    Attributes:
        train: The training set.
        val: The validation set (held out of the training files with a seeded split where
            the data set ships none).
        test: The test set.
        classes: Class names; ``classes[i]`` is the name of label ``i``.
        label_map: Original label to label used here, when the labels were remapped
            ([`subset`][visionkit.data.DataSplits.subset]), else ``None``.
        mean: Per-channel mean used for normalization, or ``None``.
        std: Per-channel standard deviation used for normalization, or ``None``.
    """

    train: ClassificationDataset
    val: ClassificationDataset | None
    test: ClassificationDataset | None
    classes: list[str]
    label_map: dict[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def splits(self) -> dict[str, ClassificationDataset]:
        """The splits that exist, by name (``"train"``, ``"val"``, ``"test"``)."""
        named = {"train": self.train, "val": self.val, "test": self.test}
        return {name: ds for name, ds in named.items() if ds is not None}

    def subset(self, classes: Sequence[str | int] | Mapping[str | int, int]) -> DataSplits:
        """Keep only ``classes`` (names or labels) and renumber them ``0, 1, ...`` in that order.

        W3 keeps airplane and bird of CIFAR-10: ``subset(["airplane", "bird"])`` maps label
        0 to 0 and 2 to 1, and the class names become ``["airplane", "bird"]``.

        A mapping gives the new labels explicitly: ``subset({"bird": 1, "airplane": 0})`` is
        the same subset. Its new labels must be ``0, 1, ..., k-1``, each used once.

        Raises:
            ConfigurationError: if ``classes`` is empty, a plain string (pass a list), names
                an unknown class or a label out of range, repeats a class, holds something
                that is neither a name nor an integer label, or (a mapping) its new labels
                are not ``0..k-1`` each once.
        """
        old_labels = self._old_labels(classes)
        if len(set(old_labels)) != len(old_labels):
            raise ConfigurationError(
                f"classes must not repeat, got {list(classes)}: name each class once"
            )
        label_map = {old: new for new, old in enumerate(old_labels)}
        names = [self.classes[old] for old in old_labels]
        relabelled = {k: ds.relabel(label_map, names) for k, ds in self.splits().items()}
        if self.label_map is not None:  # compose with an earlier remap
            inverse = {new: old for old, new in self.label_map.items()}
            label_map = {inverse[old]: new for old, new in label_map.items()}
        return replace(
            self,
            train=relabelled["train"],
            val=relabelled.get("val"),
            test=relabelled.get("test"),
            classes=names,
            label_map=label_map,
        )

    def with_normalization(self, mean: Sequence[float], std: Sequence[float]) -> DataSplits:
        """Normalize every split with the given per-channel ``mean`` and ``std``.

        Works on in-memory data sets (MNIST, Fashion-MNIST, CIFAR-10); for file-based data
        sets pass the normalization in their transforms instead. One value (or a single
        number) is used for every channel; `mean` and `std` then hold it per
        channel.

        Raises:
            ConfigurationError: if a split is not in memory, or the statistics are not
                finite numbers, one per channel, with positive ``std``.
        """
        updated: dict[str, TensorImageDataset] = {}
        for name, ds in self.splits().items():
            if not isinstance(ds, TensorImageDataset):
                raise ConfigurationError(
                    f"the {name} split is a {type(ds).__name__}, which takes its normalization "
                    "from its transform: build it with a transform that ends in Normalize"
                )
            updated[name] = ds.with_normalization(mean, std)
        train = updated["train"]
        return replace(
            self,
            train=train,
            val=updated.get("val"),
            test=updated.get("test"),
            mean=tuple(train.mean) if train.mean else None,
            std=tuple(train.std) if train.std else None,
        )

    def _old_labels(self, classes: Sequence[str | int] | Mapping[str | int, int]) -> list[int]:
        """The current labels of ``classes``, in the order of their new labels."""
        if isinstance(classes, (str, bytes)):
            raise ConfigurationError(
                f"classes must be a list of class names or labels, got the string {classes!r}: "
                f"pass [{classes!r}] to keep that one class"
            )
        if not isinstance(classes, (Sequence, Mapping)):
            raise ConfigurationError(
                "classes must be a list of class names or labels (or a mapping to new labels), "
                f"got {describe(classes)}"
            )
        if not classes:
            raise ConfigurationError(
                f"classes is empty: name at least one of the classes {self.classes} to keep"
            )
        if isinstance(classes, Sequence):
            return [self._label_of(c) for c in classes]
        new_labels = [check_int(f"the new label of {key!r}", v) for key, v in classes.items()]
        if sorted(new_labels) != list(range(len(classes))):
            raise ConfigurationError(
                f"the new labels of a class mapping must be 0..{len(classes) - 1}, each once, "
                f"got {dict(classes)}; to keep classes in a given order pass a list instead"
            )
        order = sorted(zip(new_labels, classes, strict=True))
        return [self._label_of(key) for _, key in order]

    def _label_of(self, name_or_label: Any) -> int:
        if isinstance(name_or_label, str):
            try:
                return self.classes.index(name_or_label)
            except ValueError:
                raise ConfigurationError(
                    f"no class named {name_or_label!r}; the classes are {self.classes}"
                ) from None
        if isinstance(name_or_label, bool) or not hasattr(name_or_label, "__index__"):
            raise ConfigurationError(
                f"expected a class name (str) or an integer label, got {describe(name_or_label)};"
                f" the classes are {self.classes}"
            )
        return check_int("label", name_or_label, least=0, most=self.num_classes - 1)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits().items())
        return f"DataSplits({sizes}, classes={self.classes})"
