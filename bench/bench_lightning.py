"""PyTorch Lightning versions of the training benchmarks (imported only if it is installed).

``bench/run_all.py`` runs these beside visionkit's ``Trainer`` and the hand-written loop, on
the same model, data loader (visionkit's in-memory loader, so the loop is what differs),
optimizer and number of steps, configured two ways:

* ``typical``: as Lightning's documentation shows it: ``self.log("train_loss", loss,
  on_step=True, on_epoch=True, prog_bar=True)`` in ``training_step`` and ``L.Trainer`` with
  its defaults (default logger, progress bar to the non-terminal stream of the run, model
  summary, two sanity validation batches, default ``ModelCheckpoint``);
* ``tuned`` (an expert's timing run): the loss summed on the device and logged once per
  epoch (one ``self.log`` call in ``on_train_epoch_end``), no logger, no progress bar, no
  model summary, no sanity validation; the default ``ModelCheckpoint`` stays on only when
  the run it is compared with checkpoints.

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
    """A plain classifier step: forward, loss, and the loss logged per epoch (or per step).

    ``log_every_step=False`` (the tuned configuration) sums the loss on the device and calls
    ``self.log`` once per epoch, since each ``self.log`` call costs host work even with
    ``on_step=False``; ``True`` logs every step as Lightning's documentation shows it.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[[nn.Module], torch.optim.Optimizer],
        loss: nn.Module,
        *,
        channels_last: bool = False,
        log_every_step: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.make_optimizer = optimizer
        self.loss = loss
        self.channels_last = channels_last
        self.log_every_step = log_every_step
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)  # type: ignore[no-any-return]

    def training_step(self, batch: Any, batch_index: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self._forward(x), y)
        if self.log_every_step:  # as Lightning's documentation shows it
            self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        else:  # summed on the device, logged once at the end of the epoch
            self._sums["train"] = self._sums.get("train", 0) + loss.detach() * len(y)
            self._counts["train"] = self._counts.get("train", 0) + len(y)
        return loss  # type: ignore[no-any-return]

    def validation_step(self, batch: Any, batch_index: int) -> None:
        x, y = batch
        loss = self.loss(self._forward(x), y)
        if self.log_every_step:
            self.log("val_loss", loss)
        else:
            self._sums["val"] = self._sums.get("val", 0) + loss * len(y)
            self._counts["val"] = self._counts.get("val", 0) + len(y)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def _log_epoch(self, stage: str) -> None:
        if self._counts.get(stage):
            self.log(f"{stage}_loss", self._sums[stage] / self._counts[stage])
        self._sums.pop(stage, None)
        self._counts.pop(stage, None)

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
    work: dict[str, Any],
    train: TensorImageDataset,
    val: TensorImageDataset,
    epochs: int,
    *,
    typical: bool = False,
    checkpointing: bool = True,
) -> tuple[float, float]:
    """Wall and CPU seconds per epoch of ``lightning.Trainer.fit`` (CPU), like ``hand_loop``.

    ``typical``: per-step logging and Lightning's default ``Trainer`` (see the module's
    docstring); otherwise the tuned configuration, with ``checkpointing`` or without.
    """
    torch.manual_seed(0)
    module = LitClassifier(
        work["model"](), work["optimizer"], work["loss"](), log_every_step=typical
    )
    batch_size = work["batch_size"]
    train_loader = make_loader(train, batch_size, shuffle=True, seed=0, augment=True)
    val_loader = make_loader(val, batch_size)
    with tempfile.TemporaryDirectory() as root:
        options: dict[str, Any] = {"max_epochs": epochs, "default_root_dir": root}
        if typical:
            trainer = L.Trainer(accelerator="cpu", devices=1, **options)
        else:
            options["enable_checkpointing"] = checkpointing
            trainer = _trainer(accelerator="cpu", **options)
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
