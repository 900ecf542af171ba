"""``LearningRateMonitor``: record the learning rate of every parameter group."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from visionkit._checks import check_bool
from visionkit.callbacks.base import Batch, Callback, StepOutput
from visionkit.exceptions import ConfigurationError

if TYPE_CHECKING:
    import torch

    from visionkit.training.trainer import Trainer

__all__ = ["LearningRateMonitor"]


class LearningRateMonitor(Callback):
    """Record the learning rate (and optionally momentum) of each parameter group.

    Values are named ``lr-<Optimizer>`` (``lr-<Optimizer>/pg<i>`` when there are several parameter
    groups). They are added to each epoch's metrics, so the [`History`][visionkit.History],
    [`CSVLogger`][visionkit.callbacks.CSVLogger],
    [`TensorBoardLogger`][visionkit.callbacks.TensorBoardLogger] and the progress bar show them;
    with ``logging_interval="step"`` the value after every optimizer step is also kept in `steps`.

    Args:
        logging_interval: ``"epoch"`` or ``"step"``.
        log_momentum: Also record ``momentum`` (or Adam's ``beta1``) as ``momentum-<...>``.

    Attributes:
        steps: ``(global_step, values)`` after each optimizer step (``"step"`` interval).

    Examples:
        >>> import torch
        >>> optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> LearningRateMonitor.values(optimizer)
        {'lr-SGD': 0.1}
    """

    def __init__(
        self, logging_interval: Literal["epoch", "step"] = "epoch", *, log_momentum: bool = False
    ) -> None:
        if not isinstance(logging_interval, str) or logging_interval not in ("epoch", "step"):
            raise ConfigurationError(
                f"logging_interval must be 'epoch' or 'step', got {logging_interval!r}"
            )
        self.logging_interval = logging_interval
        self.log_momentum = check_bool("log_momentum", log_momentum)
        self.steps: list[tuple[int, dict[str, float]]] = []
        self._last_step = -1

    @staticmethod
    def values(optimizer: torch.optim.Optimizer, *, momentum: bool = False) -> dict[str, float]:
        """The learning rate (and momentum) of each parameter group of ``optimizer``."""
        name = type(optimizer).__name__
        groups = optimizer.param_groups
        result: dict[str, float] = {}
        for i, group in enumerate(groups):
            suffix = f"/pg{i}" if len(groups) > 1 else ""
            result[f"lr-{name}{suffix}"] = float(group["lr"])
            if momentum:
                value = group.get("momentum", group.get("betas", (None,))[0])
                if value is not None:
                    result[f"momentum-{name}{suffix}"] = float(value)
        return result

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        """Record the values after each optimizer step (``"step"`` interval only)."""
        if self.logging_interval != "step" or trainer.global_step == self._last_step:
            return
        self._last_step = trainer.global_step
        values = self.values(trainer.optimizer, momentum=self.log_momentum)
        self.steps.append((trainer.global_step, values))

    def on_train_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Add the values used during the epoch to its metrics."""
        metrics.update(self.values(trainer.optimizer, momentum=self.log_momentum))

    def state_dict(self) -> dict[str, Any]:
        return {"steps": [[step, dict(values)] for step, values in self.steps]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = [(int(step), dict(values)) for step, values in state["steps"]]
        self._last_step = self.steps[-1][0] if self.steps else -1
