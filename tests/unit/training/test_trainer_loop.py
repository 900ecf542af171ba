"""The training loop: clear errors, schedulers, NaN checks, budgets and exact metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from visionkit import ConfigurationError, NonFiniteLossError, Trainer
from visionkit.callbacks import Callback, ModelCheckpoint
from visionkit.data import TensorImageDataset, mnist_sample
from visionkit.models import create_model


def _data(n: int = 96, *, labels: torch.Tensor | None = None) -> TensorImageDataset:
    base = mnist_sample().train.select(range(n))
    if labels is None:
        return base
    return TensorImageDataset(base.images, labels, [str(i) for i in range(20)])


def _trainer(model: nn.Module | None = None, **options: Any) -> Trainer:
    torch.manual_seed(0)
    model = model or create_model("mlp", in_features=784, hidden=[16], num_classes=10)
    options.setdefault("enable_progress_bar", False)
    options.setdefault("enable_checkpointing", False)
    return Trainer(model, device="cpu", **options)


class _Fixed(nn.Module):
    """Returns fixed scores per sample index, to check metrics by hand."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores
        self.weight = nn.Parameter(torch.zeros(()))
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.scores[self.seen : self.seen + x.shape[0]] + self.weight
        self.seen += x.shape[0]
        return out


def test_label_out_of_range_is_named_on_first_batch() -> None:
    labels = torch.arange(96) % 12  # labels 10 and 11 for a 10-class model
    trainer = _trainer()
    with pytest.raises(ConfigurationError, match=r"found label 11 but the model outputs 10"):
        trainer.fit(_data(labels=labels), batch_size=96)
    assert trainer.global_step == 0


@pytest.mark.filterwarnings("ignore:Using a target size")
def test_loss_output_shape_mismatch_names_both_shapes() -> None:
    trainer = _trainer(loss=nn.MSELoss())
    with pytest.raises(
        ConfigurationError, match=r"outputs of shape \(32, 10\) and labels of shape \(32,\)"
    ):
        trainer.fit(_data(), batch_size=32)


def test_optimizer_without_model_parameters_is_refused() -> None:
    other = nn.Linear(3, 3)
    model = create_model("mlp", in_features=784, hidden=[8], num_classes=10)
    with pytest.raises(ConfigurationError, match="holds 2 tensors but none is a parameter"):
        Trainer(model, optimizer=torch.optim.SGD(other.parameters(), lr=0.1), device="cpu")


def test_non_finite_loss_stops_with_epoch_and_batch_and_writes_no_checkpoint(
    tmp_path: Path,
) -> None:
    images = _data().images.clone()
    labels = _data().targets

    class Poison(Callback):
        def on_train_batch_start(self, trainer: Trainer, batch: Any, batch_index: int) -> None:
            if trainer.epoch == 1 and batch_index == 2:
                batch[0].fill_(math.nan)

    trainer = _trainer(
        max_epochs=3,
        enable_checkpointing=True,
        callbacks=[Poison(), ModelCheckpoint(tmp_path / "ckpt", every_n_train_steps=1)],
    )
    data = TensorImageDataset(images, labels, [str(i) for i in range(10)])
    with pytest.raises(NonFiniteLossError, match="became nan at epoch 1, batch 2"):
        trainer.fit(data, batch_size=32)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["trainer_state"]["global_step"] == 5  # 3 + 2 steps before the NaN
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def test_reduce_lr_on_plateau_after_patience_stagnant_epochs() -> None:
    scripted = [1.0, 0.5, 0.6, 0.6, 0.7, 0.6]

    class Script(Callback):
        def on_train_epoch_end(
            self, trainer: Trainer, epoch: int, metrics: dict[str, float]
        ) -> None:
            metrics["scripted"] = scripted[epoch]

    model = create_model("mlp", in_features=784, hidden=[8], num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=2, factor=0.5)
    trainer = _trainer(
        model,
        optimizer=optimizer,
        scheduler=plateau,
        monitor="scripted",
        max_epochs=6,
        callbacks=[Script()],
    )
    history = trainer.fit(_data(32), batch_size=32)
    # best 0.5 at epoch 1; epochs 2, 3, 4 do not improve: the third exceeds patience=2
    assert history["lr"] == [0.1, 0.1, 0.1, 0.1, 0.1, 0.05]
    assert trainer.learning_rate == 0.05


def test_plateau_scheduler_names_missing_monitor() -> None:
    model = create_model("mlp", in_features=784, hidden=[8], num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    trainer = _trainer(model, optimizer=optimizer, scheduler=plateau, monitor="val_loss")
    with pytest.raises(ConfigurationError, match="'val_loss', but this epoch logged"):
        trainer.fit(_data(32), batch_size=32)


def test_max_steps_and_gradient_accumulation_count_optimizer_steps() -> None:
    trainer = _trainer(max_epochs=5, max_steps=4, accumulate_grad_batches=2)
    trainer.fit(_data(96), batch_size=16)  # 6 batches = 3 steps per epoch
    # stopped inside epoch 1 after 2 of its batches (1 step): a resume continues there
    assert (trainer.global_step, trainer.epoch, trainer.batch_in_epoch) == (4, 1, 2)


def test_train_and_validation_metrics_match_hand_computation_with_uneven_last_batch() -> None:
    torch.manual_seed(1)
    scores = torch.randn(50, 3)
    labels = torch.tensor([0, 1] * 25)  # class 2 never occurs
    data = TensorImageDataset(torch.zeros(50, 1, 2, 2, dtype=torch.uint8), labels, ["a", "b", "c"])
    model = _Fixed(scores)
    trainer = _trainer(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), max_epochs=1)
    history = trainer.fit(data, batch_size=16, shuffle=False)  # batches 16, 16, 16, 2
    per_batch = [
        (
            nn.functional.cross_entropy(scores[i : i + 16], labels[i : i + 16]).item(),
            len(labels[i : i + 16]),
        )
        for i in range(0, 50, 16)
    ]
    expected_loss = sum(loss * n for loss, n in per_batch) / 50
    expected_accuracy = (scores.argmax(1) == labels).double().mean().item()
    assert history["train_loss"][0] == pytest.approx(expected_loss, rel=1e-6)
    assert history["train_accuracy"][0] == expected_accuracy
    model.seen = 0
    report = trainer.test(data, batch_size=16)
    predicted = scores.argmax(1)
    assert report.accuracy == expected_accuracy
    assert report.per_class_accuracy[:2] == [
        (predicted[labels == c] == c).double().mean().item() for c in (0, 1)
    ]
    assert math.isnan(report.per_class_accuracy[2])
    assert report.support == [25, 25, 0]
    assert report.loss == pytest.approx(
        nn.functional.cross_entropy(scores, labels).item(), rel=1e-6
    )


def test_nll_loss_on_log_softmax_and_step_scheduler() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.LogSoftmax(dim=1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer = _trainer(
        model,
        optimizer=optimizer,
        loss=nn.NLLLoss(),
        scheduler=scheduler,
        scheduler_interval="step",
        max_epochs=1,
    )
    history = trainer.fit(_data(64), batch_size=32)
    assert trainer.learning_rate == pytest.approx(0.025)
    assert history["train_loss"][0] > 0


def test_log_every_n_steps_reports_running_metrics() -> None:
    seen: list[tuple[int, int]] = []

    class Record(Callback):
        def on_train_log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
            seen.append((int(metrics["step"]), int(metrics["samples"])))

    trainer = _trainer(log_every_n_steps=2, max_epochs=1, callbacks=[Record()])
    trainer.fit(_data(96), batch_size=16)
    assert seen == [(2, 32), (4, 64), (6, 96)]
