"""Trainer first slice: exact metrics with a smaller last batch, checkpoint on improvement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from visionkit import ConfigurationError, Trainer, resolve_device
from visionkit.callbacks import Callback, EarlyStopping, ModelCheckpoint
from visionkit.data import TensorImageDataset
from visionkit.models import create_model
from visionkit.predict import load_checkpoint


def _dataset(n: int = 10, classes: int = 3) -> TensorImageDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=generator)
    return TensorImageDataset(images, torch.arange(n) % classes, [f"c{i}" for i in range(classes)])


def _trainer(model: nn.Module, **kwargs: Any) -> Trainer:
    options: dict[str, Any] = {"device": "cpu", "enable_progress_bar": False}
    options.update(kwargs)
    return Trainer(model, **options)


def test_test_metrics_with_smaller_last_batch_match_hand_computation() -> None:
    torch.manual_seed(0)
    data = _dataset(10)
    model = create_model("mlp", in_features=16, hidden=[], num_classes=3)
    trainer = _trainer(model, enable_checkpointing=False)
    report = trainer.test(data, batch_size=4)  # batches of 4, 4 and 2

    x = torch.stack([data[i][0] for i in range(10)])
    y = data.targets
    with torch.no_grad():
        logits = model(x)
    expected_loss = nn.functional.cross_entropy(logits, y).item()  # mean over all 10 samples
    predicted = logits.argmax(1)
    assert report.num_samples == 10
    assert report.loss == pytest.approx(expected_loss, rel=1e-6)
    assert report.accuracy == (predicted == y).sum().item() / 10  # exact count, not float32
    for c in range(3):
        mask = y == c
        assert report.per_class_accuracy[c] == pytest.approx(
            (predicted[mask] == c).float().mean().item()
        )
    assert sum(map(sum, report.confusion_matrix)) == 10


def test_training_loss_is_weighted_by_batch_size() -> None:
    class Record(Callback):
        def __init__(self) -> None:
            self.losses: list[tuple[float, int]] = []

        def on_train_batch_end(self, trainer: Trainer, batch: Any, outputs: Any) -> None:
            self.losses.append((float(outputs.loss), int(outputs.targets.shape[0])))

    record = Record()
    model = create_model("mlp", in_features=16, hidden=[], num_classes=3)
    trainer = _trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        callbacks=[record],
        max_epochs=1,
        enable_checkpointing=False,
    )
    history = trainer.fit(_dataset(10), batch_size=4)
    sizes = [n for _, n in record.losses]
    assert sizes == [4, 4, 2]
    expected = sum(loss * n for loss, n in record.losses) / 10
    assert history["train_loss"][0] == pytest.approx(expected, rel=1e-6)


class _ScriptedLoss(Callback):
    """Overwrites val_loss with a script, so checkpoint decisions are known in advance."""

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def on_validation_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        metrics["val_loss"] = self.values[trainer.epoch]


def test_checkpoint_saved_only_when_val_loss_decreases(tmp_path: Path) -> None:
    script = [1.0, 0.8, 0.9, 0.7, 0.75]
    saved_at: list[int] = []

    class Spy(Callback):
        def on_save_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
            saved_at.append(int(checkpoint["metrics"]["epoch"]))

    checkpoint = ModelCheckpoint(tmp_path / "ckpt", monitor="val_loss", save_last=False)
    model = create_model("mlp", in_features=16, hidden=[], num_classes=3)
    trainer = _trainer(model, max_epochs=5, callbacks=[checkpoint, _ScriptedLoss(script), Spy()])
    trainer.fit(_dataset(12), _dataset(6), batch_size=4)

    assert saved_at == [0, 1, 3]  # the epochs whose val_loss was a new minimum
    assert checkpoint.best_model_path == tmp_path / "ckpt" / "best.ckpt"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best.ckpt"]
    stored = load_checkpoint(tmp_path / "ckpt" / "best.ckpt")
    assert stored["metrics"]["val_loss"] == 0.7
    assert stored["classes"] == ["c0", "c1", "c2"]


def test_early_stopping_stops_after_patience(tmp_path: Path) -> None:
    stopper = EarlyStopping(patience=2)
    model = create_model("mlp", in_features=16, hidden=[], num_classes=3)
    trainer = _trainer(
        model,
        max_epochs=10,
        callbacks=[stopper, _ScriptedLoss([1.0, 0.9, 0.95, 0.97, 0.5, 0.4])],
        enable_checkpointing=False,
    )
    history = trainer.fit(_dataset(12), _dataset(6), batch_size=4)
    assert len(history) == 4
    assert stopper.stopped_epoch == 3


def test_default_checkpoint_goes_to_a_versioned_run_folder(tmp_path: Path) -> None:
    model = create_model("mlp", in_features=16, hidden=[], num_classes=3)
    trainer = _trainer(model, max_epochs=1, default_root_dir=tmp_path / "runs")
    trainer.fit(_dataset(8), _dataset(4), batch_size=4)
    assert trainer.best_checkpoint == tmp_path / "runs/version_0/checkpoints/best.ckpt"
    assert trainer.last_checkpoint == tmp_path / "runs/version_0/checkpoints/last.ckpt"
    assert trainer.best_checkpoint.is_file()


def test_fit_accepts_a_dataloader() -> None:
    data = _dataset(8)
    loader = torch.utils.data.DataLoader(data, batch_size=3)
    model = create_model("mlp", in_features=16, hidden=[], num_classes=3)
    trainer = _trainer(model, max_epochs=2, enable_checkpointing=False)
    history = trainer.fit(loader, loader)
    assert trainer.global_step == 6
    assert len(history) == 2


def test_label_outside_model_outputs_is_named_on_first_batch() -> None:
    model = create_model("mlp", in_features=16, hidden=[], num_classes=2)
    trainer = _trainer(model, enable_checkpointing=False)
    with pytest.raises(ConfigurationError, match=r"found label 2 but the model outputs 2 classes"):
        trainer.fit(_dataset(6, classes=3), batch_size=6)


def test_optimizer_of_another_model_is_refused() -> None:
    model = create_model("mlp", in_features=16, hidden=[], num_classes=2)
    other = nn.Linear(2, 2)
    with pytest.raises(ConfigurationError, match="none is a parameter of the model"):
        _trainer(model, optimizer=torch.optim.SGD(other.parameters(), lr=0.1))


def test_unavailable_device_is_refused() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigurationError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ConfigurationError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    assert resolve_device("auto") == torch.device("cpu")


def test_ckpt_best_without_checkpoint_is_explained() -> None:
    model = create_model("mlp", in_features=16, hidden=[], num_classes=3)
    trainer = _trainer(model, enable_checkpointing=False)
    with pytest.raises(ConfigurationError, match="no checkpoint was saved in this run"):
        trainer.test(_dataset(4), ckpt="best")
