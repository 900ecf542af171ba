"""CIFAR-10 from python pickle batches: the real sample, written batches, W3's subset, bad files."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from visionkit import DataError
from visionkit.data import (
    CIFAR10_CLASSES,
    TensorImageDataset,
    cifar10,
    compute_mean_std,
    read_cifar_batch,
    read_cifar_meta,
    split_indices,
)


def test_read_real_sample_batch(cifar_batches_dir: Path) -> None:
    images, labels = read_cifar_batch(cifar_batches_dir / "sample_batch")
    assert images.shape == (200, 3, 32, 32)
    assert images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    # The first labels of data_batch_1 and the first red values of its first image.
    assert labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert images[0, 0, 0, :6].tolist() == [59, 43, 50, 68, 98, 119]


def test_sample_batch_pixels_equal_the_png_files(
    cifar_batches_dir: Path, cifar_png_dir: Path
) -> None:
    images, labels = read_cifar_batch(cifar_batches_dir / "sample_batch")
    for index, name in [(0, "frog/0001.png"), (1, "truck/0002.png")]:
        png = np.array(Image.open(cifar_png_dir / name).convert("RGB"))
        assert torch.equal(images[index], torch.from_numpy(png).permute(2, 0, 1))
        assert CIFAR10_CLASSES[int(labels[index])] == name.split("/")[0]


def test_read_real_meta(cifar_batches_dir: Path) -> None:
    assert read_cifar_meta(cifar_batches_dir / "batches.meta") == CIFAR10_CLASSES


def test_cifar10_splits_and_contents(cifar_root: Path, fmt: SimpleNamespace) -> None:
    data = cifar10(cifar_root, val_fraction=0.2, seed=3)
    assert isinstance(data.train, TensorImageDataset)
    assert (len(data.train), len(data.val or []), len(data.test or [])) == (80, 20, 10)
    assert data.classes == CIFAR10_CLASSES
    train_idx, val_idx = split_indices(100, 0.2, seed=3)
    all_images = fmt.cifar_images(100)
    assert torch.equal(data.train.images, all_images[train_idx])
    assert torch.equal(data.train.targets, train_idx % 10)
    assert data.val is not None
    assert torch.equal(data.val.targets, val_idx % 10)
    assert data.test is not None
    assert data.test.targets.tolist() == list(range(9, -1, -1))
    image, label = data.train[0]
    assert image.dtype == torch.float32
    assert image.shape == (3, 32, 32)
    assert torch.equal(image, all_images[int(train_idx[0])].float() / 255)
    assert label == int(train_idx[0]) % 10


def test_cifar10_reads_files_straight_from_root(cifar_root: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    shutil.copytree(cifar_root / "cifar-10-batches-py", flat)
    assert torch.equal(cifar10(flat).train.images, cifar10(cifar_root).train.images)


def test_class_names_come_from_batches_meta(cifar_root: Path, fmt: SimpleNamespace) -> None:
    names = [f"class {i}" for i in range(10)]
    fmt.write_cifar_meta(cifar_root / "cifar-10-batches-py" / "batches.meta", names)
    assert cifar10(cifar_root).classes == names


def test_w3_subset_airplane_bird_remaps_labels_and_names(
    cifar_root: Path, fmt: SimpleNamespace
) -> None:
    data = cifar10(cifar_root, val_fraction=0.2, seed=0).subset(["airplane", "bird"])
    assert data.classes == ["airplane", "bird"]
    assert data.label_map == {0: 0, 2: 1}
    train_idx, _ = split_indices(100, 0.2, seed=0)
    kept = train_idx[(train_idx % 10 == 0) | (train_idx % 10 == 2)]
    assert torch.equal(data.train.targets, (kept % 10 == 2).long())
    assert isinstance(data.train, TensorImageDataset)
    assert torch.equal(data.train.images, fmt.cifar_images(100)[kept])
    assert data.test is not None
    assert sorted(data.test.targets.tolist()) == [0, 1]


def test_w3_normalization_with_computed_statistics(cifar_root: Path) -> None:
    data = cifar10(cifar_root).subset(["airplane", "bird"])
    assert isinstance(data.train, TensorImageDataset)
    mean, std = compute_mean_std(data.train)
    pixels = data.train.images.double().div(255)
    assert np.allclose(mean, pixels.mean(dim=(0, 2, 3)).numpy(), atol=1e-12)
    normalized = data.with_normalization(mean, std)
    assert normalized.mean == mean
    assert normalized.std == std
    x, _ = normalized.train[0]
    expected = (data.train.images[0].float() / 255 - torch.tensor(mean).view(3, 1, 1).float()) / (
        torch.tensor(std).view(3, 1, 1).float()
    )
    assert torch.allclose(x, expected, atol=1e-6)


def test_cifar10_normalize_argument(cifar_root: Path) -> None:
    data = cifar10(cifar_root, normalize=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    assert data.mean == (0.5, 0.5, 0.5)
    x, _ = data.train[0]
    assert torch.equal(x, (data.train.images[0].float() / 255 - 0.5) / 0.25)


# ------------------------------------------------------------------------------ bad files


def _batch_path(root: Path, name: str = "data_batch_3") -> Path:
    return root / "cifar-10-batches-py" / name


def test_missing_batch_is_named(cifar_root: Path) -> None:
    path = _batch_path(cifar_root)
    path.unlink()
    with pytest.raises(DataError, match="not found") as info:
        cifar10(cifar_root)
    assert str(path) in str(info.value)


def test_no_batches_at_all_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="download=True") as info:
        cifar10(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_zero_byte_batch_is_named(cifar_root: Path) -> None:
    path = _batch_path(cifar_root)
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty") as info:
        cifar10(cifar_root)
    assert str(path) in str(info.value)


def test_truncated_batch_is_named(cifar_root: Path) -> None:
    path = _batch_path(cifar_root, "test_batch")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        cifar10(cifar_root)
    assert str(path) in str(info.value)


def test_label_outside_the_classes_is_named(cifar_root: Path, fmt: SimpleNamespace) -> None:
    path = _batch_path(cifar_root)
    labels = [1] * 20
    labels[4] = 12
    fmt.write_cifar_batch(path, fmt.cifar_images(20), labels)
    with pytest.raises(DataError, match=r"0\.\.9, found 12 at row 4") as info:
        cifar10(cifar_root)
    assert str(path) in str(info.value)


def test_wrong_data_shape_is_named(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    batch = {b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"\(N, 3072\)") as info:
        read_cifar_batch(path)
    assert str(path) in str(info.value)


def test_labels_and_images_must_agree(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    batch = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0]}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match="2 images but 1 labels") as info:
        read_cifar_batch(path)
    assert str(path) in str(info.value)


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, ("pwned",))


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="refused to read") as info:
        read_cifar_batch(path)
    assert str(path) in str(info.value)
    assert "asks to build" in str(info.value)
    assert not Path("pwned").exists()


def test_meta_without_label_names_is_named(tmp_path: Path) -> None:
    path = tmp_path / "batches.meta"
    path.write_bytes(pickle.dumps({b"num_vis": 3072}, protocol=2))
    with pytest.raises(DataError, match="label_names") as info:
        read_cifar_meta(path)
    assert str(path) in str(info.value)
