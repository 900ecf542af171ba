"""Small models, checkpoints and images shared by the prediction tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from visionkit.models import create_model
from visionkit.predict import Preprocess, make_checkpoint, save_checkpoint

DIGITS = [str(i) for i in range(10)]
FLOWER_IDS = ["1", "10", "102", "54", "74"]  # sorted as strings, as class folders sort
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _small_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("mlp", in_features=784, hidden=[16], num_classes=10)


@pytest.fixture
def small_mlp() -> Callable[..., nn.Module]:
    """Factory of a seeded 784-16-10 MLP."""
    return _small_mlp


@pytest.fixture
def digits_preprocess() -> Preprocess:
    return Preprocess(mode="L", size=(28, 28), mean=(0.1307,), std=(0.3081,))


@pytest.fixture
def mlp_checkpoint(tmp_path: Path, digits_preprocess: Preprocess) -> Path:
    """A checkpoint of a 784-16-10 MLP for 28x28 grey digits."""
    checkpoint = make_checkpoint(_small_mlp(), classes=DIGITS, preprocess=digits_preprocess)
    return save_checkpoint(checkpoint, tmp_path / "mlp.ckpt")


@pytest.fixture
def digit_images() -> list[np.ndarray]:
    """Eight deterministic 28x28 uint8 grey images."""
    generator = np.random.default_rng(0)
    return [generator.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(8)]


@pytest.fixture
def flowers_checkpoint(tmp_path: Path, flowers_dir: Path) -> Path:
    """An MLP on 3x16x16 flowers with the names of cat_to_name.json and ImageNet-style eval."""
    names = json.loads((flowers_dir / "cat_to_name.json").read_text(encoding="utf-8"))
    torch.manual_seed(0)
    model = create_model("mlp", in_features=3 * 16 * 16, hidden=[8], num_classes=5)
    preprocess = Preprocess(resize=18, center_crop=16, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    checkpoint = make_checkpoint(
        model, classes=[names[i] for i in FLOWER_IDS], preprocess=preprocess
    )
    return save_checkpoint(checkpoint, tmp_path / "flowers.ckpt")
