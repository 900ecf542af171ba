"""Image files in class folders (``train/ valid/ test/``), checked before training starts."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from visionkit._checks import check_bool, check_items, check_seed, describe
from visionkit._images import IMAGE_EXTENSIONS, Preprocess, walk_files
from visionkit.data._datasets import ClassificationDataset, Sample
from visionkit.data._files import (
    Transform,
    check_files,
    check_mode,
    check_preprocess,
    check_transform,
    existing_folder,
    load,
    raise_problems,
    try_describe,
)
from visionkit.data._names import NameMap, check_names, display_names
from visionkit.data._splits import DataSplits
from visionkit.data._stratify import check_fractions, stratified_splits
from visionkit.data.presets import ToFloatTensor, preprocess_from_transform
from visionkit.exceptions import ConfigurationError

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "image_folder"]

_SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini"})
_TO_TENSOR = ToFloatTensor()
DEFAULT_SPLITS = ("train", "valid", "test")


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
    reported together in one [`DataError`][visionkit.DataError]. Grayscale, palette and RGBA
    images are converted to ``mode``, as torchvision's loader does; 16-bit images are
    scaled to 8 bits (``round(v / 257)``), never clipped, exactly as the
    [`Predictor`][visionkit.Predictor] reads them.

    Args:
        root: The folder holding one sub-folder per class.
        transform: Applied to each PIL image (after conversion to ``mode``); ``None``
            converts to a ``float32`` tensor in ``[0, 1]`` like ``ToTensor``.
        names: Display name of each class folder: a mapping or a JSON file such as
            the flowers' ``cat_to_name.json``; ``None`` uses the folder names.
        mode: ``"RGB"`` or ``"L"`` (grayscale).
        verify: Decode every image now, so damaged files are reported before training; with
            ``False`` only headers are read and a damaged file fails when it is loaded.
        class_folders: Use these class folders, in this order, instead of the sorted sub-folders
            (how [`image_folder`][visionkit.data.image_folder] makes every split share the training
            split's classes); each must exist.
        strict_names: Also reject names of classes that have no folder.
        preprocess: How the [`Predictor`][visionkit.Predictor] should prepare raw images for a
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
        root = existing_folder(root, "image folder", "root")
        check_mode(mode)
        check_transform("transform", transform)
        check_names(names)
        verify = check_bool("verify", verify)
        strict_names = check_bool("strict_names", strict_names)
        check_preprocess(preprocess)
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
        raise_problems(f"image folder {root}", problems)
        if preprocess is None:
            preprocess = try_describe(transform, mode)
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
        image = load(path, self.mode)
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
    splits: tuple[str, str | None, str | None] | None = DEFAULT_SPLITS,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    seed: int = 0,
    mode: str = "RGB",
    verify: bool = True,
    strict_names: bool = False,
    preprocess: Preprocess | None = None,
) -> DataSplits:
    """Train / validation / test sets from class folders: split folders (W5) or one folder.

    Two layouts are read. Split folders, each with one sub-folder per class::

        flowers/train/1/image_06734.jpg, flowers/valid/1/..., flowers/test/1/...

    or one folder of class folders, split here (``splits=None``, or the default ``splits``
    when ``root`` has none of the folders ``train``, ``valid`` and ``test``)::

        my_photos/cat/001.jpg, my_photos/dog/001.jpg, ...

    Classes are the (training split's) class folders, ordered like torchvision's
    ``ImageFolder`` (folder names sorted as strings); the other split folders must have
    exactly the same class folders. ``names`` maps folder names to display names (the
    flowers' ``cat_to_name.json``); it may name more classes than there are folders (e.g.
    a sample of the 102 flowers) unless ``strict_names`` is set. Every file is checked before
    anything is returned, and all problems are reported in one error.

    ``val_fraction`` and ``test_fraction`` hold out validation and test sets from the
    training images where no folder provides them. The split is stratified and seeded:
    per class, ``round(n * fraction)`` images (at least 1, rounded half up) go to each
    held-out split and at least one stays for training, chosen by one ``torch.Generator``
    seeded with ``seed``; held-out sets use ``eval_transform``.

    Args:
        root: The folder holding the split folders, or the class folders.
        names: JSON file or mapping from class folder name to display name.
        train_transform: Transform of the training split (e.g.
            [`visionkit.data.presets.imagenet_train`][visionkit.data.presets.imagenet_train]);
            defaults to ``eval_transform``.
        eval_transform: Transform of the validation and test splits (e.g.
            [`visionkit.data.presets.imagenet_eval`][visionkit.data.presets.imagenet_eval]);
            ``None`` converts to tensors like ``ToTensor``. It must be deterministic: checkpoints
            store it as the [`Preprocess`][visionkit.predict.Preprocess] the ``Predictor`` applies.
        splits: Folder names of the train, validation and test splits, ``None`` for a
            split the data set does not have; or ``None``: ``root`` is one folder of class
            folders.
        val_fraction: Share of each class's training images held out for validation
            when no validation folder is used.
        test_fraction: Share of each class's training images held out for testing when no
            test folder is used.
        seed: Seed of the held-out split.
        mode: ``"RGB"`` or ``"L"``; every image is converted to it.
        verify: Decode every image up front (see
            [`ImageFolderDataset`][visionkit.data.ImageFolderDataset]).
        strict_names: Reject names of classes that have no folder.
        preprocess: Override the description of ``eval_transform`` stored in checkpoints.

    Raises:
        DataError: listing every problem: a missing split folder, a class folder that
            one split has and another lacks, an empty class folder, a name map that lacks a
            class (or, with ``strict_names``, names one with no folder), a damaged or
            non-image file, an image over Pillow's decompression-bomb limit; or every class
            with too few images to appear in each split.
        ConfigurationError: if ``eval_transform`` is random or cannot be described, a
            fraction is outside ``[0, 1)`` (or both sum to 1 or more), or a fraction is
            given for a split that has a folder.

    Examples:
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
        >>> photos = pathlib.Path(tempfile.mkdtemp())
        >>> for folder in ("cat", "dog"):
        ...     (photos / folder).mkdir()
        ...     for i in range(10):
        ...         Image.new("RGB", (4, 4)).save(photos / folder / f"{i}.png")
        >>> data = image_folder(photos, val_fraction=0.2, test_fraction=0.1)
        >>> len(data.train), len(data.val), len(data.test)
        (14, 4, 2)
    """
    root = existing_folder(root, "data set root", "root")
    check_mode(mode)
    checked = None if splits is None else _check_splits(splits)
    check_names(names)
    check_transform("train_transform", train_transform)
    check_transform("eval_transform", eval_transform)
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    seed = check_seed("seed", seed)
    verify = check_bool("verify", verify)
    strict_names = check_bool("strict_names", strict_names)
    check_preprocess(preprocess)
    if preprocess is None:
        preprocess = preprocess_from_transform(eval_transform, mode=mode)
    if checked is None or (checked == DEFAULT_SPLITS and _one_folder(root)):
        if checked is None:
            _refuse_split_folders(root)
        scanned, folders, classes = _scan_one(root, names, verify=verify, strict_names=strict_names)
    else:
        _refuse_fractions_with_folders(root, checked, val_fraction, test_fraction)
        scanned, folders, classes = _scan_all(
            root, checked, names, verify=verify, strict_names=strict_names
        )
    datasets = {
        name: ImageFolderDataset._from_scan(
            split_dir,
            samples,
            folders,
            classes,
            transform=(train_transform or eval_transform) if name == "train" else eval_transform,
            mode=mode,
            preprocess=preprocess,
        )
        for name, (split_dir, samples) in scanned.items()
    }
    train, val, test = stratified_splits(
        datasets["train"],
        datasets["train"].with_transform(eval_transform),
        folders,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    return DataSplits(
        train=train,
        val=datasets.get("val", val),
        test=datasets.get("test", test),
        classes=classes,
        mean=preprocess.mean,
        std=preprocess.std,
    )


def _one_folder(root: Path) -> bool:
    """Whether ``root`` looks like one folder of class folders: it has sub-folders, and
    none of them is a default split folder."""
    folders = _class_folders(root)
    return bool(folders) and not set(folders) & set(DEFAULT_SPLITS)


def _refuse_split_folders(root: Path) -> None:
    """With ``splits=None``, refuse a ``train`` folder that holds only class folders."""
    train = root / DEFAULT_SPLITS[0]
    if not train.is_dir() or any(entry.is_file() for entry in os.scandir(train)):
        return
    inside = _class_folders(train)
    if inside:
        raise ConfigurationError(
            f"splits=None must be given one folder of class folders, but {train} holds "
            f"folders {inside[:5]}, as a training split folder does: leave splits at its "
            "default to read split folders, or, if 'train' is a class, put its images "
            "directly in it"
        )


def _refuse_fractions_with_folders(
    root: Path,
    splits: tuple[str, str | None, str | None],
    val_fraction: float,
    test_fraction: float,
) -> None:
    train_name, val_name, test_name = splits
    given = (
        ("val_fraction", val_fraction, val_name, "validation"),
        ("test_fraction", test_fraction, test_name, "testing"),
    )
    for arg, fraction, folder, use in given:
        if folder is not None and fraction:
            other = (
                (train_name, None, test_name)
                if arg == "val_fraction"
                else (train_name, val_name, None)
            )
            raise ConfigurationError(
                f"{arg}={fraction} holds out images for {use}, but the split folder "
                f"{root / folder} is used for {use}: pass splits={other!r} to split the "
                "training images instead"
            )


def _scan_one(
    root: Path, names: NameMap | None, *, verify: bool, strict_names: bool
) -> tuple[dict[str, tuple[Path, list[tuple[Path, int]]]], list[str], list[str]]:
    """Scan one folder of class folders, as the training split; or raise."""
    problems: list[str] = []
    folders = _class_folders(root)
    samples = _scan_split(root, folders, None, verify=verify, problems=problems)
    classes = display_names(folders, names, root, strict=strict_names, problems=problems)
    raise_problems(f"image folder {root}", problems)
    return {"train": (root, samples)}, folders, classes


def _scan_all(
    root: Path,
    splits: tuple[str, str | None, str | None],
    names: NameMap | None,
    *,
    verify: bool,
    strict_names: bool,
) -> tuple[dict[str, tuple[Path, list[tuple[Path, int]]]], list[str], list[str]]:
    """Scan every split: ``{split: (folder, samples)}``, class folders, names; or raise."""
    problems: list[str] = []
    named = {k: v for k, v in zip(("train", "val", "test"), splits, strict=True) if v is not None}
    missing = [root / folder for folder in named.values() if not (root / folder).is_dir()]
    for path in missing:
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        problems.append(
            f"missing split folder {path} (found folders {found}): create it, name the "
            "folders with splits=(train, valid, test), None for a split you do not have, or "
            "pass splits=None if the root holds the class folders themselves"
        )
    train_dir = root / named["train"]
    if train_dir in missing:
        raise_problems(f"image folder {root}", problems)
    folders = _class_folders(train_dir)
    result: dict[str, tuple[Path, list[tuple[Path, int]]]] = {}
    for split, folder in named.items():
        if root / folder not in missing:
            reference = None if split == "train" else str(train_dir)
            samples = _scan_split(
                root / folder, folders, reference, verify=verify, problems=problems
            )
            result[split] = (root / folder, samples)
    classes = display_names(folders, names, train_dir, strict=strict_names, problems=problems)
    raise_problems(f"image folder {root}", problems)
    return result, folders, classes


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
    found = check_files([path for path, _ in candidates], verify)
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
