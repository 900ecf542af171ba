"""Images listed in a CSV file: columns, labels, stratified splits and every kind of bad row."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from visionkit import ConfigurationError, DataError
from visionkit.data import ImageFolderDataset, image_csv, image_folder


@pytest.fixture
def images(tmp_path: Path, fmt: SimpleNamespace) -> Path:
    """``images/0.png`` ... ``images/29.png``: small distinct real PNG files."""
    folder = tmp_path / "images"
    for i in range(30):
        fmt.write_image(folder / f"{i}.png", size=(3, 2), value=i)
    return folder


def _csv(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _rows(labels: dict[int, str], header: str = "id,label", ext: str = "") -> str:
    return header + "\n" + "".join(f"{i}{ext},{label}\n" for i, label in labels.items())


def _counts(dataset: object) -> dict[int, int]:
    assert isinstance(dataset, ImageFolderDataset)
    return dict(sorted(Counter(dataset.targets.tolist()).items()))


def _names(dataset: object) -> list[str]:
    assert isinstance(dataset, ImageFolderDataset)
    return [path.name for path in dataset.paths]


def _error(csv_path: Path, image_dir: Path, **kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        image_csv(csv_path, image_dir, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


# ------------------------------------------------------------------------------ reading


def test_kaggle_ids_without_extension_and_stratified_splits(tmp_path: Path, images: Path) -> None:
    labels = {i: "cat" if i < 20 else "dog" for i in range(30)}
    data = image_csv(_csv(tmp_path, _rows(labels)), images, val_fraction=0.2, test_fraction=0.1)
    assert data.classes == ["cat", "dog"]
    assert _counts(data.train) == {0: 14, 1: 7}
    assert _counts(data.val) == {0: 4, 1: 2}
    assert _counts(data.test) == {0: 2, 1: 1}
    everything = sorted(_names(data.train) + _names(data.val) + _names(data.test))
    assert everything == sorted(f"{i}.png" for i in range(30))
    assert isinstance(data.train, ImageFolderDataset)
    assert data.train.folders == ["cat", "dog"]
    image, label = data.train[0]
    assert image.shape == (3, 2, 3)
    assert label in (0, 1)


def test_file_names_with_extensions_and_sub_folders(tmp_path: Path, fmt: SimpleNamespace) -> None:
    for i in range(4):
        fmt.write_image(tmp_path / "pics" / "x" / f"{i}.jpg", value=i)
    text = "filename,label\n" + "".join(f"x/{i}.jpg,{i % 2}\n" for i in range(4))
    data = image_csv(_csv(tmp_path, text), tmp_path / "pics", val_fraction=0.5)
    assert data.classes == ["0", "1"]
    assert _counts(data.val) == {0: 1, 1: 1}


def test_integer_labels_are_sorted_as_numbers(tmp_path: Path, images: Path) -> None:
    labels = {i: str(i % 12) for i in range(24)}
    data = image_csv(_csv(tmp_path, _rows(labels)), images, val_fraction=0.0)
    assert data.classes == [str(k) for k in range(12)]  # not 0, 1, 10, 11, 2, ...
    assert isinstance(data.train, ImageFolderDataset)
    assert all(
        int(data.classes[label]) == int(path.stem) % 12 for path, label in data.train.samples
    )


def test_string_labels_are_sorted_as_strings_and_named(tmp_path: Path, images: Path) -> None:
    labels = {i: ["b", "a", "C"][i % 3] for i in range(9)}
    names = {"a": "apple", "b": "banana", "C": "cherry"}
    data = image_csv(_csv(tmp_path, _rows(labels)), images, val_fraction=0.0, names=names)
    assert data.classes == ["cherry", "apple", "banana"]  # "C" < "a" < "b"
    assert isinstance(data.train, ImageFolderDataset)
    assert data.train.class_to_idx == {"C": 0, "a": 1, "b": 2}


@pytest.mark.parametrize(
    ("header", "row", "options"),
    [
        ("image_id,notes,target", "{i},x,{label}", {}),  # found by name
        ("Label,File", "{label},{i}.png", {}),  # by name, any letter case
        ("name,species", "{i},{label}", {}),  # by position: the first two
        ("a,b,c", "x,{i},{label}", {"filename_column": "b", "label_column": "c"}),
    ],
)
def test_columns(
    tmp_path: Path, images: Path, header: str, row: str, options: dict[str, str]
) -> None:
    lines = [row.format(i=i, label="yes" if i % 2 else "no") for i in range(6)]
    path = _csv(tmp_path, header + "\n" + "\n".join(lines) + "\n")
    data = image_csv(path, images, val_fraction=0.0, **options)  # type: ignore[arg-type]
    assert data.classes == ["no", "yes"]
    assert isinstance(data.train, ImageFolderDataset)
    assert [(p.name, label) for p, label in data.train.samples] == [
        (f"{i}.png", i % 2) for i in range(6)
    ]


def test_byte_order_mark_blank_lines_and_spaces_are_tolerated(tmp_path: Path, images: Path) -> None:
    text = "\ufeffid,label\r\n0, cat\r\n\r\n1 ,dog\r\n2,cat\r\n,\r\n3,dog\r\n"
    data = image_csv(_csv(tmp_path, text), images, val_fraction=0.0)
    assert data.classes == ["cat", "dog"]
    assert _names(data.train) == ["0.png", "1.png", "2.png", "3.png"]


def test_split_is_seeded_and_ignores_row_order(tmp_path: Path, images: Path) -> None:
    labels = {i: "cat" if i < 18 else "dog" for i in range(30)}
    path = _csv(tmp_path, _rows(labels))
    items = list(labels.items())
    random.Random(0).shuffle(items)
    shuffled = _csv(tmp_path, _rows(dict(items)), name="shuffled.csv")
    first = image_csv(path, images, val_fraction=0.2, test_fraction=0.2, seed=5)
    again = image_csv(shuffled, images, val_fraction=0.2, test_fraction=0.2, seed=5)
    other = image_csv(path, images, val_fraction=0.2, test_fraction=0.2, seed=6)
    for split in ("train", "val", "test"):
        assert _names(getattr(first, split)) == _names(getattr(again, split))
    assert _names(first.val) != _names(other.val)
    assert _counts(first.val) == _counts(other.val) == {0: 4, 1: 2}


def test_cifar_labels_csv_splits_exactly_like_the_class_folders(cifar_png_dir: Path) -> None:
    # labels.csv lists every PNG of the class folders with its class: the same images,
    # classes and seed give the same split.
    kwargs = {"val_fraction": 0.2, "test_fraction": 0.1, "seed": 0}
    by_csv = image_csv(cifar_png_dir / "labels.csv", cifar_png_dir, **kwargs)  # type: ignore[arg-type]
    by_folder = image_folder(cifar_png_dir, **kwargs)  # type: ignore[arg-type]
    assert by_csv.classes == by_folder.classes
    for split in ("train", "val", "test"):
        left, right = getattr(by_csv, split), getattr(by_folder, split)
        assert left.paths == right.paths
        assert torch.equal(left.targets, right.targets)
    assert len(by_csv.val or []) == 41


# ------------------------------------------------------------------------------ bad rows


def test_every_bad_row_is_reported_by_line_in_one_error(
    tmp_path: Path, images: Path, fmt: SimpleNamespace
) -> None:
    (images / "7.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)  # damaged
    (images / "notes.txt").write_text("not an image")
    fmt.write_image(images / "8.jpg")  # "8" now matches 8.png and 8.jpg
    text = (
        "id,label\n"  # line 1
        "0,cat\n"  # 2
        "1,\n"  # 3: empty label
        "abc.jpg,dog\n"  # 4: missing
        "0,dog\n"  # 5: listed again, another label
        "7,cat\n"  # 6: damaged
        "notes.txt,cat\n"  # 7: not an image
        "../images/2.png,cat\n"  # 8: outside
        "8,dog\n"  # 9: ambiguous
        "9\n"  # 10: one field
    )
    path = _csv(tmp_path, text)
    message = _error(path, images)
    assert message.startswith(f"8 problems in {path}; nothing was loaded:\n")
    expected = [
        "line 3: empty label for image '1': fill in its class or remove the row",
        f"line 4: image 'abc.jpg' not found in {images}: check the file name and image_dir",
        "line 5: image '0' is listed again (first on line 2 with label 'cat'): keep one row",
        f"line 6: {images / '7.png'} is not an image Pillow can read",
        f"line 7: {images / 'notes.txt'} is not an image file (extension '.txt'",
        f"line 8: image path '../images/2.png' leads outside {images}",
        "line 9: image '8' matches several files (8.jpg, 8.png)",
        "line 10: expected at least 2 comma-separated fields, found 1",
    ]
    for line in expected:
        assert line in message
    lines = [int(part.split(":")[0]) for part in message.split("  - line ")[1:]]
    assert lines == sorted(lines)


def test_a_missing_id_names_the_extensions_tried(tmp_path: Path, images: Path) -> None:
    message = _error(_csv(tmp_path, "id,label\n0,a\n99,b\n"), images)
    expected = (
        f"line 3: image '99' not found in {images} (nor with an image extension, as '99.jpg')"
    )
    assert expected in message


def test_duplicate_rows_are_refused(tmp_path: Path, images: Path) -> None:
    message = _error(_csv(tmp_path, "id,label\n0,a\n1,b\n0.png,a\n"), images)
    assert message.startswith("1 problem in")
    assert "line 4: image '0.png' is listed again (first on line 2): keep one row" in message


def test_a_wrong_image_dir_is_one_problem(tmp_path: Path, images: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    message = _error(_csv(tmp_path, _rows(dict.fromkeys(range(30), "a"))), elsewhere)
    assert message.startswith("1 problem in")
    assert f"none of the 30 images listed in {tmp_path / 'labels.csv'} is in {elsewhere}" in message


def test_a_label_with_too_few_images_for_the_split(tmp_path: Path, images: Path) -> None:
    labels = {**dict.fromkeys(range(20), "common"), 20: "rare", 21: "rare"}
    message = _error(_csv(tmp_path, _rows(labels)), images, val_fraction=0.2, test_fraction=0.1)
    assert "class 'rare' has 2 images, but the training, validation and test splits" in message
    assert "common" not in message


def test_a_name_map_lacking_a_label(tmp_path: Path, images: Path) -> None:
    path = _csv(tmp_path, _rows({0: "a", 1: "b"}))
    message = _error(path, images, val_fraction=0.0, names={"a": "apple"})
    assert f"the name map has no name for the label(s) ['b'] of {path}" in message


def test_a_missing_header_is_detected(tmp_path: Path, images: Path) -> None:
    message = _error(_csv(tmp_path, "0.png,cat\n1.png,dog\n"), images)
    assert "looks like an image row ('0.png'), not a header" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "is empty: expected a header line"),
        ("id,label\n", "has a header but no rows"),
        ("id;label\n0;a\n", "has 1 column in its header"),
    ],
)
def test_unusable_csv_files(tmp_path: Path, images: Path, text: str, expected: str) -> None:
    assert expected in _error(_csv(tmp_path, text), images)


def test_missing_csv_and_image_dir(tmp_path: Path, images: Path) -> None:
    assert f"CSV file {tmp_path / 'nope.csv'} does not exist" in _error(
        tmp_path / "nope.csv", images
    )
    path = _csv(tmp_path, "id,label\n0,a\n")
    assert f"image folder {tmp_path / 'nope'} does not exist" in _error(path, tmp_path / "nope")


def test_a_column_not_in_the_header_is_refused(tmp_path: Path, images: Path) -> None:
    path = _csv(tmp_path, "id,label\n0,a\n")
    with pytest.raises(ConfigurationError, match=r"label_column='breed' is not a column of"):
        image_csv(path, images, label_column="breed")
