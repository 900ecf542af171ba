"""Images: decoding files and pixels, and the ``Preprocess`` checkpoints store.

The layer below [`visionkit.data`][visionkit.data] and [`visionkit.predict`][visionkit.predict]:
both read images through it, so a file gives the same pixels in training and in prediction. It
imports nothing from either. Its public names are documented where users import them:
[`Preprocess`][visionkit.predict.Preprocess] and [`ImageInput`][visionkit.predict.ImageInput] in
[`visionkit.predict`][visionkit.predict], [`IMAGE_EXTENSIONS`][visionkit.data.IMAGE_EXTENSIONS] in
[`visionkit.data`][visionkit.data].
"""

from visionkit._images.decode import (
    ImageInput,
    convert_mode,
    describe_failure,
    load_image,
    open_image,
    to_uint8,
)
from visionkit._images.files import IMAGE_EXTENSIONS, image_files, walk_files
from visionkit._images.preprocess import Preprocess, check_normalization, float_values

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageInput",
    "Preprocess",
    "check_normalization",
    "convert_mode",
    "describe_failure",
    "float_values",
    "image_files",
    "load_image",
    "open_image",
    "to_uint8",
    "walk_files",
]
