"""Plots of training curves, predictions and confusion matrices (needs the ``plot`` extra).

Every function builds a ``matplotlib.figure.Figure`` without pyplot, so it works headless and leaves
no global state; pass ``path`` to also save it as an image. The same plots are offered as methods
([`plot`][visionkit.History.plot], [`plot_topk`][visionkit.Predictor.plot_topk], ...) and
re-exported from [`visionkit.predict`][visionkit.predict].

This module sits above training and prediction: it reads their objects (a
[`History`][visionkit.History], a [`Prediction`][visionkit.Prediction], an
[`EvaluationReport`][visionkit.EvaluationReport]) but imports their types only for type checking, so
the methods that offer plots import it lazily, when called.

Examples:
    >>> from visionkit import History
    >>> from visionkit.plots import plot_history
    >>> figure = plot_history(History([{"epoch": 0, "train_loss": 0.9, "val_loss": 1.1}]))
    >>> len(figure.axes)
    2
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from visionkit._checks import check_int
from visionkit.exceptions import ConfigurationError, DataError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from visionkit.predict.predictor import Prediction
    from visionkit.training.history import History
    from visionkit.training.lr_finder import LRFinderResult
    from visionkit.training.metrics import EvaluationReport

__all__ = [
    "plot_confusion_matrix",
    "plot_history",
    "plot_lr_find",
    "plot_prediction_grid",
    "plot_top_losses",
    "plot_topk",
]

_GREEN, _RED = "#1a7f37", "#cf222e"


def _figure(**kwargs: Any) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigurationError(
            "plotting needs matplotlib, which is an optional extra: "
            'pip install "visionkit-torch[plot]"'
        ) from None
    return Figure(**kwargs)


def _finish(figure: Figure, path: str | os.PathLike[str] | None) -> Figure:
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure


def _displayable(image: Any, what: str) -> np.ndarray:
    """``image`` as an array ``imshow`` can draw, or a clear error naming it."""
    if hasattr(image, "detach"):  # a tensor
        image = image.detach().cpu().numpy()
    array = np.asarray(image) if isinstance(image, np.ndarray) else None
    if array is None or array.dtype.kind not in "biuf":
        raise DataError(f"{what} must be a NumPy array of pixels, got {type(image).__name__}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise DataError(
            f"{what} must be H x W, H x W x 3 or H x W x 4 to be drawn, got shape "
            f"{array.shape}: Predictor.to_display(x) turns model input into such an array"
        )
    if array.size == 0:
        raise DataError(f"{what} has no pixels (shape {array.shape})")
    return array


def plot_history(history: History, *, path: str | os.PathLike[str] | None = None) -> Figure:
    """Loss and accuracy per epoch, training against validation (W4's curves)."""
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
    """Images titled ``pred (true)``, green when right and red when wrong (W1).

    Raises:
        ConfigurationError: if the three sequences differ in length or ``columns`` is not
            a positive integer.
        DataError: if an image is not an ``H x W``, ``H x W x 3`` or ``H x W x 4`` array
            with pixels.
    """
    if not (len(images) == len(predicted) == len(actual)):
        raise ConfigurationError(
            f"images, predicted and actual must have the same length, got {len(images)}, "
            f"{len(predicted)} and {len(actual)}"
        )
    columns = check_int("columns", columns, least=1)
    images = [_displayable(image, f"image {i}") for i, image in enumerate(images)]
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
    """An image beside a horizontal bar chart of its top-k class probabilities (W5).

    Raises:
        DataError: if ``image`` is not an ``H x W``, ``H x W x 3`` or ``H x W x 4`` array
            with pixels.
    """
    image = _displayable(image, "the image")
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


def plot_lr_find(result: LRFinderResult, *, path: str | os.PathLike[str] | None = None) -> Figure:
    """The learning-rate sweep: smoothed loss against learning rate, the suggestion marked."""
    figure = _figure(figsize=(6, 4))
    axes = figure.add_subplot(1, 1, 1)
    axes.plot(result.lrs, result.losses)
    axes.set_xscale("log")
    if result.suggestion is not None:
        index = result.lrs.index(result.suggestion)
        axes.plot(
            [result.suggestion],
            [result.losses[index]],
            marker="o",
            color=_RED,
            label=f"suggestion {result.suggestion:.2e}",
        )
        axes.legend()
    axes.set_xlabel("learning rate")
    axes.set_ylabel("loss (smoothed)")
    axes.grid(alpha=0.3)
    return _finish(figure, path)


def plot_top_losses(
    images: Sequence[Any],
    predicted: Sequence[str],
    actual: Sequence[str],
    losses: Sequence[float],
    probabilities: Sequence[float],
    *,
    columns: int | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Images titled as fastai's top losses: ``prediction/actual / loss / probability``.

    ``probabilities`` are those of the predicted classes. Titles are green where the
    prediction is right and red where it is wrong; the figure's title names the four
    fields. [`Interpretation.plot_top_losses`][visionkit.predict.Interpretation.plot_top_losses]
    draws this for the samples with the highest losses.

    Args:
        images: ``H x W``, ``H x W x 3`` or ``H x W x 4`` arrays.
        predicted: Predicted class name of each image.
        actual: True class name of each image.
        losses: Loss of each image.
        probabilities: Probability of each prediction.
        columns: Images per row; default the square root of their number, rounded up.
        path: Also save the figure there.

    Raises:
        ConfigurationError: if the sequences differ in length, are empty, or ``columns``
            is not a positive integer.
        DataError: if an image is not an array of pixels that can be drawn.

    Examples:
        >>> import numpy as np
        >>> figure = plot_top_losses([np.zeros((4, 4))], ["3"], ["8"], [2.345], [0.61])
        >>> figure.axes[0].get_title()
        '3/8 / 2.35 / 0.61'
    """
    count = len(images)
    if not count or any(len(s) != count for s in (predicted, actual, losses, probabilities)):
        raise ConfigurationError(
            f"images, predicted, actual, losses and probabilities must have the same length "
            f"(at least 1), got {count}, {len(predicted)}, {len(actual)}, {len(losses)} and "
            f"{len(probabilities)}"
        )
    if columns is None:
        columns = math.ceil(math.sqrt(count))
    columns = min(check_int("columns", columns, least=1), count)
    rows = math.ceil(count / columns)
    figure = _figure(figsize=(2.6 * columns, 2.6 * rows + 0.4))
    figure.suptitle("prediction/actual/loss/probability")
    rows_of = zip(images, predicted, actual, losses, probabilities, strict=True)
    for i, (image, pred, true, loss, probability) in enumerate(rows_of):
        pixels = _displayable(image, f"image {i}")
        axes = figure.add_subplot(rows, columns, i + 1)
        axes.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None)
        axes.set_title(
            f"{pred}/{true} / {float(loss):.2f} / {float(probability):.2f}",
            color=_GREEN if pred == true else _RED,
            fontsize=8,
        )
        axes.axis("off")
    return _finish(figure, path)
