"""Imbalanced classes: balanced loss weights, and a seeded balanced loader that resumes exactly."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from visionkit import ConfigurationError, DataError, Trainer, seed_everything
from visionkit.callbacks import Batch, Callback, ModelCheckpoint, StepOutput
from visionkit.data import (
    TensorImageDataset,
    balanced_loader,
    class_counts,
    class_weights,
    image_folder,
    mnist_sample,
)
from visionkit.models import create_model


def _ninety_ten() -> TensorImageDataset:
    """100 tiny images: 90 of class ``common``, then 10 of class ``rare``."""
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1)
    return TensorImageDataset(images, torch.tensor([0] * 90 + [1] * 10), ["common", "rare"])


# ------------------------------------------------------------------------------ weights


def test_balanced_weights_by_hand() -> None:
    data = _ninety_ten()
    assert class_counts(data).tolist() == [90, 10]
    # n_samples / (n_classes * count): 100 / (2 * 90) and 100 / (2 * 10)
    expected = torch.tensor([100 / 180, 100 / 20], dtype=torch.float32)
    weights = class_weights(data)
    assert weights.dtype == torch.float32
    assert torch.equal(weights, expected)


def test_three_classes_and_equal_counts() -> None:
    images = torch.zeros(10, 1, 1, 1, dtype=torch.uint8)
    targets = torch.tensor([2, 0, 0, 1, 0, 0, 1, 0, 1, 0])  # counts 6, 3, 1
    data = TensorImageDataset(images, targets, ["a", "b", "c"])
    expected = torch.tensor([10 / 18, 10 / 9, 10 / 3], dtype=torch.float32)
    assert torch.equal(class_weights(data), expected)
    even = TensorImageDataset(images[:4], torch.tensor([0, 1, 1, 0]), ["a", "b"])
    assert class_weights(even).tolist() == [1.0, 1.0]


def test_weights_of_files_and_of_a_torchvision_style_data_set(
    tmp_path: Path, fmt: SimpleNamespace
) -> None:
    for i in range(4):
        fmt.write_image(tmp_path / "photos" / "cat" / f"{i}.png")
    fmt.write_image(tmp_path / "photos" / "dog" / "0.png")
    data = image_folder(tmp_path / "photos")
    assert torch.equal(class_weights(data.train), torch.tensor([5 / 8, 5 / 2]))
    assert torch.equal(class_weights(_TorchvisionStyle()), torch.tensor([5 / 9, 5 / 3, 5 / 3]))


class _TorchvisionStyle(Dataset[Any]):
    """Labels in a list, as torchvision's ``ImageFolder`` and ``CIFAR10`` keep them."""

    def __init__(self) -> None:
        self.classes = ["x", "y", "z"]
        self.targets = [0, 0, 0, 2, 1]

    def __len__(self) -> int:
        return len(self.targets)


def test_a_class_without_samples_is_named() -> None:
    images = torch.zeros(3, 1, 1, 1, dtype=torch.uint8)
    data = TensorImageDataset(images, torch.tensor([0, 2, 2]), ["a", "b", "c"])
    with pytest.raises(DataError, match=r"class\(es\) \['b'\] have no samples"):
        class_weights(data)
    assert class_counts(data).tolist() == [1, 0, 2]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="mode must be 'balanced'"):
        class_weights(_ninety_ten(), mode="inverse")
    subset = Subset(_ninety_ten(), [0, 1])
    with pytest.raises(ConfigurationError, match=r"not a Subset"):
        class_weights(subset)
    with pytest.raises(ConfigurationError, match="batch_size must be"):
        balanced_loader(_ninety_ten(), 0)


def test_weighted_loss_is_moved_to_the_trainer_device() -> None:
    moved: list[Any] = []

    class Recording(nn.CrossEntropyLoss):
        def _apply(self, fn: Any, recurse: bool = True) -> Recording:
            moved.append(fn)
            return super()._apply(fn, recurse)  # type: ignore[no-untyped-call,no-any-return]

    loss = Recording(weight=class_weights(_ninety_ten()))
    Trainer(create_model("mlp", in_features=1, hidden=[], num_classes=2), loss=loss, device="cpu")
    assert moved  # .to(device) was applied to the loss module


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_weighted_loss_trains_on_cuda(tmp_path: Path) -> None:
    data = _ninety_ten()
    model = create_model("mlp", in_features=1, hidden=[4], num_classes=2)
    trainer = Trainer(
        model,
        loss=nn.CrossEntropyLoss(weight=class_weights(data)),
        device="cuda",
        max_epochs=1,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
    )
    trainer.fit(data, batch_size=10)
    assert trainer.global_step == 10


# ------------------------------------------------------------------------------ loader


def test_balanced_loader_draws_classes_equally() -> None:
    loader = balanced_loader(_ninety_ten(), 10, seed=0)
    assert isinstance(loader, DataLoader)
    assert len(loader) == 10
    epochs = [Counter(torch.cat([y for _, y in loader]).tolist()) for _ in range(2)]
    assert epochs == [{0: 54, 1: 46}, {0: 46, 1: 54}]  # the fixed draws of seed 0
    long = balanced_loader(_ninety_ten(), 100, seed=0, num_samples=10_000)
    assert Counter(torch.cat([y for _, y in long]).tolist()) == {0: 4955, 1: 5045}


def test_balanced_loader_is_seeded() -> None:
    def first_epoch(seed: int) -> torch.Tensor:
        return torch.cat([x.flatten() for x, _ in balanced_loader(_ninety_ten(), 8, seed=seed)])

    assert torch.equal(first_epoch(3), first_epoch(3))
    assert not torch.equal(first_epoch(3), first_epoch(4))


class _Crash(Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        if trainer.global_step == self.at_step:
            raise KeyboardInterrupt


def _trainer(root: Path, *callbacks: Callback) -> Trainer:
    seed_everything(0)
    model = create_model("mlp", in_features=784, hidden=[16], num_classes=10, dropout=0.3)
    return Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        max_epochs=3,
        device="cpu",
        default_root_dir=root,
        enable_progress_bar=False,
        callbacks=[ModelCheckpoint(every_n_train_steps=4), *callbacks],
    )


def test_a_fit_on_a_balanced_loader_resumes_mid_epoch_exactly(tmp_path: Path) -> None:
    splits = mnist_sample(normalize=(0.1302, 0.3069))
    train = splits.train
    threes = torch.nonzero(train.targets == 3).flatten()[:150]
    eights = torch.nonzero(train.targets == 8).flatten()[:10]
    data = train.select(torch.cat([threes, eights]))  # 150 of one class, 10 of another
    assert splits.val is not None
    val = splits.val.select(range(64))

    full = _trainer(tmp_path / "full")
    full.fit(balanced_loader(data, 16, seed=1), val)
    crashed = _trainer(tmp_path / "crash", _Crash(14))  # epoch 1, batch 4 of 10
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(balanced_loader(data, 16, seed=1), val)
    resumed = _trainer(tmp_path / "resumed")
    resumed.fit(balanced_loader(data, 16, seed=1), val, resume_from=crashed.last_checkpoint)
    assert resumed.global_step == full.global_step == 30
    for (name, left), right in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(left, right), name
