"""What the ``Predictor`` is given: one image or many, each checked, stacked into batches.

Raw images that need no resizing (``uint8`` arrays and tensors, and PIL images, of the
preprocessing's size and channels) are stacked as they come, a batch with one copy, and
ready model input (``float32`` tensors of the input shape) likewise, its values checked once
per batch. Every other input is converted one by one, as
[`Preprocess.to_uint8`][visionkit.predict.Preprocess.to_uint8] does; a batch holds the same
pixels either way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from visionkit._checks import describe
from visionkit._images import Preprocess, image_files
from visionkit.exceptions import DataError

__all__ = ["batches", "check_input", "check_item", "convert", "expand", "is_single"]

_U8 = np.dtype(np.uint8)
_ARRAYS = (np.ndarray, torch.Tensor)
_IMAGES = (np.ndarray, torch.Tensor, Image.Image)


def expand(inputs: Any) -> tuple[list[Any], list[str | None]]:
    """The images ``inputs`` holds, one item each, and the file each came from (or ``None``).

    Raises:
        DataError: if ``inputs`` is a 2-D to 4-D array in none of the accepted layouts,
            a missing file, or not an image at all.
    """
    if is_single(inputs):
        return [inputs], [_source(inputs)]
    if isinstance(inputs, _ARRAYS):  # a batch
        if inputs.ndim != 4:
            raise DataError(
                f"expected one image (H x W (x C) array, C x H x W tensor) or a batch of "
                f"4 dimensions, got an array of shape {tuple(inputs.shape)}"
            )
        return list(inputs), [None] * len(inputs)
    if not _is_folder(inputs) and (
        isinstance(inputs, (str, bytes, os.PathLike, Mapping)) or not isinstance(inputs, Iterable)
    ):
        check_item(inputs)  # a missing file, or not an image at all: a clear error
    listed = [inputs] if _is_folder(inputs) else list(inputs)
    kinds = set(map(type, listed))
    if all(issubclass(kind, Image.Image) for kind in kinds) or (
        kinds <= {np.ndarray, torch.Tensor} and 4 not in {item.ndim for item in listed}
    ):
        return listed, [None] * len(listed)  # images only: the common case, made fast
    items: list[Any] = []
    for item in listed:
        if isinstance(item, _ARRAYS):
            if item.ndim == 4:
                items += list(item)
            else:
                items.append(item)
        elif _is_folder(item):
            items += image_files(Path(item))
        else:
            items.append(item)
    return items, [None if isinstance(i, _IMAGES) else _source(i) for i in items]


def is_single(inputs: Any) -> bool:
    """Whether ``inputs`` is one image (so ``predict`` returns one ``Prediction``)."""
    if isinstance(inputs, torch.Tensor):
        return inputs.dim() == 3 or (inputs.dim() == 2 and not inputs.is_floating_point())
    if isinstance(inputs, np.ndarray):
        return inputs.ndim in (2, 3)
    if isinstance(inputs, (str, os.PathLike)):
        return not _is_folder(inputs)
    return isinstance(inputs, Image.Image)


def check_item(item: Any) -> None:
    """Refuse what is not one image (or a batch) before it reaches the image readers.

    Raises:
        DataError: if ``item`` is not a path, PIL image, array or tensor of 2 to 4
            dimensions, or has no pixels.
    """
    if isinstance(item, (str, os.PathLike, Image.Image)):
        if isinstance(item, Image.Image) and min(item.size) < 1:
            raise DataError(f"the {item.mode} image of size {item.size} has no pixels")
        return
    if isinstance(item, Mapping) or not isinstance(item, _ARRAYS):
        raise DataError(
            f"cannot predict {describe(item)}: pass a path, a PIL image, a NumPy array or a "
            "tensor (or a list of them)"
        )
    if not 2 <= item.ndim <= 4:
        raise DataError(
            f"expected an image of 2 or 3 dimensions (or a batch of 4), got an array of "
            f"shape {tuple(item.shape)}"
        )
    if 0 in item.shape:
        raise DataError(
            f"the image of shape {tuple(item.shape)} has no pixels: every dimension must be "
            "at least 1"
        )


def convert(item: Any, spec: Preprocess) -> tuple[torch.Tensor, bool]:
    """``(uint8 image, True)`` for a raw image, ``(float input, False)`` for model input.

    Raises:
        DataError: if ``item`` is not an image, or not valid model input.
    """
    check_item(item)
    if isinstance(item, np.ndarray) and item.dtype.kind == "f":
        item = torch.from_numpy(np.ascontiguousarray(item))
    if isinstance(item, torch.Tensor) and item.is_floating_point():
        return check_input(item.float(), spec), False
    return spec.to_uint8(item), True


def check_input(tensor: torch.Tensor, spec: Preprocess) -> torch.Tensor:
    """``tensor``, when it is finite model input of ``spec``'s shape.

    Raises:
        DataError: naming the shape expected and found, or the NaN or infinite values.
    """
    expected = spec.input_shape
    if tensor.dim() not in (3, 4) or (expected and tuple(tensor.shape[-3:]) != expected):
        raise DataError(
            f"expected preprocessed model input of shape {expected or 'C x H x W'} (from "
            f"the checkpoint's preprocessing), got a float tensor of shape "
            f"{tuple(tensor.shape)}: pass raw images (a path, PIL image or uint8 array) "
            "to have them preprocessed"
        )
    if not bool(torch.isfinite(tensor).all()):
        raise DataError(
            f"the model input of shape {tuple(tensor.shape)} holds NaN or infinite values, "
            "so no prediction would mean anything: find where they come from "
            "(torch.isfinite) or pass the raw image instead"
        )
    return tensor


def batches(
    items: Sequence[Any], spec: Preprocess, batch_size: int
) -> Iterator[tuple[torch.Tensor, bool]]:
    """Stack consecutive inputs of equal shape and kind: ``(batch, True)`` for raw ``uint8``.

    A batch ends when the kind (raw or model input) or the ``C x H x W`` shape changes, or
    at ``batch_size`` images; a ``N x C x H x W`` model input is cut into batches of its own.
    Where ``batch_size`` inputs in a row can be stacked as they are, they are, with one copy.

    Raises:
        DataError: for the first input that is not an image, or not valid model input.
    """
    fast = _FastPath(spec)
    pending: list[torch.Tensor] = []
    shape: tuple[int, ...] = ()
    raw = False
    position = 0
    while position < len(items):
        if not pending:
            chunk = items[position : position + batch_size]
            stacked = fast.stack(chunk)
            if stacked is not None:
                yield stacked
                position += len(chunk)
                continue
        tensor, item_raw = convert(items[position], spec)
        position += 1
        item_shape = tuple(tensor.shape[-3:])
        whole = tensor.dim() == 4
        if pending and (whole or item_raw != raw or item_shape != shape):
            yield torch.stack(pending), raw
            pending = []
        if whole:
            for start in range(0, tensor.shape[0], batch_size):
                yield tensor[start : start + batch_size], item_raw
            continue
        pending.append(tensor)
        raw, shape = item_raw, item_shape
        if len(pending) == batch_size:
            yield torch.stack(pending), raw
            pending = []
    if pending:
        yield torch.stack(pending), raw


class _FastPath:
    """Stacks a run of inputs that need no conversion one by one, or says it cannot.

    ``uint8`` arrays and tensors and PIL images of the preprocessing's mode need no work
    but a stack when no resize or crop is asked for and they have the ``size`` (any size
    when it is ``None``) and channels; so do ``float32`` tensors of the model's input shape,
    whose values are checked once per batch. The other checks look at each input's type,
    dtype, mode or shape, never at its pixels.
    """

    def __init__(self, spec: Preprocess) -> None:
        self.enabled = spec.resize is None and spec.center_crop is None
        self.mode, self.channels, self.size = spec.mode, spec.channels, spec.size
        self.input_shape = spec.input_shape

    def stack(self, chunk: Sequence[Any]) -> tuple[torch.Tensor, bool] | None:
        """``(N x C x H x W batch, raw)`` of ``chunk``, or ``None`` if it needs more work."""
        kinds = set(map(type, chunk))
        if kinds == {torch.Tensor}:
            return self._tensors(chunk)
        if not self.enabled:
            return None
        if kinds == {np.ndarray}:
            return self._arrays(chunk)
        if all(issubclass(kind, Image.Image) for kind in kinds):
            return self._images(chunk)
        return None

    def _arrays(self, chunk: Sequence[np.ndarray]) -> tuple[torch.Tensor, bool] | None:
        kinds = {(array.dtype, array.shape) for array in chunk}
        if len(kinds) != 1:
            return None
        dtype, shape = kinds.pop()
        channels = shape[2] if len(shape) == 3 else 1 if len(shape) == 2 else 0
        if dtype is not _U8 or channels != self.channels or not self._fits(shape[:2]):
            return None
        return _from_pixels(np.stack(chunk)), True

    def _images(self, chunk: Sequence[Image.Image]) -> tuple[torch.Tensor, bool] | None:
        kinds = {(image.mode, image.size) for image in chunk}
        if len(kinds) != 1:
            return None
        mode, (width, height) = kinds.pop()
        if mode != self.mode or not self._fits((height, width)):
            return None
        return _from_pixels(np.stack([np.asarray(image) for image in chunk])), True

    def _tensors(self, chunk: Sequence[torch.Tensor]) -> tuple[torch.Tensor, bool] | None:
        dtypes = {tensor.dtype for tensor in chunk}
        if dtypes != {torch.uint8} and dtypes != {torch.float32}:
            return None
        try:
            batch = torch.stack(list(chunk))
        except RuntimeError:  # shapes differ, or tensors on several devices
            return None
        if batch.layout != torch.strided or batch.dim() != 4:
            return None
        if batch.dtype == torch.uint8:
            ready = self.enabled and batch.shape[1] == self.channels
            return (batch, True) if ready and self._fits(tuple(batch.shape[2:])) else None
        if self.input_shape is None or tuple(batch.shape[1:]) != self.input_shape:
            return None
        if not bool(torch.isfinite(batch).all()):
            return None  # converted one by one, the first wrong input is named
        return batch, False

    def _fits(self, height_width: tuple[int, ...]) -> bool:
        """Whether an image of this ``(height, width)`` needs no resizing."""
        return 0 not in height_width and (self.size is None or height_width == self.size)


def _from_pixels(pixels: np.ndarray) -> torch.Tensor:
    """``N x H x W (x C)`` ``uint8`` pixels as a ``N x C x H x W`` tensor."""
    stacked = torch.from_numpy(pixels)
    return stacked[:, None] if stacked.dim() == 3 else stacked.permute(0, 3, 1, 2).contiguous()


def _is_folder(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike)) and Path(item).is_dir()


def _source(item: Any) -> str | None:
    return str(item) if isinstance(item, (str, os.PathLike)) else None
