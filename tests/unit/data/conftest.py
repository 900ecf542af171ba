"""Helpers that write small data sets in their real on-disk formats."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

CIFAR_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_cifar_batch(path: Path, images: torch.Tensor, labels: Sequence[int]) -> None:
    """A CIFAR-10 python batch: pickle protocol 2, bytes keys, data N x 3072 (R, G, B planes)."""
    batch = {
        b"batch_label": b"written by a test",
        b"labels": [int(label) for label in labels],
        b"data": images.reshape(len(labels), 3072).numpy(),
        b"filenames": [f"{i}.png".encode() for i in range(len(labels))],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar_meta(path: Path, names: Sequence[str] = CIFAR_NAMES) -> None:
    meta = {b"num_cases_per_batch": 10, b"label_names": [n.encode() for n in names]}
    path.write_bytes(pickle.dumps(meta, protocol=2))


def cifar_images(n: int, offset: int = 0) -> torch.Tensor:
    """``n`` distinct images: image ``i`` is filled with ``(offset + i) % 256`` plus a ramp."""
    base = torch.arange(3 * 32 * 32, dtype=torch.int64).view(3, 32, 32) % 7
    values = (torch.arange(n)[:, None, None, None] + offset + base) % 256
    return values.to(torch.uint8)


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    """A complete ``cifar-10-batches-py`` folder: 5 x 20 training images, 10 test images.

    Training image ``k`` (0..99) has label ``k % 10`` and pixels ``cifar_images`` with
    offset ``k``; test image ``k`` has label ``9 - k`` and offset ``200 + k``.
    """
    folder = tmp_path / "data" / "cifar-10-batches-py"
    for b in range(5):
        ks = range(20 * b, 20 * b + 20)
        write_cifar_batch(
            folder / f"data_batch_{b + 1}",
            cifar_images(20, offset=20 * b),
            [k % 10 for k in ks],
        )
    write_cifar_batch(
        folder / "test_batch", cifar_images(10, offset=200), [9 - k for k in range(10)]
    )
    write_cifar_meta(folder / "batches.meta")
    return tmp_path / "data"


def write_image(
    path: Path, mode: str = "RGB", size: tuple[int, int] = (8, 6), value: int = 0
) -> None:
    """A small real image file; its format follows the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "CMYK": 4}.get(mode)
    if mode == "P":
        image = Image.new("P", size, color=value % 256)
        image.putpalette([i % 256 for i in range(768)])
        image.info["transparency"] = 0
        image.save(path, transparency=0)
        return
    shape = (size[1], size[0], channels) if channels and channels > 1 else (size[1], size[0])
    array = (np.arange(np.prod(shape)).reshape(shape) * 3 + value) % 256
    Image.fromarray(array.astype(np.uint8)).convert(mode).save(path)


MakeFolder = Callable[..., Path]


@pytest.fixture
def fmt() -> SimpleNamespace:
    """The writers above, for tests (``--import-mode=importlib`` cannot import conftest)."""
    return SimpleNamespace(
        write_cifar_batch=write_cifar_batch,
        write_cifar_meta=write_cifar_meta,
        cifar_images=cifar_images,
        write_image=write_image,
    )


@pytest.fixture
def make_folder(tmp_path: Path) -> MakeFolder:
    """Write ``root/<split>/<class>/<i>.png`` for every split and class; return ``root``."""

    def make(
        classes: Sequence[str] = ("a", "b"),
        splits: Sequence[str] = ("train", "valid", "test"),
        per_class: int = 2,
        root_name: str = "images",
    ) -> Path:
        root = tmp_path / root_name
        for split in splits:
            for c, name in enumerate(classes):
                for i in range(per_class):
                    write_image(root / split / name / f"{i}.png", value=10 * c + i)
        return root

    return make
