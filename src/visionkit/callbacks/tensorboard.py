"""``TensorBoardLogger``: scalars for TensorBoard (the ``tensorboard`` optional extra)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from visionkit._checks import check_bool, check_path
from visionkit.callbacks.base import Callback
from visionkit.exceptions import ConfigurationError

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["TensorBoardLogger"]

_STAGES = ("train", "val", "test")


class TensorBoardLogger(Callback):
    """Write every epoch's metrics as TensorBoard scalars, like W4's ``SummaryWriter``.

    ``train_loss`` and ``val_loss`` become the curves ``loss/train`` and ``loss/val`` (so
    TensorBoard shows them in one section), ``train_accuracy`` becomes ``accuracy/train``,
    and other metrics keep their name. The x-axis is the epoch (counted from 0). A run
    resumed from a checkpoint drops the events of epochs after the checkpoint, so curves
    are not drawn twice. Open the folder with ``tensorboard --logdir <log_dir>``.

    Args:
        log_dir: Folder of the event files.
        log_steps: Also write ``train_step/loss`` and friends at the global step every
            time the trainer reports running metrics (``Trainer(log_every_n_steps=N)``).

    Raises:
        ConfigurationError: If TensorBoard is not installed; the message names the extra
            to install (``pip install "visionkit-torch[tensorboard]"``). Also if ``log_dir`` is
            not a path or ``log_steps`` not ``True``/``False``.
    """

    def __init__(
        self, log_dir: str | os.PathLike[str] = "runs", *, log_steps: bool = False
    ) -> None:
        self.log_dir = check_path("log_dir", log_dir)
        self.log_steps = check_bool("log_steps", log_steps)
        self._writer_class = _summary_writer_class()
        self.writer: Any | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        """Open the event file (dropping events of epochs not yet reached on resume)."""
        if trainer.is_global_zero and self.writer is None:
            purge = trainer.epoch if trainer.epoch > 0 and not self.log_steps else None
            self.writer = self._writer_class(log_dir=str(self.log_dir), purge_step=purge)

    def on_train_log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Write running training metrics at the step (``log_steps=True`` only)."""
        if self.writer is None or not self.log_steps:
            return
        for name, value in metrics.items():
            if name.startswith("train_"):
                self.writer.add_scalar(f"train_step/{name[6:]}", value, trainer.global_step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Write the epoch's metrics."""
        if self.writer is None:
            return
        for name, value in metrics.items():
            if name != "epoch":
                self.writer.add_scalar(_tag_for(name), value, epoch)
        self.writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        """Close the event file."""
        self.close()

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        """Close the event file, keeping what was written."""
        self.close()

    def close(self) -> None:
        """Flush and close the writer (a later ``fit`` opens a new one)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _tag_for(name: str) -> str:
    """The TensorBoard tag of a metric: ``val_loss`` -> ``loss/val``, ``lr`` -> ``lr``.

    Examples:
        >>> _tag_for("val_top5_accuracy"), _tag_for("lr")
        ('top5_accuracy/val', 'lr')
    """
    stage, _, metric = name.partition("_")
    return f"{metric}/{stage}" if stage in _STAGES and metric else name


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ConfigurationError(
            "TensorBoardLogger needs TensorBoard, which is not installed "
            f'({error}): install the extra with pip install "visionkit-torch[tensorboard]"'
        ) from error
    return SummaryWriter
