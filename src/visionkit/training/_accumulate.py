"""Per-step metric bookkeeping that costs a list append: batches are reduced in groups.

Updating a [`ClassificationMetrics`][visionkit.training.ClassificationMetrics] costs a handful of
small tensor operations, which on a CPU is a visible share of a small model's training step.
``BatchGroups`` keeps the detached outputs, labels and losses of up to ``group_size`` batches and
reduces them into the metrics with one concatenation, so the per-step cost is a few list appends and
the results are the same sums. Its state (sums and the batches not yet reduced) travels in
checkpoints, so a resumed run reduces the same groups as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from visionkit.training.metrics import ClassificationMetrics

__all__ = ["BatchGroups"]


class BatchGroups:
    """Collects ``(outputs, targets, loss)`` per step; reduces them every ``group_size``."""

    def __init__(
        self, *, top_k: Sequence[int] = (), confusion: bool = False, group_size: int = 16
    ) -> None:
        self.top_k = tuple(top_k)
        self.confusion = confusion
        self.group_size = group_size
        self.metrics: ClassificationMetrics | None = None
        self._outputs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._losses: list[torch.Tensor] = []

    @property
    def empty(self) -> bool:
        """Whether no batch was added since the last `reset`."""
        return self.metrics is None and not self._outputs

    def reset(self) -> None:
        """Forget everything (start of an epoch)."""
        self.metrics = None
        self._outputs, self._targets, self._losses = [], [], []

    def add(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        """Record one batch's detached ``outputs``, ``targets`` and mean ``loss``."""
        self._outputs.append(outputs)
        self._targets.append(targets)
        self._losses.append(loss)
        if len(self._outputs) >= self.group_size:
            self.reduce()

    def reduce(self) -> ClassificationMetrics | None:
        """Fold the pending batches into `metrics` and return it."""
        if not self._outputs:
            return self.metrics
        logits = self._outputs[0] if len(self._outputs) == 1 else torch.cat(self._outputs)
        targets = self._targets[0] if len(self._targets) == 1 else torch.cat(self._targets)
        if self.metrics is None:
            self.metrics = ClassificationMetrics(
                int(logits.shape[1]), top_k=self.top_k, confusion=self.confusion
            )
        loss_sum = _weighted_loss_sum(self._losses, self._targets)
        self.metrics.update(logits.float(), targets, loss_sum=loss_sum)
        self._outputs, self._targets, self._losses = [], [], []
        return self.metrics

    def state_dict(self) -> dict[str, Any]:
        """Sums and pending batches, on the CPU, in checkpoint-safe types."""
        return {
            "num_classes": self.metrics.num_classes if self.metrics is not None else None,
            "sums": self.metrics.state_tensor().cpu() if self.metrics is not None else None,
            "pending": [
                [o.cpu(), t.cpu(), loss.cpu()]
                for o, t, loss in zip(self._outputs, self._targets, self._losses, strict=True)
            ],
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        """Restore `state_dict`'s result, moving tensors to ``device``."""
        self.reset()
        if state["sums"] is not None:
            self.metrics = ClassificationMetrics(
                int(state["num_classes"]), top_k=self.top_k, confusion=self.confusion
            )
            self.metrics.load_state_tensor(state["sums"].to(device))
        for outputs, targets, loss in state["pending"]:
            self._outputs.append(outputs.to(device))
            self._targets.append(targets.to(device))
            self._losses.append(loss.to(device))


def _weighted_loss_sum(losses: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """``sum(loss_i * n_i)`` in float64 with one multiply per run of equal batch sizes."""
    values = torch.stack(losses).double()
    sizes = [int(t.shape[0]) for t in targets]
    total: torch.Tensor | None = None
    start = 0
    while start < len(sizes):
        end = start
        while end < len(sizes) and sizes[end] == sizes[start]:
            end += 1
        part = values[start:end].sum() * sizes[start]
        total = part if total is None else total + part
        start = end
    assert total is not None
    return total
