"""Stratified seeded splits: one folder of class folders, and held-out shares of ``train/``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from visionkit import ConfigurationError, DataError
from visionkit.data import DataSplits, ImageFolderDataset, image_folder
from visionkit.data._stratify import held_out_counts, stratified_indices
from visionkit.predict import Preprocess

MakeFolder = Callable[..., Path]


@pytest.fixture
def photos(tmp_path: Path, fmt: SimpleNamespace) -> Callable[..., Path]:
    """``photos({"cat": 20, "dog": 7})``: one folder of class folders with that many images."""

    def make(counts: dict[str, int], name: str = "photos") -> Path:
        root = tmp_path / name
        for c, (folder, count) in enumerate(counts.items()):
            for i in range(count):
                fmt.write_image(root / folder / f"{i:03d}.png", size=(3, 2), value=c * 50 + i)
        return root

    return make


def _counts(dataset: object) -> dict[int, int]:
    assert isinstance(dataset, ImageFolderDataset)
    return dict(sorted(Counter(dataset.targets.tolist()).items()))


def _names(dataset: object) -> list[str]:
    assert isinstance(dataset, ImageFolderDataset)
    return [f"{p.parent.name}/{p.name}" for p in dataset.paths]


def _all_paths(data: DataSplits) -> list[str]:
    return sorted(name for split in data.splits().values() for name in _names(split))


# ------------------------------------------------------------------------------ the rule


@pytest.mark.parametrize(
    ("n", "val", "test", "expected"),
    [
        (10, 0.2, 0.1, (2, 1)),  # exact shares
        (7, 0.2, 0.1, (1, 1)),  # 1.4 -> 1; 0.7 -> 1
        (5, 0.3, 0.0, (2, 0)),  # 1.5 rounds half up, not to even
        (3, 0.1, 0.1, (1, 1)),  # at least one each, one left for training
        (3, 0.99, 0.0, (2, 0)),  # training keeps one
        (4, 0.45, 0.45, (1, 2)),  # 1.8 + 1.8: the larger held-out share (val first) gives one up
        (2, 0.1, 0.1, None),  # three splits, two images
        (1, 0.2, 0.0, None),
        (0, 0.0, 0.0, None),
        (1, 0.0, 0.0, (0, 0)),
    ],
)
def test_held_out_counts(n: int, val: float, test: float, expected: tuple[int, int] | None) -> None:
    assert held_out_counts(n, val, test) == expected


def test_stratified_indices_are_disjoint_sorted_and_cover_every_sample() -> None:
    targets = torch.tensor([0] * 20 + [1] * 7 + [2] * 3)
    train, val, test = stratified_indices(
        targets, ["a", "b", "c"], val_fraction=0.2, test_fraction=0.1, seed=4
    )
    assert sorted(torch.cat([train, val, test]).tolist()) == list(range(30))
    for part in (train, val, test):
        assert part.tolist() == sorted(part.tolist())
    assert Counter(targets[val].tolist()) == {0: 4, 1: 1, 2: 1}
    assert Counter(targets[test].tolist()) == {0: 2, 1: 1, 2: 1}
    assert Counter(targets[train].tolist()) == {0: 14, 1: 5, 2: 1}


# ------------------------------------------------------------------------------ one folder


def test_one_folder_is_split_stratified_with_exact_counts(photos: Callable[..., Path]) -> None:
    root = photos({"cat": 20, "dog": 7, "emu": 3})
    data = image_folder(root, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert data.classes == ["cat", "dog", "emu"]
    assert _counts(data.val) == {0: 4, 1: 1, 2: 1}
    assert _counts(data.test) == {0: 2, 1: 1, 2: 1}
    assert _counts(data.train) == {0: 14, 1: 5, 2: 1}
    assert _all_paths(data) == sorted(_names(ImageFolderDataset(root)))  # each image once
    assert isinstance(data.train, ImageFolderDataset)
    assert data.train.root == root
    assert data.train.folders == ["cat", "dog", "emu"]


def test_one_folder_split_is_seeded(photos: Callable[..., Path]) -> None:
    root = photos({"cat": 12, "dog": 12})
    first = image_folder(root, val_fraction=0.25, test_fraction=0.25, seed=3)
    again = image_folder(root, val_fraction=0.25, test_fraction=0.25, seed=3)
    other = image_folder(root, val_fraction=0.25, test_fraction=0.25, seed=4)
    for name in ("train", "val", "test"):
        assert _names(getattr(first, name)) == _names(getattr(again, name))
    assert _names(first.val) != _names(other.val)
    assert _counts(other.val) == _counts(first.val) == {0: 3, 1: 3}


def test_explicit_and_detected_one_folder_layouts_agree(photos: Callable[..., Path]) -> None:
    root = photos({"a": 5, "b": 5})
    detected = image_folder(root, val_fraction=0.2, seed=1)
    explicit = image_folder(root, splits=None, val_fraction=0.2, seed=1)
    assert _names(detected.val) == _names(explicit.val)
    assert detected.test is None
    assert (len(detected.train), len(detected.val or [])) == (8, 2)


def test_one_folder_without_fractions_is_all_training(photos: Callable[..., Path]) -> None:
    data = image_folder(photos({"a": 2, "b": 3}))
    assert (len(data.train), data.val, data.test) == (5, None, None)


def test_held_out_splits_use_the_eval_transform(photos: Callable[..., Path]) -> None:
    def train_transform(image: object) -> torch.Tensor:
        return torch.zeros(1)

    def eval_transform(image: object) -> torch.Tensor:
        return torch.ones(1)

    data = image_folder(
        photos({"a": 5, "b": 5}),
        val_fraction=0.2,
        test_fraction=0.2,
        train_transform=train_transform,
        eval_transform=eval_transform,
        preprocess=Preprocess(mode="RGB"),  # the functions cannot be described
    )
    assert data.train[0][0].item() == 0
    assert data.val is not None
    assert data.test is not None
    assert data.val[0][0].item() == data.test[0][0].item() == 1


def test_a_class_too_small_for_every_split_is_named(photos: Callable[..., Path]) -> None:
    root = photos({"cat": 10, "dog": 2, "emu": 1})
    with pytest.raises(DataError) as info:
        image_folder(root, val_fraction=0.2, test_fraction=0.1)
    message = str(info.value)
    assert "2 class(es) too small for a stratified split" in message
    assert (
        "class 'dog' has 2 images, but the training, validation and test splits need one "
        "each (3 images): add 1 or more images of it, remove the class, or pass "
        "val_fraction=0 or test_fraction=0"
    ) in message
    assert "class 'emu' has 1 image, but" in message
    assert "'cat'" not in message


def test_fractions_must_leave_images_for_training(photos: Callable[..., Path]) -> None:
    with pytest.raises(ConfigurationError, match=r"val_fraction \+ test_fraction must be below 1"):
        image_folder(photos({"a": 5}), val_fraction=0.5, test_fraction=0.5)


def test_splits_none_on_split_folders_is_refused(make_folder: MakeFolder) -> None:
    root = make_folder()
    with pytest.raises(ConfigurationError) as info:
        image_folder(root, splits=None, val_fraction=0.2)
    assert f"splits=None must be given one folder of class folders, but {root / 'train'}" in str(
        info.value
    )


def test_a_class_named_like_a_split_needs_splits_none(photos: Callable[..., Path]) -> None:
    root = photos({"cat": 3, "test": 3})
    with pytest.raises(DataError, match=r"missing split folder .*splits=None"):
        image_folder(root)
    assert image_folder(root, splits=None).classes == ["cat", "test"]


# ------------------------------------------------------------------------------ split folders


def test_validation_hold_out_from_train_is_stratified(
    photos: Callable[..., Path], tmp_path: Path
) -> None:
    photos({"a": 9, "b": 3}, name="data/train")
    # A third held out is 3 of a and 1 of b, for every seed (a plain shuffle of all 12
    # images often takes 4 of a, or 2 of b).
    for seed in range(20):
        data = image_folder(
            tmp_path / "data", splits=("train", None, None), val_fraction=1 / 3, seed=seed
        )
        assert _counts(data.val) == {0: 3, 1: 1}, seed
        assert _counts(data.train) == {0: 6, 1: 2}, seed


def test_test_hold_out_from_train_when_there_is_no_test_folder(make_folder: MakeFolder) -> None:
    root = make_folder(splits=("train", "valid"), per_class=5)
    data = image_folder(root, splits=("train", "valid", None), test_fraction=0.4, seed=0)
    assert _counts(data.test) == {0: 2, 1: 2}
    assert _counts(data.train) == {0: 3, 1: 3}
    assert _counts(data.val) == {0: 5, 1: 5}  # the valid/ folder, untouched
    assert isinstance(data.val, ImageFolderDataset)
    assert data.val.root == root / "valid"


def test_test_fraction_with_a_test_folder_is_refused(make_folder: MakeFolder) -> None:
    with pytest.raises(ConfigurationError, match=r"test_fraction=0.2 holds out images"):
        image_folder(make_folder(), test_fraction=0.2)


# ------------------------------------------------------------------------------ real data


def test_flowers_training_folder_as_one_folder(flowers_dir: Path) -> None:
    names = flowers_dir / "cat_to_name.json"
    data = image_folder(
        flowers_dir / "train", names=names, val_fraction=0.2, test_fraction=0.2, seed=0
    )
    assert data.classes == [
        "pink primrose",
        "globe thistle",
        "blackberry lily",
        "sunflower",
        "rose",
    ]
    assert _counts(data.train) == dict.fromkeys(range(5), 6)
    assert _counts(data.val) == _counts(data.test) == dict.fromkeys(range(5), 2)


def test_cifar_pngs_split_by_class(cifar_png_dir: Path) -> None:
    data = image_folder(cifar_png_dir, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert data.classes[:3] == ["airplane", "automobile", "bird"]
    # class sizes 14, 28, 22, 21, 19, 19, 18, 21, 15, 23: 20% and 10% rounded half up
    assert list(_counts(data.val).values()) == [3, 6, 4, 4, 4, 4, 4, 4, 3, 5]
    assert list(_counts(data.test).values()) == [1, 3, 2, 2, 2, 2, 2, 2, 2, 2]
    assert len(data.train) == 200 - 41 - 20
