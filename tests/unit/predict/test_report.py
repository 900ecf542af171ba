"""The evaluation report: a printable table and JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from visionkit.training.metrics import ClassificationMetrics


def _report():  # type: ignore[no-untyped-def]
    metrics = ClassificationMetrics(3, top_k=(2,))
    logits = torch.tensor([[3.0, 1, 0], [0, 2, 1], [0, 1, 2], [2, 1, 0], [1, 2, 0]])
    metrics.update(logits[:3], torch.tensor([0, 1, 1]), torch.tensor(0.5))
    metrics.update(logits[3:], torch.tensor([0, 0]), torch.tensor(1.0))  # smaller last batch
    return metrics.report(["plane", "bird", "cat"])


def test_report_values() -> None:
    report = _report()
    assert report.accuracy == 3 / 5
    assert report.loss == (0.5 * 3 + 1.0 * 2) / 5
    assert report.confusion_matrix == [[2, 1, 0], [0, 1, 1], [0, 0, 0]]
    assert report.support == [3, 2, 0]
    assert report.per_class_accuracy[:2] == [2 / 3, 0.5]
    assert math.isnan(report.per_class_accuracy[2])
    assert report.top_k_accuracy == {2: 1.0}
    assert report.class_accuracy("bird") == 0.5


def test_report_table() -> None:
    lines = str(_report()).splitlines()
    assert lines[0] == "Test loss: 0.700000"
    assert lines[2].split() == ["plane", "66.67%", "2/3"]
    assert lines[4].split() == ["cat", "n/a", "0/0"]
    assert lines[5].split() == ["overall", "60.00%", "3/5"]
    assert lines[6].split() == ["top-2", "100.00%"]


def test_report_json(tmp_path: Path) -> None:
    path = _report().to_json(tmp_path / "out" / "report.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["per_class_accuracy"] == [2 / 3, 0.5, None]
    assert data["top_k_accuracy"] == {"2": 1.0}
    assert data["classes"] == ["plane", "bird", "cat"]
    assert data["confusion_matrix"][0] == [2, 1, 0]
