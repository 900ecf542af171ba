"""Edges of the loop: accumulation is a mean, resume restores every RNG, one history row
per epoch, and empty data refused before the first step."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from visionkit import ConfigurationError, Trainer
from visionkit.callbacks import Callback, ModelCheckpoint
from visionkit.data import TensorImageDataset, mnist_sample
from visionkit.models import create_model


def _data(n: int) -> TensorImageDataset:
    return mnist_sample(normalize=(0.1302, 0.3069)).train.select(range(n))


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return create_model("mlp", in_features=784, hidden=[16], num_classes=10)


def _fit(model: nn.Module, data: TensorImageDataset, **options: Any) -> Trainer:
    batch_size = options.pop("batch_size")
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
        device="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        **options,
    )
    trainer.fit(data, batch_size=batch_size, shuffle=False)
    return trainer


def _hand_loop(
    model: nn.Module,
    data: TensorImageDataset,
    groups: list[list[int]],
    accumulate: int,
    **clip: Any,
) -> None:
    """SGD where each group of batches (of 8) makes one step, each loss divided by N."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    samples = [data[i] for i in range(len(data))]
    images = torch.stack([image for image, _ in samples])
    labels = torch.tensor([label for _, label in samples])
    for group in groups:
        for start in group:
            x, y = images[start : start + 8], labels[start : start + 8]
            (nn.functional.cross_entropy(model(x), y) / accumulate).backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip["max_norm"])
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("clip", [None, 0.05])
def test_accumulating_4_batches_of_8_equals_batches_of_32(clip: float | None) -> None:
    data = _data(128)
    accumulated = _fit(
        _mlp(), data, batch_size=8, accumulate_grad_batches=4, max_epochs=2, gradient_clip_val=clip
    )
    whole = _fit(_mlp(), data, batch_size=32, max_epochs=2, gradient_clip_val=clip)
    assert accumulated.global_step == whole.global_step == 8
    for left, right in zip(accumulated.model.parameters(), whole.model.parameters(), strict=True):
        torch.testing.assert_close(left, right, rtol=1e-5, atol=1e-6)
    # a sum instead of a mean would step 4 times as far: the check can tell them apart
    summed = _fit(_mlp(), data, batch_size=8, accumulate_grad_batches=1, max_epochs=1)
    assert not torch.allclose(next(summed.model.parameters()), next(whole.model.parameters()))


def test_uneven_last_group_steps_with_the_batches_it_has_divided_by_n() -> None:
    data = _data(48)  # 6 batches of 8 with N=4: a group of 4 batches, then one of 2
    trainer = _fit(_mlp(), data, batch_size=8, accumulate_grad_batches=4, max_epochs=1)
    hand = _mlp()
    _hand_loop(hand, data, [[0, 8, 16, 24], [32, 40]], accumulate=4)
    assert trainer.global_step == 2
    for left, right in zip(trainer.model.parameters(), hand.parameters(), strict=True):
        torch.testing.assert_close(left, right, rtol=1e-5, atol=1e-6)


class _Draws(Callback):
    """Draws from Python's and NumPy's global generators at every epoch start."""

    def __init__(self) -> None:
        self.draws: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.draws.append((random.random(), float(np.random.rand())))


def _draw_run(root: Path, epochs: int, resume: Path | None = None) -> tuple[Trainer, _Draws]:
    draws = _Draws()
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    model = create_model("mlp", in_features=784, hidden=[8], num_classes=10)
    trainer = Trainer(
        model,
        max_epochs=epochs,
        device="cpu",
        enable_progress_bar=False,
        callbacks=[draws, ModelCheckpoint(root, monitor=None)],
    )
    if resume is not None:  # another process would start from other global states
        random.seed(12345)
        np.random.seed(12345)
    trainer.fit(_data(32), batch_size=16, resume_from=resume)
    return trainer, draws


def test_resume_restores_python_and_numpy_generators(tmp_path: Path) -> None:
    _, whole = _draw_run(tmp_path / "whole", 4)
    first, _ = _draw_run(tmp_path / "first", 2)
    assert first.last_checkpoint is not None
    _, resumed = _draw_run(tmp_path / "second", 4, resume=first.last_checkpoint)
    assert len(whole.draws) == 4
    assert resumed.draws == whole.draws[2:]


def test_history_has_one_row_per_epoch_after_a_max_steps_cut_and_resume(tmp_path: Path) -> None:
    data = _data(64)  # 4 batches of 16 per epoch

    def run(max_steps: int | None, resume: Path | None = None) -> Trainer:
        torch.manual_seed(0)
        model = create_model("mlp", in_features=784, hidden=[8], num_classes=10)
        trainer = Trainer(
            model,
            max_epochs=3,
            max_steps=max_steps,
            device="cpu",
            enable_progress_bar=False,
            callbacks=[ModelCheckpoint(tmp_path / str(max_steps), monitor=None)],
        )
        trainer.fit(data, batch_size=16, resume_from=resume)
        return trainer

    cut = run(6)  # stops in epoch 1, after its second batch
    assert [row["epoch"] for row in cut.history] == [0.0, 1.0]
    assert cut.last_checkpoint is not None
    resumed = run(None, cut.last_checkpoint)
    whole = run(None)
    assert [row["epoch"] for row in resumed.history] == [0.0, 1.0, 2.0]
    for mine, theirs in zip(resumed.history, whole.history, strict=True):
        assert mine["train_loss"] == theirs["train_loss"]


def test_empty_validation_set_is_refused_before_the_first_step() -> None:
    trainer = Trainer(_mlp(), device="cpu", enable_checkpointing=False, enable_progress_bar=False)
    empty = _data(32).select([])
    with pytest.raises(
        ConfigurationError,
        match=r"the validation data is empty: expected at least one sample, found 0 batches",
    ):
        trainer.fit(_data(64), empty, batch_size=16)
    assert trainer.global_step == 0


def test_empty_training_set_is_refused_before_the_first_step() -> None:
    trainer = Trainer(_mlp(), device="cpu", enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(ConfigurationError, match=r"the training data is empty"):
        trainer.fit(_data(32).select([]), _data(32), batch_size=16)
    assert trainer.global_step == 0


def test_lr_column_under_a_per_step_scheduler_is_the_rate_after_the_epochs_last_step() -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer = Trainer(
        model,
        optimizer=optimizer,
        scheduler=scheduler,
        scheduler_interval="step",
        max_epochs=2,
        device="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(_data(48), batch_size=16)  # 3 steps per epoch
    assert trainer.history["lr"] == [0.5**3, 0.5**6]


def test_label_equal_to_the_number_of_classes_is_refused() -> None:
    data = _data(32)
    labels = data.targets.clone()
    labels[5] = 10  # one past the last class of a 10-class model
    bad = TensorImageDataset(data.images, labels, [str(i) for i in range(11)])
    trainer = Trainer(_mlp(), device="cpu", enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(ConfigurationError, match=r"found label 10 but the model outputs 10"):
        trainer.fit(bad, batch_size=16)
    assert trainer.global_step == 0


def test_tta_averages_the_probabilities_of_each_image_and_its_mirror() -> None:
    data = _data(40)
    torch.manual_seed(0)
    model = create_model("convnet", num_classes=10)  # log-probability outputs
    trainer = Trainer(model, device="cpu", enable_checkpointing=False, enable_progress_bar=False)
    report = trainer.test(data, tta=True, batch_size=16)
    model.eval()
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.tensor([data[i][1] for i in range(len(data))])
    with torch.inference_mode():
        mean = (model(images).softmax(1) + model(images.flip(-1)).softmax(1)) / 2
    expected_loss = float(nn.functional.nll_loss(mean.log(), labels))
    expected_accuracy = float((mean.argmax(1) == labels).float().mean())
    assert report.loss == pytest.approx(expected_loss, rel=1e-5)
    assert report.accuracy == pytest.approx(expected_accuracy)
    plain = trainer.test(data, batch_size=16)
    assert plain.loss != pytest.approx(report.loss, rel=1e-5)  # the flip does change things
