"""One ranking rule for accuracy, top-k accuracy and predictions: ties go to the lower index."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from visionkit.predict import Predictor
from visionkit.training.metrics import ClassificationMetrics, _target_ranks


@st.composite
def _batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer-valued scores from a small range, so most rows hold ties."""
    classes = draw(st.integers(2, 7))
    rows = draw(st.integers(1, 24))
    high = draw(st.integers(0, 3))
    scores = draw(st.lists(st.integers(0, high), min_size=rows * classes, max_size=rows * classes))
    targets = draw(st.lists(st.integers(0, classes - 1), min_size=rows, max_size=rows))
    return torch.tensor(scores, dtype=torch.float32).view(rows, classes), torch.tensor(targets)


def _reference_ranks(logits: torch.Tensor, targets: torch.Tensor) -> list[int]:
    """Position of each target in its row sorted by (score descending, index ascending)."""
    ranks = []
    for row, target in zip(logits.tolist(), targets.tolist(), strict=True):
        order = sorted(range(len(row)), key=lambda c: (-row[c], c))
        ranks.append(order.index(target))
    return ranks


@settings(max_examples=300, deadline=None)
@given(batch=_batches())
def test_top_k_accuracy_never_falls_below_top_1_and_top_1_is_accuracy(
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    logits, targets = batch
    classes = logits.shape[1]
    metrics = ClassificationMetrics(classes, top_k=range(2, classes))
    metrics.update(logits, targets)
    values = metrics.compute()
    ranks = _target_ranks(logits, targets)
    assert ranks.tolist() == _reference_ranks(logits, targets)
    assert values["accuracy"] == (logits.argmax(1) == targets).sum().item() / len(targets)
    by_k = [values["accuracy"], *(values[f"top{k}_accuracy"] for k in range(2, classes))]
    assert by_k == [(ranks < k).sum().item() / len(targets) for k in range(1, classes)]
    assert by_k == sorted(by_k)
    assert bool((ranks < classes).all())  # top-num_classes accuracy is 1.0


def test_nan_scores_rank_first_as_argmax_picks_them() -> None:
    logits = torch.tensor([[1.0, math.nan, 2.0, math.nan], [math.inf, 0.0, math.inf, -math.inf]])
    assert logits.argmax(1).tolist() == [1, 0]
    assert _target_ranks(logits, torch.tensor([1, 0])).tolist() == [0, 0]
    assert _target_ranks(logits, torch.tensor([3, 2])).tolist() == [1, 1]
    assert _target_ranks(logits, torch.tensor([2, 3])).tolist() == [2, 3]
    many = torch.tensor([[0.0] + [math.nan] * 11])  # argmax: the first NaN, index 1
    metrics = ClassificationMetrics(12, top_k=(2, 3))
    metrics.update(many, torch.tensor([1]))
    values = metrics.compute()
    assert [values[k] for k in ("accuracy", "top2_accuracy", "top3_accuracy")] == [1.0] * 3


class _Fixed(nn.Module):
    """Returns the same scores for every image."""

    scores: torch.Tensor

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.register_buffer("scores", torch.tensor(scores))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores.expand(x.shape[0], -1)


def test_predictions_rank_equal_probabilities_by_class_index() -> None:
    scores = [1.0, 3.0, 0.0, 3.0, 3.0, 1.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    predictor = Predictor(_Fixed(scores), device="cpu")
    [prediction] = predictor.predict([np.zeros((2, 2), dtype=np.uint8)], top_k=len(scores))
    assert prediction.indices == (1, 3, 4, 6, 7, 8, 9, 10, 11, 0, 5, 2)
    assert prediction.index == int(torch.tensor(scores).argmax())
