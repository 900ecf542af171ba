"""Training with MixUp and CutMix: exact resume, the metrics reported, label smoothing (CPU)."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torch import nn

from visionkit import Trainer, seed_everything
from visionkit.callbacks import Batch, Callback, CutMix, MixUp, ModelCheckpoint, StepOutput
from visionkit.data import TensorImageDataset, mnist_sample
from visionkit.models import create_model

BATCH = 32


def _data() -> tuple[TensorImageDataset, TensorImageDataset]:
    splits = mnist_sample(normalize=(0.1302, 0.3069))
    return splits.train.select(range(192)), splits.val.select(range(64))


def _trainer(root: str, callbacks: list[Callback], **options: Any) -> Trainer:
    seed_everything(0)
    model = create_model("mlp", in_features=784, hidden=[32], num_classes=10, dropout=0.3)
    return Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        max_epochs=options.pop("max_epochs", 2),
        device="cpu",
        default_root_dir=root,
        enable_progress_bar=False,
        callbacks=callbacks,
        **options,
    )


def _rows(trainer: Trainer) -> list[dict[str, float | None]]:
    """The history without times, NaN as None (NaN != NaN would fail any comparison)."""
    return [
        {k: None if math.isnan(v) else v for k, v in row.items() if k != "epoch_time"}
        for row in trainer.history
    ]


class _Crash(Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        if trainer.global_step == self.at_step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("mixing", [MixUp(alpha=0.4, p=0.7), CutMix(alpha=1.0, p=0.7)])
def test_a_run_cut_mid_epoch_and_resumed_is_bitwise_the_uninterrupted_run(
    mixing: Callback,
) -> None:
    train, val = _data()
    every = ModelCheckpoint(every_n_train_steps=4)
    full = _trainer("full", [copy.deepcopy(mixing), copy.deepcopy(every)])
    full.fit(train, val, batch_size=BATCH)
    crashed = _trainer("crash", [copy.deepcopy(mixing), copy.deepcopy(every), _Crash(9)])
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(train, val, batch_size=BATCH)
    checkpoint = crashed.last_checkpoint
    assert checkpoint is not None
    state = torch.load(checkpoint, weights_only=True)["trainer_state"]
    assert (state["epoch"], state["batch_in_epoch"], state["global_step"]) == (1, 2, 8)
    resumed = _trainer("resumed", [copy.deepcopy(mixing), copy.deepcopy(every)])
    resumed.fit(train, val, batch_size=BATCH, resume_from=checkpoint)
    assert resumed.global_step == full.global_step == 12
    for (name, left), right in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(left, right), name
    assert _rows(resumed) == _rows(full)
    # the mixing changed the run: without it the weights differ
    plain = _trainer("plain", [copy.deepcopy(every)])
    plain.fit(train, val, batch_size=BATCH)
    assert not torch.equal(plain.model.layers[0].weight, full.model.layers[0].weight)


def test_training_accuracy_is_nan_with_mixing_and_validation_is_not_mixed() -> None:
    train, val = _data()
    trainer = _trainer("mixed", [MixUp(alpha=0.4)], enable_checkpointing=False, max_epochs=1)
    trainer.fit(train, val, batch_size=BATCH)
    row = trainer.history.epochs[-1]
    assert math.isnan(row["train_accuracy"])
    assert math.isfinite(row["train_loss"])
    # validation of the trained weights, computed again here, is that of unmixed data
    assert trainer.validate(val) == pytest.approx(
        {"val_loss": row["val_loss"], "val_accuracy": row["val_accuracy"]}
        | {k: v for k, v in row.items() if k.startswith("val_top")}
    )
    assert 0.0 <= row["val_accuracy"] <= 1.0


def test_p_zero_trains_like_no_mixing_through_one_hot_soft_targets() -> None:
    train, val = _data()
    mixed = _trainer("p0", [MixUp(p=0.0)], enable_checkpointing=False, max_epochs=1)
    mixed.fit(train, val, batch_size=BATCH)
    plain = _trainer("plain", [], enable_checkpointing=False, max_epochs=1)
    plain.fit(train, val, batch_size=BATCH)
    left, right = mixed.history.epochs[-1], plain.history.epochs[-1]
    assert left["train_loss"] == pytest.approx(right["train_loss"], rel=1e-6)
    assert left["val_loss"] == pytest.approx(right["val_loss"], rel=1e-5)
    assert math.isnan(left["train_accuracy"])  # soft targets: the accuracy is not defined
    assert 0.0 <= right["train_accuracy"] <= 1.0
    for a, b in zip(mixed.model.parameters(), plain.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_label_smoothing_through_the_trainer_equals_the_hand_computation() -> None:
    """``CrossEntropyLoss(label_smoothing=)`` for a model that outputs log-probabilities."""
    _, val = _data()
    seed_everything(0)
    model = create_model("convnet", num_classes=10)  # ends in LogSoftmax (W2)
    eps = 0.1
    trainer = Trainer(
        model,
        loss=nn.CrossEntropyLoss(label_smoothing=eps),
        device="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    result = trainer.validate(val, batch_size=16)
    model.eval()
    with torch.no_grad():
        images = torch.stack([val[i][0] for i in range(len(val))])
        log_probs = model(images).double()
    labels = [int(val[i][1]) for i in range(len(val))]
    total = 0.0
    for row, label in zip(log_probs.tolist(), labels, strict=True):
        total += (1 - eps) * -row[label] + eps * sum(-v for v in row) / len(row)
    assert result["val_loss"] == pytest.approx(total / len(labels), rel=1e-5)
    nll = Trainer(model, loss=nn.NLLLoss(), device="cpu", enable_progress_bar=False)
    plain = Trainer(model, loss=nn.CrossEntropyLoss(), device="cpu", enable_progress_bar=False)
    assert nll.validate(val)["val_loss"] == pytest.approx(plain.validate(val)["val_loss"], rel=1e-6)
