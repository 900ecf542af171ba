"""Images listed in a CSV file of file names and labels (the Kaggle layout), checked up front."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from visionkit._checks import check_bool, check_path, check_seed, describe
from visionkit._images import IMAGE_EXTENSIONS, Preprocess
from visionkit.data._files import (
    Transform,
    check_files,
    check_mode,
    check_preprocess,
    check_transform,
    existing_folder,
    not_an_image,
    raise_problems,
)
from visionkit.data._names import NameMap, check_names, display_names
from visionkit.data._splits import DataSplits
from visionkit.data._stratify import check_fractions, stratified_splits
from visionkit.data.folder import ImageFolderDataset
from visionkit.data.presets import preprocess_from_transform
from visionkit.exceptions import ConfigurationError, DataError

__all__ = ["FILENAME_COLUMNS", "LABEL_COLUMNS", "image_csv"]

FILENAME_COLUMNS = (
    "filename",
    "file_name",
    "file",
    "image",
    "image_name",
    "image_id",
    "img",
    "path",
    "id",
)
"""Header names (in any letter case) taken as the file name column, in this order."""
LABEL_COLUMNS = ("label", "class", "target", "category", "class_name")
"""Header names (in any letter case) taken as the label column, in this order."""
_INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class _Row:
    line: int
    name: str
    label: str


def image_csv(
    csv_path: str | os.PathLike[str],
    image_dir: str | os.PathLike[str],
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    filename_column: str | None = None,
    label_column: str | None = None,
    names: NameMap | None = None,
    train_transform: Transform | None = None,
    eval_transform: Transform | None = None,
    mode: str = "RGB",
    verify: bool = True,
    strict_names: bool = False,
    preprocess: Preprocess | None = None,
) -> DataSplits:
    """Train / validation / test sets from a CSV file of image file names and labels.

    The CSV file (UTF-8, comma-separated, with a header line) has one row per image, as
    Kaggle ships labels::

        id,label
        0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9,1
        9c2a4a8f7c5bd9a1e4f03e0f6c12ab6c1e1fd3d5a2a8b7e8f4f1a2d1c8f8c9a0,0

    **Columns.** ``filename_column`` and ``label_column`` name them; by default the
    first header of `FILENAME_COLUMNS` (``filename``, ``file``, ``image``,
    ``image_id``, ``id``, ...) and of `LABEL_COLUMNS` (``label``, ``class``,
    ``target``, ...) found, in any letter case, else the first two columns.

    **File names** are paths relative to ``image_dir`` (``cat/001.jpg`` is allowed). A name
    that is not a file there and has no image extension is looked up with each of
    [`IMAGE_EXTENSIONS`][visionkit.data.IMAGE_EXTENSIONS] appended (Kaggle often lists ids without
    ``.png``/``.jpg``); two matches are an error.

    **Classes** are the distinct labels, sorted as strings like torchvision's
    ``ImageFolder`` sorts folder names, except when every label is an integer: then they
    are sorted as numbers, so labels ``0..k-1`` keep their value as the class index.
    ``names`` maps labels to display names. The samples are ordered by file name, so the
    split does not depend on the order of the rows.

    **Splits** are stratified and seeded as in [`image_folder`][visionkit.data.image_folder]: per
    label, ``round(n * fraction)`` images (at least 1, rounded half up) for validation and test and
    at least one for training, chosen by one ``torch.Generator`` seeded with ``seed``.

    Every row and every image is checked before anything is returned, and all problems are
    reported in one [`DataError`][visionkit.DataError], each naming its CSV line (the header is
    line 1): ``line 17: image 'abc.jpg' not found in images``.

    Args:
        csv_path: The CSV file.
        image_dir: The folder the file names are relative to.
        val_fraction: Share of each class's images held out for validation.
        test_fraction: Share of each class's images held out for testing.
        seed: Seed of the split.
        filename_column: Header of the file name column.
        label_column: Header of the label column.
        names: JSON file or mapping from label to display name.
        train_transform: Transform of the training split; defaults to ``eval_transform``.
        eval_transform: Transform of the validation and test splits (deterministic; stored
            in checkpoints as the [`Preprocess`][visionkit.predict.Preprocess]).
        mode: ``"RGB"`` or ``"L"``; every image is converted to it.
        verify: Decode every image up front (``False``: read only headers).
        strict_names: Reject names of labels that no row has.
        preprocess: Override the description of ``eval_transform`` stored in checkpoints.

    Returns:
        [`DataSplits`][visionkit.data.DataSplits] of
        [`ImageFolderDataset`][visionkit.data.ImageFolderDataset] sets rooted at ``image_dir``,
        whose ``folders`` and ``class_to_idx`` hold the labels as written in the CSV.

    Raises:
        DataError: listing every problem: a missing, unreadable or non-image file, a
            damaged image, an empty file name or label, an image listed twice, a file name
            leading outside ``image_dir``, a name map that lacks a label; or every class
            with too few images for the split.
        ConfigurationError: for a column name not in the header, or arguments
            [`image_folder`][visionkit.data.image_folder] also refuses.

    Examples:
        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> rows = [f"{i},{'cat' if i < 10 else 'dog'}" for i in range(20)]
        >>> _ = (folder / "labels.csv").write_text("id,label\\n" + "\\n".join(rows) + "\\n")
        >>> for i in range(20):
        ...     Image.new("RGB", (4, 4)).save(folder / f"{i}.png")
        >>> data = image_csv(folder / "labels.csv", folder, val_fraction=0.2)
        >>> data.classes, len(data.train), len(data.val)
        (['cat', 'dog'], 16, 4)
    """
    csv_path = _existing_file(csv_path)
    image_dir = existing_folder(image_dir, "image folder", "image_dir")
    check_mode(mode)
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    seed = check_seed("seed", seed)
    _check_column("filename_column", filename_column)
    _check_column("label_column", label_column)
    check_names(names)
    check_transform("train_transform", train_transform)
    check_transform("eval_transform", eval_transform)
    verify = check_bool("verify", verify)
    strict_names = check_bool("strict_names", strict_names)
    check_preprocess(preprocess)
    if preprocess is None:
        preprocess = preprocess_from_transform(eval_transform, mode=mode)
    problems: list[str] = []
    rows = _read_rows(csv_path, image_dir, filename_column, label_column, problems)
    found = _find_images(rows, image_dir, csv_path, verify, problems)
    labels = _sorted_labels({row.label for row in rows if row.label})
    classes = display_names(
        labels, names, csv_path, strict=strict_names, problems=problems, kind="label"
    )
    raise_problems(str(csv_path), problems)
    index = {label: i for i, label in enumerate(labels)}
    samples = sorted((path, index[label]) for path, label in found)
    dataset = ImageFolderDataset._from_scan(
        image_dir,
        samples,
        labels,
        classes,
        transform=train_transform or eval_transform,
        mode=mode,
        preprocess=preprocess,
    )
    train, val, test = stratified_splits(
        dataset,
        dataset.with_transform(eval_transform),
        labels,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    return DataSplits(
        train=train, val=val, test=test, classes=classes, mean=preprocess.mean, std=preprocess.std
    )


def _existing_file(value: Any) -> Path:
    path = check_path("csv_path", value)
    if not path.is_file():
        state = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"CSV file {path} {state}: pass the CSV file that lists the images")
    return path


def _check_column(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigurationError(
            f"{name} must be None (found from the header) or a column name from the CSV "
            f"header such as 'label', got {describe(value)}"
        )


def _read_rows(
    csv_path: Path,
    image_dir: Path,
    filename_column: str | None,
    label_column: str | None,
    problems: list[str],
) -> list[_Row]:
    """The CSV's rows with their line numbers; malformed rows go to ``problems``."""
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None:
                raise DataError(
                    f"CSV file {csv_path} is empty: expected a header line such as "
                    "'filename,label' and one line per image"
                )
            columns = _columns(csv_path, image_dir, header, filename_column, label_column)
            rows = [_row(reader.line_num, fields, columns, problems) for fields in reader]
    except UnicodeDecodeError as error:
        raise DataError(
            f"CSV file {csv_path} is not UTF-8 text ({error.reason} at byte {error.start}): "
            "save it as UTF-8"
        ) from None
    except csv.Error as error:
        raise DataError(
            f"CSV file {csv_path} cannot be parsed ({error}): check its quotes"
        ) from None
    except OSError as error:
        raise DataError(f"CSV file {csv_path} cannot be read ({error})") from None
    kept = [row for row in rows if row is not None]
    if not kept and not problems:
        raise DataError(
            f"CSV file {csv_path} has a header but no rows: add one line per image "
            f"({header[columns[0]]},{header[columns[1]]})"
        )
    return kept


def _columns(
    csv_path: Path,
    image_dir: Path,
    header: list[str],
    filename_column: str | None,
    label_column: str | None,
) -> tuple[int, int]:
    """The indices of the file name and label columns in ``header``."""
    names = [field.strip() for field in header]
    if len(names) < 2:
        raise DataError(
            f"CSV file {csv_path} has {len(names)} column in its header ({header!r}); expected "
            "a file name and a label column separated by a comma, such as 'filename,label'"
        )
    file_col = _named(csv_path, names, filename_column, FILENAME_COLUMNS, "filename_column")
    label_col = _named(csv_path, names, label_column, LABEL_COLUMNS, "label_column", file_col)
    if file_col is None:
        file_col = 0 if label_col != 0 else 1
        _refuse_data_as_header(csv_path, image_dir, names[file_col])
    if label_col is None:
        label_col = next(i for i in range(len(names)) if i != file_col)
    if file_col == label_col:
        raise ConfigurationError(
            f"filename_column and label_column both name the column {names[file_col]!r} of "
            f"{csv_path}: pass two different columns of {names}"
        )
    return file_col, label_col


def _named(
    csv_path: Path,
    names: list[str],
    given: str | None,
    known: tuple[str, ...],
    argument: str,
    taken: int | None = None,
) -> int | None:
    """The column ``given`` names, else the first of ``known`` present (``None``: neither)."""
    lowered = [name.lower() for name in names]
    if given is not None:
        if given.strip() in names:
            return names.index(given.strip())
        if given.strip().lower() in lowered:
            return lowered.index(given.strip().lower())
        raise ConfigurationError(
            f"{argument}={given!r} is not a column of {csv_path}; its header has {names}: "
            "pass one of them"
        )
    for candidate in known:
        if candidate in lowered and lowered.index(candidate) != taken:
            return lowered.index(candidate)
    return None


def _refuse_data_as_header(csv_path: Path, image_dir: Path, first: str) -> None:
    """A header whose file name field is an image file is a data row: the header is missing."""
    relative = PurePath(first)
    looks_like_image = bool(first) and not relative.is_absolute() and ".." not in relative.parts
    if looks_like_image and (not not_an_image(Path(first)) or (image_dir / first).is_file()):
        raise DataError(
            f"the first line of {csv_path} looks like an image row ({first!r}), not a header: "
            "add a header line such as 'filename,label' at the top"
        )


def _row(
    line: int, fields: list[str], columns: tuple[int, int], problems: list[str]
) -> _Row | None:
    """One data row, or ``None`` (a blank row, or a problem added to ``problems``)."""
    if not any(field.strip() for field in fields):
        return None  # blank lines and rows of empty fields, as spreadsheets export them
    file_col, label_col = columns
    if len(fields) <= max(columns):
        problems.append(
            f"line {line}: expected at least {max(columns) + 1} comma-separated fields, found "
            f"{len(fields)} ({','.join(fields)!r}): give the image's file name and label"
        )
        return None
    name, label = fields[file_col].strip(), fields[label_col].strip()
    if not name:
        problems.append(
            f"line {line}: empty file name (label {label!r}): fill it in or remove the row"
        )
        return None
    if not label:
        problems.append(
            f"line {line}: empty label for image {name!r}: fill in its class or remove the row"
        )
    return _Row(line, name, label)


def _find_images(
    rows: list[_Row], image_dir: Path, csv_path: Path, verify: bool, problems: list[str]
) -> list[tuple[Path, str]]:
    """The image file and label of each row, checked; problems go to ``problems``."""
    finder = _Finder(image_dir)
    first_line: dict[Path, _Row] = {}
    located: list[tuple[_Row, Path]] = []
    missing: list[str] = []
    for row in rows:
        path = finder.locate(row, missing, problems)
        if path is None:
            continue
        earlier = first_line.setdefault(path, row)
        if earlier is not row:
            labels = "" if earlier.label == row.label else f" with label {earlier.label!r}"
            problems.append(
                f"line {row.line}: image {row.name!r} is listed again (first on line "
                f"{earlier.line}{labels}): keep one row per image"
            )
        elif not_an_image(path):
            problems.append(
                f"line {row.line}: {path} is not an image file (extension {path.suffix!r}; "
                f"images are {', '.join(IMAGE_EXTENSIONS)}): fix the row or remove it"
            )
        else:
            located.append((row, path))
    if len(missing) == len(rows) > 1:
        missing = [
            f"none of the {len(rows)} images listed in {csv_path} is in {image_dir} (line "
            f"{rows[0].line}: {rows[0].name!r}): pass the folder that holds them as image_dir"
        ]
    problems += missing
    checked = check_files([path for _, path in located], verify)
    problems += [f"line {row.line}: {p}" for (row, _), p in zip(located, checked, strict=True) if p]
    problems.sort(key=_line_of)
    return [(path, row.label) for (row, path), p in zip(located, checked, strict=True) if not p]


def _line_of(problem: str) -> int:
    """Sort key: the CSV line a problem names (others first, in their order)."""
    match = re.match(r"line ([0-9]+):", problem)
    return int(match.group(1)) if match else 0


class _Finder:
    """Looks up file names in ``image_dir``, listing each folder once."""

    def __init__(self, image_dir: Path) -> None:
        self.image_dir = image_dir
        self.listings: dict[Path, frozenset[str]] = {}

    def _listing(self, folder: Path) -> frozenset[str]:
        if folder not in self.listings:
            try:
                self.listings[folder] = frozenset(os.listdir(folder))
            except (OSError, ValueError):  # not a folder, unreadable, or a NUL in the name
                self.listings[folder] = frozenset()
        return self.listings[folder]

    def locate(self, row: _Row, missing: list[str], problems: list[str]) -> Path | None:
        """The file ``row`` names; a problem (not found, outside, ambiguous) otherwise."""
        relative = PurePath(row.name.replace("\\", "/"))
        if relative.is_absolute() or ".." in relative.parts:
            problems.append(
                f"line {row.line}: image path {row.name!r} leads outside {self.image_dir}: "
                "list paths relative to image_dir"
            )
            return None
        path = self.image_dir / relative
        entries = self._listing(path.parent)
        if path.name in entries or path.is_file():
            return path
        tried = ""
        if not_an_image(path):
            matches = sorted(
                path.parent / (path.name + ext)
                for ext in {*IMAGE_EXTENSIONS, *(e.upper() for e in IMAGE_EXTENSIONS)}
                if path.name + ext in entries
            )
            if len(matches) == 1:
                return matches[0]
            if matches:
                problems.append(
                    f"line {row.line}: image {row.name!r} matches several files "
                    f"({', '.join(m.name for m in matches)}) in {path.parent}: write the "
                    "file's extension in the CSV"
                )
                return None
            tried = f" (nor with an image extension, as {row.name + '.jpg'!r})"
        missing.append(
            f"line {row.line}: image {row.name!r} not found in {self.image_dir}{tried}: check "
            "the file name and image_dir, or remove the row"
        )
        return None


def _sorted_labels(labels: set[str]) -> list[str]:
    """Labels sorted as strings, or as numbers when every label is an integer."""
    if labels and all(_INTEGER.fullmatch(label) for label in labels):
        return sorted(labels, key=lambda label: (int(label), label))
    return sorted(labels)
