"""Plots of training curves, predictions and confusion matrices (needs the ``plot`` extra).

Every function builds a ``matplotlib.figure.Figure`` without pyplot, so it works headless
and leaves no global state; pass ``path`` to also save it as an image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from visionkit.exceptions import ConfigurationError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from visionkit.predict.predictor import Prediction
    from visionkit.training.history import History
    from visionkit.training.metrics import EvaluationReport

__all__ = ["plot_confusion_matrix", "plot_history", "plot_prediction_grid", "plot_topk"]

_GREEN, _RED = "#1a7f37", "#cf222e"


def _figure(**kwargs: Any) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigurationError(
            'plotting needs matplotlib, which is an optional extra: pip install "visionkit[plot]"'
        ) from None
    return Figure(**kwargs)


def _finish(figure: Figure, path: str | os.PathLike[str] | None) -> Figure:
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure


def plot_history(history: History, *, path: str | os.PathLike[str] | None = None) -> Figure:
    """Loss and accuracy per epoch, training against validation (seed 002's curves)."""
    figure = _figure(figsize=(10, 4))
    epochs = [int(e.get("epoch", i)) + 1 for i, e in enumerate(history.epochs)]
    for position, metric in enumerate(("loss", "accuracy"), start=1):
        axes = figure.add_subplot(1, 2, position)
        for split in ("train", "val"):
            name = f"{split}_{metric}"
            points = [
                (x, e[name]) for x, e in zip(epochs, history.epochs, strict=True) if name in e
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                axes.plot(
                    xs, ys, marker="o", label="training" if split == "train" else "validation"
                )
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_title(metric.capitalize())
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
    return _finish(figure, path)


def plot_prediction_grid(
    images: Sequence[np.ndarray],
    predicted: Sequence[str],
    actual: Sequence[str],
    *,
    columns: int = 10,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Images titled ``pred (true)``, green when right and red when wrong (seed 001)."""
    if not (len(images) == len(predicted) == len(actual)):
        raise ConfigurationError("images, predicted and actual must have the same length")
    columns = max(1, min(columns, len(images)))
    rows = max(1, math.ceil(len(images) / columns))
    figure = _figure(figsize=(1.6 * columns, 1.9 * rows))
    for i, (image, pred, true) in enumerate(zip(images, predicted, actual, strict=True)):
        axes = figure.add_subplot(rows, columns, i + 1)
        axes.imshow(image, cmap="gray" if image.ndim == 2 else None)
        axes.set_title(f"{pred} ({true})", color=_GREEN if pred == true else _RED, fontsize=9)
        axes.axis("off")
    return _finish(figure, path)


def plot_topk(
    image: np.ndarray, prediction: Prediction, *, path: str | os.PathLike[str] | None = None
) -> Figure:
    """An image beside a horizontal bar chart of its top-k class probabilities (seed 000)."""
    figure = _figure(figsize=(9, 4))
    left = figure.add_subplot(1, 2, 1)
    left.imshow(image, cmap="gray" if image.ndim == 2 else None)
    left.set_title(prediction.name)
    left.axis("off")
    right = figure.add_subplot(1, 2, 2)
    positions = np.arange(len(prediction.names))
    right.barh(positions, prediction.probabilities, color="#0969da")
    right.set_yticks(positions, labels=list(prediction.names))
    right.invert_yaxis()
    right.set_xlim(0, 1)
    right.set_xlabel("probability")
    return _finish(figure, path)


def plot_confusion_matrix(
    report: EvaluationReport,
    *,
    normalize: bool = False,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """The confusion matrix of an evaluation report (rows: true, columns: predicted)."""
    matrix = np.asarray(report.confusion_matrix, dtype=float)
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    size = max(4.0, 0.6 * len(report.classes) + 2)
    figure = _figure(figsize=(size, size))
    axes = figure.add_subplot(1, 1, 1)
    shown = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(shown, ax=axes, fraction=0.046)
    ticks = np.arange(len(report.classes))
    axes.set_xticks(ticks, labels=report.classes, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=report.classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), value in np.ndenumerate(matrix):
        text = f"{value:.2f}" if normalize else f"{int(value)}"
        axes.text(
            col,
            row,
            text,
            ha="center",
            va="center",
            color="white" if value > threshold else "black",
            fontsize=8,
        )
    return _finish(figure, path)
