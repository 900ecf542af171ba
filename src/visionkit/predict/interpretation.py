"""``Interpretation``: what a classifier gets wrong on a data set, from one evaluation pass."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from visionkit._checks import check_int, describe
from visionkit._images import convert_mode, load_image
from visionkit.data._datasets import TensorImageDataset
from visionkit.exceptions import ConfigurationError, DataError
from visionkit.predict.predictor import Predictor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from visionkit.training.metrics import EvaluationReport
    from visionkit.training.trainer import Trainer

__all__ = ["Interpretation"]

_THUMBNAIL = 256  # longest side of an image file shown in a plot


class Interpretation:
    """Per-sample predictions and losses on a data set, to see what the model gets wrong.

    As fastai's ``ClassificationInterpretation``: one evaluation pass records, for every
    sample, its label, the predicted class (the most probable; equal probabilities go to
    the lower index), the class probabilities and the loss, the cross entropy
    ``-log p[label]`` of the probabilities. That is the loss of logits and of
    log-probabilities (``NLLLoss`` models) alike. Everything below reads that one pass.

    Build one with [`from_predictor`][visionkit.predict.Interpretation.from_predictor] or
    [`from_trainer`][visionkit.predict.Interpretation.from_trainer], or from outputs you
    computed yourself.

    Args:
        data: The data set the outputs are of (its images are shown in plots).
        logits: The model's outputs, ``(N, num_classes)``: logits or log-probabilities.
        targets: The labels, ``(N,)``.
        classes: Class names, index = label; ``None`` names classes by index.
        predictor: The predictor whose normalization is undone to show model input.

    Raises:
        DataError: if the outputs and labels do not match in number, there are none, an
            output is NaN or infinite, or a label is not a class of the outputs.
        ConfigurationError: if there are more or fewer class names than outputs.

    Attributes:
        data: The data set evaluated.
        classes: Class names, index = label.
        targets: Label of each sample, ``int64`` ``(N,)``.
        predictions: Predicted class of each sample, ``int64`` ``(N,)``.
        probabilities: Class probabilities, ``float32`` ``(N, num_classes)``.
        losses: Loss of each sample, ``float32`` ``(N,)``.
        report: Loss, accuracy, per-class accuracy and confusion matrix
            ([`EvaluationReport`][visionkit.EvaluationReport]).

    Examples:
        >>> from visionkit.data import mnist_sample
        >>> from visionkit.models import create_model
        >>> from visionkit.predict import Predictor
        >>> data = mnist_sample()
        >>> predictor = Predictor(create_model("mlp", hidden=[8], num_classes=10),
        ...                       classes=data.classes, device="cpu")
        >>> interp = Interpretation.from_predictor(predictor, data.test.select(range(50)))
        >>> len(interp), tuple(interp.probabilities.shape)
        (50, (50, 10))
        >>> mistakes = sum(count for _, _, count in interp.most_confused())
        >>> mistakes == int((interp.predictions != interp.targets).sum())
        True
    """

    def __init__(
        self,
        data: Any,
        logits: torch.Tensor,
        targets: torch.Tensor,
        *,
        classes: Sequence[str] | None = None,
        predictor: Predictor | None = None,
    ) -> None:
        logits = logits.detach().float().cpu()
        targets = targets.detach().long().cpu()
        if logits.dim() != 2 or targets.shape != (logits.shape[0],) or not len(targets):
            raise DataError(
                f"expected one row of class scores per label, got scores of shape "
                f"{tuple(logits.shape)} for labels of shape {tuple(targets.shape)}"
            )
        if not bool(torch.isfinite(logits).all()):
            bad = int((~torch.isfinite(logits)).any(dim=1).nonzero()[0, 0])
            raise DataError(
                f"the model returned NaN or infinite outputs for sample {bad}, so it has no "
                "prediction: check the model's weights (a diverged training run?) and the data"
            )
        num_classes = logits.shape[1]
        _check_targets(targets, num_classes)
        self.data = data
        self.classes = _class_names(classes, num_classes)
        self.targets = targets
        self.probabilities = torch.softmax(logits, dim=1)
        self.predictions = logits.argmax(dim=1)
        # cross entropy of log-probabilities equals NLL: right for either kind of output
        self.losses = nn.functional.cross_entropy(logits, targets, reduction="none")
        self.report = _report(logits, targets, self.losses, self.classes)
        self._predictor = predictor

    # ------------------------------------------------------------------ building
    @classmethod
    def from_predictor(
        cls, predictor: Predictor, data: Any, *, batch_size: int = 64
    ) -> Interpretation:
        """Evaluate ``predictor`` on every sample of ``data`` (``(image, label)`` samples).

        Images are taken as the data set returns them (model input, or raw images the
        predictor preprocesses); an in-memory data set is read in whole batches.

        Raises:
            DataError: if ``data`` is empty, a label is not a class of the model, or the
                model returns NaN or infinite outputs.
            ConfigurationError: if the class names do not fit the model's outputs.
        """
        batch_size = check_int("batch_size", batch_size, least=1)
        if not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
            raise ConfigurationError(
                f"data must be a data set of (image, label) samples, got {describe(data)}"
            )
        if not len(data):
            raise DataError("cannot interpret an empty data set: it has no sample")
        logits, targets = _evaluate(predictor, data, batch_size)
        classes = predictor.classes or getattr(data, "classes", None)
        return cls(data, logits, targets, classes=classes, predictor=predictor)

    @classmethod
    def from_trainer(cls, trainer: Trainer, data: Any, *, batch_size: int = 256) -> Interpretation:
        """Evaluate ``trainer.model`` as it is now on ``data`` (its device and precision).

        With [`EMA`][visionkit.callbacks.EMA] or [`SWA`][visionkit.callbacks.SWA], the
        model holds the raw training weights after ``fit``: copy the average in first
        (``ema.copy_to(trainer.model)``) to interpret it. The model's train/eval mode is
        restored afterwards.
        """
        model = trainer.model
        was_training = model.training
        predictor = Predictor(
            model,
            classes=trainer.classes or getattr(data, "classes", None),
            preprocess=trainer.preprocess,
            device=trainer.device,
            precision=trainer.precision,
        )
        try:
            return cls.from_predictor(predictor, data, batch_size=batch_size)
        finally:
            model.train(was_training)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self.targets.numel())

    def top_losses(
        self, k: int | None = None, *, largest: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(losses, indices)`` of the ``k`` highest losses (all samples for ``None``).

        Equal losses keep the data set's order; ``largest=False`` gives the lowest.
        """
        order = torch.sort(self.losses, descending=largest, stable=True).indices
        if k is not None:
            order = order[: check_int("k", k, least=1)]
        return self.losses[order], order

    def confusion_matrix(self) -> torch.Tensor:
        """Counts ``int64`` ``(num_classes, num_classes)``: row = actual, column = predicted."""
        return torch.tensor(self.report.confusion_matrix, dtype=torch.long)

    def most_confused(self, min_count: int = 1) -> list[tuple[str, str, int]]:
        """``(actual, predicted, count)`` of the mistakes made at least ``min_count`` times.

        Most frequent first; equal counts in class order (actual, then predicted).
        """
        min_count = check_int("min_count", min_count, least=1)
        matrix = self.report.confusion_matrix
        cells = [
            (self.classes[row], self.classes[col], count)
            for row, counts in enumerate(matrix)
            for col, count in enumerate(counts)
            if row != col and count >= min_count
        ]
        return sorted(cells, key=lambda cell: -cell[2])

    def image(self, index: int) -> np.ndarray:
        """Sample ``index`` as a picture ``H x W`` or ``H x W x C``, as it is shown in plots.

        The stored ``uint8`` image of an in-memory data set, the decoded file (shrunk to at
        most 256 pixels a side) of a data set of files, else the model input with the
        predictor's normalization undone.
        """
        index = check_int("index", index, least=0, most=len(self) - 1)
        data = self.data
        if isinstance(data, TensorImageDataset):
            return _array(data.images[index])
        paths = getattr(data, "paths", None)
        if isinstance(paths, Sequence) and len(paths) == len(self):
            image = load_image(paths[index])
            image = convert_mode(image, getattr(data, "mode", "RGB"), what=f"image {paths[index]}")
            image.thumbnail((_THUMBNAIL, _THUMBNAIL))
            return np.asarray(image)
        sample = data[index][0]
        if isinstance(sample, torch.Tensor) and sample.is_floating_point():
            predictor = self._predictor
            if predictor is None:
                return _array(sample.clamp(0, 1))
            return predictor.to_display(sample)
        return _array(sample)

    # ------------------------------------------------------------------ plots
    def plot_top_losses(
        self,
        k: int = 9,
        *,
        largest: bool = True,
        columns: int | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> Figure:
        """The ``k`` samples with the highest losses, as fastai's ``plot_top_losses``.

        Each image is titled ``prediction/actual / loss / probability``, the probability
        being that of the prediction (see
        [`plot_top_losses`][visionkit.plots.plot_top_losses]).
        """
        from visionkit.plots import plot_top_losses

        losses, indices = self.top_losses(k, largest=largest)
        predicted = self.predictions[indices]
        return plot_top_losses(
            [self.image(int(i)) for i in indices],
            [self.classes[int(p)] for p in predicted],
            [self.classes[int(t)] for t in self.targets[indices]],
            losses.tolist(),
            self.probabilities[indices, predicted].tolist(),
            columns=columns,
            path=path,
        )

    def plot_confusion_matrix(
        self, *, normalize: bool = False, path: str | os.PathLike[str] | None = None
    ) -> Figure:
        """The confusion matrix with class names (rows: actual, columns: predicted).

        Cells show counts, or with ``normalize=True`` the share of each actual class (rows
        sum to 1), as [`plot_confusion_matrix`][visionkit.plots.plot_confusion_matrix].
        """
        from visionkit.plots import plot_confusion_matrix

        return plot_confusion_matrix(self.report, normalize=normalize, path=path)

    def __repr__(self) -> str:
        return (
            f"Interpretation({len(self)} samples, {len(self.classes)} classes, "
            f"accuracy {self.report.accuracy:.4f})"
        )


def _evaluate(
    predictor: Predictor, data: Any, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's outputs and the labels of every sample of ``data``, batch by batch."""
    outputs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        if isinstance(data, TensorImageDataset):  # whole batches, exactly as data[i] reads
            images = data.normalize(data.images[start:stop])
            outputs.append(predictor.predict_logits(images, batch_size=batch_size))
            labels.append(data.targets[start:stop].cpu())
            continue
        samples = [data[i] for i in range(start, stop)]
        outputs.append(predictor.predict_logits([s[0] for s in samples], batch_size=batch_size))
        labels.append(torch.tensor([_label(s[1], start + i) for i, s in enumerate(samples)]))
    return torch.cat(outputs), torch.cat(labels)


def _label(value: Any, index: int) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(
            f"sample {index} has the label {describe(value)}: expected an integer class index"
        )
    return int(value)


def _check_targets(targets: torch.Tensor, num_classes: int) -> None:
    bad = ((targets < 0) | (targets >= num_classes)).nonzero().flatten()
    if bad.numel():
        first = int(bad[0])
        raise DataError(
            f"sample {first} has the label {int(targets[first])}, but the model has "
            f"{num_classes} classes (labels 0..{num_classes - 1}): interpret the model with "
            "data of the classes it was trained on"
        )


def _class_names(classes: Sequence[str] | None, num_classes: int) -> list[str]:
    if classes is None:
        return [str(i) for i in range(num_classes)]
    names = [str(name) for name in classes]
    if len(names) != num_classes:
        raise ConfigurationError(
            f"the model outputs {num_classes} classes but there are {len(names)} class "
            "names: interpret it with the data (or the checkpoint) it was trained on"
        )
    return names


def _report(
    logits: torch.Tensor, targets: torch.Tensor, losses: torch.Tensor, classes: list[str]
) -> EvaluationReport:
    from visionkit.training.metrics import ClassificationMetrics

    metrics = ClassificationMetrics(logits.shape[1], top_k=())
    metrics.update(logits, targets, loss_sum=losses.double().sum())
    return metrics.report(classes)


def _array(image: Any) -> np.ndarray:
    """A ``C x H x W`` tensor or an array / PIL image as ``H x W (x C)`` for ``imshow``."""
    if isinstance(image, Image.Image):
        return np.asarray(image)
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.dim() == 3:
            tensor = tensor.permute(1, 2, 0)
        image = tensor.numpy()
    array = np.asarray(image)
    return array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array
