"""The ``Callback`` base class and ``MonitorCallback``, the one owner of "watch a metric"."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from visionkit._checks import check_number, describe
from visionkit.exceptions import ConfigurationError

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["Batch", "Callback", "MonitorCallback", "StepOutput"]

Batch = Any
"""A batch as the loader yields it; for visionkit's loaders ``(images, labels)``."""


@dataclass(frozen=True)
class StepOutput:
    """What one training, validation or test step produced.

    Attributes:
        loss: The batch's mean loss, detached (a 0-d tensor on the device).
        outputs: The model's outputs (logits or log-probabilities), detached.
        targets: The labels of the batch: class indices, or the soft targets
            ``(batch, num_classes)`` a training batch was mixed into (see
            [`on_train_batch_transform`][visionkit.callbacks.Callback.on_train_batch_transform]).
        batch_index: Index of the batch within the epoch.
    """

    loss: torch.Tensor
    outputs: torch.Tensor
    targets: torch.Tensor
    batch_index: int


class Callback:
    """Base class for code that runs at fixed points of training.

    Every hook is a typed no-op, so a subclass overrides only the hooks it needs. Hooks receive the
    [`Trainer`][visionkit.Trainer]; set ``trainer.should_stop = True`` to stop training cleanly
    after the current step (set in an epoch-end hook, after this epoch). A callback with state
    implements [`state_dict`][visionkit.callbacks.Callback.state_dict] and
    [`load_state_dict`][visionkit.callbacks.Callback.load_state_dict]; the state travels in
    checkpoints under [`state_key`][visionkit.callbacks.Callback.state_key], so a resumed run
    continues exactly.

    Examples:
        >>> class PrintEpochs(Callback):
        ...     def on_epoch_end(self, trainer, epoch, metrics):
        ...         print(epoch, round(metrics["train_loss"], 2))
    """

    @property
    def state_key(self) -> str:
        """Key of this callback's state in a checkpoint; unique per class by default."""
        return type(self).__qualname__

    # fit -------------------------------------------------------------------------------
    def on_fit_start(self, trainer: Trainer) -> None:
        """Called once when ``fit`` starts, after a checkpoint to resume from is loaded."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """Called once when ``fit`` ends normally."""

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        """Called when ``fit`` is interrupted by ``exception`` (re-raised after the hooks)."""

    # training ----------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Called before the first training batch of ``epoch`` (counted from 0)."""

    def on_train_batch_start(self, trainer: Trainer, batch: Batch, batch_index: int) -> None:
        """Called before the training step on ``batch``."""

    def on_train_batch_transform(
        self, trainer: Trainer, images: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the training batch the model sees: ``(images, targets)``, changed or not.

        Called for each training batch once it is on the device, before the forward pass;
        several callbacks chain, in order, each receiving what the one before returned.
        Validation and test batches never pass here. ``targets`` are the batch's class
        indices ``(batch,)``, or the soft targets ``(batch, num_classes)`` (class
        probabilities) of a callback before; return soft targets on every batch or on none,
        as [`MixUp`][visionkit.callbacks.MixUp] and [`CutMix`][visionkit.callbacks.CutMix]
        do. Soft targets reach the loss as they are, and make the training accuracy NaN
        (not defined); [`StepOutput.targets`][visionkit.callbacks.StepOutput] holds them.
        Draw random numbers from torch's global generator on the CPU, which checkpoints
        save, so a resumed run draws the same numbers. The default returns its inputs, and
        a hook nobody overrides costs nothing.

        Args:
            trainer: The trainer.
            images: The batch's images on the trainer's device.
            targets: Class indices ``(batch,)`` or soft targets ``(batch, num_classes)``.

        Returns:
            The ``(images, targets)`` to train on.
        """
        return images, targets

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        """Called after the optimizer step on ``batch``."""

    def on_before_optimizer_step(self, trainer: Trainer, optimizer: torch.optim.Optimizer) -> None:
        """Called after ``backward`` and before the optimizer step and gradient clipping.

        Gradients are in ``p.grad`` (unscaled under fp16 mixed precision): log gradient norms here,
        since they are cleared before
        [`on_train_batch_end`][visionkit.callbacks.Callback.on_train_batch_end].
        """

    def on_train_log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Called every ``log_every_n_steps`` steps with the running training metrics."""

    def on_train_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Called after the last training batch of ``epoch`` with its training metrics.

        Entries added to ``metrics`` here become part of the epoch's metrics (the
        [`History`][visionkit.History], loggers, checkpoint file names).
        """

    # validation --------------------------------------------------------------------------
    def on_validation_epoch_start(self, trainer: Trainer) -> None:
        """Called before validating."""

    def on_validation_batch_start(self, trainer: Trainer, batch: Batch, batch_index: int) -> None:
        """Called before each validation step."""

    def on_validation_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        """Called after each validation step."""

    def on_validation_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Called after validating, with the ``val_*`` metrics."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Called when ``epoch`` is done (training and validation), with all its metrics.

        Checkpointing and early stopping decide here.
        """

    # test --------------------------------------------------------------------------------
    def on_test_epoch_start(self, trainer: Trainer) -> None:
        """Called before testing."""

    def on_test_batch_start(self, trainer: Trainer, batch: Batch, batch_index: int) -> None:
        """Called before each test step."""

    def on_test_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        """Called after each test step."""

    def on_test_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Called after testing, with the ``test_*`` metrics."""

    # checkpoints -------------------------------------------------------------------------
    def on_save_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
        """Called before ``checkpoint`` is written; add entries to it here."""

    def on_load_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
        """Called when training resumes from ``checkpoint``."""

    # state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """This callback's state, in checkpoint-safe types (numbers, strings, tensors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state returned by [`state_dict`][visionkit.callbacks.Callback.state_dict]."""


Mode = Literal["min", "max", "auto"]


class MonitorCallback(Callback):
    """A callback that watches one metric and knows when it improved.

    Shared by [`EarlyStopping`][visionkit.callbacks.EarlyStopping],
    [`ModelCheckpoint`][visionkit.callbacks.ModelCheckpoint] and the trainer's plateau scheduling.

    Args:
        monitor: Name of the metric, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        mode: ``"min"`` when lower is better, ``"max"`` when higher is, ``"auto"`` to infer
            it from the name (``accuracy`` in the name means ``"max"``).
        min_delta: Smallest change that counts as an improvement: a finite number >= 0.

    Raises:
        ConfigurationError: if ``monitor`` is not a non-empty string, ``mode`` is not one
            of the three, or ``min_delta`` is negative, NaN, infinite or not a number.
    """

    def __init__(
        self, monitor: str = "val_loss", *, mode: Mode = "auto", min_delta: float = 0.0
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ConfigurationError(
                f"monitor must be the name of a metric, e.g. 'val_loss' or 'val_accuracy', "
                f"got {describe(monitor)}"
            )
        if not isinstance(mode, str) or mode not in ("min", "max", "auto"):
            raise ConfigurationError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        min_delta = check_number("min_delta", min_delta, least=0.0)
        self.monitor = monitor
        self.mode: Literal["min", "max"] = _infer_mode(monitor) if mode == "auto" else mode
        self.min_delta = min_delta
        self.best: float = math.inf if self.mode == "min" else -math.inf

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best value so far by more than ``min_delta``."""
        if math.isnan(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def current(self, metrics: dict[str, float]) -> float:
        """The monitored value in ``metrics``, or a clear error naming what is there."""
        try:
            return float(metrics[self.monitor])
        except KeyError:
            hint = ""
            if self.monitor.startswith("val_"):
                hint = " Pass validation data to fit(), or monitor a train_ metric."
            raise ConfigurationError(
                f"{type(self).__name__} monitors {self.monitor!r}, but the metrics of this "
                f"epoch are {sorted(metrics)}.{hint}"
            ) from None

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])


def _infer_mode(monitor: str) -> Literal["min", "max"]:
    return "max" if any(word in monitor for word in ("acc", "f1", "precision", "recall")) else "min"
