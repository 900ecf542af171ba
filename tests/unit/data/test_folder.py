"""Image folders: W5's flowers with their name map, class order, and every kind of bad input."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from torchvision import datasets, transforms

from visionkit import ConfigurationError, DataError
from visionkit.data import ImageFolderDataset, image_folder, presets
from visionkit.predict import Preprocess

FLOWER_FOLDERS = ["1", "10", "102", "54", "74"]
FLOWER_NAMES = ["pink primrose", "globe thistle", "blackberry lily", "sunflower", "rose"]
MakeFolder = Callable[..., Path]


# ------------------------------------------------------------------------ the real flowers


def test_flowers_classes_follow_torchvision_order_and_names(flowers_dir: Path) -> None:
    data = image_folder(flowers_dir, names=flowers_dir / "cat_to_name.json")
    assert data.classes == FLOWER_NAMES
    assert isinstance(data.train, ImageFolderDataset)
    assert data.train.folders == FLOWER_FOLDERS
    assert data.train.class_to_idx == {f: i for i, f in enumerate(FLOWER_FOLDERS)}
    assert (len(data.train), len(data.val or []), len(data.test or [])) == (50, 15, 15)
    reference = datasets.ImageFolder(str(flowers_dir / "train"))
    assert reference.class_to_idx == data.train.class_to_idx
    assert [(Path(p), label) for p, label in reference.samples] == data.train.samples


def test_flowers_labels_agree_with_the_oxford_labels(flowers_dir: Path) -> None:
    data = image_folder(flowers_dir, names=flowers_dir / "cat_to_name.json")
    assert isinstance(data.train, ImageFolderDataset)
    assert isinstance(data.test, ImageFolderDataset)
    train = {path.name: label for path, label in data.train.samples}
    test = {path.name: label for path, label in data.test.samples}
    assert data.classes[train["image_06734.jpg"]] == "pink primrose"  # Oxford label 1
    assert data.test.folders[test["image_05402.jpg"]] == "54"  # Oxford label 54
    assert data.classes[test["image_05402.jpg"]] == "sunflower"


def test_flowers_eval_transform_is_seed_000s_pipeline_to_the_bit(flowers_dir: Path) -> None:
    data = image_folder(flowers_dir, eval_transform=presets.imagenet_eval())
    seed_000 = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    assert isinstance(data.test, ImageFolderDataset)
    for index in (0, 7):
        image, _ = data.test[index]
        expected = seed_000(Image.open(data.test.paths[index]).convert("RGB"))
        assert type(image) is torch.Tensor
        assert torch.equal(image, expected)


def test_flowers_preprocess_describes_the_eval_transform(flowers_dir: Path) -> None:
    data = image_folder(
        flowers_dir,
        train_transform=presets.imagenet_train(),
        eval_transform=presets.imagenet_eval(),
    )
    expected = Preprocess(
        mode="RGB",
        resize=256,
        center_crop=224,
        mean=presets.IMAGENET_MEAN,
        std=presets.IMAGENET_STD,
    )
    assert isinstance(data.train, ImageFolderDataset)
    assert data.train.preprocess == expected
    assert data.mean == presets.IMAGENET_MEAN
    torch.manual_seed(0)
    image, label = data.train[3]
    assert image.shape == (3, 224, 224)
    assert label == 0


def test_name_map_may_name_more_classes_than_the_sample_has(flowers_dir: Path) -> None:
    names = json.loads((flowers_dir / "cat_to_name.json").read_text())
    assert len(names) == 102
    data = image_folder(flowers_dir, names=names)
    assert data.classes == FLOWER_NAMES


def test_without_a_name_map_the_folder_names_are_the_classes(flowers_dir: Path) -> None:
    assert image_folder(flowers_dir).classes == FLOWER_FOLDERS


# ------------------------------------------------------------------------ layout choices


def test_validation_split_from_training_images(make_folder: MakeFolder) -> None:
    root = make_folder(per_class=5, splits=("train", "test"))
    data = image_folder(root, splits=("train", None, "test"), val_fraction=0.2, seed=1)
    assert (len(data.train), len(data.val or []), len(data.test or [])) == (8, 2, 10)
    assert isinstance(data.train, ImageFolderDataset)
    assert isinstance(data.val, ImageFolderDataset)
    assert not set(data.train.paths) & set(data.val.paths)


def test_val_fraction_with_a_validation_folder_is_refused(make_folder: MakeFolder) -> None:
    with pytest.raises(ConfigurationError, match="splits="):
        image_folder(make_folder(), val_fraction=0.2)


def test_hidden_and_system_files_are_ignored(make_folder: MakeFolder) -> None:
    root = make_folder()
    (root / "train" / "a" / ".DS_Store").write_bytes(b"\0junk")
    (root / "train" / "a" / "Thumbs.db").write_bytes(b"junk")
    checkpoints = root / "train" / ".ipynb_checkpoints"
    checkpoints.mkdir()
    (checkpoints / "x.txt").write_text("notebook copy")
    data = image_folder(root)
    assert data.classes == ["a", "b"]
    assert len(data.train) == 4


def test_images_in_nested_folders_are_found_in_torchvision_order(
    make_folder: MakeFolder, fmt: SimpleNamespace
) -> None:
    root = make_folder(splits=("train",))
    fmt.write_image(root / "train" / "a" / "sub" / "z.png")
    dataset = ImageFolderDataset(root / "train")
    reference = datasets.ImageFolder(str(root / "train"))
    assert [(Path(p), label) for p, label in reference.samples] == dataset.samples


def test_mixed_modes_are_converted_not_crashed(tmp_path: Path, fmt: SimpleNamespace) -> None:
    folder = tmp_path / "mixed" / "x"
    for mode, name in [("RGB", "rgb.png"), ("L", "gray.png"), ("RGBA", "alpha.png")]:
        fmt.write_image(folder / name, mode=mode)
    fmt.write_image(folder / "palette.png", mode="P")
    fmt.write_image(folder / "cmyk.jpg", mode="CMYK")
    rgb = ImageFolderDataset(tmp_path / "mixed")
    assert [tuple(rgb[i][0].shape) for i in range(len(rgb))] == [(3, 6, 8)] * 5
    gray = ImageFolderDataset(tmp_path / "mixed", mode="L")
    assert {tuple(gray[i][0].shape) for i in range(len(gray))} == {(1, 6, 8)}
    assert gray.preprocess == Preprocess(mode="L")


def test_subset_of_an_image_folder_keeps_folders_in_step(flowers_dir: Path) -> None:
    data = image_folder(flowers_dir, names=flowers_dir / "cat_to_name.json").subset(
        ["rose", "pink primrose"]
    )
    assert data.classes == ["rose", "pink primrose"]
    assert isinstance(data.train, ImageFolderDataset)
    assert data.train.folders == ["74", "1"]
    assert data.train.class_to_idx == {"74": 0, "1": 1}
    assert len(data.train) == 20
    assert all(path.parent.name == data.train.folders[label] for path, label in data.train.samples)


def test_random_eval_transform_is_refused(make_folder: MakeFolder) -> None:
    with pytest.raises(ConfigurationError, match=r"RandomRotation.*is random"):
        image_folder(make_folder(), eval_transform=presets.imagenet_train())


# ------------------------------------------------------------------------------ bad input


def _error(root: Path, **kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        image_folder(root, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_missing_split_folder(make_folder: MakeFolder) -> None:
    root = make_folder(splits=("train", "test"))
    message = _error(root)
    assert f"missing split folder {root / 'valid'}" in message
    assert "['test', 'train']" in message


def test_missing_root(tmp_path: Path) -> None:
    assert f"{tmp_path / 'nope'} does not exist" in _error(tmp_path / "nope")


def test_empty_class_folder(make_folder: MakeFolder) -> None:
    root = make_folder()
    for image in (root / "valid" / "b").iterdir():
        image.unlink()
    assert f"empty class folder {root / 'valid' / 'b'}" in _error(root)


def test_class_in_train_but_not_in_valid_or_test(make_folder: MakeFolder) -> None:
    root = make_folder()
    shutil.rmtree(root / "valid" / "b")
    shutil.rmtree(root / "test" / "b")
    message = _error(root)
    assert f"missing class folder {root / 'valid' / 'b'}" in message
    assert f"missing class folder {root / 'test' / 'b'}" in message
    assert "2 problems" in message


def test_class_in_test_but_not_in_train(make_folder: MakeFolder, fmt: SimpleNamespace) -> None:
    root = make_folder()
    fmt.write_image(root / "test" / "c" / "0.png")
    assert f"class folder {root / 'test' / 'c'} has no counterpart" in _error(root)


def test_name_map_lacking_a_class(make_folder: MakeFolder, tmp_path: Path) -> None:
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"a": "apple"}))
    message = _error(make_folder(), names=names)
    assert f"name map {names} has no name for the class folder(s) ['b']" in message


def test_name_map_naming_a_class_with_no_folder(make_folder: MakeFolder, tmp_path: Path) -> None:
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"a": "apple", "b": "banana", "z": "zucchini"}))
    root = make_folder()
    assert image_folder(root, names=names).classes == ["apple", "banana"]
    message = _error(root, names=names, strict_names=True)
    assert f"name map {names} names class(es) ['z'] that have no folder" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [("{not json", "is not valid JSON"), ('["a", "b"]', "holds a JSON list"), (None, "not found")],
)
def test_unreadable_name_map(
    make_folder: MakeFolder, tmp_path: Path, content: str | None, expected: str
) -> None:
    names = tmp_path / "names.json"
    if content is not None:
        names.write_text(content)
    message = _error(make_folder(), names=names)
    assert f"name map {names}" in message
    assert expected in message


def test_corrupt_truncated_and_zero_byte_images(make_folder: MakeFolder, flowers_dir: Path) -> None:
    root = make_folder()
    corrupt = root / "train" / "a" / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    truncated = root / "valid" / "b" / "truncated.jpg"
    jpeg = (flowers_dir / "train" / "1" / "image_06734.jpg").read_bytes()
    truncated.write_bytes(jpeg[: len(jpeg) // 2])
    empty = root / "test" / "a" / "empty.jpg"
    empty.write_bytes(b"")
    message = _error(root)
    assert "3 problems" in message
    assert f"{corrupt} is not an image Pillow can read" in message
    assert f"{truncated} is a corrupt or truncated image" in message
    assert f"{empty} is empty (0 bytes)" in message


def test_truncated_image_without_verify_fails_when_read(
    make_folder: MakeFolder, flowers_dir: Path
) -> None:
    root = make_folder(splits=("train",))
    truncated = root / "train" / "b" / "truncated.jpg"
    jpeg = (flowers_dir / "train" / "1" / "image_06734.jpg").read_bytes()
    truncated.write_bytes(jpeg[: len(jpeg) // 2])
    dataset = ImageFolderDataset(root / "train", verify=False)
    index = dataset.paths.index(truncated)
    with pytest.raises(DataError, match="corrupt or truncated") as info:
        dataset[index]
    assert str(truncated) in str(info.value)


def test_non_image_file_among_images(make_folder: MakeFolder) -> None:
    root = make_folder()
    notes = root / "train" / "b" / "notes.txt"
    notes.write_text("labelled by hand")
    text_as_jpeg = root / "train" / "a" / "fake.jpg"
    text_as_jpeg.write_text("not a picture")
    message = _error(root)
    assert f"{notes} is not an image file (extension '.txt'" in message
    assert f"{text_as_jpeg} is not an image Pillow can read" in message


def test_decompression_bomb(
    make_folder: MakeFolder, fmt: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_folder()
    over = root / "train" / "a" / "over.png"
    fmt.write_image(over, size=(12, 10))  # 120 pixels: over the limit (Pillow warns)
    far_over = root / "test" / "b" / "far_over.png"
    fmt.write_image(far_over, size=(30, 30))  # 900 pixels: over twice the limit (Pillow raises)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    message = _error(root)
    assert f"{over} is a 12x10 image, over Pillow's decompression-bomb limit of 100" in message
    assert f"{far_over} is a huge image, over Pillow's decompression-bomb limit" in message


def test_every_bad_file_is_reported_in_one_error(make_folder: MakeFolder) -> None:
    root = make_folder(classes=("a", "b", "c"))
    bad = [root / s / c / "bad.png" for s, c in [("train", "a"), ("valid", "c"), ("test", "b")]]
    for path in bad:
        path.write_bytes(b"garbage")
    message = _error(root)
    assert message.startswith(f"3 problems in image folder {root}; nothing was loaded")
    assert all(str(path) in message for path in bad)


def test_folder_dataset_with_given_classes_reports_missing_folder(make_folder: MakeFolder) -> None:
    root = make_folder(splits=("train",))
    with pytest.raises(DataError, match="missing class folder") as info:
        ImageFolderDataset(root / "train", class_folders=["a", "b", "c"])
    assert str(root / "train" / "c") in str(info.value)
