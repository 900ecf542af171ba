"""Per-channel normalization statistics, computed in one streaming pass."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from visionkit._checks import check_int, describe
from visionkit.data._datasets import TensorImageDataset
from visionkit.exceptions import ConfigurationError, DataError

__all__ = ["compute_mean_std"]

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def compute_mean_std(
    data: Dataset[Any] | torch.Tensor, *, batch_size: int = 1024, num_workers: int = 0
) -> Stats:
    """Per-channel mean and standard deviation of a data set's pixels, in ``[0, 1]`` units.

    The result is what ``Normalize`` needs (W3 computes CIFAR-10's, W2 uses MNIST's): pass it to
    [`visionkit.data.DataSplits.with_normalization`][visionkit.data.DataSplits.with_normalization]
    or a transform preset. The standard deviation is the population one (NumPy's ``std``,
    ``ddof=0``) over every pixel of every image.

    It streams over ``data`` in batches, so it never holds the data set as floats:

    * ``uint8`` images (a [`TensorImageDataset`][visionkit.data.TensorImageDataset] or a ``uint8``
      tensor) are summed in exact integer arithmetic, scaled by 1/255 at the end; their own
      normalization and augmentation are ignored;
    * any other data set (e.g. an [`image_folder`][visionkit.data.image_folder] split) is read
      through its transform, one image at a time in float64, merged with Chan's
      parallel-variance formula.

    Either way the answer does not depend on ``batch_size``.

    Args:
        data: A data set of ``(image, label)`` pairs with ``C x H x W`` tensor images, or a
            tensor (or NumPy array) of images ``N x C x H x W`` (``uint8`` in 0..255, or
            float).
        batch_size: Images read at a time.
        num_workers: ``DataLoader`` workers for data sets that decode files.

    Returns:
        ``(mean, std)``, each a tuple with one float per channel.

    Raises:
        DataError: if there is no image, an image has no pixels or no channel, images
            have another integer dtype than ``uint8`` (their scale is unknown), or a pixel
            is NaN or infinite.
        ConfigurationError: if ``batch_size`` is not a positive integer or a tensor is not
            ``N x C x H x W``.

    Examples:
        >>> import torch
        >>> images = torch.tensor([[[[0, 255]]], [[[255, 255]]]], dtype=torch.uint8)
        >>> compute_mean_std(images)
        ((0.75,), (0.4330127018922193,))
    """
    batch_size = check_int("batch_size", batch_size, least=1)
    if isinstance(data, TensorImageDataset):
        return _uint8_stats(data.images, batch_size)
    if isinstance(data, (np.ndarray, np.generic)):
        try:
            data = torch.from_numpy(np.ascontiguousarray(data))
        except TypeError:
            raise DataError(
                f"expected an array of uint8 or float pixels, got dtype {np.asarray(data).dtype}"
            ) from None
    if isinstance(data, torch.Tensor):
        if data.dim() != 4:
            raise ConfigurationError(
                f"expected images N x C x H x W, got shape {tuple(data.shape)}"
            )
        if min(data.shape[1:], default=0) < 1:
            raise DataError(
                f"images of shape {tuple(data.shape)} (N x C x H x W) have no pixels: every "
                "image needs at least one channel, row and column"
            )
        if data.dtype == torch.uint8:
            return _uint8_stats(data, batch_size)
        if not data.is_floating_point():
            raise DataError(
                f"expected uint8 images (0..255) or float images ([0, 1]), got {data.dtype}: "
                "convert them, e.g. images.to(torch.uint8) for 8-bit pixel values or "
                "images.float() / 65535 for 16-bit ones"
            )
        return _float_stats(iter(data))
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise ConfigurationError(
            f"expected a data set of (image, label) pairs, or a tensor or array of images "
            f"N x C x H x W, got {describe(data)}"
        )
    loader: DataLoader[Any] = DataLoader(
        data, batch_size=batch_size, num_workers=num_workers, collate_fn=_images_only
    )
    return _float_stats(image for batch in loader for image in batch)


def _images_only(batch: list[Any]) -> list[torch.Tensor]:
    return [item[0] if isinstance(item, (tuple, list)) else item for item in batch]


def _uint8_stats(images: torch.Tensor, batch_size: int) -> Stats:
    if images.shape[0] == 0:
        raise DataError("cannot compute statistics of an empty data set")
    total = torch.zeros(images.shape[1], dtype=torch.int64)
    squares = torch.zeros(images.shape[1], dtype=torch.int64)
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start : start + batch_size].to("cpu", torch.int64)
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.mul_(chunk).sum(dim=(0, 2, 3))
    count = images[0, 0].numel() * images.shape[0]
    sums: list[int] = total.tolist()
    mean = tuple(t / (count * 255) for t in sums)
    # Exact integers (count * sum(x^2) - sum(x)^2), one correctly rounded division, sqrt.
    pairs = zip(sums, squares.tolist(), strict=True)
    std = tuple(math.sqrt((count * q - t * t) / (count * 255) ** 2) for t, q in pairs)
    return mean, std


def _float_stats(images: Iterator[Any]) -> Stats:
    count = 0
    mean = m2 = torch.zeros(0, dtype=torch.float64)
    for index, image in enumerate(images):
        if not isinstance(image, torch.Tensor) or image.dim() != 3:
            raise DataError(
                f"sample {index} is a {_describe(image)}, expected a C x H x W tensor image: "
                "give the data set a transform that ends in ToImage/ToDtype (or ToTensor)"
            )
        if not image.is_floating_point() and image.dtype != torch.uint8:
            raise DataError(
                f"sample {index} is a {image.dtype} tensor: expected float pixels in [0, 1] "
                "(give the data set a transform that ends in ToImage/ToDtype or ToTensor)"
            )
        if min(image.shape) < 1:
            raise DataError(
                f"sample {index} has no pixels (shape {tuple(image.shape)}, C x H x W): "
                "every image needs at least one channel, row and column"
            )
        pixels = image.detach().to("cpu", torch.float64).flatten(1)
        if image.dtype == torch.uint8:
            pixels = pixels / 255
        if count and pixels.shape[0] != mean.numel():
            raise DataError(
                f"sample {index} has {pixels.shape[0]} channels, the earlier ones "
                f"{mean.numel()}: convert every image to the same mode"
            )
        n = pixels.shape[1]
        batch_mean = pixels.mean(dim=1)
        batch_m2 = ((pixels - batch_mean[:, None]) ** 2).sum(dim=1)
        if count == 0:
            count, mean, m2 = n, batch_mean, batch_m2
            continue
        delta = batch_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + batch_m2 + delta**2 * (count * n / total)
        count = total
    if count == 0:
        raise DataError("cannot compute statistics of an empty data set")
    std = (m2 / count).sqrt()
    if not bool(torch.isfinite(mean).all() and torch.isfinite(std).all()):
        raise DataError(
            "the mean or standard deviation of the pixels is not finite: the images hold "
            "NaN or infinite values (or values too large to square); find the broken images "
            "with torch.isfinite, and scale pixels to [0, 1]"
        )
    return tuple(mean.tolist()), tuple(std.tolist())


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    return type(value).__name__
