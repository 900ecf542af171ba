"""Image files in class folders (``train/ valid/ test/``), checked before training starts."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from visionkit._checks import (
    check_bool,
    check_fraction,
    check_items,
    check_path,
    check_seed,
    describe,
)
from visionkit._images import (
    IMAGE_EXTENSIONS,
    Preprocess,
    convert_mode,
    describe_failure,
    open_image,
    walk_files,
)
from visionkit.data._datasets import ClassificationDataset, Sample
from visionkit.data._names import NameMap, check_names, display_names
from visionkit.data._splits import DataSplits, split_indices
from visionkit.data.presets import ToFloatTensor, preprocess_from_transform
from visionkit.exceptions import ConfigurationError, DataError

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "image_folder"]

_SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini"})
_TO_TENSOR = ToFloatTensor()
_MODES = ("RGB", "L")
Transform = Callable[[Any], Any]


class ImageFolderDataset(ClassificationDataset):
    """Images in one folder per class, like torchvision's ``ImageFolder``, checked up front.

    Class indices follow torchvision: the class folder names sorted as strings
    (``1, 10, 102, 54, 74``), so a model trained with a torchvision pipeline on the same
    folders uses the same indices. Files are listed the same way (recursively, sorted).
    Hidden files and folders (``.ipynb_checkpoints``, ``.DS_Store``) and ``Thumbs.db`` /
    ``desktop.ini`` are ignored; any other file that is not an image is an error.

    Links to folders are followed, as torchvision does. Every file is checked when the
    data set is built, and every problem found (a corrupt, truncated, empty or non-image
    file, an image over Pillow's decompression-bomb limit, an empty class folder, a class
    missing from the name map, a link looping back to a folder that contains it) is
    reported together in one :class:`~visionkit.DataError`. Grayscale, palette and RGBA
    images are converted to ``mode``, as torchvision's loader does; 16-bit images are
    scaled to 8 bits (``round(v / 257)``), never clipped, exactly as the
    :class:`~visionkit.Predictor` reads them.

    Args:
        root: The folder holding one sub-folder per class.
        transform: Applied to each PIL image (after conversion to ``mode``); ``None``
            converts to a ``float32`` tensor in ``[0, 1]`` like ``ToTensor``.
        names: Display name of each class folder: a mapping or a JSON file such as
            seed 000's ``cat_to_name.json``; ``None`` uses the folder names.
        mode: ``"RGB"`` or ``"L"`` (grayscale).
        verify: Decode every image now, so damaged files are reported before training; with
            ``False`` only headers are read and a damaged file fails when it is loaded.
        class_folders: Use these class folders, in this order, instead of the sorted
            sub-folders (how :func:`image_folder` makes every split share the training
            split's classes); each must exist.
        strict_names: Also reject names of classes that have no folder.
        preprocess: How the :class:`~visionkit.Predictor` should prepare raw images for a
            model trained on this data set; by default derived from ``transform``, or
            ``None`` when that transform is random.

    Attributes:
        classes: Display names, index = label.
        folders: Class folder names, index = label.
        class_to_idx: Class folder name to label.
        paths: Image file of each sample.
        targets: Label of each sample.
        preprocess: The evaluation preprocessing stored in checkpoints (or ``None``).

    Raises:
        DataError: listing every problem found, each with the file or folder it concerns.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        transform: Transform | None = None,
        names: NameMap | None = None,
        mode: str = "RGB",
        verify: bool = True,
        class_folders: Sequence[str] | None = None,
        strict_names: bool = False,
        preprocess: Preprocess | None = None,
    ) -> None:
        root = _existing_folder(root, "image folder", "root")
        _check_mode(mode)
        _check_transform("transform", transform)
        check_names(names)
        verify = check_bool("verify", verify)
        strict_names = check_bool("strict_names", strict_names)
        _check_preprocess(preprocess)
        problems: list[str] = []
        if class_folders is None:
            folders = _class_folders(root)
        else:
            if isinstance(class_folders, (str, bytes)) or not isinstance(class_folders, Sequence):
                raise ConfigurationError(
                    "class_folders must be None or a list of class folder names, got "
                    f"{describe(class_folders)}"
                )
            folders = [_plain_name(f"class_folders[{i}]", f) for i, f in enumerate(class_folders)]
        reference = "class_folders" if class_folders is not None else None
        samples = _scan_split(root, folders, reference, verify=verify, problems=problems)
        classes = display_names(folders, names, root, strict=strict_names, problems=problems)
        _raise_problems(root, problems)
        if preprocess is None:
            preprocess = _try_describe(transform, mode)
        self._setup(root, samples, folders, classes, transform, mode, preprocess)

    def _setup(
        self,
        root: Path,
        samples: list[tuple[Path, int]],
        folders: list[str],
        classes: list[str],
        transform: Transform | None,
        mode: str,
        preprocess: Preprocess | None,
    ) -> None:
        self.root = root
        self.paths = [path for path, _ in samples]
        self.targets = torch.tensor([label for _, label in samples], dtype=torch.long)
        self.folders = list(folders)
        self.class_to_idx = {folder: i for i, folder in enumerate(folders)}
        self.classes = list(classes)
        self.transform = transform
        self.mode = mode
        self.preprocess = preprocess

    @classmethod
    def _from_scan(
        cls,
        root: Path,
        samples: list[tuple[Path, int]],
        folders: list[str],
        classes: list[str],
        *,
        transform: Transform | None,
        mode: str,
        preprocess: Preprocess | None,
    ) -> ImageFolderDataset:
        dataset = cls.__new__(cls)
        dataset._setup(root, samples, folders, classes, transform, mode, preprocess)
        return dataset

    @property
    def samples(self) -> list[tuple[Path, int]]:
        """``(path, label)`` of every sample, as torchvision's ``ImageFolder.samples``."""
        return list(zip(self.paths, self.targets.tolist(), strict=True))

    def __getitem__(self, index: int) -> Sample:
        path = self.paths[index]
        image = _load(path, self.mode)
        output = (self.transform or _TO_TENSOR)(image)
        if isinstance(output, torch.Tensor):
            output = output.as_subclass(torch.Tensor)
        return output, int(self.targets[index])

    def with_transform(
        self, transform: Transform | None, *, preprocess: Preprocess | None = None
    ) -> ImageFolderDataset:
        """The same files with another transform (and, if given, another ``preprocess``)."""
        other = copy.copy(self)
        other.transform = transform
        if preprocess is not None:
            other.preprocess = preprocess
        return other

    def select(self, indices: Sequence[int] | torch.Tensor) -> ImageFolderDataset:
        """The samples at ``indices``, in that order, with the same transform and classes."""
        subset = super().select(indices)
        assert isinstance(subset, ImageFolderDataset)
        return subset

    def relabel(self, label_map: Mapping[int, int], classes: Sequence[str]) -> ImageFolderDataset:
        """Keep the classes in ``label_map`` and renumber them (see the base class)."""
        subset = super().relabel(label_map, classes)
        assert isinstance(subset, ImageFolderDataset)
        first_old = {new: old for old, new in sorted(label_map.items(), reverse=True)}
        subset.folders = [self.folders[first_old[new]] for new in range(len(classes))]
        subset.class_to_idx = {self.folders[old]: new for old, new in label_map.items()}
        return subset

    def _select(self, index: torch.Tensor) -> ImageFolderDataset:
        other = copy.copy(self)
        other.paths = [self.paths[i] for i in index.tolist()]
        other.targets = self.targets[index]
        return other

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset({str(self.root)!r}: {len(self)} images, {self.num_classes} "
            f"classes, mode={self.mode!r}, transform={self.transform!r})"
        )


def image_folder(
    root: str | os.PathLike[str],
    *,
    names: NameMap | None = None,
    train_transform: Transform | None = None,
    eval_transform: Transform | None = None,
    splits: tuple[str, str | None, str | None] = ("train", "valid", "test"),
    val_fraction: float = 0.0,
    seed: int = 0,
    mode: str = "RGB",
    verify: bool = True,
    strict_names: bool = False,
    preprocess: Preprocess | None = None,
) -> DataSplits:
    """Train / validation / test sets from class folders, as in seed 000 (W5).

    ``root`` holds one folder per split, each with one sub-folder per class::

        flowers/train/1/image_06734.jpg, flowers/valid/1/..., flowers/test/1/...

    The training split's class folders define the classes, ordered like torchvision's
    ``ImageFolder`` (folder names sorted as strings); the other splits must have exactly the
    same class folders. ``names`` maps folder names to display names (seed 000's
    ``cat_to_name.json``); it may name more classes than there are folders (e.g. a sample
    of the 102 flowers) unless ``strict_names`` is set. Every file of every split is checked
    before anything is returned, and all problems are reported in one error.

    Args:
        root: The folder holding the split folders.
        names: JSON file or mapping from class folder name to display name.
        train_transform: Transform of the training split (e.g.
            :func:`visionkit.data.presets.imagenet_train`); defaults to ``eval_transform``.
        eval_transform: Transform of the validation and test splits (e.g.
            :func:`visionkit.data.presets.imagenet_eval`); ``None`` converts to tensors
            like ``ToTensor``. It must be deterministic: checkpoints store it as the
            :class:`~visionkit.predict.Preprocess` the ``Predictor`` applies.
        splits: Folder names of the train, validation and test splits; ``None`` for a
            split the data set does not have.
        val_fraction: With no validation folder, hold out this share of the training
            images for validation (seeded by ``seed``).
        seed: Seed of that split.
        mode: ``"RGB"`` or ``"L"``; every image is converted to it.
        verify: Decode every image up front (see :class:`ImageFolderDataset`).
        strict_names: Reject names of classes that have no folder.
        preprocess: Override the description of ``eval_transform`` stored in checkpoints.

    Raises:
        DataError: listing every problem: a missing split folder, a class folder that
            one split has and another lacks, an empty class folder, a name map that lacks a
            class (or, with ``strict_names``, names one with no folder), a damaged or
            non-image file, an image over Pillow's decompression-bomb limit.
        ConfigurationError: if ``eval_transform`` is random or cannot be described.

    Example:
        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for split in ("train", "valid", "test"):
        ...     for folder in ("2", "10"):
        ...         (root / split / folder).mkdir(parents=True)
        ...         Image.new("RGB", (4, 4)).save(root / split / folder / "a.png")
        >>> data = image_folder(root, names={"2": "two", "10": "ten"})
        >>> data.classes, data.train.folders, len(data.test)
        (['ten', 'two'], ['10', '2'], 2)
    """
    root = _existing_folder(root, "data set root", "root")
    _check_mode(mode)
    splits = _check_splits(splits)
    check_names(names)
    _check_transform("train_transform", train_transform)
    _check_transform("eval_transform", eval_transform)
    val_fraction = check_fraction("val_fraction", val_fraction)
    seed = check_seed("seed", seed)
    verify = check_bool("verify", verify)
    strict_names = check_bool("strict_names", strict_names)
    _check_preprocess(preprocess)
    if preprocess is None:
        preprocess = preprocess_from_transform(eval_transform, mode=mode)
    train_name, val_name, test_name = splits
    if val_name is not None and val_fraction:
        raise ConfigurationError(
            f"val_fraction={val_fraction} holds out validation images, but the split folder "
            f"{root / val_name} is used for validation: pass splits=({train_name!r}, None, "
            f"{test_name!r}) to split the training images instead"
        )
    scanned, folders, classes = _scan_all(
        root, splits, names, verify=verify, strict_names=strict_names
    )
    datasets = {
        name: ImageFolderDataset._from_scan(
            root / folder,
            samples,
            folders,
            classes,
            transform=(train_transform or eval_transform) if name == "train" else eval_transform,
            mode=mode,
            preprocess=preprocess,
        )
        for name, (folder, samples) in scanned.items()
    }
    train, val = datasets["train"], datasets.get("val")
    if val is None and val_fraction:
        train_idx, val_idx = split_indices(len(train), val_fraction, seed=seed)
        train, val = train.select(train_idx), train.with_transform(eval_transform).select(val_idx)
    return DataSplits(
        train=train,
        val=val,
        test=datasets.get("test"),
        classes=classes,
        mean=preprocess.mean,
        std=preprocess.std,
    )


def _scan_all(
    root: Path,
    splits: tuple[str, str | None, str | None],
    names: NameMap | None,
    *,
    verify: bool,
    strict_names: bool,
) -> tuple[dict[str, tuple[str, list[tuple[Path, int]]]], list[str], list[str]]:
    """Scan every split: ``{split: (folder, samples)}``, class folders, names; or raise."""
    problems: list[str] = []
    named = {k: v for k, v in zip(("train", "val", "test"), splits, strict=True) if v is not None}
    missing = [root / folder for folder in named.values() if not (root / folder).is_dir()]
    for path in missing:
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        problems.append(
            f"missing split folder {path} (found folders {found}): create it, or name the "
            "folders with splits=(train, valid, test), None for a split you do not have"
        )
    train_dir = root / named["train"]
    if train_dir in missing:
        _raise_problems(root, problems)
    folders = _class_folders(train_dir)
    result: dict[str, tuple[str, list[tuple[Path, int]]]] = {}
    for split, folder in named.items():
        if root / folder not in missing:
            reference = None if split == "train" else str(train_dir)
            samples = _scan_split(
                root / folder, folders, reference, verify=verify, problems=problems
            )
            result[split] = (folder, samples)
    classes = display_names(folders, names, train_dir, strict=strict_names, problems=problems)
    _raise_problems(root, problems)
    return result, folders, classes


def _existing_folder(path: str | os.PathLike[str], what: str, name: str) -> Path:
    folder = check_path(name, path)
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise DataError(f"{what} {folder} {state}: pass the folder that holds the images")
    return folder


def _check_mode(mode: str) -> None:
    if not isinstance(mode, str) or mode not in _MODES:
        raise ConfigurationError(f"mode must be 'RGB' or 'L', got {describe(mode)}")


def _check_splits(splits: Any) -> tuple[str, str | None, str | None]:
    """``(train, valid, test)`` folder names: plain names, ``None`` for a missing split."""
    items = check_items("splits", splits, lengths=(3,), what="(train, valid, test)")
    if items[0] is None:
        raise ConfigurationError(
            f"splits must name the training folder first, got {describe(splits)}: pass e.g. "
            "splits=('train', None, None); only the validation and test splits may be None"
        )
    train, val, test = (
        None if item is None else _plain_name(f"splits[{i}]", item) for i, item in enumerate(items)
    )
    assert train is not None
    return train, val, test


def _plain_name(name: str, value: Any) -> str:
    """A folder name inside the root: not empty, no separator, not ``.``, ``..`` or absolute."""
    expected = (
        f"{name} must be a plain folder name inside the root such as 'train' (no '/' or "
        "'\\', not '.' or '..', not absolute)"
    )
    if isinstance(value, os.PathLike) and not isinstance(value, (str, bytes)):
        value = os.fspath(value)  # Path("train") names the same folder as "train"
    if not isinstance(value, str):
        raise ConfigurationError(f"{expected} or None, got {describe(value)}")
    separators = {"/", "\\", os.sep, *([os.altsep] if os.altsep else [])}
    if (
        value in ("", ".", "..")
        or any(sep in value for sep in separators)
        or "\x00" in value
        or Path(value).is_absolute()
    ):
        raise ConfigurationError(f"{expected}, got {value!r}: name a folder directly in the root")
    return value


def _check_transform(name: str, transform: Any) -> None:
    if transform is not None and not callable(transform):
        raise ConfigurationError(
            f"{name} must be None or a callable taking a PIL image (e.g. a torchvision "
            f"transform), got {describe(transform)}"
        )


def _check_preprocess(preprocess: Any) -> None:
    if preprocess is not None and not isinstance(preprocess, Preprocess):
        raise ConfigurationError(
            "preprocess must be None (derived from the evaluation transform) or a "
            "visionkit.predict.Preprocess such as Preprocess(mode='RGB', resize=256, "
            f"center_crop=224), got {describe(preprocess)}"
        )


def _class_folders(split_dir: Path) -> list[str]:
    """Sub-folder names sorted as strings, like torchvision's ``find_classes``."""
    return sorted(
        entry.name
        for entry in os.scandir(split_dir)
        if entry.is_dir() and not entry.name.startswith(".")
    )


def _scan_split(
    split_dir: Path,
    folders: list[str],
    reference: str | None,
    *,
    verify: bool,
    problems: list[str],
) -> list[tuple[Path, int]]:
    """The images of ``folders`` in ``split_dir``; problems found are appended to ``problems``.

    ``reference`` names where ``folders`` came from, when they did not come from
    ``split_dir`` itself: then ``split_dir`` must hold exactly those class folders.
    """
    present = _class_folders(split_dir)
    if not folders:
        problems.append(
            f"{split_dir} holds no class folders: expected one sub-folder of images per class"
        )
    if reference is not None:
        _compare_classes(split_dir, present, folders, reference, problems)
    candidates: list[tuple[Path, int]] = []
    for label, folder in enumerate(folders):
        if folder not in present:
            continue
        files = _list_files(split_dir / folder, problems)
        if not files:
            problems.append(
                f"empty class folder {split_dir / folder}: add its images or delete the folder"
            )
        candidates += [(path, label) for path in files]
    found = _check_files([path for path, _ in candidates], verify)
    problems += [problem for problem in found if problem is not None]
    return [sample for sample, problem in zip(candidates, found, strict=True) if problem is None]


def _compare_classes(
    split_dir: Path, present: list[str], folders: list[str], reference: str, problems: list[str]
) -> None:
    for folder in folders:
        if folder not in present:
            problems.append(
                f"missing class folder {split_dir / folder}: {reference} has class {folder!r}, "
                "and every split needs the same classes; add the folder with its images, or "
                "remove the class from every split"
            )
    for folder in present:
        if folder not in folders and reference != "class_folders":
            problems.append(
                f"class folder {split_dir / folder} has no counterpart in {reference}: add the "
                "class to the training split or remove this folder"
            )


def _list_files(class_dir: Path, problems: list[str]) -> list[Path]:
    """Files under ``class_dir`` in torchvision's order, without hidden and system files.

    A symbolic link looping back to a folder that contains it is added to ``problems``.
    """
    walked, loops = walk_files(class_dir, hidden_folders=False)
    problems += loops
    return [
        Path(top, name)
        for top, files in walked
        for name in files
        if not name.startswith(".") and name.lower() not in _SYSTEM_FILES
    ]


def _check_files(paths: list[Path], verify: bool) -> list[str | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if len(paths) < 64:
            return [_file_problem(path, verify) for path in paths]
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            return list(pool.map(lambda path: _file_problem(path, verify), paths))


def _file_problem(path: Path, verify: bool) -> str | None:
    """What is wrong with the image file ``path``, or ``None``."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
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


def _load(path: Path, mode: str) -> Image.Image:
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


def _try_describe(transform: Transform | None, mode: str) -> Preprocess | None:
    try:
        return preprocess_from_transform(transform, mode=mode)
    except ConfigurationError:
        return None


def _raise_problems(root: Path, problems: list[str]) -> None:
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise DataError(f"{count} in image folder {root}; nothing was loaded:\n{listing}")
