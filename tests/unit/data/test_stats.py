"""compute_mean_std: exact against a float64 NumPy reference, whatever the batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from visionkit import ConfigurationError, DataError
from visionkit.data import ImageFolderDataset, TensorImageDataset, compute_mean_std, read_idx


def _reference(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels = images.astype(np.float64)
    return pixels.mean(axis=(0, 2, 3)), pixels.std(axis=(0, 2, 3))


def test_uint8_matches_numpy_and_ignores_batch_size() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (257, 3, 5, 7), dtype=torch.uint8, generator=generator)
    mean, std = _reference(images.numpy() / 255)
    results = {batch: compute_mean_std(images, batch_size=batch) for batch in (1, 10, 256, 1000)}
    assert len(set(results.values())) == 1  # identical, not merely close
    got_mean, got_std = results[10]
    np.testing.assert_allclose(got_mean, mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_std, std, rtol=0, atol=1e-12)


def test_real_mnist_digits(mnist_dir: Path) -> None:
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz").unsqueeze(1)
    mean, std = compute_mean_std(images, batch_size=999)
    ref_mean, ref_std = _reference(images.numpy() / 255)
    assert abs(mean[0] - ref_mean[0]) < 1e-6
    assert abs(std[0] - ref_std[0]) < 1e-6
    assert round(mean[0], 4) == 0.1325  # the known MNIST test-set statistics
    assert round(std[0], 4) == 0.3105


def test_in_memory_dataset_uses_raw_pixels_not_its_normalization() -> None:
    images = torch.tensor([[[[0, 255]]], [[[255, 255]]]], dtype=torch.uint8)
    dataset = TensorImageDataset(images, torch.tensor([0, 1]), ["a", "b"], mean=[0.3], std=[0.2])
    assert compute_mean_std(dataset) == ((0.75,), (0.4330127018922193,))


class _FloatImages(Dataset[tuple[torch.Tensor, int]]):
    """Images of different sizes, as an image folder without a resize would give."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(1)
        self.images = [
            torch.rand(3, 4 + i % 3, 5, generator=generator, dtype=torch.float32) for i in range(23)
        ]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], 0


def test_any_dataset_streams_in_float64_independent_of_batch_size() -> None:
    dataset = _FloatImages()
    pixels = np.concatenate([im.double().numpy().reshape(3, -1) for im in dataset.images], axis=1)
    results = {batch: compute_mean_std(dataset, batch_size=batch) for batch in (1, 4, 64)}
    assert len(set(results.values())) == 1
    mean, std = results[4]
    np.testing.assert_allclose(mean, pixels.mean(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, pixels.std(axis=1), rtol=0, atol=1e-12)


def test_image_folder_statistics(flowers_dir: Path) -> None:
    dataset = ImageFolderDataset(flowers_dir / "valid")
    mean, std = compute_mean_std(dataset, batch_size=4)
    pixels = np.concatenate(
        [dataset[i][0].double().numpy().reshape(3, -1) for i in range(len(dataset))], axis=1
    )
    np.testing.assert_allclose(mean, pixels.mean(axis=1), rtol=0, atol=1e-9)
    np.testing.assert_allclose(std, pixels.std(axis=1), rtol=0, atol=1e-9)


def test_empty_dataset_is_refused() -> None:
    with pytest.raises(DataError, match="empty"):
        compute_mean_std(torch.zeros(0, 3, 2, 2, dtype=torch.uint8))


def test_samples_must_be_tensor_images() -> None:
    class Strings(Dataset[tuple[str, int]]):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int) -> tuple[str, int]:
            return "image.png", 0

    with pytest.raises(DataError, match="sample 0 is a str, expected a C x H x W tensor"):
        compute_mean_std(Strings())


def test_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="batch_size"):
        compute_mean_std(torch.zeros(1, 1, 2, 2), batch_size=0)
    with pytest.raises(ConfigurationError, match=r"N x C x H x W, got shape \(2, 2\)"):
        compute_mean_std(torch.zeros(2, 2))
