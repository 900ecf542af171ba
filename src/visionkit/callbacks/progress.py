"""``ProgressBar``: readable progress in a terminal, one line per epoch elsewhere (CI, logs)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from visionkit.callbacks.base import Batch, Callback, StepOutput

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["ProgressBar", "format_metrics"]


def format_metrics(metrics: dict[str, float], *, skip: tuple[str, ...] = ()) -> str:
    """``name value`` pairs, losses and accuracies with 4 decimals, learning rate in ``e``."""
    parts = []
    for name, value in metrics.items():
        if name in skip:
            continue
        shown = f"{value:.3g}" if name == "lr" else f"{value:.4f}"
        parts.append(f"{name} {shown}")
    return "  ".join(parts)


class ProgressBar(Callback):
    """Training progress with loss, metrics, throughput and time left.

    In a terminal a single line is redrawn at most every ``refresh_seconds``; when the output
    is not a terminal (CI, a log file) it prints one line per epoch, plus one line per
    logging interval when the trainer has ``log_every_n_steps``.

    Args:
        stream: Where to write; default ``sys.stdout``.
        refresh_seconds: Minimum time between redraws in a terminal.
        force_tty: Behave as if ``stream`` were (``True``) or were not (``False``) a
            terminal; ``None`` asks the stream.
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        refresh_seconds: float = 0.25,
        force_tty: bool | None = None,
    ) -> None:
        self.stream = stream
        self.refresh_seconds = refresh_seconds
        self.force_tty = force_tty
        self._epoch_start = 0.0
        self._last_draw = 0.0
        self._samples = 0

    @property
    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    @property
    def is_tty(self) -> bool:
        """Whether the output is an interactive terminal."""
        if self.force_tty is not None:
            return self.force_tty
        return bool(getattr(self._out, "isatty", lambda: False)())

    def on_train_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._epoch_start = self._last_draw = time.monotonic()
        self._samples = 0

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        self._samples += int(outputs.targets.shape[0])
        if not self.is_tty or not trainer.is_global_zero:
            return
        now = time.monotonic()
        if now - self._last_draw < self.refresh_seconds:
            return
        self._last_draw = now
        done, total = outputs.batch_index + 1, max(trainer.num_train_batches, 1)
        elapsed = now - self._epoch_start
        eta = elapsed / done * (total - done)
        self._out.write(
            f"\r{self._prefix(trainer)} {done / total:4.0%} {done}/{total}  "
            f"loss {float(outputs.loss):.4f}  {self._samples / max(elapsed, 1e-9):,.0f} samples/s  "
            f"ETA {_clock(eta)}\033[K"
        )
        self._out.flush()

    def on_train_log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self.is_tty or not trainer.is_global_zero:
            return
        done, total = int(metrics["batch"]), int(metrics["num_batches"])
        self._out.write(
            f"{self._prefix(trainer)} step {int(metrics['step'])} [{done}/{total} "
            f"({done / max(total, 1):.0%})]  "
            f"{format_metrics({k: v for k, v in metrics.items() if k.startswith('train_')})}\n"
        )
        self._out.flush()

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if not trainer.is_global_zero:
            return
        elapsed = time.monotonic() - self._epoch_start
        rate = self._samples / max(elapsed, 1e-9)
        line = format_metrics(metrics, skip=("epoch", "epoch_time"))
        start = "\r" if self.is_tty else ""
        self._out.write(
            f"{start}epoch {epoch + 1}/{trainer.max_epochs}  {line}  "
            f"{elapsed:.1f}s  {rate:,.0f} samples/s\033[K\n"
            if self.is_tty
            else f"epoch {epoch + 1}/{trainer.max_epochs}  {line}  {elapsed:.1f}s  {rate:,.0f} samples/s\n"
        )
        self._out.flush()

    def _prefix(self, trainer: Trainer) -> str:
        return f"epoch {trainer.epoch + 1}/{trainer.max_epochs}"

    def state_dict(self) -> dict[str, Any]:
        return {}


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
