"""Image files in folders: which names are images, and walking folders without looping."""

from __future__ import annotations

import os
from pathlib import Path

from visionkit.exceptions import DataError

__all__ = ["IMAGE_EXTENSIONS", "image_files", "walk_files"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""File extensions read as images (torchvision's ``IMG_EXTENSIONS``), in any letter case."""


def walk_files(
    folder: Path, *, hidden_folders: bool = True
) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """The files under ``folder`` per folder, following links, and the link loops found.

    Walks like ``os.walk(folder, followlinks=True)``, as torchvision's ``ImageFolder``
    does, and returns ``(folder, sorted file names)`` pairs sorted by folder. A symbolic
    link to a folder that contains it (directly, or through other links) would make the
    walk go round until the path is too long; such a link is not followed, and it is
    reported once, as one sentence naming the link and the folder it leads back to.

    Args:
        folder: The folder to walk.
        hidden_folders: Also walk folders whose names start with ``.``.
    """
    walked: list[tuple[str, list[str]]] = []
    loops: list[str] = []
    root = os.fspath(folder)
    # For each folder still to visit: the real paths of it and its ancestors, each with
    # the path the walk reached it by.
    chains = {root: {os.path.realpath(root): root}}
    for top, dirs, files in os.walk(root, followlinks=True):
        chain = chains.pop(top)
        kept = []
        for name in sorted(dirs):
            if not hidden_folders and name.startswith("."):
                continue
            path = os.path.join(top, name)
            real = os.path.realpath(path)
            if real in chain:
                loops.append(_loop_message(path, chain[real]))
                continue
            chains[path] = {**chain, real: path}
            kept.append(name)
        dirs[:] = kept
        walked.append((top, sorted(files)))
    return sorted(walked), loops


def _loop_message(link: str, target: str) -> str:
    return (
        f"the symbolic link {link} leads back to the folder {target}, which contains it, so "
        f"the folder never ends: remove the link, or point it at a folder outside {target}"
    )


def image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder``, recursively, in sorted order.

    Links to folders are followed, as [`image_folder`][visionkit.data.image_folder] follows them.

    Raises:
        DataError: if the folder holds no image file, or holds a symbolic link to a folder
            that contains it (the walk would never end).
    """
    walked, loops = walk_files(folder)
    if loops:
        raise DataError("; ".join(loops))
    files = sorted(
        Path(top, name)
        for top, names in walked
        for name in names
        if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found in folder {folder}")
    return files
