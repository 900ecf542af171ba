"""The IDX reader and the MNIST factories, on hand-made files with known bytes."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from visionkit import DataError
from visionkit.data import TensorImageDataset, fashion_mnist, mnist, mnist_sample, read_idx


def _idx(dtype_code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    header = bytes([0, 0, dtype_code, len(shape)])
    return header + b"".join(d.to_bytes(4, "big") for d in shape) + payload


def _write_mnist(folder: Path, n_train: int = 10, n_test: int = 4, *, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = bytes((i * 7 + j) % 256 for i in range(n) for j in range(784))
        labels = bytes(i % 10 for i in range(n))
        files = {
            f"{prefix}-images-idx3-ubyte": _idx(8, (n, 28, 28), images),
            f"{prefix}-labels-idx1-ubyte": _idx(8, (n,), labels),
        }
        for name, raw in files.items():
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)


def test_read_idx_uint8_images_exact_values(tmp_path: Path) -> None:
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(_idx(8, (2, 2, 3), bytes(range(12))))
    result = read_idx(path)
    assert result.dtype == torch.uint8
    assert result.shape == (2, 2, 3)
    assert result[1, 0].tolist() == [6, 7, 8]


def test_read_idx_gzip_is_detected_from_bytes_not_name(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"  # no .gz suffix, gzip content
    path.write_bytes(gzip.compress(_idx(8, (3,), bytes([7, 2, 1]))))
    assert read_idx(path).tolist() == [7, 2, 1]


def test_read_idx_big_endian_int16(tmp_path: Path) -> None:
    path = tmp_path / "values-idx1-short"
    path.write_bytes(
        _idx(0x0B, (2,), (-2).to_bytes(2, "big", signed=True) + (513).to_bytes(2, "big"))
    )
    assert read_idx(path).tolist() == [-2, 513]


def test_read_idx_truncated_names_file_and_sizes(tmp_path: Path) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(_idx(8, (2, 28, 28), bytes(784)))  # one image short
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is truncated") as info:
        read_idx(path)
    assert "1584 bytes" in str(info.value)  # what the header announces, with the header


def test_read_idx_not_idx(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt is not an IDX file"):
        read_idx(path)


def test_read_idx_damaged_gzip(tmp_path: Path) -> None:
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx(8, (100,), bytes(100)))[:20])
    with pytest.raises(DataError, match="damaged gzip"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"IDX file not found: .*missing-idx1-ubyte"):
        read_idx(tmp_path / "missing-idx1-ubyte")


@pytest.mark.parametrize("layout", ["plain", "torchvision"])
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_both_layouts(tmp_path: Path, layout: str, gz: bool) -> None:
    root = tmp_path / "data"
    _write_mnist(root / "MNIST" / "raw" if layout == "torchvision" else root, gz=gz)
    data = mnist(root, val_fraction=0.2, seed=0)
    assert (len(data.train), len(data.val or []), len(data.test or [])) == (8, 2, 4)
    assert data.classes == [str(d) for d in range(10)]
    image, label = data.test[1]  # type: ignore[index]
    assert image.shape == (1, 28, 28)
    assert label == 1
    expected = torch.tensor([(7 + j) % 256 for j in range(784)], dtype=torch.float32) / 255
    assert torch.equal(image.flatten(), expected)


def test_mnist_normalize_matches_torchvision_arithmetic(tmp_path: Path) -> None:
    _write_mnist(tmp_path)
    data = mnist(tmp_path, normalize=(0.1302, 0.3069), val_fraction=0.0)
    assert data.mean == (0.1302,)
    assert data.std == (0.3069,)
    image, _ = data.test[0]  # type: ignore[index]
    raw = torch.tensor([j % 256 for j in range(784)], dtype=torch.uint8).view(1, 28, 28)
    expected = (raw.float().div(255) - 0.1302) / 0.3069
    assert torch.equal(image, expected)


def test_fashion_mnist_uses_its_own_folder_and_names(tmp_path: Path) -> None:
    _write_mnist(tmp_path / "FashionMNIST" / "raw")
    data = fashion_mnist(tmp_path)
    assert data.classes[0] == "T-shirt/top"
    assert data.classes[9] == "Ankle boot"


def test_mnist_missing_file_is_named(tmp_path: Path) -> None:
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"missing file .*t10k-labels-idx1-ubyte"):
        mnist(tmp_path)


def test_mnist_empty_folder_explains_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no MNIST files found .*download=True"):
        mnist(tmp_path)


def test_mnist_truncated_file_is_named(tmp_path: Path) -> None:
    _write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="train-images-idx3-ubyte is truncated"):
        mnist(tmp_path)


def test_mnist_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(8, (3,), bytes([1, 2, 3])))
    with pytest.raises(DataError, match="4 images but the label file 3 labels"):
        mnist(tmp_path)


def test_labels_outside_class_range_are_refused() -> None:
    with pytest.raises(DataError, match=r"labels must lie in 0\.\.1 .* from 0 to 5"):
        TensorImageDataset(
            torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 5]), ["a", "b"]
        )


def test_mnist_sample_is_real_mnist_and_bundled() -> None:
    data = mnist_sample()
    assert (len(data.train), len(data.val or []), len(data.test or [])) == (3200, 800, 1000)
    all_labels = torch.cat([ds.targets for ds in data.splits().values()])
    assert torch.bincount(all_labels).tolist() == [460, 571, 530, 500, 500, 456, 462, 512, 489, 520]


def test_mnist_sample_matches_the_shared_test_set(mnist_dir: Path) -> None:
    full = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    data = mnist_sample(val_fraction=0.0)
    first_test_image = data.test[0][0]  # type: ignore[index]  # digit 4000 of the test set
    assert torch.equal((first_test_image * 255).round().to(torch.uint8)[0], full[4000])
