"""Built-in callbacks: files they write, what they print, when they stop training."""

from __future__ import annotations

import builtins
import csv
import io
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from visionkit import ConfigurationError, NonFiniteLossError, Trainer
from visionkit.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    TensorBoardLogger,
    TerminateOnNaN,
)
from visionkit.data import TensorImageDataset, mnist_sample
from visionkit.models import create_model


def _data(n: int = 64) -> tuple[TensorImageDataset, TensorImageDataset]:
    splits = mnist_sample()
    return splits.train.select(range(n)), splits.val.select(range(32))


def _trainer(callbacks: list[Callback], **options: Any) -> Trainer:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=784, hidden=[8], num_classes=10)
    options.setdefault("enable_progress_bar", False)
    options.setdefault("enable_checkpointing", False)
    options.setdefault("max_epochs", 2)
    return Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        device="cpu",
        callbacks=callbacks,
        **options,
    )


class _Scripted(Callback):
    def __init__(self, values: list[float]) -> None:
        self.values = values

    def on_train_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        metrics["score"] = self.values[epoch]


def test_csv_logger_writes_one_row_per_epoch(tmp_path: Path) -> None:
    train, val = _data()
    trainer = _trainer([CSVLogger(tmp_path / "logs")], max_epochs=3)
    history = trainer.fit(train, val, batch_size=32)
    with (tmp_path / "logs" / "metrics.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [int(float(r["epoch"])) for r in rows] == [0, 1, 2]
    assert [float(r["val_loss"]) for r in rows] == history["val_loss"]


def test_csv_logger_widens_header_for_new_metrics(tmp_path: Path) -> None:
    class Late(Callback):
        def on_train_epoch_end(
            self, trainer: Trainer, epoch: int, metrics: dict[str, float]
        ) -> None:
            if epoch == 1:
                metrics["late"] = 7.0

    train, _ = _data()
    _trainer([Late(), CSVLogger(tmp_path)]).fit(train, batch_size=32)
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].endswith(",late")
    assert lines[1].endswith(",")
    assert lines[2].endswith(",7.0")


def test_tensorboard_logger_writes_event_file(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    train, val = _data()
    _trainer([TensorBoardLogger(tmp_path / "runs")]).fit(train, val, batch_size=32)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "runs"))
    events.Reload()
    assert {"loss/train", "loss/val", "accuracy/val", "lr"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss/val")] == [0, 1]


def test_tensorboard_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_tensorboard(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("torch.utils.tensorboard"):
            raise ModuleNotFoundError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ConfigurationError, match=r'pip install "visionkit-torch\[tensorboard\]"'):
        TensorBoardLogger("runs")


def test_progress_bar_prints_one_line_per_epoch_without_terminal() -> None:
    stream = io.StringIO()
    train, val = _data()
    bar = ProgressBar(stream=stream, force_tty=False)
    _trainer([bar], max_epochs=3, log_every_n_steps=None).fit(train, val, batch_size=32)
    lines = stream.getvalue().splitlines()
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("train_loss" in line and "val_accuracy" in line for line in lines)
    assert all(line.endswith("samples/s") for line in lines)
    assert "\r" not in stream.getvalue()


def test_progress_bar_in_terminal_shows_loss_accuracy_throughput_and_eta() -> None:
    stream = io.StringIO()
    train, _ = _data(128)
    bar = ProgressBar(stream=stream, force_tty=True, refresh_seconds=0.0)
    _trainer([bar], max_epochs=1).fit(train, batch_size=32)
    redraws = stream.getvalue().split("\r")[1:-1]
    assert len(redraws) == 4
    assert redraws[1].startswith("epoch 1/1  50% 2/4  loss ")
    assert "accuracy " in redraws[1]
    assert "samples/s  ETA 0:00:0" in redraws[1]


def test_early_stopping_stops_after_patience_and_restores_best_weights() -> None:
    train, _ = _data(32)
    stopper = EarlyStopping("score", patience=1, restore_best_weights=True)

    class Snapshot(Callback):
        def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
            if epoch == 1:
                self.best = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    snapshot = Snapshot()
    trainer = _trainer([_Scripted([3.0, 1.0, 2.0, 2.0, 0.5]), snapshot, stopper], max_epochs=5)
    history = trainer.fit(train, batch_size=32)
    assert (len(history), stopper.stopped_epoch, stopper.best_epoch) == (3, 2, 1)
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, snapshot.best[name]), name


def test_model_checkpoint_keeps_top_k_named_by_template(tmp_path: Path) -> None:
    train, _ = _data(32)
    checkpoint = ModelCheckpoint(
        tmp_path, monitor="score", mode="max", save_top_k=2, filename="e{epoch:.0f}-s{score:.1f}"
    )
    trainer = _trainer([_Scripted([1.0, 3.0, 2.0, 0.5]), checkpoint], max_epochs=4)
    trainer.fit(train, batch_size=32)
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == [
        "e1-s3.0.ckpt",
        "e2-s2.0.ckpt",
        "last.ckpt",
    ]
    assert trainer.best_checkpoint == tmp_path / "e1-s3.0.ckpt"


def test_model_checkpoint_every_n_train_steps_writes_mid_epoch(tmp_path: Path) -> None:
    train, _ = _data(128)
    checkpoint = ModelCheckpoint(tmp_path, every_n_train_steps=3, save_top_k=0)
    trainer = _trainer([checkpoint], max_epochs=1, max_steps=3)
    trainer.fit(train, batch_size=32)
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)["trainer_state"]
    # max_steps ended epoch 0 after 3 of its 4 batches: last.ckpt resumes at batch 3
    assert (state["epoch"], state["global_step"], state["batch_in_epoch"]) == (0, 3, 3)


def test_learning_rate_monitor_adds_lr_per_group() -> None:
    train, _ = _data(32)
    model = create_model("mlp", in_features=784, hidden=[8], num_classes=10)
    first, *rest = list(model.parameters())
    optimizer = torch.optim.SGD([{"params": [first]}, {"params": rest, "lr": 0.5}], lr=0.1)
    monitor = LearningRateMonitor("step")
    trainer = Trainer(
        model,
        optimizer=optimizer,
        device="cpu",
        max_epochs=1,
        callbacks=[monitor],
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    history = trainer.fit(train, batch_size=16)
    assert history["lr-SGD/pg0"] == [0.1]
    assert history["lr-SGD/pg1"] == [0.5]
    assert monitor.steps == [
        (1, {"lr-SGD/pg0": 0.1, "lr-SGD/pg1": 0.5}),
        (2, {"lr-SGD/pg0": 0.1, "lr-SGD/pg1": 0.5}),
    ]


def test_terminate_on_nan_turns_the_check_on_and_records_the_error() -> None:
    train, _ = _data(32)

    class Poison(Callback):
        def on_train_batch_start(self, trainer: Trainer, batch: Any, batch_index: int) -> None:
            batch[0].fill_(math.inf)

    guard = TerminateOnNaN()
    trainer = _trainer([Poison(), guard], check_finite=False)
    with pytest.raises(NonFiniteLossError, match="at epoch 0, batch 0"):
        trainer.fit(train, batch_size=32)
    assert guard.error is not None
    assert trainer.check_finite
