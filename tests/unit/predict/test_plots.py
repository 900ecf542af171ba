"""Every plot renders headless to a non-empty PNG, and says how to install matplotlib."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from visionkit import ConfigurationError, History, Predictor
from visionkit.data import mnist_sample
from visionkit.predict import (
    plot_confusion_matrix,
    plot_history,
    plot_prediction_grid,
    plot_topk,
)
from visionkit.training.metrics import EvaluationReport

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_MAGIC) and len(data) > 2000


def _history() -> History:
    history = History()
    for epoch, (loss, acc) in enumerate([(1.2, 0.5), (0.8, 0.7), (0.6, 0.8)]):
        history.append(
            {
                "epoch": epoch,
                "train_loss": loss,
                "val_loss": loss + 0.1,
                "train_accuracy": acc,
                "val_accuracy": acc - 0.05,
            }
        )
    return history


def _report() -> EvaluationReport:
    return EvaluationReport(
        loss=0.5,
        accuracy=0.75,
        num_samples=8,
        classes=["cat", "dog"],
        per_class_accuracy=[1.0, 0.5],
        support=[4, 4],
        confusion_matrix=[[4, 0], [2, 2]],
    )


def test_plot_history(tmp_path: Path) -> None:
    figure = plot_history(_history(), path=tmp_path / "history.png")
    assert _is_png(tmp_path / "history.png")
    loss_axes, accuracy_axes = figure.axes
    assert [line.get_label() for line in loss_axes.lines] == ["training", "validation"]
    assert list(loss_axes.lines[1].get_ydata()) == pytest.approx([1.3, 0.9, 0.7])
    assert list(accuracy_axes.lines[0].get_xdata()) == [1, 2, 3]


def test_history_plot_method(tmp_path: Path) -> None:
    _history().plot(path=tmp_path / "h.png")
    assert _is_png(tmp_path / "h.png")


def test_plot_prediction_grid_colours_right_and_wrong(tmp_path: Path) -> None:
    images = [np.zeros((28, 28)), np.ones((28, 28)), np.zeros((8, 8, 3))]
    figure = plot_prediction_grid(
        images, ["7", "2", "cat"], ["7", "3", "cat"], columns=2, path=tmp_path / "grid.png"
    )
    assert _is_png(tmp_path / "grid.png")
    titles = [(a.get_title(), a.title.get_color()) for a in figure.axes]
    assert titles == [("7 (7)", "#1a7f37"), ("2 (3)", "#cf222e"), ("cat (cat)", "#1a7f37")]


def test_plot_prediction_grid_checks_lengths() -> None:
    with pytest.raises(ConfigurationError, match="same length"):
        plot_prediction_grid([np.zeros((2, 2))], ["a", "b"], ["a"])


def test_plot_topk_bars(tmp_path: Path, mlp_checkpoint: Path) -> None:
    predictor = Predictor.from_checkpoint(mlp_checkpoint, device="cpu")
    image = np.full((28, 28), 128, dtype=np.uint8)
    prediction = predictor.predict(image, top_k=3)
    figure = plot_topk(
        predictor.to_display(predictor.to_input(image)), prediction, path=tmp_path / "topk.png"
    )
    assert _is_png(tmp_path / "topk.png")
    bars = figure.axes[1]
    assert [t.get_text() for t in bars.get_yticklabels()] == list(prediction.names)
    assert [p.get_width() for p in bars.patches] == pytest.approx(prediction.probabilities)


def test_predictor_plot_methods(tmp_path: Path, mlp_checkpoint: Path) -> None:
    predictor = Predictor.from_checkpoint(mlp_checkpoint, device="cpu")
    data = mnist_sample(normalize=(0.1307, 0.3081)).test
    figure = predictor.plot_predictions(data, n=6, columns=3, path=tmp_path / "grid.png")
    assert _is_png(tmp_path / "grid.png")
    assert len(figure.axes) == 6
    assert figure.axes[0].get_title().endswith(f"({data.classes[data[0][1]]})")
    predictor.plot_topk(data.images[0], top_k=5, path=tmp_path / "topk.png")
    assert _is_png(tmp_path / "topk.png")


def test_plot_confusion_matrix(tmp_path: Path) -> None:
    figure = plot_confusion_matrix(_report(), path=tmp_path / "cm.png")
    assert _is_png(tmp_path / "cm.png")
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["4", "0", "2", "2"]
    normalized = plot_confusion_matrix(_report(), normalize=True)
    assert [t.get_text() for t in normalized.axes[0].texts] == ["1.00", "0.00", "0.50", "0.50"]


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes "import matplotlib" fail
    with pytest.raises(ConfigurationError, match=r'pip install "visionkit-torch\[plot\]"'):
        plot_history(_history())
    with pytest.raises(ConfigurationError, match="matplotlib"):
        plot_confusion_matrix(_report())
