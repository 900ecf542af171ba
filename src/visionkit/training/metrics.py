"""Classification metrics accumulated on the device, and the evaluation report."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from visionkit.exceptions import ConfigurationError

__all__ = ["ClassificationMetrics", "EvaluationReport"]


class ClassificationMetrics:
    """Exact loss, accuracy, top-k accuracy and confusion matrix over many batches.

    Sums are kept as tensors on the batches' device and read once in
    [`compute`][visionkit.training.ClassificationMetrics.compute], so accumulating never
    synchronizes the host with a GPU. Every sample counts once, whatever the batch sizes (a smaller
    last batch is weighted by its size, not as a full batch).

    Args:
        num_classes: Number of classes (the width of the model's output).
        top_k: The ``k`` values to report top-k accuracy for; values ``>= num_classes``
            are skipped. Classes are ranked by score with equal scores in index order, the
            order ``argmax`` picks from, so top-1 is the accuracy and top-k never falls as
            ``k`` grows.
        confusion: Also keep the confusion matrix (needed for per-class accuracy).

    Examples:
        >>> m = ClassificationMetrics(3)
        >>> m.update(torch.tensor([[2., 1, 0], [0, 2, 1], [0, 1, 2]]), torch.tensor([0, 1, 1]))
        >>> m.compute()["accuracy"], m.compute()["loss"], m.per_class_accuracy()
        (0.6666666666666666, nan, [1.0, 0.5, nan])
    """

    def __init__(
        self, num_classes: int, *, top_k: Sequence[int] = (), confusion: bool = True
    ) -> None:
        if num_classes < 1:
            raise ConfigurationError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.top_k = tuple(k for k in top_k if 1 < k < num_classes)
        self.confusion = confusion
        self._state: torch.Tensor | None = None  # [loss_sum, count, correct, top-k..., cm...]

    @property
    def _width(self) -> int:
        return 3 + len(self.top_k) + (self.num_classes**2 if self.confusion else 0)

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._state = None

    def update(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        loss: torch.Tensor | None = None,
        *,
        loss_sum: torch.Tensor | None = None,
    ) -> None:
        """Add a batch: ``logits`` ``(B, num_classes)``, ``targets`` ``(B,)``, mean ``loss``.

        Pass the batch's mean ``loss``, or ``loss_sum``, the loss summed over its samples
        (both are 0-d tensors). Once a batch is added with neither, the reported loss is
        ``nan``: the mean loss of the samples is not known. ``targets`` may also be soft
        targets ``(B, num_classes)``, the class probabilities of a batch mixed by
        [`MixUp`][visionkit.callbacks.MixUp] or [`CutMix`][visionkit.callbacks.CutMix]: a
        mixed image has no one right class, so accuracy and top-k accuracy are then ``nan``
        (not defined) while the loss is counted.

        Raises:
            ConfigurationError: for soft targets with ``confusion=True``.
        """
        logits = logits.detach()
        soft = targets.dim() == 2
        if soft and self.confusion:
            raise ConfigurationError(
                f"a confusion matrix needs (batch,) class indices, got soft targets of shape "
                f"{tuple(targets.shape)}: build the metrics with confusion=False"
            )
        if self._state is None:
            self._state = torch.zeros(self._width, dtype=torch.float64, device=logits.device)
        state = self._state
        n = targets.shape[0]
        if loss_sum is not None:
            state[0] += loss_sum.detach().double()
        elif loss is not None:
            state[0] += loss.detach().double() * n
        else:
            state[0] += math.nan
        state[1] += n
        if soft:
            state[2 : 3 + len(self.top_k)] += math.nan
            return
        predicted = logits.argmax(1)
        hits = predicted == targets
        state[2] += hits.sum()
        if self.top_k:
            ranks = _target_ranks(logits, targets)
            for i, k in enumerate(self.top_k):
                state[3 + i] += (ranks < k).sum()
        if self.confusion:
            # index_add_, unlike bincount, never reads the data on the host (no GPU sync)
            cells = targets.long() * self.num_classes + predicted
            ones = torch.ones(n, dtype=state.dtype, device=state.device)
            state[3 + len(self.top_k) :].index_add_(0, cells, ones)

    def state_tensor(self) -> torch.Tensor:
        """All sums as one ``float64`` tensor (what distributed training all-reduces)."""
        if self._state is None:
            return torch.zeros(self._width, dtype=torch.float64)
        return self._state

    def load_state_tensor(self, state: torch.Tensor) -> None:
        """Replace the sums, e.g. by their all-reduced values across processes."""
        self._state = state

    @property
    def count(self) -> int:
        """Number of samples seen."""
        return int(self.state_tensor()[1])

    def compute(self) -> dict[str, float]:
        """``loss`` (mean per sample, ``nan`` without one), ``accuracy`` and ``top{k}_accuracy``."""
        values = self.state_tensor().cpu()
        n = float(values[1])
        if n == 0:
            return {}
        result = {"loss": float(values[0]) / n, "accuracy": float(values[2]) / n}
        for i, k in enumerate(self.top_k):
            result[f"top{k}_accuracy"] = float(values[3 + i]) / n
        return result

    def confusion_matrix(self) -> torch.Tensor:
        """``int64`` matrix: row = true class, column = predicted class."""
        if not self.confusion:
            raise ConfigurationError("this ClassificationMetrics was built with confusion=False")
        cells = self.state_tensor().cpu()[3 + len(self.top_k) :]
        return cells.round().long().view(self.num_classes, self.num_classes)

    def per_class_accuracy(self) -> list[float]:
        """Accuracy of each class; ``nan`` for a class with no sample."""
        matrix = self.confusion_matrix()
        support = matrix.sum(1)
        return [
            float(matrix[c, c]) / float(support[c]) if support[c] else math.nan
            for c in range(self.num_classes)
        ]

    def report(self, classes: Sequence[str] | None = None) -> EvaluationReport:
        """Everything accumulated, as an [`EvaluationReport`][visionkit.EvaluationReport]."""
        values = self.compute()
        matrix = self.confusion_matrix()
        names = list(classes) if classes is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ConfigurationError(
                f"got {len(names)} class names for a model with {self.num_classes} outputs"
            )
        return EvaluationReport(
            loss=values.get("loss", math.nan),
            accuracy=values.get("accuracy", math.nan),
            num_samples=self.count,
            classes=names,
            per_class_accuracy=self.per_class_accuracy(),
            support=matrix.sum(1).tolist(),
            confusion_matrix=matrix.tolist(),
            top_k_accuracy={
                k: values[f"top{k}_accuracy"] for k in self.top_k if f"top{k}_accuracy" in values
            },
        )


def _target_ranks(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Where each target class stands when its row's classes are ranked, ``0`` = first.

    Classes are ranked by score, highest first; equal scores go to the lower class index
    and NaN ranks above every number, exactly as ``argmax`` picks. So rank ``0`` is the
    ``argmax`` (top-1 equals accuracy), and a target is within the top ``k`` iff its rank
    is below ``k``, which is never less often for a larger ``k``. Vectorised, with no read
    on the host.

    Args:
        logits: Scores ``(B, C)``.
        targets: Class indices ``(B,)``.

    Returns:
        ``int64`` ranks ``(B,)``.

    Examples:
        >>> _target_ranks(torch.tensor([[1., 2., 2.], [1., 2., 2.]]), torch.tensor([2, 1]))
        tensor([1, 0])
    """
    column = targets.long()[:, None]
    score = logits.gather(1, column)
    nan, nan_score = logits.isnan(), score.isnan()
    above = (logits > score) | (nan & ~nan_score)
    tied = (logits == score) | (nan & nan_score)
    before = torch.arange(logits.shape[1], device=logits.device)[None, :] < column
    return (above | (tied & before)).sum(1)


@dataclass
class EvaluationReport:
    """Overall, top-k and per-class accuracy with the confusion matrix.

    ``print(report)`` shows a table like the W1 tutorial's per-class accuracy printout;
    [`to_json`][visionkit.EvaluationReport.to_json] saves it.

    Attributes:
        loss: Mean loss per sample (``nan`` when no loss was computed).
        accuracy: Share of samples whose top prediction is right.
        num_samples: Number of samples evaluated.
        classes: Class names, index = label.
        per_class_accuracy: Accuracy of each class, ``nan`` where it has no sample.
        support: Number of samples of each class.
        confusion_matrix: Row = true class, column = predicted class.
        top_k_accuracy: ``{k: accuracy}`` for each requested ``k > 1``.
    """

    loss: float
    accuracy: float
    num_samples: int
    classes: list[str]
    per_class_accuracy: list[float]
    support: list[int]
    confusion_matrix: list[list[int]]
    top_k_accuracy: dict[int, float] = field(default_factory=dict)

    def class_accuracy(self, name: str) -> float:
        """Accuracy of the class called ``name``."""
        return self.per_class_accuracy[self.classes.index(name)]

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values (``nan`` becomes ``None``)."""
        data = asdict(self)
        data["per_class_accuracy"] = [None if math.isnan(a) else a for a in self.per_class_accuracy]
        data["top_k_accuracy"] = {str(k): v for k, v in self.top_k_accuracy.items()}
        if math.isnan(self.loss):
            data["loss"] = None
        return data

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as JSON to ``path`` and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def __str__(self) -> str:
        width = max(12, *(len(c) for c in self.classes))
        lines = []
        if not math.isnan(self.loss):
            lines.append(f"Test loss: {self.loss:.6f}")
        lines.append(f"{'class':<{width}}  accuracy  correct/total")
        for name, acc, row, total in zip(
            self.classes, self.per_class_accuracy, self.confusion_matrix, self.support, strict=True
        ):
            correct = row[self.classes.index(name)]
            shown = "     n/a" if math.isnan(acc) else f"{acc:8.2%}"
            lines.append(f"{name:<{width}}  {shown}  {correct:>7}/{total}")
        correct_all = sum(self.confusion_matrix[i][i] for i in range(len(self.classes)))
        lines.append(
            f"{'overall':<{width}}  {self.accuracy:8.2%}  {correct_all:>7}/{self.num_samples}"
        )
        for k, acc in sorted(self.top_k_accuracy.items()):
            lines.append(f"{f'top-{k}':<{width}}  {acc:8.2%}")
        return "\n".join(lines)
