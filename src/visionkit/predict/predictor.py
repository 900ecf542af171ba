"""``Predictor``: class names and probabilities for raw images, from a checkpoint alone."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch
from PIL import Image
from torch import nn
from typing_extensions import Unpack

from visionkit._checks import check_int, describe
from visionkit._device import resolve_device
from visionkit._images import ImageInput, Preprocess, image_files
from visionkit._seed import get_rng_state, set_rng_state
from visionkit.data._datasets import check_classes
from visionkit.exceptions import CheckpointError, ConfigurationError, DataError, VisionKitError
from visionkit.predict._export import ExportOptions, export_model, exported_parts
from visionkit.predict.checkpoint import WeightsChoice, load_checkpoint, load_weights

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch.utils.data import Dataset

    from visionkit.training.metrics import EvaluationReport

__all__ = ["ImageInput", "Prediction", "Predictor"]

_PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


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
            model = _rebuild(checkpoint, path)
        load_weights(model, checkpoint, source=str(path), weights=weights)
        predictor = cls(
            model,
            classes=_classes(checkpoint, path),
            preprocess=_preprocess(checkpoint, path),
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
                outputs = self._forward(torch.zeros(1, *shape), raw=False)
            except (RuntimeError, ValueError, TypeError):
                return None  # a model that cannot run is reported by predict, with the input
            return int(outputs.shape[1]) if outputs.dim() == 2 else None
        num_classes = ((checkpoint.get("model") or {}).get("kwargs") or {}).get("num_classes")
        return num_classes if type(num_classes) is int else None

    # ------------------------------------------------------------------ prediction
    @overload
    def predict(
        self, inputs: list[Any] | tuple[Any, ...], *, top_k: int = ..., batch_size: int = ...
    ) -> list[Prediction]: ...

    @overload
    def predict(
        self, inputs: Image.Image, *, top_k: int = ..., batch_size: int = ...
    ) -> Prediction: ...

    @overload
    def predict(
        self, inputs: ImageInput, *, top_k: int = ..., batch_size: int = ...
    ) -> Prediction | list[Prediction]: ...

    def predict(
        self, inputs: Any, *, top_k: int = 1, batch_size: int = 64
    ) -> Prediction | list[Prediction]:
        """Predict one image (a [`Prediction`][visionkit.Prediction]) or many (a list, in order).

        Args:
            inputs: One image, a folder, a list of images, or a batch tensor.
            top_k: How many of the most probable classes to return per image
                (``1..num_classes``).
            batch_size: Images per forward pass.

        Raises:
            DataError: if an input is not an image (a path, PIL image, array or tensor of
                2 to 4 dimensions), has no pixels, holds NaN or infinite model input, or
                the model returns NaN or infinite outputs; or if there is no image at all.
            ConfigurationError: if ``top_k`` or ``batch_size`` is not an integer in range,
                or the model has another number of outputs than there are class names.
        """
        top_k = check_int("top_k", top_k, least=1)
        items, sources = self._expand(inputs)
        probabilities = torch.softmax(self._logits(items, batch_size), dim=1)
        if not bool(torch.isfinite(probabilities).all()):
            bad = int((~torch.isfinite(probabilities)).any(dim=1).nonzero()[0, 0])
            raise DataError(
                f"the model returned NaN or infinite outputs for input {bad}"
                f"{f' ({sources[bad]})' if sources[bad] else ''}, so it has no prediction: "
                "check the model's weights (a diverged training run?) and the input"
            )
        results = self._to_predictions(probabilities, top_k, sources)
        return results[0] if _is_single(inputs) else results

    def predict_proba(self, inputs: Any, *, batch_size: int = 64) -> torch.Tensor:
        """Class probabilities, shape ``(N, num_classes)``, on the CPU."""
        return torch.softmax(self.predict_logits(inputs, batch_size=batch_size), dim=1)

    def predict_logits(self, inputs: Any, *, batch_size: int = 64) -> torch.Tensor:
        """The model's raw outputs as ``float32``, shape ``(N, num_classes)``, on the CPU."""
        return self._logits(self._expand(inputs)[0], batch_size)

    def evaluate(
        self, data: Dataset[Any], *, top_k: Sequence[int] = (5,), batch_size: int = 64
    ) -> EvaluationReport:
        """Loss, overall, top-k and per-class accuracy and the confusion matrix on ``data``.

        The loss is the cross entropy of the outputs, which is also right for models
        that output log-probabilities (``NLLLoss``).

        Args:
            data: A data set of ``(image, label)`` samples; images may be raw or model input.
            top_k: The ``k`` values to report top-k accuracy for (skipped when ``k`` is not
                below the number of classes).
            batch_size: Images per forward pass.
        """
        from visionkit.training.metrics import ClassificationMetrics

        metrics: ClassificationMetrics | None = None
        for start in range(0, len(data), batch_size):  # type: ignore[arg-type]
            stop = min(start + batch_size, len(data))  # type: ignore[arg-type]
            samples = [data[i] for i in range(start, stop)]
            logits = self._logits([s[0] for s in samples], batch_size)
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
        tensor, raw = self._convert(item)
        return self.preprocess.normalize(tensor) if raw else tensor

    def export(self, path: str | os.PathLike[str], **options: Unpack[ExportOptions]) -> Path:
        """Export the model with its class names and preprocessing: ``.onnx``, ``.pt2``, ...

        The options are those of [`visionkit.predict.export`][visionkit.predict.export]: ``format``,
        ``example_input``, ``dynamic_batch`` and ``check``.
        """
        return export_model(
            self.model, path, classes=self.classes, preprocess=self.preprocess, **options
        )

    def _logits(self, items: Sequence[Any], batch_size: int) -> torch.Tensor:
        batch_size = check_int("batch_size", batch_size, least=1)
        outputs = [self._forward(batch, raw) for batch, raw in self._batches(items, batch_size)]
        if not outputs:
            raise DataError("no image to predict: the input list or folder is empty")
        return torch.cat(outputs)

    def _forward(self, batch: torch.Tensor, raw: bool) -> torch.Tensor:
        with torch.inference_mode():
            batch = batch.to(self.device, non_blocking=True)
            if raw:
                batch = self.preprocess.normalize(batch)
            if self._autocast_dtype is not None and self.device.type == "cuda":
                with torch.autocast("cuda", dtype=self._autocast_dtype):
                    return self.model(batch).float().cpu()  # type: ignore[no-any-return]
            return self.model(batch).float().cpu()  # type: ignore[no-any-return]

    def _batches(
        self, items: Sequence[Any], batch_size: int
    ) -> Iterator[tuple[torch.Tensor, bool]]:
        """Stack consecutive inputs of equal shape and kind (raw ``uint8`` or ready float)."""
        pending: list[torch.Tensor] = []
        pending_raw = False
        for item in items:
            tensor, raw = self._convert(item)
            if pending and (raw != pending_raw or pending[0].shape != tensor.shape[-3:]):
                yield torch.stack(pending), pending_raw
                pending = []
            if tensor.dim() == 4:
                for start in range(0, tensor.shape[0], batch_size):
                    yield tensor[start : start + batch_size], raw
                continue
            pending.append(tensor)
            pending_raw = raw
            if len(pending) == batch_size:
                yield torch.stack(pending), raw
                pending = []
        if pending:
            yield torch.stack(pending), pending_raw

    def _convert(self, item: Any) -> tuple[torch.Tensor, bool]:
        """``(uint8 image, True)`` for a raw image, ``(float input, False)`` for model input."""
        _check_item(item)
        if isinstance(item, np.ndarray) and item.dtype.kind == "f":
            item = torch.from_numpy(np.ascontiguousarray(item))
        if isinstance(item, torch.Tensor) and item.is_floating_point():
            return self._check_input(item.float()), False
        return self.preprocess.to_uint8(item), True

    def _check_input(self, tensor: torch.Tensor) -> torch.Tensor:
        expected = self.preprocess.input_shape
        if tensor.dim() not in (3, 4) or (expected and tuple(tensor.shape[-3:]) != expected):
            raise DataError(
                f"expected preprocessed model input of shape {expected or 'C x H x W'} (from "
                f"the checkpoint's preprocessing), got a float tensor of shape "
                f"{tuple(tensor.shape)}: pass raw images (a path, PIL image or uint8 array) "
                "to have them preprocessed"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise DataError(
                f"the model input of shape {tuple(tensor.shape)} holds NaN or infinite values, "
                "so no prediction would mean anything: find where they come from "
                "(torch.isfinite) or pass the raw image instead"
            )
        return tensor

    def _expand(self, inputs: Any) -> tuple[list[Any], list[str | None]]:
        if _is_single(inputs):
            return [inputs], [_source(inputs)]
        if isinstance(inputs, (torch.Tensor, np.ndarray)):  # a batch
            if inputs.ndim != 4:
                raise DataError(
                    f"expected one image (H x W (x C) array, C x H x W tensor) or a batch of "
                    f"4 dimensions, got an array of shape {tuple(inputs.shape)}"
                )
            return list(inputs), [None] * len(inputs)
        if not _is_folder(inputs) and (
            isinstance(inputs, (str, bytes, os.PathLike, Mapping))
            or not isinstance(inputs, Iterable)
        ):
            _check_item(inputs)  # a missing file, or not an image at all: a clear error
        items: list[Any] = []
        for item in [inputs] if _is_folder(inputs) else list(inputs):
            if _is_folder(item):
                items += image_files(Path(item))
            elif isinstance(item, (torch.Tensor, np.ndarray)) and item.ndim == 4:
                items += list(item)
            else:
                items.append(item)
        return items, [_source(i) for i in items]

    def _to_predictions(
        self, probabilities: torch.Tensor, top_k: int, sources: Sequence[str | None]
    ) -> list[Prediction]:
        num_classes = probabilities.shape[1]
        if not 1 <= top_k <= num_classes:
            raise ConfigurationError(f"top_k must be in 1..{num_classes}, got {top_k}")
        names = self._names(num_classes)
        # equal probabilities go to the lower index, as argmax and the top-k accuracies rank
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
    labels = tuple(names[i] for i in indices)
    return Prediction(
        index=indices[0],
        name=labels[0],
        probability=values[0],
        indices=tuple(indices),
        names=labels,
        probabilities=tuple(values),
        source=source,
    )


def _with_source(prediction: Prediction, source: str) -> Prediction:
    from dataclasses import replace

    return replace(prediction, source=source)


def _rebuild(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> nn.Module:
    from visionkit.models import create_model

    info = checkpoint["model"]
    name = info.get("name")
    if not name:
        raise CheckpointError(
            f"{path} was saved from a {info.get('class', 'model')} not built with "
            "visionkit.models.create_model, so it cannot be rebuilt from the file alone: "
            "pass model=YourModel(...) to Predictor.from_checkpoint"
        )
    kwargs = dict(info.get("kwargs") or {})
    kwargs.pop("weights", None)  # pretrained weights are superseded by the checkpoint's
    rng = get_rng_state()  # building a model draws random initial weights
    try:
        return create_model(str(name), **kwargs)
    except VisionKitError as error:
        raise CheckpointError(
            f"cannot rebuild the model of {path} ({name!r} with {kwargs}): {error}. If it is "
            "your own registered model, import the module that registers it first, or pass "
            "model=... to Predictor.from_checkpoint"
        ) from None
    finally:
        set_rng_state(rng)


def _classes(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> list[str] | None:
    classes = checkpoint.get("classes")
    if classes is not None and not (
        isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    ):
        raise CheckpointError(f"{path}: 'classes' must be a list of strings, got {classes!r:.80}")
    return classes


def _preprocess(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> Preprocess | None:
    data = checkpoint.get("preprocess")
    if not data:
        return None
    try:
        return Preprocess.from_dict(data)
    except (VisionKitError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"{path}: invalid 'preprocess' entry {data!r:.120}: {error}"
        ) from None


def _is_single(inputs: Any) -> bool:
    if isinstance(inputs, torch.Tensor):
        return inputs.dim() == 3 or (inputs.dim() == 2 and not inputs.is_floating_point())
    if isinstance(inputs, np.ndarray):
        return inputs.ndim in (2, 3)
    if isinstance(inputs, (str, os.PathLike)):
        return not _is_folder(inputs)
    return isinstance(inputs, Image.Image)


def _check_item(item: Any) -> None:
    """Refuse what is not one image (or a batch) before it reaches the image readers."""
    if isinstance(item, (str, os.PathLike, Image.Image)):
        if isinstance(item, Image.Image) and min(item.size) < 1:
            raise DataError(f"the {item.mode} image of size {item.size} has no pixels")
        return
    if isinstance(item, Mapping) or not isinstance(item, (np.ndarray, torch.Tensor)):
        raise DataError(
            f"cannot predict {describe(item)}: pass a path, a PIL image, a NumPy array or a "
            "tensor (or a list of them)"
        )
    if not 2 <= item.ndim <= 4:
        raise DataError(
            f"expected an image of 2 or 3 dimensions (or a batch of 4), got an array of "
            f"shape {tuple(item.shape)}"
        )
    if 0 in item.shape:
        raise DataError(
            f"the image of shape {tuple(item.shape)} has no pixels: every dimension must be "
            "at least 1"
        )


def _is_folder(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike)) and Path(item).is_dir()


def _source(item: Any) -> str | None:
    return str(item) if isinstance(item, (str, os.PathLike)) else None
