"""Batch iteration: the in-memory fast path and seeded, resumable ``DataLoader`` defaults."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sized
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from visionkit._checks import check_bool, check_int, check_seed, describe
from visionkit._device import to_device
from visionkit.data._datasets import TensorImageDataset
from visionkit.exceptions import ConfigurationError, DataError

__all__ = [
    "BatchAugment",
    "EpochLoader",
    "InMemoryLoader",
    "SeededSampler",
    "epoch_permutation",
    "make_loader",
]

Batch = tuple[torch.Tensor, torch.Tensor]
_MASK = (1 << 63) - 1


def _mix(*values: int) -> int:
    """A deterministic 63-bit seed from several integers (SplitMix64-style)."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & _MASK)) * 0xBF58476D1CE4E5B9 & ((1 << 64) - 1)
        state ^= state >> 31
    return state & _MASK


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of ``range(n)`` for ``epoch`` of a run seeded with ``seed``.

    Both data paths use it, so they visit samples in the same order; it depends only on its
    arguments, so a resumed run sees the same order as an uninterrupted one.
    """
    generator = torch.Generator().manual_seed(_mix(seed, epoch))
    return torch.randperm(n, generator=generator)


@runtime_checkable
class EpochLoader(Protocol):
    """What the trainer iterates: batches, with a length, an epoch and a start position."""

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffled order of ``epoch``."""

    def skip_batches(self, count: int) -> None:
        """Start the next iteration ``count`` batches into the epoch (for exact resume)."""


class BatchAugment:
    """Random crop with zero padding and random horizontal flip, on whole ``uint8`` batches.

    The in-memory path applies it to each training batch on the batch's device (CPU or
    GPU) as a few tensor operations, instead of one Python call per image.

    Args:
        crop_padding: Pixels of zero padding on each side before a random crop back to the
            original size; ``0`` disables cropping (CIFAR-10 recipes use 4).
        flip: Flip each image left-right with probability 0.5.
    """

    def __init__(self, *, crop_padding: int = 4, flip: bool = True) -> None:
        self.crop_padding = check_int("crop_padding", crop_padding, least=0)
        self.flip = check_bool("flip", flip)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch ``(B, C, H, W)``, drawing random numbers from ``generator``."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else None
            raise DataError(
                f"BatchAugment expects a batch tensor of shape (B, C, H, W), got "
                f"{describe(images) if shape is None else f'shape {shape}'}"
            )
        b, c, h, w = images.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = F.pad(images, (p, p, p, p))
            offsets = torch.randint(0, 2 * p + 1, (2, b), generator=generator)
            offsets = to_device(offsets, images.device, pin=True)
            rows = (offsets[0, :, None] + torch.arange(h, device=images.device))[:, None, :, None]
            cols = (offsets[1, :, None] + torch.arange(w, device=images.device))[:, None, None, :]
            batch = torch.arange(b, device=images.device)[:, None, None, None]
            channel = torch.arange(c, device=images.device)[None, :, None, None]
            images = padded[batch, channel, rows, cols]
        if self.flip:
            flip = to_device(torch.rand(b, generator=generator) < 0.5, images.device, pin=True)
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
        return images

    def __repr__(self) -> str:
        return f"BatchAugment(crop_padding={self.crop_padding}, flip={self.flip})"


class InMemoryLoader:
    """Batches of a `TensorImageDataset` without a ``DataLoader``.

    Each batch is one index into the ``uint8`` image tensor, moved to ``device``, augmented
    (training only) and normalized there. Shuffling uses
    [`epoch_permutation`][visionkit.data.epoch_permutation], so the order matches
    [`SeededSampler`][visionkit.data.SeededSampler] and can be resumed mid-epoch.

    Args:
        dataset: The in-memory data set.
        batch_size: Samples per batch; the last batch may be smaller.
        shuffle: Visit samples in a seeded random order that changes every epoch.
        seed: Seed of the order and of the augmentation.
        device: Where batches are delivered; images already there are not copied.
        augment: Apply ``dataset.augment`` (for training batches).
        drop_last: Drop a last batch smaller than ``batch_size``.
        rank: This process's index when the data is sharded over ``world_size`` processes.
        world_size: Number of processes sharing the data.
    """

    def __init__(
        self,
        dataset: TensorImageDataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        device: torch.device | str | None = None,
        augment: bool = False,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        batch_size = check_int("batch_size", batch_size, least=1)
        if not isinstance(dataset, TensorImageDataset):
            raise ConfigurationError(
                f"InMemoryLoader needs a TensorImageDataset, got {describe(dataset)}: use "
                "make_loader() for other data sets"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = check_bool("shuffle", shuffle)
        self.seed = check_seed("seed", seed)
        self.device = torch.device(device) if device is not None else dataset.images.device
        self.augment = dataset.augment if check_bool("augment", augment) else None
        self.drop_last = check_bool("drop_last", drop_last)
        self.rank, self.world_size = _check_shard(rank, world_size)
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffled order of ``epoch``."""
        self.epoch = epoch

    def skip_batches(self, count: int) -> None:
        """Start the next iteration ``count`` batches into the epoch."""
        self._skip = count

    def indices(self) -> torch.Tensor:
        """The sample indices this process visits in the current epoch, in order."""
        n = len(self.dataset)
        order = epoch_permutation(n, self.seed, self.epoch) if self.shuffle else torch.arange(n)
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = len(range(self.rank, len(self.dataset), self.world_size))
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = self.indices().to(self.dataset.images.device)
        start, self._skip = self._skip, 0
        images, targets = self.dataset.images, self.dataset.targets
        for batch_index in range(start, len(self)):
            index = order[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]
            x = to_device(images[index], self.device, pin=True)
            y = to_device(targets[index], self.device, pin=True)
            if self.augment is not None:
                generator = torch.Generator().manual_seed(_mix(self.seed, self.epoch, batch_index))
                x = self.augment(x, generator)
            yield self.dataset.normalize(x), y


class SeededSampler(Sampler[int]):
    """A ``DataLoader`` sampler with `epoch_permutation` order and a resumable start.

    Like ``DistributedSampler`` it has ``set_epoch`` and can shard over ranks, but it never
    pads or repeats samples, so metrics count every sample exactly once.
    """

    def __init__(
        self, n: int, *, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        self.n = check_int("n", n, least=0)
        self.shuffle, self.seed = check_bool("shuffle", shuffle), check_seed("seed", seed)
        self.rank, self.world_size = _check_shard(rank, world_size)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffled order of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        order = epoch_permutation(self.n, self.seed, self.epoch) if self.shuffle else None
        indices = order.tolist() if order is not None else list(range(self.n))
        start, self.start = self.start, 0
        return iter(indices[self.rank :: self.world_size][start:])

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size)) - self.start


class _DataLoaderAdapter:
    """Gives a ``DataLoader`` built by visionkit the `EpochLoader` interface."""

    def __init__(self, loader: DataLoader[Any], sampler: SeededSampler | None) -> None:
        self.loader = loader
        self.dataset = loader.dataset
        self.sampler = sampler
        self._skip = 0
        self._length = len(loader)

    def set_epoch(self, epoch: int) -> None:
        sampler: Any = self.sampler or getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    def skip_batches(self, count: int) -> None:
        if self.sampler is not None and self.loader.batch_size is not None:
            self.sampler.start = count * self.loader.batch_size
        else:
            self._skip = count

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Any]:
        skip, self._skip = self._skip, 0
        for i, batch in enumerate(self.loader):
            if i >= skip:
                yield batch


def make_loader(
    data: Dataset[Any] | DataLoader[Any],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
    augment: bool = False,
    num_workers: int = 0,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> EpochLoader:
    """The loader the trainer uses for ``data``; exposed for hand-written loops.

    * a [`TensorImageDataset`][visionkit.data.TensorImageDataset] gets the in-memory fast path
      ([`InMemoryLoader`][visionkit.data.InMemoryLoader]);
    * any other ``Dataset`` gets a ``DataLoader`` with a
      [`SeededSampler`][visionkit.data.SeededSampler], workers seeded reproducibly, ``pin_memory``
      only with CUDA and ``persistent_workers`` when there are workers;
    * a ``DataLoader`` you built is used as it is.
    """
    device = torch.device(device)
    if isinstance(data, DataLoader):
        return _DataLoaderAdapter(data, None)
    if isinstance(data, TensorImageDataset):
        return InMemoryLoader(
            data,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            device=device,
            augment=augment,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
        )
    batch_size = check_int("batch_size", batch_size, least=1)
    num_workers = check_int("num_workers", num_workers, least=0)
    seed = check_seed("seed", seed)
    drop_last = check_bool("drop_last", drop_last)
    if not isinstance(data, Sized):
        raise ConfigurationError(
            f"expected a Dataset with a length or a DataLoader, got {type(data).__name__}: "
            "wrap an iterable data set in a DataLoader yourself"
        )
    sampler = SeededSampler(len(data), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
    loader: DataLoader[Any] = DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        drop_last=drop_last,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )
    return _DataLoaderAdapter(loader, sampler)


def _seed_worker(worker_id: int) -> None:
    """Seed Python and NumPy in a ``DataLoader`` worker from torch's per-worker seed."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def _check_shard(rank: int, world_size: int) -> tuple[int, int]:
    world_size = check_int("world_size", world_size, least=1)
    rank = check_int("rank", rank, least=0, most=world_size - 1)
    return rank, world_size
