"""A downstream project's callback, written against visionkit's public, typed API.

``tests/typing/test_downstream_typing.py`` checks this package with ``mypy --strict`` and
trains with it through a resume.
"""

from __future__ import annotations

from typing import Any

from visionkit import Trainer
from visionkit.callbacks import Batch, Callback, StepOutput

__all__ = ["LossTracker"]


class LossTracker(Callback):
    """Counts training samples and keeps every epoch's training loss, across resumes."""

    def __init__(self) -> None:
        self.samples_seen = 0
        self.epoch_losses: list[float] = []
        self.fit_starts = 0

    def on_fit_start(self, trainer: Trainer) -> None:
        self.fit_starts += 1

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        self.samples_seen += int(outputs.targets.shape[0])

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.epoch_losses.append(metrics["train_loss"])

    def state_dict(self) -> dict[str, Any]:
        return {"samples_seen": self.samples_seen, "epoch_losses": list(self.epoch_losses)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.samples_seen = int(state["samples_seen"])
        self.epoch_losses = [float(v) for v in state["epoch_losses"]]
