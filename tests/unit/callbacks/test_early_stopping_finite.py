"""``EarlyStopping(check_finite=...)``: a NaN or infinite monitored value stops at once."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from visionkit import Trainer
from visionkit.callbacks import Callback, EarlyStopping, ModelCheckpoint
from visionkit.data import TensorImageDataset
from visionkit.models import create_model


def _data(n: int = 8) -> TensorImageDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 2, 2), dtype=torch.uint8, generator=generator)
    return TensorImageDataset(images, torch.arange(n) % 2, ["a", "b"])


class _Scripted(Callback):
    """Adds a scripted ``score`` to each epoch's metrics."""

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def on_train_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        metrics["score"] = self.values[epoch]


def _fit(values: list[float], stopper: EarlyStopping, *extra: Callback, **options: Any) -> Trainer:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=4, hidden=[], num_classes=2)
    options.setdefault("enable_checkpointing", False)
    trainer = Trainer(
        model,
        device="cpu",
        max_epochs=len(values),
        enable_progress_bar=False,
        callbacks=[_Scripted(values), stopper, *extra],
        **options,
    )
    trainer.fit(_data(), batch_size=4)
    return trainer


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_value_stops_at_once_and_says_why(
    bad: float, capsys: pytest.CaptureFixture[str]
) -> None:
    stopper = EarlyStopping("score", mode="min", patience=3, verbose=True)
    trainer = _fit([3.0, 2.0, bad, 1.0, 0.5], stopper)
    assert len(trainer.history) == 3
    assert (stopper.stopped_epoch, stopper.best_epoch, stopper.best) == (2, 1, 2.0)
    assert stopper.stop_reason == (
        f"score is {bad} at epoch 2, not a finite number (pass check_finite=False to count "
        "such an epoch as one without improvement)"
    )
    assert f"early stopping: {stopper.stop_reason}" in capsys.readouterr().out


def test_check_finite_false_counts_a_non_finite_value_as_no_improvement() -> None:
    stopper = EarlyStopping("score", patience=2, check_finite=False)
    trainer = _fit([3.0, math.nan, 2.0, math.nan, math.inf], stopper)
    assert len(trainer.history) == 5
    assert stopper.stopped_epoch == 4
    assert stopper.stop_reason == (
        "score did not improve for 2 epochs up to epoch 4 (best 2.000000 at epoch 2)"
    )
    assert (stopper.best, stopper.best_epoch, stopper.wait) == (2.0, 2, 2)


def test_the_stop_reason_survives_a_checkpoint_and_older_states_still_load(
    tmp_path: Path,
) -> None:
    stopper = EarlyStopping("score", patience=3)
    _fit([3.0, math.nan], stopper, ModelCheckpoint(tmp_path, monitor="score"))
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)["trainer_state"]
    saved = state["callbacks"][stopper.state_key]
    resumed = EarlyStopping("score", patience=3)
    resumed.load_state_dict(saved)
    assert (resumed.stopped_epoch, resumed.stop_reason) == (1, stopper.stop_reason)
    assert "at epoch 1" in str(resumed.stop_reason)

    older = {k: v for k, v in saved.items() if k != "stop_reason"}
    resumed = EarlyStopping("score", patience=3)
    resumed.load_state_dict(older)
    assert (resumed.best, resumed.stopped_epoch, resumed.stop_reason) == (3.0, 1, None)
