"""MixUp and CutMix end to end: the bundled MNIST sample in memory and CIFAR-10 PNG files.

A few steps on the CPU each: the loss is finite, the training accuracy is NaN (a mixed
image has no one right class) while validation, never mixed, reports a number, and the
weights moved.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from visionkit import Trainer, seed_everything
from visionkit.callbacks import Callback, CutMix, MixUp, MixUpCutMix
from visionkit.data import image_folder, mnist_sample
from visionkit.models import create_model


def _fit(
    model: nn.Module, loss: nn.Module, mixing: Callback, train: object, val: object
) -> tuple[Trainer, list[torch.Tensor]]:
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(
        model,
        loss=loss,
        max_steps=4,
        callbacks=[mixing],
        device="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(train, val, batch_size=16)  # type: ignore[arg-type]
    return trainer, before


def _check(trainer: Trainer, before: list[torch.Tensor]) -> None:
    assert trainer.global_step == 4
    row = trainer.history.epochs[-1]
    assert math.isfinite(row["train_loss"])
    assert row["train_loss"] > 0
    assert math.isnan(row["train_accuracy"])
    assert 0.0 <= row["val_accuracy"] <= 1.0
    assert math.isfinite(row["val_loss"])
    moved = [not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True)]
    assert all(moved)


@pytest.mark.parametrize(
    "mixing", [MixUp(alpha=0.2), CutMix(alpha=1.0), MixUpCutMix(p=0.8)], ids=repr
)
def test_mnist_sample_in_memory_with_log_probabilities_and_nll_loss(mixing: Callback) -> None:
    seed_everything(0)
    data = mnist_sample()
    model = create_model("convnet", num_classes=10)  # W2: LogSoftmax outputs, NLLLoss
    trainer, before = _fit(model, nn.NLLLoss(), mixing, data.train, data.val.select(range(64)))
    _check(trainer, before)


@pytest.mark.parametrize("mixing", [MixUp(alpha=0.4), CutMix(alpha=1.0)], ids=repr)
def test_cifar10_png_folder_with_label_smoothing(mixing: Callback, cifar_png_dir: Path) -> None:
    seed_everything(0)
    data = image_folder(cifar_png_dir, splits=None, val_fraction=0.2, seed=0)
    model = create_model("convnet_cifar", num_classes=10)
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    trainer, before = _fit(model, loss, mixing, data.train, data.val)
    _check(trainer, before)
    assert trainer.classes == data.train.classes
