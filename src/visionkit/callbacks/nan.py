"""``TerminateOnNaN``: stop training with an error when the loss becomes NaN or infinite."""

from __future__ import annotations

from typing import TYPE_CHECKING

from visionkit.callbacks.base import Callback
from visionkit.exceptions import NonFiniteLossError

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["TerminateOnNaN"]


class TerminateOnNaN(Callback):
    """Stop training when the training loss is NaN or infinite, before any checkpoint.

    The check itself is built into the trainer's step (``Trainer(check_finite=True)``, the default),
    so it costs one comparison per step and nothing is done twice: this callback switches the check
    on when a trainer was built with ``check_finite=False`` and records where training stopped. The
    trainer raises [`NonFiniteLossError`][visionkit.NonFiniteLossError] naming the epoch and the
    batch; on the CPU the step whose loss is not finite never updates the weights, and on a GPU the
    flags are read at the next logging interval, checkpoint or epoch end, so no checkpoint holds
    non-finite weights.

    Attributes:
        error: The error that stopped training, or ``None``.

    Examples:
        >>> from visionkit.callbacks import TerminateOnNaN
        >>> TerminateOnNaN().error is None
        True
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        """Make sure the trainer checks every loss."""
        trainer.check_finite = True

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        """Record the non-finite loss error."""
        if isinstance(exception, NonFiniteLossError):
            self.error = exception
