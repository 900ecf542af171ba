"""Raw images (files, PIL, NumPy, tensors) to 8-bit pictures and ``uint8`` tensors.

Both the data sets ([`image_folder`][visionkit.data.image_folder]) and the
[`Predictor`][visionkit.Predictor] decode images here, so a file gives the same pixels in
training and in prediction. Resizing and cropping run on PIL images with torchvision's
functional ops, so the result is bit-identical to ``Resize`` / ``CenterCrop`` /
``ToTensor`` applied to the same PIL image. Arrays that already have the model's size and
channels skip PIL entirely.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from visionkit._checks import describe
from visionkit.exceptions import DataError

if TYPE_CHECKING:
    from visionkit._images.preprocess import Preprocess

__all__ = [
    "INTERPOLATIONS",
    "ImageInput",
    "convert_mode",
    "describe_failure",
    "load_image",
    "open_image",
    "to_uint8",
]

INTERPOLATIONS = {
    "bilinear": TF.InterpolationMode.BILINEAR,
    "bicubic": TF.InterpolationMode.BICUBIC,
}
"""The resampling modes a ``Preprocess`` can describe, by name."""

ImageInput: TypeAlias = str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor
"""One image for the ``Predictor``: a file path, a PIL image, a NumPy array or a tensor."""

_SIXTEEN_BITS = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}


def to_uint8(image: ImageInput, spec: Preprocess) -> torch.Tensor:
    """One raw image as a ``uint8`` ``C x H x W`` tensor, resized and cropped per ``spec``.

    Raises:
        DataError: if ``image`` is not one of the accepted inputs (see `load_image`),
            has no pixels, or is in a Pillow mode that cannot be converted to ``spec.mode``.
    """
    array = _ready_array(image, spec)
    if array is None:
        pil = load_image(image)
        pil = _resize_and_crop(convert_mode(pil, spec.mode, what="the image"), spec)
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
        with open_image(path) as opened:  # refuses decompression bombs before decoding
            opened.load()
            image: Image.Image = opened
            return _with_pixels(image, f"image {path}")
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except Exception as error:  # Pillow's decoders raise many types; report them alike
        raise DataError(f"cannot read image {path}: it {describe_failure(error)}") from None


def open_image(path: Path) -> Image.Image:
    """``Image.open`` (which reads only the header), refusing decompression bombs.

    Pillow only warns about images between ``PIL.Image.MAX_IMAGE_PIXELS`` and twice that,
    and decodes them; visionkit refuses every image over the limit, before decoding it.
    """
    if not path.is_file() and path.exists():  # a FIFO or a device would block or never end
        raise DataError(
            f"{path} is not a regular file (a folder, device or FIFO): pass an image file"
        )
    try:
        image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # The warning arrives as an exception only when warnings are turned into errors.
        found = re.search(r"\((\d+) pixels\)", str(error))
        raise DataError(
            _bomb_message(path, "huge", int(found.group(1)) if found else None)
        ) from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        image.close()
        size = f"{image.width}x{image.height}"
        raise DataError(_bomb_message(path, size, image.width * image.height))
    return image


def _bomb_message(path: Path, size: str, pixels: int | None) -> str:
    limit = Image.MAX_IMAGE_PIXELS
    count = f"{pixels} pixels" if pixels else "more than twice the limit"
    raise_to = pixels or "None"
    return (
        f"{path} is a {size} image, over Pillow's decompression-bomb limit of {limit} pixels "
        f"(PIL.Image.MAX_IMAGE_PIXELS): at {count}, decoding it could exhaust the memory, so "
        "it was refused without being decoded. Shrink it, or if you trust the file, raise "
        f"the limit first: PIL.Image.MAX_IMAGE_PIXELS = {raise_to}"
    )


def describe_failure(error: Exception) -> str:
    """Why Pillow could not read an image, as the rest of a sentence naming the file."""
    if isinstance(error, UnidentifiedImageError):
        return (
            "is not an image Pillow can read (corrupt, or another kind of file with an image "
            "extension): replace it with the original image or delete it"
        )
    return (
        f"is a corrupt or truncated image ({type(error).__name__}: {error}): replace it with "
        "the original image or delete it"
    )


def convert_mode(image: Image.Image, mode: str, *, what: str) -> Image.Image:
    """``image`` (``what``, for errors) as an 8-bit image of Pillow mode ``mode``.

    The one decoding step of every image visionkit reads, in training and in prediction.
    Mostly ``Image.convert``, as torchvision's loader does, except where it would be wrong:

    * Images of more than 8 bits per pixel are scaled to 8 bits, never clipped: 16-bit
      ones (``"I;16"``, 16-bit PNG and TIFF files) as ``round(v / 257)``, so an 8-bit
      image stored with 16 bits (``v * 257``) gives back exactly its 8-bit pixels;
      32-bit integer ones (``"I"``, how some Pillow versions open 16-bit PNG files) the
      same way when their values lie in ``0..65535``; float ones (``"F"``) as
      ``round(v * 255)`` when their values lie in ``[0, 1]``. Others are refused.
    * Palette images with transparency go through ``"RGBA"``, as Pillow advises.
    * ``"La"`` and ``"RGBa"`` (alpha premultiplied) are first converted to ``"LA"`` /
      ``"RGBA"``, which undoes the premultiplication, so they give what the same picture
      stored as ``"LA"`` / ``"RGBA"`` gives.
    * A mode that cannot be converted at all (``"LAB"``: colour spaces need a colour
      profile) is refused, as torchvision's loader (``Image.convert("RGB")``) would fail.

    Raises:
        DataError: for a 32-bit or float image out of the ranges above, or a mode Pillow
            cannot convert to ``mode``.
    """
    if image.mode == mode:
        return image
    image.load()  # a decoding error is not a conversion error: let it through as it is
    if image.mode in _SIXTEEN_BITS or image.mode in ("I", "F"):
        image = _eight_bits(image, what)
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif image.mode in _PREMULTIPLIED:
        image = image.convert(_PREMULTIPLIED[image.mode])
    try:
        converted: Image.Image = image.convert(mode)
        return converted
    except ValueError as error:  # Pillow: "conversion from LAB to RGB not supported"
        hint = (
            " (for LAB, with PIL.ImageCms: ImageCms.applyTransform(image, "
            "ImageCms.buildTransform(ImageCms.createProfile('LAB'), "
            "ImageCms.createProfile('sRGB'), 'LAB', 'RGB')))"
            if image.mode == "LAB"
            else ""
        )
        raise DataError(
            f"cannot convert {what} from Pillow mode {image.mode!r} to {mode!r} ({error}): "
            f"convert it to 'RGB' or 'L' yourself first{hint}"
        ) from None


def _eight_bits(image: Image.Image, what: str) -> Image.Image:
    """A 16-bit, 32-bit integer or float grayscale image as an 8-bit ``"L"`` image."""
    pixels = np.asarray(image)
    if pixels.size == 0:
        return Image.new("L", image.size)
    if image.mode == "F":
        return Image.fromarray(_float_to_eight_bits(pixels, what))
    values = pixels.astype(np.int64)
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 65535:
        raise DataError(
            f"{what} is a 32-bit integer image (Pillow mode 'I') with values from {low} to "
            f"{high}; expected 16-bit values 0..65535, which are scaled to 8 bits: scale it "
            "to 0..255 and convert it to 'L' yourself first"
        )
    return Image.fromarray(((values + 128) // 257).astype(np.uint8))  # round(v / 257)


def _float_to_eight_bits(pixels: np.ndarray, what: str) -> np.ndarray:
    values = pixels.astype(np.float64)
    if not np.isfinite(values).all():
        found = "NaN or infinite values"
    elif values.min() < 0 or values.max() > 1:
        found = f"values from {values.min():g} to {values.max():g}"
    else:
        return np.rint(values * 255).astype(np.uint8)
    raise DataError(
        f"{what} is a floating-point image (Pillow mode 'F') with {found}; expected values "
        "in [0, 1], which are scaled to 0..255: scale it to [0, 1] first, or convert it to "
        "an 8-bit 'L' image yourself"
    )


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
    goes through `load_image`, which converts it or refuses it.
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
    mode = INTERPOLATIONS[spec.interpolation]
    if spec.resize is not None:
        image = TF.resize(image, [spec.resize], interpolation=mode, antialias=True)
    if spec.center_crop is not None:
        image = TF.center_crop(image, [spec.center_crop, spec.center_crop])
    elif spec.resize is None and spec.size is not None and image.size[::-1] != spec.size:
        image = TF.resize(image, list(spec.size), interpolation=mode, antialias=True)
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
