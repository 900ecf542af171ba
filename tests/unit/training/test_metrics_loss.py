"""``ClassificationMetrics`` reports the loss it was given, and ``nan`` when it was not."""

from __future__ import annotations

import math

import torch

from visionkit.training.metrics import ClassificationMetrics

LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
TARGETS = torch.tensor([0, 1, 1])


def test_without_a_loss_the_loss_is_nan_everywhere_it_is_shown() -> None:
    metrics = ClassificationMetrics(3)
    metrics.update(LOGITS, TARGETS)
    assert math.isnan(metrics.compute()["loss"])
    report = metrics.report(["cat", "dog", "bird"])
    assert math.isnan(report.loss)
    assert report.to_dict()["loss"] is None
    assert "loss" not in str(report)


def test_a_batch_without_a_loss_makes_the_mean_unknown() -> None:
    metrics = ClassificationMetrics(3)
    metrics.update(LOGITS[:2], TARGETS[:2], torch.tensor(0.5))
    assert metrics.compute()["loss"] == 0.5
    metrics.update(LOGITS[2:], TARGETS[2:])
    assert math.isnan(metrics.compute()["loss"])


def test_a_loss_or_a_loss_sum_gives_the_exact_mean_per_sample() -> None:
    metrics = ClassificationMetrics(3)
    metrics.update(LOGITS[:2], TARGETS[:2], torch.tensor(0.5))
    metrics.update(LOGITS[2:], TARGETS[2:], loss_sum=torch.tensor(2.0))
    assert metrics.compute()["loss"] == (0.5 * 2 + 2.0) / 3
