"""Valid inputs users pass the way torchvision, NumPy and Lightning taught them: accepted.

Each of these was refused (or crashed) by an over-strict argument check at one point; a
new-user review found them.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionkit import Trainer, seed_everything
from visionkit.callbacks import ModelCheckpoint
from visionkit.data import TensorImageDataset, image_folder, mnist_sample
from visionkit.data._datasets import normalization
from visionkit.exceptions import ConfigurationError
from visionkit.models import create_model


def test_lightning_style_integer_epoch_in_a_checkpoint_filename(tmp_path: Path) -> None:
    data = mnist_sample(val_fraction=0.1)
    callback = ModelCheckpoint(tmp_path, filename="best-{epoch:02d}-{val_loss:.2f}", save_top_k=2)
    trainer = Trainer(
        create_model("mlp", hidden=[8], num_classes=10),
        max_epochs=2,
        callbacks=[callback],
        enable_progress_bar=False,
    )
    trainer.fit(data.train.select(range(256)), data.val.select(range(64)), batch_size=64)
    names = sorted(p.name for p in tmp_path.glob("best-*.ckpt"))
    assert [name[:8] for name in names] == ["best-00-", "best-01-"]


@pytest.mark.parametrize(
    "normalize",
    [
        np.array([0.1307, 0.3081]),
        torch.tensor([[0.1307], [0.3081]]),
        ((0.1307,), (0.3081,)),
        [np.float32(0.1307), np.float32(0.3081)],
    ],
    ids=["array-2", "tensor-2x1", "tuples", "numpy-floats"],
)
def test_normalize_as_an_array_of_mean_and_std(normalize: object) -> None:
    mean, std = normalization(normalize)  # type: ignore[arg-type]
    assert mean == pytest.approx([0.1307])
    assert std == pytest.approx([0.3081])


def test_normalize_that_is_not_a_pair_is_still_refused() -> None:
    with pytest.raises(ConfigurationError, match="normalize must be a \\(mean, std\\) pair"):
        normalization(np.array([0.1, 0.2, 0.3]))  # type: ignore[arg-type]


def test_class_names_as_a_numpy_array() -> None:
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    names = np.unique(np.array(["cat", "dog", "cat"]))
    data = TensorImageDataset(images, torch.tensor([0, 1]), names)  # type: ignore[arg-type]
    assert data.classes == ["cat", "dog"]
    assert all(type(name) is str for name in data.classes)  # JSON- and checkpoint-safe


def test_image_folder_splits_given_as_paths(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            Image.new("RGB", (6, 6), (10, 20, 30)).save(folder / "x.png")
    data = image_folder(tmp_path, splits=(Path("train"), None, Path("test")), val_fraction=0.0)
    assert len(data.train) == 2
    assert data.test is not None
    assert len(data.test) == 2


def test_seed_everything_takes_numpy_integers_and_refuses_others() -> None:
    assert seed_everything(np.int64(3)) == 3
    first = random.random()
    seed_everything(3)
    assert random.random() == first
    with pytest.raises(ConfigurationError, match="seed must be an integer"):
        seed_everything(1.5)  # type: ignore[arg-type]
