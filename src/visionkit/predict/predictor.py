"""``Predictor``: class names and probabilities for raw images, from a checkpoint alone."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import functional as TF

from visionkit._device import resolve_device
from visionkit._seed import get_rng_state, set_rng_state
from visionkit.exceptions import CheckpointError, ConfigurationError, DataError
from visionkit.predict.checkpoint import Preprocess, load_checkpoint, load_weights

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch.utils.data import Dataset

__all__ = ["IMAGE_EXTENSIONS", "ImageInput", "Prediction", "Predictor"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
ImageInput = Union[str, os.PathLike[str], Image.Image, np.ndarray, torch.Tensor]


@dataclass(frozen=True)
class Prediction:
    """The prediction for one image.

    Attributes:
        index: Predicted class index (the most probable).
        name: Its class name.
        probability: Its probability.
        indices: The ``top_k`` most probable class indices, most probable first.
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
    ``torch.inference_mode`` on the chosen device.

    Inputs are read as follows:

    * a path to an image file, a PIL image, or a ``uint8`` NumPy array (``H x W`` or
      ``H x W x C``) or ``uint8`` tensor (``C x H x W``) is a raw image and gets the
      checkpoint's preprocessing;
    * a floating-point tensor (``C x H x W`` or ``N x C x H x W``) is already model input,
      as the visionkit data sets return it;
    * a folder means every image file in it (recursively, sorted); a list mixes any of these.

    Args:
        model: The trained model.
        classes: Class names, index = label.
        preprocess: How raw images become model input.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ... (see :func:`visionkit.resolve_device`).
        precision: ``"32"``, or ``"bf16"`` / ``"16"`` to run under autocast on CUDA.
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
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.classes = list(classes) if classes is not None else None
        self.preprocess = preprocess
        self.precision = precision
        self._autocast_dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(precision)
        if precision not in ("32", "bf16", "16"):
            raise ConfigurationError(f"precision must be '32', 'bf16' or '16', got {precision!r}")

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device = "auto",
        model: nn.Module | None = None,
        precision: str = "32",
    ) -> Predictor:
        """Rebuild the model saved in a visionkit checkpoint and wrap it in a ``Predictor``.

        The model is rebuilt from its registry name and arguments in the checkpoint; pass
        ``model`` for a model that was not built with ``create_model``. Loading leaves the
        caller's random number generators exactly as they were.
        """
        checkpoint = load_checkpoint(path)
        if model is None:
            model = _rebuild(checkpoint, path)
        load_weights(model, checkpoint, source=str(path))
        preprocess = checkpoint.get("preprocess")
        return cls(
            model,
            classes=checkpoint.get("classes"),
            preprocess=Preprocess.from_dict(preprocess) if preprocess else None,
            device=device,
            precision=precision,
        )

    # ------------------------------------------------------------------ prediction
    def predict(
        self, inputs: ImageInput | Sequence[ImageInput], *, top_k: int = 1, batch_size: int = 64
    ) -> Prediction | list[Prediction]:
        """Predict the class of one image (returns a :class:`Prediction`) or of many (a list).

        Args:
            inputs: One image, a folder, a list of images, or a batch tensor.
            top_k: How many of the most probable classes to return per image.
            batch_size: Images per forward pass.
        """
        single = _is_single(inputs)
        items, sources = self._expand(inputs)
        probabilities = self.predict_proba(items, batch_size=batch_size)
        results = self._to_predictions(probabilities, top_k, sources)
        return results[0] if single else results

    def predict_proba(
        self, inputs: ImageInput | Sequence[ImageInput], *, batch_size: int = 64
    ) -> torch.Tensor:
        """Class probabilities, shape ``(N, num_classes)``, on the CPU."""
        return torch.softmax(self.predict_logits(inputs, batch_size=batch_size).float(), dim=1)

    def predict_logits(
        self, inputs: ImageInput | Sequence[ImageInput], *, batch_size: int = 64
    ) -> torch.Tensor:
        """The model's raw outputs, shape ``(N, num_classes)``, on the CPU."""
        items, _ = self._expand(inputs) if not isinstance(inputs, list) else (inputs, None)
        outputs = [self._forward(batch) for batch in self._batches(items, batch_size)]
        if not outputs:
            raise DataError("no image to predict: the input list or folder is empty")
        return torch.cat(outputs)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            batch = batch.to(self.device, non_blocking=True)
            if self._autocast_dtype is not None and self.device.type == "cuda":
                with torch.autocast("cuda", dtype=self._autocast_dtype):
                    return self.model(batch).float().cpu()
            return self.model(batch).cpu()  # type: ignore[no-any-return]

    def _batches(self, items: Sequence[Any], batch_size: int) -> Iterable[torch.Tensor]:
        pending: list[torch.Tensor] = []
        for item in items:
            tensor = self.to_input(item)
            if tensor.dim() == 4:
                yield from tensor.split(batch_size)
                continue
            if pending and pending[0].shape != tensor.shape:
                yield torch.stack(pending)
                pending = []
            pending.append(tensor)
            if len(pending) == batch_size:
                yield torch.stack(pending)
                pending = []
        if pending:
            yield torch.stack(pending)

    def to_input(self, item: ImageInput) -> torch.Tensor:
        """Turn one raw image (or an already preprocessed tensor) into model input."""
        if isinstance(item, torch.Tensor) and item.is_floating_point():
            return item
        if isinstance(item, np.ndarray) and item.dtype != np.uint8:
            return torch.from_numpy(np.ascontiguousarray(item)).float()
        image = _load_image(item)
        return self._preprocess_image(image)

    def _preprocess_image(self, image: Image.Image) -> torch.Tensor:
        spec = self.preprocess or Preprocess()
        image = image.convert(spec.mode)
        tensor = TF.to_image(image)
        if spec.resize is not None:
            tensor = TF.resize(tensor, [spec.resize], antialias=True)
        if spec.center_crop is not None:
            tensor = TF.center_crop(tensor, [spec.center_crop, spec.center_crop])
        elif spec.resize is None and spec.size is not None and tuple(tensor.shape[1:]) != spec.size:
            tensor = TF.resize(tensor, list(spec.size), antialias=True)
        result = TF.to_dtype(tensor, torch.float32, scale=True)
        if spec.mean is not None and spec.std is not None:
            result = TF.normalize(result, list(spec.mean), list(spec.std))
        return result.as_subclass(torch.Tensor)

    def to_display(self, tensor: torch.Tensor) -> np.ndarray:
        """Undo the normalization of one model input ``C x H x W`` for plotting (``H x W x C``)."""
        spec = self.preprocess
        image = tensor.detach().float().cpu()
        if spec is not None and spec.mean is not None and spec.std is not None:
            mean = torch.tensor(spec.mean).view(-1, 1, 1)
            std = torch.tensor(spec.std).view(-1, 1, 1)
            image = image * std + mean
        array: np.ndarray = image.clamp(0, 1).permute(1, 2, 0).numpy()
        return array[..., 0] if array.shape[2] == 1 else array

    def _expand(self, inputs: Any) -> tuple[list[Any], list[str | None]]:
        if _is_single(inputs) and not _is_folder(inputs):
            return [inputs], [_source(inputs)]
        if isinstance(inputs, torch.Tensor):  # a batch tensor
            return [inputs], [None] * inputs.shape[0]
        items: list[Any] = []
        for item in [inputs] if _is_folder(inputs) else list(inputs):
            if _is_folder(item):
                files = _image_files(Path(item))
                items += files
            elif isinstance(item, torch.Tensor) and item.dim() == 4:
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
        names = self.classes if self.classes and len(self.classes) == num_classes else None
        values, indices = probabilities.topk(top_k, dim=1)
        results = []
        for row_values, row_indices, source in zip(values.tolist(), indices.tolist(), sources, strict=True):
            labels = tuple(names[i] if names else str(i) for i in row_indices)
            results.append(
                Prediction(
                    index=row_indices[0],
                    name=labels[0],
                    probability=row_values[0],
                    indices=tuple(row_indices),
                    names=labels,
                    probabilities=tuple(row_values),
                    source=source,
                )
            )
        return results

    # ------------------------------------------------------------------ plots
    def plot_predictions(
        self, dataset: Dataset[Any], *, n: int = 20, columns: int = 10, path: str | None = None
    ) -> Figure:
        """Grid of the first ``n`` images of ``dataset`` titled ``pred (true)``, green/red."""
        from visionkit.predict.plots import plot_prediction_grid

        samples = [dataset[i] for i in range(min(n, len(dataset)))]  # type: ignore[arg-type]
        images = torch.stack([s[0] for s in samples])
        predictions = self.predict(list(images))
        assert isinstance(predictions, list)
        return plot_prediction_grid(
            [self.to_display(img) for img in images],
            [p.name for p in predictions],
            [self._name(int(s[1])) for s in samples],
            columns=columns,
            path=path,
        )

    def plot_topk(self, image: ImageInput, *, top_k: int = 5, path: str | None = None) -> Figure:
        """The image beside a bar chart of its ``top_k`` class probabilities (seed 000)."""
        from visionkit.predict.plots import plot_topk

        prediction = self.predict(image, top_k=top_k)
        assert isinstance(prediction, Prediction)
        return plot_topk(self.to_display(self.to_input(image)), prediction, path=path)

    def _name(self, index: int) -> str:
        return self.classes[index] if self.classes and index < len(self.classes) else str(index)

    def __repr__(self) -> str:
        n = len(self.classes) if self.classes else "?"
        return f"Predictor({type(self.model).__name__}, {n} classes, device={self.device})"


def _rebuild(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> nn.Module:
    from visionkit.models import create_model

    info = checkpoint.get("model") or {}
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
        return create_model(name, **kwargs)
    finally:
        set_rng_state(rng)


def _is_single(inputs: Any) -> bool:
    if isinstance(inputs, torch.Tensor):
        return inputs.dim() == 3 or (inputs.dim() == 2 and not inputs.is_floating_point())
    if isinstance(inputs, np.ndarray):
        return True
    if isinstance(inputs, (str, os.PathLike)):
        return not _is_folder(inputs)
    return isinstance(inputs, Image.Image)


def _is_folder(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike)) and Path(item).is_dir()


def _source(item: Any) -> str | None:
    return str(item) if isinstance(item, (str, os.PathLike)) else None


def _image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(
            f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found in folder {folder}"
        )
    return files


def _load_image(item: ImageInput) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, np.ndarray):
        return Image.fromarray(item)
    if isinstance(item, torch.Tensor):
        array = item.cpu().numpy()
        return Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    path = Path(item)
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except (OSError, Image.DecompressionBombError, SyntaxError) as error:
        raise DataError(f"cannot read image {path}: {error}") from error
