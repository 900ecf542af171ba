"""PyTorch Lightning versions of the training benchmarks (imported only if it is installed).

``bench/run_all.py`` runs these beside visionkit's ``Trainer`` and the hand-written loop, on
the same model, data loader (visionkit's in-memory loader, so the loop is what differs),
optimizer and number of steps. Lightning runs with the settings a user would pick for a
timing run: no logger, no progress bar, no model summary, no sanity validation; its default
``ModelCheckpoint`` stays on for the CPU workloads, as visionkit's does.

Install Lightning with ``pip install lightning`` (also part of the ``dev`` extra).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn

from visionkit.data import TensorImageDataset, make_loader


class LitClassifier(L.LightningModule):
    """A plain classifier step: forward, loss, and the epoch's mean loss logged on the device."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[[nn.Module], torch.optim.Optimizer],
        loss: nn.Module,
        *,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.make_optimizer = optimizer
        self.loss = loss
        self.channels_last = channels_last

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)  # type: ignore[no-any-return]

    def training_step(self, batch: Any, batch_index: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self._forward(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss  # type: ignore[no-any-return]

    def validation_step(self, batch: Any, batch_index: int) -> None:
        x, y = batch
        self.log("val_loss", self.loss(self._forward(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.make_optimizer(self.model)


class EpochTimer(L.Callback):
    """Wall time of each training epoch, with the GPU synchronised at both ends."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        _sync()
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        _sync()
        self.times.append(time.perf_counter() - self._start)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _trainer(**options: Any) -> L.Trainer:
    base: dict[str, Any] = {
        "devices": 1,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    return L.Trainer(**{**base, **options})


def lightning_loop(
    work: dict[str, Any], train: TensorImageDataset, val: TensorImageDataset, epochs: int
) -> tuple[float, float]:
    """Wall and CPU seconds per epoch of ``lightning.Trainer.fit`` (CPU), like ``hand_loop``."""
    torch.manual_seed(0)
    module = LitClassifier(work["model"](), work["optimizer"], work["loss"]())
    train_loader = make_loader(train, work["batch_size"], shuffle=True, seed=0)
    val_loader = make_loader(val, work["batch_size"])
    with tempfile.TemporaryDirectory() as root:
        trainer = _trainer(accelerator="cpu", max_epochs=epochs, default_root_dir=root)
        start, cpu = time.perf_counter(), time.process_time()
        trainer.fit(module, train_loader, val_loader)
        return (time.perf_counter() - start) / epochs, (time.process_time() - cpu) / epochs


def lightning_epoch_times(
    model: nn.Module,
    data: TensorImageDataset,
    *,
    optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    batch_size: int,
    epochs: int,
    device: torch.device,
    fast: bool,
) -> list[float]:
    """Seconds per training epoch on ``device``; ``fast`` is Lightning's best equivalent.

    ``fast``: the data set resident on the device, ``channels_last`` model and inputs,
    ``precision="bf16-mixed"`` and ``torch.compile`` of the model. Otherwise: fp32, eager,
    the ``uint8`` data copied per batch from pinned host memory.
    """
    if fast:
        model = model.to(memory_format=torch.channels_last)
        model = torch.compile(model)  # type: ignore[assignment]
        data = data.to(device)
    module = LitClassifier(model, optimizer, nn.CrossEntropyLoss(), channels_last=fast)
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as root:
        trainer = _trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu",
            precision="bf16-mixed" if fast else "32-true",
            max_epochs=epochs,
            enable_checkpointing=False,
            callbacks=[timer],
            default_root_dir=root,
        )
        loader = make_loader(data, batch_size, shuffle=True, seed=0, device=device)
        trainer.fit(module, loader)
    return timer.times
