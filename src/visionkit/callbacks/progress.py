"""``ProgressBar``: readable progress in a terminal, one line per epoch elsewhere (CI, logs)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from visionkit._checks import check_bool, check_number, describe
from visionkit.callbacks.base import Batch, Callback, StepOutput
from visionkit.exceptions import ConfigurationError

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["ProgressBar", "format_metrics"]

_HIDDEN = ("epoch", "epoch_time", "step", "batch", "num_batches", "samples", "elapsed")


def format_metrics(metrics: dict[str, float], *, skip: tuple[str, ...] = ()) -> str:
    """``name value`` pairs: losses and accuracies with 4 decimals, learning rates in ``g``.

    Examples:
        >>> format_metrics({"train_loss": 0.12345, "lr": 0.001, "epoch": 1}, skip=("epoch",))
        'train_loss 0.1235  lr 0.001'
    """
    parts = []
    for name, value in metrics.items():
        if name in skip:
            continue
        shown = f"{value:.3g}" if name == "lr" or name.startswith("lr-") else f"{value:.4f}"
        parts.append(f"{name} {shown}")
    return "  ".join(parts)


class ProgressBar(Callback):
    """Training progress with loss, metrics, throughput and time left.

    In a terminal one line is redrawn at most every ``refresh_seconds``: epoch, percent
    done, batches, running loss and accuracy of the epoch, samples per second and the
    estimated time left of the epoch. When the output is not a terminal (CI, a log file)
    it prints one line per epoch with every metric, plus one line per logging interval when
    the trainer has ``log_every_n_steps`` (W5 and W2 print every 40 and 10 batches).

    Args:
        stream: Where to write; default ``sys.stdout`` (looked up when training starts).
        refresh_seconds: Minimum time between redraws in a terminal.
        force_tty: Behave as if ``stream`` were (``True``) or were not (``False``) a
            terminal; ``None`` asks the stream.

    Raises:
        ConfigurationError: if ``stream`` has no ``write`` method, ``refresh_seconds`` is
            not a finite number >= 0, or ``force_tty`` is not ``True``, ``False`` or ``None``.

    Examples:
        >>> import io
        >>> bar = ProgressBar(stream=io.StringIO())
        >>> bar.is_tty
        False
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        refresh_seconds: float = 0.25,
        force_tty: bool | None = None,
    ) -> None:
        if stream is not None and not callable(getattr(stream, "write", None)):
            raise ConfigurationError(
                f"stream must be a text stream with a write() method (e.g. sys.stderr or an "
                f"open file), or None for sys.stdout; got {describe(stream)}"
            )
        self.stream = stream
        self.refresh_seconds = check_number("refresh_seconds", refresh_seconds, least=0.0)
        self.force_tty = None if force_tty is None else check_bool("force_tty", force_tty)
        self._tty = False
        self._epoch_start = 0.0
        self._last_draw = 0.0
        self._samples = 0
        self._first_batch = 0

    @property
    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    @property
    def is_tty(self) -> bool:
        """Whether the output is an interactive terminal."""
        if self.force_tty is not None:
            return self.force_tty
        return bool(getattr(self._out, "isatty", lambda: False)())

    def on_fit_start(self, trainer: Trainer) -> None:
        self._tty = self.is_tty and trainer.is_global_zero

    def on_train_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._epoch_start = self._last_draw = time.monotonic()
        self._samples = 0
        self._first_batch = trainer.batch_in_epoch  # > 0 when resuming mid-epoch

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        self._samples += int(outputs.targets.shape[0])
        if not self._tty:
            return
        now = time.monotonic()
        if now - self._last_draw < self.refresh_seconds:
            return
        self._last_draw = now
        self._draw(trainer, outputs.batch_index + 1, now)

    def _draw(self, trainer: Trainer, done: int, now: float) -> None:
        total = max(trainer.num_train_batches, 1)
        elapsed = max(now - self._epoch_start, 1e-9)
        eta = elapsed / max(done - self._first_batch, 1) * (total - done)
        running = trainer.running_metrics()
        shown = {k[6:]: v for k, v in running.items() if k in ("train_loss", "train_accuracy")}
        self._out.write(
            f"\r{_prefix(trainer)} {done / total:4.0%} {done}/{total}  "
            f"{format_metrics(shown)}  {self._samples / elapsed:,.0f} samples/s  "
            f"ETA {_clock(eta)}\033[K"
        )
        self._out.flush()

    def on_train_log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self._tty or not trainer.is_global_zero:
            return
        done, total = int(metrics["batch"]), int(metrics["num_batches"])
        shown = {k: v for k, v in metrics.items() if k.startswith("train_")}
        self._out.write(
            f"{_prefix(trainer)} step {int(metrics['step'])} [{done}/{total} "
            f"({done / max(total, 1):.0%})]  {format_metrics(shown)}\n"
        )
        self._out.flush()

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if not trainer.is_global_zero:
            return
        elapsed = time.monotonic() - self._epoch_start
        rate = self._samples / max(elapsed, 1e-9)
        start, end = ("\r", "\033[K\n") if self._tty else ("", "\n")
        self._out.write(
            f"{start}epoch {epoch + 1}/{trainer.max_epochs}  "
            f"{format_metrics(metrics, skip=_HIDDEN)}  {elapsed:.1f}s  {rate:,.0f} samples/s{end}"
        )
        self._out.flush()

    def state_dict(self) -> dict[str, Any]:
        return {}


def _prefix(trainer: Trainer) -> str:
    return f"epoch {trainer.epoch + 1}/{trainer.max_epochs}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
