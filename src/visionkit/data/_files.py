"""Image files listed by folder or by CSV: argument checks, the up-front check of every file,
loading, and the one error that reports every problem found."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from visionkit._checks import check_path, describe
from visionkit._images import (
    IMAGE_EXTENSIONS,
    Preprocess,
    convert_mode,
    describe_failure,
    open_image,
)
from visionkit.data.presets import preprocess_from_transform
from visionkit.exceptions import ConfigurationError, DataError

__all__ = [
    "Transform",
    "check_files",
    "check_mode",
    "check_preprocess",
    "check_transform",
    "existing_folder",
    "file_problem",
    "load",
    "not_an_image",
    "raise_problems",
    "try_describe",
]

MODES = ("RGB", "L")
MAX_LISTED = 50
"""At most this many problems are listed in one error; the rest are counted."""
Transform = Callable[[Any], Any]


def existing_folder(path: str | os.PathLike[str], what: str, name: str) -> Path:
    """``path`` as a ``Path``, or a `DataError` if it is not an existing folder."""
    folder = check_path(name, path)
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise DataError(f"{what} {folder} {state}: pass the folder that holds the images")
    return folder


def check_mode(mode: str) -> None:
    if not isinstance(mode, str) or mode not in MODES:
        raise ConfigurationError(f"mode must be 'RGB' or 'L', got {describe(mode)}")


def check_transform(name: str, transform: Any) -> None:
    if transform is not None and not callable(transform):
        raise ConfigurationError(
            f"{name} must be None or a callable taking a PIL image (e.g. a torchvision "
            f"transform), got {describe(transform)}"
        )


def check_preprocess(preprocess: Any) -> None:
    if preprocess is not None and not isinstance(preprocess, Preprocess):
        raise ConfigurationError(
            "preprocess must be None (derived from the evaluation transform) or a "
            "visionkit.predict.Preprocess such as Preprocess(mode='RGB', resize=256, "
            f"center_crop=224), got {describe(preprocess)}"
        )


def not_an_image(path: Path) -> bool:
    """Whether ``path`` lacks one of the `IMAGE_EXTENSIONS` (in any letter case)."""
    return path.suffix.lower() not in IMAGE_EXTENSIONS


def check_files(paths: list[Path], verify: bool) -> list[str | None]:
    """What is wrong with each image file (``None``: nothing), checked in parallel."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if len(paths) < 64:
            return [file_problem(path, verify) for path in paths]
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            return list(pool.map(lambda path: file_problem(path, verify), paths))


def file_problem(path: Path, verify: bool) -> str | None:
    """What is wrong with the image file ``path``, or ``None``."""
    if not_an_image(path):
        return (
            f"{path} is not an image file (extension {path.suffix or 'none'!r}; images are "
            f"{', '.join(IMAGE_EXTENSIONS)}): move it out of the class folder"
        )
    try:
        if path.is_file() and path.stat().st_size == 0:
            return f"{path} is empty (0 bytes): replace it with the original image or delete it"
        with open_image(path) as image:
            if verify:
                if image.format == "JPEG" and min(image.size) >= 64:
                    # Decode at 1/8 scale: faster, and it still reads every byte.
                    image.draft(image.mode, (image.width // 8, image.height // 8))
                image.load()
    except DataError as error:
        return str(error)
    except Exception as error:  # Pillow decoders raise many types; report them alike
        return f"{path} {describe_failure(error)}"
    return None


def load(path: Path, mode: str) -> Image.Image:
    """The image at ``path`` in ``mode``, fully read; failures name the file."""
    try:
        with open_image(path) as image:
            converted = convert_mode(image, mode, what=f"image {path}")
            return image.copy() if converted is image else converted  # loaded before closing
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"image file {path} disappeared after the data set was built") from None
    except Exception as error:  # name the file, not just a bare Pillow error
        raise DataError(f"{path} {describe_failure(error)}") from error


def try_describe(transform: Transform | None, mode: str) -> Preprocess | None:
    """``transform`` as a `Preprocess`, or ``None`` when it cannot be described."""
    try:
        return preprocess_from_transform(transform, mode=mode)
    except ConfigurationError:
        return None


def raise_problems(where: str, problems: list[str]) -> None:
    """Raise one [`DataError`][visionkit.DataError] listing ``problems`` found in ``where``, if any.

    At most `MAX_LISTED` are listed (a wrong image folder can make every row of a
    large CSV fail the same way); the rest are counted.
    """
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        listing = "\n".join(f"  - {problem}" for problem in problems[:MAX_LISTED])
        rest = len(problems) - MAX_LISTED
        if rest > 0:
            listing += f"\n  ... and {rest} more"
        raise DataError(f"{count} in {where}; nothing was loaded:\n{listing}")
