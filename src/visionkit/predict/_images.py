"""Raw images (files, PIL, NumPy, tensors) to ``uint8`` tensors, the way torchvision does it.

Resizing and cropping run on PIL images with torchvision's functional ops, so the result is
bit-identical to ``Resize`` / ``CenterCrop`` / ``ToTensor`` applied to the same PIL image.
Arrays that already have the model's size and channels skip PIL entirely.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from visionkit._checks import describe
from visionkit.data.folder import IMAGE_EXTENSIONS, _convert_mode, _failure, _open_image
from visionkit.exceptions import DataError

if TYPE_CHECKING:
    from visionkit.predict.checkpoint import Preprocess

__all__ = ["ImageInput", "image_files", "load_image", "to_uint8"]

ImageInput: TypeAlias = str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor
"""One image for the ``Predictor``: a file path, a PIL image, a NumPy array or a tensor."""


def to_uint8(image: ImageInput, spec: Preprocess) -> torch.Tensor:
    """One raw image as a ``uint8`` ``C x H x W`` tensor, resized and cropped per ``spec``.

    Raises:
        DataError: if ``image`` is not one of the accepted inputs (see :func:`load_image`),
            has no pixels, or is in a Pillow mode that cannot be converted to ``spec.mode``.
    """
    array = _ready_array(image, spec)
    if array is None:
        pil = load_image(image)
        pil = _resize_and_crop(_convert_mode(pil, spec.mode, what="the image"), spec)
        array = np.array(pil, dtype=np.uint8, copy=True)
    tensor = torch.from_numpy(array)
    return tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1)


def load_image(item: ImageInput) -> Image.Image:
    """A PIL image from a path, a PIL image, a ``uint8`` array or a ``uint8`` tensor.

    A file is decoded completely (a truncated one is refused, never padded with grey),
    and an image over ``PIL.Image.MAX_IMAGE_PIXELS`` is refused from its header, before
    decoding. An image without pixels (a width or height of 0) is refused, never resized
    into a blank image.

    Raises:
        DataError: naming the file, if it is missing, empty, not a regular file, not an
            image, corrupt or truncated, or over the decompression-bomb limit; or if
            ``item`` is none of the accepted inputs, or has no pixels.
    """
    if isinstance(item, Image.Image):
        return _with_pixels(item, f"the PIL image ({item.mode}, {item.width}x{item.height})")
    if isinstance(item, torch.Tensor):  # C x H x W, the torch convention
        item = _tensor_array(item)
    if isinstance(item, np.ndarray):
        return _from_array(item)
    if not isinstance(item, (str, os.PathLike)) or isinstance(item, bytes):
        raise DataError(_not_an_image(item))
    path = Path(item)
    try:
        if path.is_file() and path.stat().st_size == 0:
            raise DataError(
                f"cannot read image {path}: the file is empty (0 bytes); replace it with the "
                "original image"
            )
        with _open_image(path) as opened:  # refuses decompression bombs before decoding
            opened.load()
            image: Image.Image = opened
            return _with_pixels(image, f"image {path}")
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except Exception as error:  # Pillow's decoders raise many types; report them alike
        raise DataError(f"cannot read image {path}: it {_failure(error)}") from None


def image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder``, recursively, in sorted order."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found in folder {folder}")
    return files


def _not_an_image(item: Any) -> str:
    hint = ""
    if isinstance(item, bytes):
        hint = ": pass a file path as str (os.fsdecode(path)), or decode the file's bytes "
        hint += "with PIL.Image.open(io.BytesIO(data))"
    elif isinstance(item, (list, tuple)):
        hint = ": convert nested lists with np.asarray(pixels, dtype=np.uint8)"
    return (
        "expected an image: a file path (str or pathlib.Path), a PIL image, a uint8 NumPy "
        f"array (H x W or H x W x C) or a uint8 tensor (C x H x W); got {describe(item)}" + hint
    )


def _with_pixels(image: Image.Image, what: str) -> Image.Image:
    if image.width == 0 or image.height == 0:
        raise DataError(
            f"{what} is empty: it has no pixels (size {image.width}x{image.height}); pass an "
            "image at least 1x1 pixel"
        )
    return image


def _tensor_array(tensor: torch.Tensor) -> np.ndarray:
    """A raw image tensor (``C x H x W`` or ``H x W``) as an ``H x W (x C)`` NumPy array."""
    if tensor.layout != torch.strided:
        raise DataError(
            f"raw image tensors must be dense, got a {tensor.layout} tensor: pass tensor.to_dense()"
        )
    if tensor.dtype != torch.uint8:
        raise DataError(
            f"raw image tensors must be uint8 (0-255), got dtype {tensor.dtype}; pass float "
            "tensors only as preprocessed model input of shape C x H x W"
        )
    if tensor.numel() == 0:
        raise DataError(
            f"the image tensor is empty: it has no pixels (shape {tuple(tensor.shape)}); pass "
            "an image at least 1x1 pixel"
        )
    array = tensor.detach().cpu().numpy()
    return array.transpose(1, 2, 0) if array.ndim == 3 else array


def _ready_array(image: Any, spec: Preprocess) -> np.ndarray | None:
    """The image as ``H x W (x C)`` ``uint8`` when it needs no PIL work, else ``None``.

    Anything else, including arrays that are not 2-D or 3-D images or have no pixels,
    goes through :func:`load_image`, which converts it or refuses it.
    """
    if spec.resize is not None or spec.center_crop is not None:
        return None
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.dim() == 3:
        image = image.cpu().numpy().transpose(1, 2, 0)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        return None
    if image.ndim not in (2, 3) or image.size == 0:
        return None
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels != spec.channels or (spec.size is not None and image.shape[:2] != spec.size):
        return None
    ready: np.ndarray = image if image.flags.writeable else image.copy()
    return ready


def _resize_and_crop(image: Image.Image, spec: Preprocess) -> Image.Image:
    if spec.resize is not None:
        image = TF.resize(image, [spec.resize], antialias=True)
    if spec.center_crop is not None:
        image = TF.center_crop(image, [spec.center_crop, spec.center_crop])
    elif spec.resize is None and spec.size is not None and image.size[::-1] != spec.size:
        image = TF.resize(image, list(spec.size), antialias=True)
    return image


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise DataError(
            f"raw image arrays must be uint8 (0-255), got dtype {array.dtype}; pass float "
            "arrays only as preprocessed model input of shape C x H x W"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise DataError(
            "expected an image array of shape H x W, H x W x 1, H x W x 3 or H x W x 4 "
            f"(a tensor: C x H x W), got shape {array.shape}"
        )
    if array.size == 0:
        raise DataError(
            f"the image array is empty: it has no pixels (shape {array.shape}); pass an "
            "image at least 1x1 pixel"
        )
    return Image.fromarray(np.ascontiguousarray(array))
