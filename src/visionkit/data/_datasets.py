"""Data set types shared by every factory: a labelled base class and the in-memory data set."""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from visionkit._checks import check_int, describe
from visionkit._images import check_normalization, float_values
from visionkit.exceptions import ConfigurationError, DataError, VisionKitError

__all__ = [
    "ClassificationDataset",
    "Stats",
    "TensorImageDataset",
    "check_classes",
    "check_normalization",
    "float_values",
    "normalization",
]

Sample = tuple[torch.Tensor, int]
Stats = tuple[Sequence[float], Sequence[float]] | tuple[float, float] | None
"""A factory's ``normalize=`` argument: ``(mean, std)``, per channel or one value each."""
Transform = Callable[[Any], Any]


class ClassificationDataset(Dataset[Sample]):
    """Base class of visionkit's data sets: samples are ``(image, label)`` pairs.

    Subclasses hold ``classes`` (display names, index = label) and ``targets`` (one
    ``int64`` label per sample), and implement `__getitem__` and `_select`.
    """

    classes: list[str]
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.targets.numel())

    def __getitem__(self, index: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    def select(self, indices: Sequence[int] | torch.Tensor) -> ClassificationDataset:
        """Return a new data set of the samples at ``indices``, in that order.

        Raises:
            ConfigurationError: if ``indices`` are not integers (floats and boolean masks
                are refused: use ``torch.nonzero(mask).flatten()`` for a mask), are not one
                dimensional, or lie outside ``[0, len(self))``.
        """
        index = _index_tensor(indices)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise ConfigurationError(
                f"indices must lie in [0, {len(self)}), got values from "
                f"{int(index.min())} to {int(index.max())}"
            )
        return self._select(index)

    def relabel(
        self, label_map: Mapping[int, int], classes: Sequence[str]
    ) -> ClassificationDataset:
        """Keep only the samples whose label is a key of ``label_map`` and relabel them.

        Args:
            label_map: Old label to new label, e.g. ``{0: 0, 2: 1}``.
            classes: Names of the new labels, index = new label.

        Raises:
            ConfigurationError: if ``label_map`` is empty, has a key that is not a label of
                this data set (``0..num_classes-1``), or sends a label outside
                ``0..len(classes)-1``.
        """
        classes = check_classes(classes, error=ConfigurationError)
        if not isinstance(label_map, Mapping) or not label_map:
            raise ConfigurationError(
                f"label_map must be a non-empty mapping from old to new labels, got "
                f"{describe(label_map)}: e.g. {{0: 0, 2: 1}} keeps labels 0 and 2"
            )
        pairs = [
            (
                check_int("label_map key", old, least=0, most=self.num_classes - 1),
                check_int("label_map value", new),
            )
            for old, new in label_map.items()
        ]
        bad = [new for _, new in pairs if not 0 <= new < len(classes)]
        if bad:
            raise ConfigurationError(
                f"label_map sends labels to {bad}, outside 0..{len(classes) - 1} "
                f"for {len(classes)} class names"
            )
        lookup = torch.full((self.num_classes,), -1, dtype=torch.long)
        for old, new in pairs:
            lookup[old] = new
        new_targets = lookup[self.targets]
        keep = torch.nonzero(new_targets >= 0).flatten()
        subset = self._select(keep)
        subset.targets = new_targets[keep]
        subset.classes = list(classes)
        return subset

    def _select(self, index: torch.Tensor) -> ClassificationDataset:  # pragma: no cover
        raise NotImplementedError


class TensorImageDataset(ClassificationDataset):
    """Images kept in memory as one ``uint8`` tensor, normalized on the fly.

    This is visionkit's fast path: 60,000 MNIST digits cost 47 MB as ``uint8`` instead of 188 MB as
    ``float32``, and the trainer reads whole batches with one indexing operation instead of one
    Python call per sample ([`visionkit.data.InMemoryLoader`][visionkit.data.InMemoryLoader]).
    Indexing one sample returns exactly what a batch holds for it, so both paths agree.

    Args:
        images: ``uint8`` tensor of shape ``(N, C, H, W)`` with ``C``, ``H`` and ``W`` at
            least 1 (``N`` may be 0).
        targets: Integer labels of shape ``(N,)``, each in ``0..len(classes)-1`` (a tensor,
            array or list; floating-point labels must hold whole numbers, and are refused
            otherwise instead of being truncated).
        classes: Class names, unique strings; ``classes[i]`` is the name of label ``i``.
        mean: Per-channel mean to subtract after scaling pixels to ``[0, 1]``; one value
            (or a single number) is used for every channel.
        std: Per-channel standard deviation to divide by (finite and positive).
        augment: Optional batched augmentation applied to training batches (see
            [`visionkit.data.BatchAugment`][visionkit.data.BatchAugment]); not applied by
            ``__getitem__``.

    Examples:
        >>> import torch
        >>> ds = TensorImageDataset(torch.full((2, 1, 2, 2), 255, dtype=torch.uint8),
        ...                         torch.tensor([0, 1]), ["a", "b"], mean=[0.5], std=[0.5])
        >>> ds[0][0].flatten().tolist(), ds[1][1]
        ([1.0, 1.0, 1.0, 1.0], 1)
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        classes: Sequence[str],
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ) -> None:
        _check_images(images)
        classes = check_classes(classes)
        targets = _label_tensor(targets)
        if targets.shape != (images.shape[0],):
            raise DataError(
                f"expected one label per image ({images.shape[0]}), got targets of shape "
                f"{tuple(targets.shape)}"
            )
        _check_labels(targets, len(classes))
        self.images = images
        self.targets = targets
        self.classes = classes
        self.augment = augment
        self.mean, self.std = _check_stats(mean, std, images.shape[1])
        shape = (1, images.shape[1], 1, 1)
        self._mean = torch.tensor(self.mean).view(shape) if self.mean else None
        self._std = torch.tensor(self.std).view(shape) if self.std else None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def __getitem__(self, index: int) -> Sample:
        """Sample ``index`` (negative counts from the end) as ``(image, label)``.

        Raises:
            IndexError: if ``index`` is outside ``-len(self)..len(self)-1``.
            TypeError: if ``index`` is not an integer.
        """
        if isinstance(index, bool) or not hasattr(index, "__index__"):
            raise TypeError(
                f"data set indices must be integers, got {describe(index)}; use select() "
                "for several samples"
            )
        position = operator.index(index)
        n = len(self)
        if not -n <= position < n:
            raise IndexError(f"index {position} is out of range for a data set of {n} samples")
        position %= n
        image = self.images[position : position + 1]
        return self.normalize(image)[0], int(self.targets[position])

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Turn a ``uint8`` batch ``(B, C, H, W)`` into normalized ``float32``.

        The arithmetic is torchvision's ``ToTensor`` then ``Normalize``, so the values are
        bit-identical to a torchvision pipeline with the same statistics.
        """
        result = images.float().div_(255)
        if self._mean is not None and self._std is not None:
            mean = self._mean.to(images.device, non_blocking=True)
            std = self._std.to(images.device, non_blocking=True)
            result.sub_(mean).div_(std)
        return result

    def with_normalization(
        self, mean: Sequence[float] | None, std: Sequence[float] | None
    ) -> TensorImageDataset:
        """Return the same images with another normalization (``None`` for none)."""
        return self.derive(mean=mean, std=std)

    def with_augment(
        self, augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None
    ) -> TensorImageDataset:
        """Return the same data set with another batched augmentation (``None`` for none)."""
        return self.derive(augment=augment)

    def to(self, device: torch.device | str) -> TensorImageDataset:
        """Return the data set with its images and labels moved to ``device`` (e.g. a GPU)."""
        return self.derive(self.images.to(device), self.targets.to(device))

    def select(self, indices: Sequence[int] | torch.Tensor) -> TensorImageDataset:
        """Return a new in-memory data set of the samples at ``indices``, in that order."""
        selected = super().select(indices)
        assert isinstance(selected, TensorImageDataset)
        return selected

    def _select(self, index: torch.Tensor) -> TensorImageDataset:
        index = index.to(self.images.device)
        return self.derive(self.images[index], self.targets[index])

    def derive(
        self,
        images: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        **changes: Any,
    ) -> TensorImageDataset:
        """A data set like this one, with other ``images`` / ``targets`` or options.

        ``changes`` may set ``mean``, ``std`` and ``augment``; the class names are kept.
        """
        options = {"mean": self.mean, "std": self.std, "augment": self.augment, **changes}
        return TensorImageDataset(
            self.images if images is None else images,
            self.targets if targets is None else targets,
            self.classes,
            **options,
        )

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return (
            f"TensorImageDataset({len(self)} images of {c}x{h}x{w}, "
            f"{self.num_classes} classes, mean={self.mean}, std={self.std})"
        )


def _check_labels(targets: torch.Tensor, num_classes: int) -> None:
    if targets.numel() == 0:
        return
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= num_classes:
        raise DataError(
            f"labels must lie in 0..{num_classes - 1} for {num_classes} classes, "
            f"found labels from {low} to {high}: check the label file or the class list"
        )


def _check_stats(
    mean: Sequence[float] | None, std: Sequence[float] | None, channels: int
) -> tuple[list[float] | None, list[float] | None]:
    if (mean is None) != (std is None):
        raise ConfigurationError("pass both mean and std, or neither")
    if mean is None or std is None:
        return None, None
    mean_l, std_l = float_values(mean, "mean"), float_values(std, "std")
    if len(mean_l) == 1 and channels > 1:
        mean_l, std_l = mean_l * channels, std_l * channels
    if len(mean_l) != channels or len(std_l) != channels:
        raise ConfigurationError(
            f"expected {channels} per-channel mean and std values, got {len(mean_l)} and "
            f"{len(std_l)}"
        )
    check_normalization(mean_l, std_l)
    return mean_l, std_l


def _check_images(images: Any) -> None:
    if not isinstance(images, torch.Tensor):
        hint = ": convert it with torch.from_numpy(array)" if hasattr(images, "__array__") else ""
        raise DataError(
            f"images must be a uint8 torch.Tensor of shape (N, C, H, W), got a "
            f"{type(images).__name__}{hint}"
        )
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise DataError(
            f"images must be a uint8 tensor of shape (N, C, H, W), got {images.dtype} "
            f"of shape {tuple(images.shape)}"
        )
    if min(images.shape[1:]) < 1:
        raise DataError(
            f"images must have at least one channel, row and column, got shape "
            f"{tuple(images.shape)} (N, C, H, W): check how the array was reshaped"
        )


def check_classes(classes: Any, *, error: type[VisionKitError] = DataError) -> list[str]:
    """The class names as a list of unique strings, or a clear error."""
    if isinstance(classes, np.ndarray) and classes.ndim == 1:
        classes = [str(c) if isinstance(c, np.str_) else c for c in classes.tolist()]
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise error(
            f"classes must be a list of class names (strings), got {describe(classes)}"
            + (f": pass [{classes!r}] for one class" if isinstance(classes, str) else "")
        )
    names = list(classes)
    wrong = [(i, c) for i, c in enumerate(names) if not isinstance(c, str)]
    if wrong:
        i, c = wrong[0]
        raise error(
            f"class names must be strings, got {describe(c)} at index {i}: pass "
            "[str(c) for c in classes]"
        )
    repeated = sorted(name for name, n in Counter(names).items() if n > 1)
    if repeated:
        raise error(
            f"class names must be unique, but {repeated} occur more than once: each label "
            "needs its own name"
        )
    return names


def _label_tensor(targets: Any) -> torch.Tensor:
    """Labels as ``int64``; floats only when they hold whole numbers, never truncated."""
    try:
        tensor = torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError) as error:
        raise DataError(
            f"targets must be integer labels (a tensor, array or list), got "
            f"{describe(targets)}: {error}"
        ) from None
    if tensor.is_complex():
        raise DataError(f"targets must be integer labels, got complex values ({tensor.dtype})")
    if tensor.is_floating_point():
        bad = ~torch.isfinite(tensor) | (tensor != tensor.round())
        if bool(bad.any()):
            first = tensor[bad].flatten()[0].item()
            raise DataError(
                f"targets must be whole-number labels, got {first} ({tensor.dtype}): labels "
                "are not truncated; check the label file, or convert with .round().long()"
            )
    return tensor.to(torch.long)


def _index_tensor(indices: Any) -> torch.Tensor:
    try:
        index = torch.as_tensor(indices)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigurationError(
            f"indices must be a list or tensor of integers, got {describe(indices)}: {error}"
        ) from None
    if index.numel() == 0:
        return index.reshape(0).to(torch.long)
    if index.dtype == torch.bool:
        raise ConfigurationError(
            "indices must be integers, got a boolean mask: pass torch.nonzero(mask).flatten()"
        )
    if index.is_floating_point() or index.is_complex():
        raise ConfigurationError(
            f"indices must be integers, got {index.dtype} values: floats are not truncated; "
            "pass integer positions"
        )
    if index.dim() != 1:
        raise ConfigurationError(
            f"indices must be one-dimensional, got shape {tuple(index.shape)}: flatten them"
        )
    return index.to(torch.long)


def normalization(normalize: Stats) -> tuple[list[float] | None, list[float] | None]:
    """Turn a factory's ``normalize=(mean, std)`` into per-channel lists (or ``None``)."""
    if normalize is None:
        return None, None
    if isinstance(normalize, (np.ndarray, torch.Tensor)) and normalize.ndim >= 1:
        normalize = list(normalize)  # a (2,) or (2, C) array: rows are mean and std
    if isinstance(normalize, (str, bytes)) or not isinstance(normalize, Sequence):
        raise ConfigurationError(
            f"normalize must be a (mean, std) pair or None, got {describe(normalize)}"
        )
    if len(normalize) != 2:
        raise ConfigurationError(
            f"normalize must be a (mean, std) pair, got {len(normalize)} values "
            f"{tuple(normalize)!r:.80}: e.g. normalize=((0.1307,), (0.3081,))"
        )
    mean, std = normalize
    return float_values(mean, "mean"), float_values(std, "std")
