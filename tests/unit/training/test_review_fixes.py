"""Regressions found in review: mid-epoch budget stops, label checks, plateau stepping."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from visionkit import ConfigurationError, Trainer
from visionkit.callbacks import Callback, ModelCheckpoint
from visionkit.data import TensorImageDataset
from visionkit.models import create_model


def _data(n: int = 40, classes: int = 3) -> TensorImageDataset:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=generator)
    return TensorImageDataset(images, torch.arange(n) % classes, [str(i) for i in range(classes)])


def _fit(tmp_path: Path, **kwargs: Any) -> Trainer:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=16, hidden=[8], num_classes=3, dropout=0.1)
    options: dict[str, Any] = {
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
        "device": "cpu",
        "enable_progress_bar": False,
        "callbacks": [ModelCheckpoint(tmp_path / "ckpt", monitor="train_loss")],
    }
    resume = kwargs.pop("resume_from", None)
    options.update(kwargs)
    trainer = Trainer(model, **options)
    trainer.fit(_data(), batch_size=4, resume_from=resume)
    return trainer


def test_max_steps_stop_mid_epoch_resumes_inside_the_epoch(tmp_path: Path) -> None:
    whole = _fit(tmp_path / "a", max_epochs=2)  # 10 batches per epoch
    stopped = _fit(tmp_path / "b", max_epochs=2, max_steps=13)
    assert (stopped.epoch, stopped.batch_in_epoch, stopped.global_step) == (1, 3, 13)
    resumed = _fit(tmp_path / "c", max_epochs=2, resume_from=tmp_path / "b/ckpt/last.ckpt")
    assert resumed.global_step == whole.global_step == 20
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_a_bad_label_in_a_later_batch_is_caught_before_training() -> None:
    data = _data(40, classes=4)  # labels i % 4
    ordered = data.select([0, 1, 2, 4, *range(5, 40)])  # first batch holds labels 0, 1, 2, 0
    model = create_model("mlp", in_features=16, hidden=[], num_classes=3)
    trainer = Trainer(model, device="cpu", enable_progress_bar=False, enable_checkpointing=False)
    with pytest.raises(ConfigurationError, match="found label 3 but the model outputs 3 classes"):
        trainer.fit(ordered, batch_size=4, shuffle=False)
    assert trainer.global_step == 0


def test_plateau_scheduler_stepped_per_step_is_refused() -> None:
    model = create_model("mlp", in_features=16, hidden=[], num_classes=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    with pytest.raises(ConfigurationError, match="use scheduler_interval='epoch'"):
        Trainer(model, optimizer=optimizer, scheduler=plateau, scheduler_interval="step")


def test_checkpoint_files_get_normal_permissions(tmp_path: Path) -> None:
    trainer = _fit(tmp_path, max_epochs=1)
    mode = stat.S_IMODE((tmp_path / "ckpt" / "last.ckpt").stat().st_mode)
    assert mode & stat.S_IRGRP  # readable by the group, not mkstemp's 0600
    assert trainer.last_checkpoint == tmp_path / "ckpt" / "last.ckpt"


def test_max_time_stops_inside_an_epoch(tmp_path: Path) -> None:
    class Slow(Callback):
        def on_train_batch_end(self, trainer: Trainer, batch: Any, outputs: Any) -> None:
            time.sleep(0.25)

    model = create_model("mlp", in_features=16, hidden=[], num_classes=3)
    trainer = Trainer(
        model,
        max_epochs=3,
        max_time=0.4,  # checked after every step: passes after the second 0.25 s batch
        callbacks=[Slow()],
        device="cpu",
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    history = trainer.fit(_data(), batch_size=4)
    assert (trainer.global_step, trainer.epoch, trainer.batch_in_epoch) == (2, 0, 2)
    assert len(history) == 1  # the partial epoch is still logged
