"""The in-memory fast path: the same samples as the standard path, uint8 storage, no copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset
from torchvision import datasets, transforms

from visionkit.data import (
    BatchAugment,
    InMemoryLoader,
    SeededSampler,
    TensorImageDataset,
    make_loader,
    mnist,
    read_idx,
    split_indices,
)
from visionkit.data._splits import _permute_rows_, split_in_place


def _write_idx(path: Path, data: torch.Tensor) -> None:
    header = bytes([0, 0, 0x08, data.dim()]) + b"".join(n.to_bytes(4, "big") for n in data.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + data.numpy().tobytes())


@pytest.fixture
def mnist_root(tmp_path: Path, mnist_dir: Path) -> Path:
    """torchvision's ``MNIST/raw`` layout: 1,000 real digits for training, 200 for testing."""
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    raw = tmp_path / "MNIST" / "raw"
    _write_idx(raw / "train-images-idx3-ubyte", images[:1000])
    _write_idx(raw / "train-labels-idx1-ubyte", labels[:1000])
    _write_idx(raw / "t10k-images-idx3-ubyte", images[1000:1200])
    _write_idx(raw / "t10k-labels-idx1-ubyte", labels[1000:1200])
    return tmp_path


class _Plain(Dataset[tuple[torch.Tensor, int]]):
    """Any map-style data set: forces the standard DataLoader path."""

    def __init__(self, inner: TensorImageDataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.inner[index]


def _batches(loader: object, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)  # type: ignore[attr-defined]
    return list(loader)  # type: ignore[call-overload]


def test_in_memory_path_yields_the_standard_paths_samples(mnist_root: Path) -> None:
    data = mnist(mnist_root, val_fraction=0.2, seed=0, normalize=(0.1302, 0.3069))
    assert isinstance(data.train, TensorImageDataset)
    fast = make_loader(data.train, 32, shuffle=True, seed=7)
    standard = make_loader(_Plain(data.train), 32, shuffle=True, seed=7)
    assert isinstance(fast, InMemoryLoader)
    assert not isinstance(standard, InMemoryLoader)
    for epoch in (0, 1):
        got, expected = _batches(fast, epoch), _batches(standard, epoch)
        assert len(got) == len(expected) == 25
        for (x, y), (ex, ey) in zip(got, expected, strict=True):
            assert torch.equal(x, ex)
            assert torch.equal(y, ey)
    assert not torch.equal(_batches(fast, 0)[0][1], _batches(fast, 1)[0][1])


def test_in_memory_path_equals_seed_001s_torchvision_pipeline(mnist_root: Path) -> None:
    """Same digits, same order: torchvision MNIST + ToTensor through a SeededSampler."""
    data = mnist(mnist_root, val_fraction=0.2, seed=0)
    train_idx, _ = split_indices(1000, 0.2, seed=0)
    reference = datasets.MNIST(str(mnist_root), train=True, transform=transforms.ToTensor())
    sampler = SeededSampler(len(train_idx), shuffle=True, seed=3)
    sampler.set_epoch(2)
    order = list(sampler)
    fast = InMemoryLoader(data.train, 50, shuffle=True, seed=3)  # type: ignore[arg-type]
    fast.set_epoch(2)
    x, y = next(iter(fast))
    for row in range(50):
        image, label = reference[int(train_idx[order[row]])]
        assert torch.equal(x[row], image)
        assert int(y[row]) == label


def test_mnist_costs_one_byte_per_pixel_and_splits_share_it(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    images = (torch.arange(784) % 251).to(torch.uint8).repeat(60_000)
    _write_idx(raw / "train-images-idx3-ubyte", images.view(60_000, 28, 28))
    _write_idx(raw / "train-labels-idx1-ubyte", torch.arange(60_000).remainder_(10).byte())
    _write_idx(raw / "t10k-images-idx3-ubyte", images[: 10 * 784].view(10, 28, 28))
    _write_idx(raw / "t10k-labels-idx1-ubyte", torch.zeros(10, dtype=torch.uint8))
    data = mnist(tmp_path)
    assert isinstance(data.train, TensorImageDataset)
    assert isinstance(data.val, TensorImageDataset)
    assert data.train.images.dtype == torch.uint8
    assert data.train.images.nbytes + data.val.images.nbytes == 47_040_000
    storage = data.train.images.untyped_storage()
    assert storage.data_ptr() == data.val.images.untyped_storage().data_ptr()
    assert storage.nbytes() <= 47_040_000 + 16  # the file's bytes, header included


@pytest.mark.parametrize(("n", "block"), [(1, 4), (10, 3), (257, 16), (1000, 4096), (777, 7)])
def test_permute_rows_in_place(n: int, block: int) -> None:
    for seed in range(3):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        rows = torch.arange(n * 3).view(n, 3)
        expected = rows[order]
        storage = rows.data_ptr()
        _permute_rows_(rows, order, block)
        assert torch.equal(rows, expected)
        assert rows.data_ptr() == storage


def test_split_in_place_equals_select() -> None:
    images = torch.randint(0, 256, (300, 1, 2, 2), dtype=torch.uint8)
    targets = torch.arange(300) % 3
    original = TensorImageDataset(images.clone(), targets.clone(), ["a", "b", "c"])
    train, val = split_in_place(original, 0.3, seed=5)
    train_idx, val_idx = split_indices(300, 0.3, seed=5)
    assert val is not None
    assert torch.equal(train.images, images[train_idx])
    assert torch.equal(val.images, images[val_idx])
    assert torch.equal(train.targets, targets[train_idx])
    assert torch.equal(val.targets, targets[val_idx])
    assert split_in_place(train, 0.0)[1] is None


def test_batch_augment_gives_crops_and_flips_of_each_image() -> None:
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    augment = BatchAugment(crop_padding=2, flip=True)
    out = augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    assert out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(6):
        candidates = [
            crop
            for dy in range(5)
            for dx in range(5)
            for crop in (padded[i, :, dy : dy + 8, dx : dx + 8],)
            for crop in (crop, crop.flip(2))
        ]
        assert any(torch.equal(out[i], c) for c in candidates)


def test_augmentation_only_on_request_and_seeded() -> None:
    images = torch.randint(0, 256, (40, 1, 6, 6), dtype=torch.uint8)
    dataset = TensorImageDataset(images, torch.zeros(40), ["x"], augment=BatchAugment())
    plain = InMemoryLoader(dataset, 8, shuffle=False)
    assert torch.equal(next(iter(plain))[0], images[:8].float() / 255)
    augmented = [next(iter(InMemoryLoader(dataset, 8, augment=True, seed=1)))[0] for _ in "ab"]
    assert torch.equal(augmented[0], augmented[1])
    assert not torch.equal(augmented[0], images[:8].float() / 255)


class _NumpyNoise(Dataset[tuple[torch.Tensor, int]]):
    """Samples drawn from NumPy's global generator: only reproducible if workers are seeded."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.tensor([float(np.random.rand())]), index


def test_dataloader_defaults_and_seeded_workers() -> None:
    loader = make_loader(_NumpyNoise(), 4, shuffle=True, seed=5, num_workers=2)
    inner = loader.loader  # type: ignore[attr-defined]
    assert inner.persistent_workers is True
    assert inner.pin_memory is False  # no CUDA device here
    assert inner.worker_init_fn is not None
    runs = [torch.cat([x for x, _ in make_loader(_NumpyNoise(), 4, seed=5, num_workers=2)])]
    runs.append(torch.cat([x for x, _ in make_loader(_NumpyNoise(), 4, seed=5, num_workers=2)]))
    assert torch.equal(runs[0], runs[1])
    assert len(set(runs[0].flatten().tolist())) == 8
    single = make_loader(_NumpyNoise(), 4, num_workers=0).loader  # type: ignore[attr-defined]
    assert single.persistent_workers is False
