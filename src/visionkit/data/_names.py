"""Display names of class folders: a mapping or a JSON file such as ``cat_to_name.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from visionkit._checks import describe
from visionkit.exceptions import ConfigurationError, DataError

__all__ = ["NameMap", "check_names", "display_names"]

NameMap = str | os.PathLike[str] | Mapping[str, str]
"""Display name of each class folder: a mapping, or the path of a JSON file holding one."""


def check_names(names: Any) -> None:
    """Refuse a ``names`` argument that is neither ``None``, a mapping nor a path."""
    if names is None or isinstance(names, Mapping):
        return
    if isinstance(names, bytes) or not isinstance(names, (str, os.PathLike)):
        raise ConfigurationError(
            "names must be None, a mapping from class folder name to display name, or the "
            f"path of a JSON file holding one (such as cat_to_name.json), got {describe(names)}"
        )


_WORDING = {
    # kind: (what a key names, where a class with no key is missing, what to add)
    "folder": ("class folder", "have no folder in", "add the folders"),
    "label": ("label", "have no row in", "add their rows"),
}


def display_names(
    folders: list[str],
    names: NameMap | None,
    train_dir: Path,
    *,
    strict: bool,
    problems: list[str],
    kind: str = "folder",
) -> list[str]:
    """The display name of each class folder; what is wrong with ``names`` goes to ``problems``.

    ``strict`` also reports names of classes that have no folder in ``train_dir``.
    ``kind="label"`` words the problems for classes given as labels in a CSV file
    (``train_dir``).
    """
    if names is None:
        return list(folders)
    key, absent, add = _WORDING[kind]
    mapping, source = _read_names(names)
    lacking = [folder for folder in folders if folder not in mapping]
    if lacking:
        problems.append(
            f"{source} has no name for the {key}(s) {lacking} of {train_dir}: add them "
            f"to the name map, or check that its keys are the {key} names"
        )
    extra = sorted(set(mapping) - set(folders))
    if strict and extra:
        problems.append(
            f"{source} names class(es) {extra} that {absent} {train_dir}: remove "
            f"them, {add}, or pass strict_names=False"
        )
    classes = [mapping.get(folder, folder) for folder in folders]
    repeated = sorted({name for name in classes if classes.count(name) > 1})
    if repeated:
        problems.append(f"{source} gives several {key}s the same name(s) {repeated}")
    return classes


def _read_names(names: NameMap) -> tuple[dict[str, str], str]:
    if isinstance(names, Mapping):
        return _as_names(names.items(), "the name map"), "the name map"
    path = Path(names)
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"name map {path} not found: pass the JSON file's path") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(
            f"name map {path} is not valid JSON ({error}): expected an object such as "
            '{"1": "pink primrose"}'
        ) from None
    if not isinstance(loaded, dict):
        raise DataError(
            f"name map {path} holds a JSON {type(loaded).__name__}, expected an object from "
            'class folder name to display name such as {"1": "pink primrose"}'
        )
    return _as_names(loaded.items(), str(path)), f"name map {path}"


def _as_names(items: Iterable[tuple[Any, Any]], source: str) -> dict[str, str]:
    mapping = {str(key): value for key, value in items}
    bad = {key: value for key, value in mapping.items() if not isinstance(value, str)}
    if bad:
        raise DataError(f"{source} must map folder names to strings; found {bad}")
    return mapping
