"""``EarlyStopping``: stop when a monitored metric stops improving."""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import torch

from visionkit._checks import check_bool, check_int
from visionkit.callbacks.base import Mode, MonitorCallback
from visionkit.predict.checkpoint import unwrap_model

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["EarlyStopping"]


class EarlyStopping(MonitorCallback):
    """Stop training after ``patience`` epochs without improvement of ``monitor``.

    Args:
        monitor: Metric to watch.
        patience: Epochs without improvement to tolerate before stopping (an integer >= 0).
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the metric name).
        min_delta: Smallest change that counts as an improvement (finite, >= 0).
        restore_best_weights: When stopping (or at the end of training), put back the
            weights of the best epoch.
        check_finite: Stop at once when the monitored value is NaN or infinite (as in
            Lightning), with a ``stop_reason`` naming the metric and the epoch;
            ``False`` counts such an epoch as one without improvement.
        verbose: Print ``stop_reason`` when stopping.

    Raises:
        ConfigurationError: for a ``patience`` that is not an integer >= 0 (``1.5``,
            ``nan`` and ``inf`` included), a flag that is not ``True``/``False``, or a bad
            ``monitor``, ``mode`` or ``min_delta`` (see
            [`MonitorCallback`][visionkit.callbacks.MonitorCallback]).

    Attributes:
        stopped_epoch: The epoch training stopped at, or ``None``.
        stop_reason: Why training stopped, in words, or ``None``.
        wait: Epochs since the last improvement.

    Examples:
        >>> EarlyStopping("val_loss", patience=5).check_finite
        True
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 3,
        mode: Mode = "auto",
        min_delta: float = 0.0,
        restore_best_weights: bool = False,
        check_finite: bool = True,
        verbose: bool = False,
    ) -> None:
        super().__init__(monitor, mode=mode, min_delta=min_delta)
        self.patience = check_int("patience", patience, least=0)
        self.restore_best_weights = check_bool("restore_best_weights", restore_best_weights)
        self.check_finite = check_bool("check_finite", check_finite)
        self.verbose = check_bool("verbose", verbose)
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.stop_reason: str | None = None
        self.best_epoch: int | None = None
        self._best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Update the wait counter; stop when patience runs out or the value is not finite."""
        value = self.current(metrics)
        if self.check_finite and not math.isfinite(value):
            self._stop(
                trainer,
                epoch,
                f"{self.monitor} is {value} at epoch {epoch}, not a finite number (pass "
                "check_finite=False to count such an epoch as one without improvement)",
            )
            return
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                state = unwrap_model(trainer.model).state_dict()
                self._best_weights = {k: v.detach().clone() for k, v in state.items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            self._stop(
                trainer,
                epoch,
                f"{self.monitor} did not improve for {self.wait} epochs up to epoch {epoch} "
                f"(best {self.best:.6f} at epoch {self.best_epoch})",
            )

    def _stop(self, trainer: Trainer, epoch: int, reason: str) -> None:
        self.stopped_epoch, self.stop_reason = epoch, reason
        trainer.should_stop = True
        if self.verbose and trainer.is_global_zero:
            print(f"early stopping: {reason}")

    def on_fit_end(self, trainer: Trainer) -> None:
        """Restore the best weights if asked, once training is over.

        Restoring only here keeps ``last.ckpt`` (written at the end of the last epoch)
        consistent: its weights, optimizer state and metrics are all the last epoch's.
        """
        self._restore(trainer)

    def _restore(self, trainer: Trainer) -> None:
        if self.restore_best_weights and self._best_weights is not None:
            unwrap_model(trainer.model).load_state_dict(copy.deepcopy(self._best_weights))

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "stop_reason": self.stop_reason,
            "best_epoch": self.best_epoch,
            "best_weights": self._best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.wait = int(state["wait"])
        self.stopped_epoch = state["stopped_epoch"]
        self.stop_reason = state.get("stop_reason")  # absent from older checkpoints
        self.best_epoch = state["best_epoch"]
        self._best_weights = state.get("best_weights")
