"""``Predictor``: class names and probabilities for raw images, from a checkpoint alone."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch
from PIL import Image
from torch import nn
from typing_extensions import Unpack

from visionkit._checks import check_bool, check_int, describe
from visionkit._device import resolve_device
from visionkit._images import ImageInput, Preprocess
from visionkit.data._datasets import check_classes
from visionkit.exceptions import CheckpointError, ConfigurationError, DataError
from visionkit.predict._export import ExportOptions, export_model, exported_parts
from visionkit.predict._inputs import batches, convert, expand, is_single
from visionkit.predict._rebuild import checkpoint_classes, checkpoint_preprocess, rebuild_model
from visionkit.predict.checkpoint import WeightsChoice, load_checkpoint, load_weights

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch.utils.data import Dataset

    from visionkit.training.metrics import EvaluationReport

__all__ = ["ImageInput", "Prediction", "Predictor"]

_PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
_new = object.__new__


@dataclass(frozen=True)
class Prediction:
    """The prediction for one image.

    Attributes:
        index: Predicted class index (the most probable).
        name: Its class name.
        probability: Its probability.
        indices: The ``top_k`` most probable class indices, most probable first (equal
            probabilities in index order, so ``indices[0]`` is the ``argmax``).
        names: Their class names.
        probabilities: Their probabilities.
        source: The file the image came from, when it came from a file.
    """

    index: int
    name: str
    probability: float
    indices: tuple[int, ...]
    names: tuple[str, ...]
    probabilities: tuple[float, ...]
    source: str | None = None

    def __str__(self) -> str:
        top = ", ".join(f"{n} {p:.1%}" for n, p in zip(self.names, self.probabilities, strict=True))
        where = f"{self.source}: " if self.source else ""
        return f"{where}{top}"


class Predictor:
    """Run a trained classifier on raw images: files, folders, PIL images, arrays, tensors.

    Preprocessing comes from the checkpoint (the evaluation transform of the data the model
    was trained on), so you pass images as they are. Inference runs in batches under
    ``torch.inference_mode`` on the chosen device; images are decoded, resized and cropped
    one by one, then scaled and normalized as a batch on the device.

    Inputs are read as follows:

    * a path to an image file, a PIL image, or a ``uint8`` NumPy array (``H x W`` or
      ``H x W x C``) or ``uint8`` tensor (``C x H x W``) is a raw image and gets the
      checkpoint's preprocessing;
    * a floating-point tensor or array (``C x H x W`` or ``N x C x H x W``) is already model
      input, as the visionkit data sets return it;
    * a folder means every image file in it (recursively, sorted); a list mixes any of these.

    Args:
        model: The trained model.
        classes: Class names, index = label.
        preprocess: How raw images become model input.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ... (see
            [`resolve_device`][visionkit.resolve_device]).
        precision: ``"32"``, or ``"bf16"`` / ``"16"`` to run under autocast on CUDA (ignored
            on other devices).

    Examples:
        >>> from visionkit.models import create_model
        >>> model = create_model("mlp", in_features=4, hidden=[], num_classes=2)
        >>> predictor = Predictor(model, classes=["cat", "dog"], device="cpu",
        ...                       preprocess=Preprocess(mode="L", size=(2, 2)))
        >>> predictor.predict(np.zeros((2, 2), dtype=np.uint8)).name in ("cat", "dog")
        True
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        classes: Sequence[str] | None = None,
        preprocess: Preprocess | None = None,
        device: str | torch.device = "auto",
        precision: str = "32",
    ) -> None:
        if not isinstance(precision, str) or precision not in _PRECISIONS:
            raise ConfigurationError(f"precision must be '32', 'bf16' or '16', got {precision!r}")
        if not isinstance(model, nn.Module):
            raise ConfigurationError(
                f"model must be a torch.nn.Module, got {describe(model)}; to load a file use "
                "Predictor.from_checkpoint(path)"
            )
        if preprocess is not None and not isinstance(preprocess, Preprocess):
            raise ConfigurationError(
                f"preprocess must be a visionkit.predict.Preprocess or None, got "
                f"{describe(preprocess)}"
            )
        self.classes = (
            check_classes(classes, error=ConfigurationError) if classes is not None else None
        )
        if not isinstance(device, (str, torch.device)):
            raise ConfigurationError(
                f"device must be 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device, got "
                f"{describe(device)}"
            )
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess or Preprocess()
        self.precision = precision
        self._autocast_dtype = _PRECISIONS[precision]

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "auto",
        *,
        model: nn.Module | None = None,
        precision: str = "32",
        weights: WeightsChoice = "averaged",
    ) -> Predictor:
        """Rebuild the model saved in a visionkit checkpoint and wrap it in a ``Predictor``.

        The model is rebuilt from its registry name and arguments in the checkpoint; pass
        ``model`` for a model that was not built with ``create_model``. The file is read
        with ``torch.load(weights_only=True)``, so it cannot run code. Loading leaves the
        caller's random number generators exactly as they were.

        A checkpoint of a run with [`EMA`][visionkit.callbacks.EMA] or
        [`SWA`][visionkit.callbacks.SWA] holds the averaged weights beside the raw training
        ones: they are loaded unless ``weights="raw"``. Other checkpoints have one set of
        weights, loaded either way.

        Raises:
            CheckpointError: if the file is missing, corrupt, unsafe, from a newer
                visionkit, holds weights of another model than ``model``, or stores
                another number of class names than the model has outputs.
        """
        checkpoint = load_checkpoint(path)
        if model is None:
            model = rebuild_model(checkpoint, path)
        load_weights(model, checkpoint, source=str(path), weights=weights)
        predictor = cls(
            model,
            classes=checkpoint_classes(checkpoint, path),
            preprocess=checkpoint_preprocess(checkpoint, path),
            device=device,
            precision=precision,
        )
        predictor._check_class_count(checkpoint, path)
        return predictor

    @classmethod
    def from_exported(
        cls, path: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> Predictor:
        """A ``Predictor`` over an exported file, with the names and preprocessing it holds.

        The file is one that [`export`][visionkit.Predictor.export] wrote. An ONNX file runs
        in ONNX Runtime on the CPU (the ``onnx`` extra), and its predictions can be compared
        with the checkpoint's ([`check_onnx_parity`][visionkit.predict.check_onnx_parity]).
        """
        model, classes, preprocess = exported_parts(path)
        return cls(model, classes=classes, preprocess=preprocess, device=device)

    def _check_class_count(self, checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> None:
        """Refuse class names that cannot name the model's outputs, naming the file."""
        outputs = self._num_outputs(checkpoint)
        if self.classes is None or outputs is None or len(self.classes) == outputs:
            return
        raise CheckpointError(
            f"checkpoint {path} stores {len(self.classes)} class names but its model has "
            f"{outputs} outputs, so its predictions cannot be named: store {outputs} names, "
            "in label order (checkpoint = load_checkpoint(path); checkpoint['classes'] = "
            "names; save_checkpoint(checkpoint, path)), or train with data whose classes "
            "match the model's num_classes"
        )

    def _num_outputs(self, checkpoint: dict[str, Any]) -> int | None:
        """The model's number of outputs, or ``None`` when it cannot be told.

        One forward pass of a blank input when the preprocessing fixes the input size (true
        for any model), else the ``num_classes`` the model was built with.
        """
        shape = self.preprocess.input_shape
        if shape is not None:
            try:
                with torch.inference_mode():
                    outputs = self._forward(torch.zeros(1, *shape), raw=False)
            except (RuntimeError, ValueError, TypeError):
                return None  # a model that cannot run is reported by predict, with the input
            return int(outputs.shape[1]) if outputs.dim() == 2 else None
        num_classes = ((checkpoint.get("model") or {}).get("kwargs") or {}).get("num_classes")
        return num_classes if type(num_classes) is int else None

    # ------------------------------------------------------------------ prediction
    @overload
    def predict(
        self,
        inputs: list[Any] | tuple[Any, ...],
        *,
        top_k: int = ...,
        batch_size: int = ...,
        tta: bool = ...,
    ) -> list[Prediction]: ...

    @overload
    def predict(
        self, inputs: Image.Image, *, top_k: int = ..., batch_size: int = ..., tta: bool = ...
    ) -> Prediction: ...

    @overload
    def predict(
        self, inputs: ImageInput, *, top_k: int = ..., batch_size: int = ..., tta: bool = ...
    ) -> Prediction | list[Prediction]: ...

    def predict(
        self, inputs: Any, *, top_k: int = 1, batch_size: int = 64, tta: bool = False
    ) -> Prediction | list[Prediction]:
        """Predict one image (a [`Prediction`][visionkit.Prediction]) or many (a list, in order).

        Args:
            inputs: One image, a folder, a list of images, or a batch tensor.
            top_k: How many of the most probable classes to return per image
                (``1..num_classes``).
            batch_size: Images per forward pass.
            tta: Test-time augmentation: each image's probabilities are the mean of the
                softmax of the model's outputs for the image and for its mirror image (a
                horizontal flip), as in [`Trainer.test`][visionkit.Trainer.test]. Two
                forward passes per batch.

        Returns:
            One ``Prediction`` for one image, else a list of them, in input order.

        Raises:
            DataError: if an input is not an image (a path, PIL image, array or tensor of
                2 to 4 dimensions), has no pixels, holds NaN or infinite model input, or
                the model returns NaN or infinite outputs; or if there is no image at all.
            ConfigurationError: if ``top_k`` or ``batch_size`` is not an integer in range,
                ``tta`` is not a bool, or the model has another number of outputs than
                there are class names.

        Examples:
            >>> from visionkit.models import create_model
            >>> model = create_model("mlp", in_features=4, hidden=[], num_classes=2)
            >>> predictor = Predictor(model, classes=["cat", "dog"], device="cpu",
            ...                       preprocess=Preprocess(mode="L", size=(2, 2)))
            >>> images = [np.zeros((2, 2), dtype=np.uint8), np.eye(2, dtype=np.uint8) * 255]
            >>> [p.name in ("cat", "dog") for p in predictor.predict(images, tta=True)]
            [True, True]
        """
        top_k = check_int("top_k", top_k, least=1)
        items, sources = expand(inputs)
        probabilities = self._probabilities(items, batch_size, tta)
        if not bool(torch.isfinite(probabilities).all()):
            bad = int((~torch.isfinite(probabilities)).any(dim=1).nonzero()[0, 0])
            raise DataError(
                f"the model returned NaN or infinite outputs for input {bad}"
                f"{f' ({sources[bad]})' if sources[bad] else ''}, so it has no prediction: "
                "check the model's weights (a diverged training run?) and the input"
            )
        results = self._to_predictions(probabilities, top_k, sources)
        return results[0] if is_single(inputs) else results

    def predict_proba(
        self, inputs: Any, *, batch_size: int = 64, tta: bool = False
    ) -> torch.Tensor:
        """Class probabilities, shape ``(N, num_classes)``, on the CPU.

        Args:
            inputs: One image, a folder, a list of images, or a batch tensor.
            batch_size: Images per forward pass.
            tta: Average the probabilities of each image and its horizontal flip (see
                [`predict`][visionkit.Predictor.predict]).

        Returns:
            A ``float32`` tensor whose rows sum to 1, in input order.
        """
        return self._probabilities(expand(inputs)[0], batch_size, tta)

    def predict_logits(self, inputs: Any, *, batch_size: int = 64) -> torch.Tensor:
        """The model's raw outputs as ``float32``, shape ``(N, num_classes)``, on the CPU."""
        return self._logits(expand(inputs)[0], batch_size)

    def evaluate(
        self,
        data: Dataset[Any],
        *,
        top_k: Sequence[int] = (5,),
        batch_size: int = 64,
        tta: bool = False,
    ) -> EvaluationReport:
        """Loss, overall, top-k and per-class accuracy and the confusion matrix on ``data``.

        The loss is the cross entropy of the outputs, which is also right for models
        that output log-probabilities (``NLLLoss``).

        Args:
            data: A data set of ``(image, label)`` samples; images may be raw or model input.
            top_k: The ``k`` values to report top-k accuracy for (skipped when ``k`` is not
                below the number of classes).
            batch_size: Images per forward pass.
            tta: Score the probabilities averaged over each image and its horizontal flip
                (see [`predict`][visionkit.Predictor.predict]): the loss and every accuracy
                are those of the averaged probabilities, as in
                [`Trainer.test`][visionkit.Trainer.test].
        """
        from visionkit.training.metrics import ClassificationMetrics

        metrics: ClassificationMetrics | None = None
        for start in range(0, len(data), batch_size):  # type: ignore[arg-type]
            stop = min(start + batch_size, len(data))  # type: ignore[arg-type]
            samples = [data[i] for i in range(start, stop)]
            logits = self._logits([s[0] for s in samples], batch_size, tta)
            if metrics is None:
                metrics = ClassificationMetrics(logits.shape[1], top_k=top_k)
            targets = torch.tensor([int(s[1]) for s in samples])
            # cross entropy of log-probabilities equals NLL: right for either kind of output
            metrics.update(logits, targets, nn.functional.cross_entropy(logits, targets))
        if metrics is None:
            raise DataError("cannot evaluate on an empty data set")
        return metrics.report(self._names(metrics.num_classes))

    def to_input(self, item: ImageInput) -> torch.Tensor:
        """Turn one raw image (or an already preprocessed tensor) into model input."""
        tensor, raw = convert(item, self.preprocess)
        return self.preprocess.normalize(tensor) if raw else tensor

    def export(self, path: str | os.PathLike[str], **options: Unpack[ExportOptions]) -> Path:
        """Export the model with its class names and preprocessing: ``.onnx``, ``.pt2``, ...

        The options are those of [`visionkit.predict.export`][visionkit.predict.export]: ``format``,
        ``example_input``, ``dynamic_batch`` and ``check``.
        """
        return export_model(
            self.model, path, classes=self.classes, preprocess=self.preprocess, **options
        )

    def _probabilities(self, items: Sequence[Any], batch_size: int, tta: bool) -> torch.Tensor:
        """Softmax of the outputs, or with ``tta`` of their flip-averaged log-probabilities."""
        return torch.softmax(self._logits(items, batch_size, tta), dim=1)

    def _logits(self, items: Sequence[Any], batch_size: int, tta: bool = False) -> torch.Tensor:
        """The outputs for ``items``; with ``tta`` the log of the flip-averaged probabilities."""
        batch_size = check_int("batch_size", batch_size, least=1)
        tta = check_bool("tta", tta)
        with torch.inference_mode():
            outputs = [
                self._forward(batch, raw, tta)
                for batch, raw in batches(items, self.preprocess, batch_size)
            ]
        if not outputs:
            raise DataError("no image to predict: the input list or folder is empty")
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

    def _forward(self, batch: torch.Tensor, raw: bool, tta: bool = False) -> torch.Tensor:
        """The outputs for one batch as ``float32`` on the CPU (call under inference mode)."""
        if batch.device != self.device:
            batch = batch.to(self.device, non_blocking=True)
        if raw:
            batch = self.preprocess.normalize(batch)
        if self._autocast_dtype is not None and self.device.type == "cuda":
            with torch.autocast("cuda", dtype=self._autocast_dtype):
                outputs = self._run(batch, tta)
        else:
            outputs = self._run(batch, tta)
        if outputs.dtype is torch.float32 and outputs.device.type == "cpu":
            return outputs  # already what the caller gets: no copies, no calls
        return outputs.float().cpu()

    def _run(self, batch: torch.Tensor, tta: bool) -> torch.Tensor:
        if tta:  # the Trainer's test-time augmentation, so both give the same probabilities
            from visionkit.training._loop import flip_averaged

            return flip_averaged(self.model, batch)
        return self.model(batch)  # type: ignore[no-any-return]

    def _to_predictions(
        self, probabilities: torch.Tensor, top_k: int, sources: Sequence[str | None]
    ) -> list[Prediction]:
        num_classes = probabilities.shape[1]
        if not 1 <= top_k <= num_classes:
            raise ConfigurationError(f"top_k must be in 1..{num_classes}, got {top_k}")
        names = self._names(num_classes)
        # equal probabilities go to the lower index, as argmax and the top-k accuracies rank
        if top_k == 1:  # argmax returns the first of equal maxima: the stable sort's first
            best = probabilities.argmax(dim=1, keepdim=True)
            top = probabilities.gather(1, best)[:, 0].tolist()
            return _top_ones(top, best[:, 0].tolist(), names, sources)
        values, indices = probabilities.sort(dim=1, descending=True, stable=True)
        rows = zip(values[:, :top_k].tolist(), indices[:, :top_k].tolist(), sources, strict=True)
        return [_prediction(v, i, names, s) for v, i, s in rows]

    def _names(self, num_classes: int) -> list[str]:
        if self.classes is None:
            return [str(i) for i in range(num_classes)]
        if len(self.classes) != num_classes:
            raise ConfigurationError(
                f"the model outputs {num_classes} classes but the Predictor has "
                f"{len(self.classes)} class names: pass the classes the model was trained on "
                "(or classes=None to name them by index)"
            )
        return self.classes

    def _name(self, index: int) -> str:
        return self.classes[index] if self.classes and index < len(self.classes) else str(index)

    # ------------------------------------------------------------------ plots
    def plot_predictions(
        self,
        dataset: Dataset[Any],
        *,
        n: int = 20,
        columns: int = 10,
        path: str | os.PathLike[str] | None = None,
    ) -> Figure:
        """Grid of the first ``n`` images of ``dataset`` titled ``pred (true)``, green/red."""
        from visionkit.plots import plot_prediction_grid

        samples = [dataset[i] for i in range(min(n, len(dataset)))]  # type: ignore[arg-type]
        inputs = [self.to_input(s[0]) for s in samples]
        predictions = self.predict(inputs)
        return plot_prediction_grid(
            [self.to_display(x) for x in inputs],
            [p.name for p in predictions],
            [self._name(int(s[1])) for s in samples],
            columns=columns,
            path=path,
        )

    def plot_topk(
        self, image: ImageInput, *, top_k: int = 5, path: str | os.PathLike[str] | None = None
    ) -> Figure:
        """The image beside a bar chart of its ``top_k`` class probabilities (W5)."""
        from visionkit.plots import plot_topk

        model_input = self.to_input(image)
        prediction = self.predict([model_input], top_k=top_k)[0]
        if isinstance(image, (str, os.PathLike)):
            prediction = _with_source(prediction, str(image))
        return plot_topk(self.to_display(model_input), prediction, path=path)

    def to_display(self, tensor: torch.Tensor) -> np.ndarray:
        """Undo the normalization of one model input ``C x H x W`` for plotting (``H x W x C``)."""
        spec = self.preprocess
        image = tensor.detach().float().cpu()
        if spec.mean is not None and spec.std is not None:
            image = image * torch.tensor(spec.std).view(-1, 1, 1) + torch.tensor(spec.mean).view(
                -1, 1, 1
            )
        array: np.ndarray = image.clamp(0, 1).permute(1, 2, 0).numpy()
        return array[..., 0] if array.shape[2] == 1 else array

    def __repr__(self) -> str:
        n = len(self.classes) if self.classes else "?"
        return f"Predictor({type(self.model).__name__}, {n} classes, device={self.device})"


def _prediction(
    values: list[float], indices: list[int], names: Sequence[str], source: str | None
) -> Prediction:
    """``Prediction(...)``, the same object, without the seven ``__setattr__`` calls of a frozen
    dataclass's ``__init__`` (most of the time of building a prediction)."""
    prediction = _new(Prediction)
    fields = prediction.__dict__
    fields["index"] = indices[0]
    fields["name"] = names[indices[0]]
    fields["probability"] = values[0]
    fields["indices"] = tuple(indices)
    fields["names"] = tuple([names[i] for i in indices])
    fields["probabilities"] = tuple(values)
    fields["source"] = source
    return prediction


def _top_ones(
    values: list[float], indices: list[int], names: Sequence[str], sources: Sequence[str | None]
) -> list[Prediction]:
    """The top-1 predictions, built as `_prediction` builds them, in one loop.

    Each class's one-element ``indices`` and ``names`` tuples are shared by its predictions
    (tuples cannot change): fewer objects to allocate, and for the garbage collector to scan.
    """
    shared = [((index,), (name,)) for index, name in enumerate(names)]
    results = []
    for value, index, source in zip(values, indices, sources, strict=True):
        prediction = _new(Prediction)
        fields = prediction.__dict__
        fields["index"] = index
        fields["indices"], fields["names"] = shared[index]
        fields["name"] = names[index]
        fields["probability"] = value
        fields["probabilities"] = (value,)
        fields["source"] = source
        results.append(prediction)
    return results


def _with_source(prediction: Prediction, source: str) -> Prediction:
    from dataclasses import replace

    return replace(prediction, source=source)
