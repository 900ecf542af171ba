"""What the loop reads from the data: batches, labels, class names and preprocessing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from visionkit._device import move_to_device
from visionkit.data._datasets import TensorImageDataset
from visionkit.data._loaders import EpochLoader, make_loader
from visionkit.exceptions import ConfigurationError
from visionkit.predict.checkpoint import Preprocess

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = [
    "Data",
    "class_names",
    "check_class_names",
    "check_labels",
    "check_not_empty",
    "compute_loss",
    "describe_data",
    "eval_loader",
    "fit_loaders",
    "num_outputs",
    "soft_target_loss",
    "unpack",
]

Data = Dataset[Any] | DataLoader[Any]


def describe_data(trainer: Trainer, data: Data) -> None:
    """Read class names, preprocessing and the label range from ``data`` into ``trainer``.

    Class names and preprocessing come from the first data set that has them; the label
    range is that of the latest data set (every label, not one batch).
    """
    dataset = data.dataset if isinstance(data, DataLoader) else data
    classes = getattr(dataset, "classes", None)
    if trainer.classes is None and classes is not None:
        trainer.classes = [str(c) for c in classes]
    if trainer.preprocess is None:
        trainer.preprocess = _preprocess_of(dataset)
    targets = getattr(dataset, "targets", None)
    trainer._label_bounds = (
        (int(targets.min()), int(targets.max()))
        if isinstance(targets, torch.Tensor) and targets.numel()
        else None
    )


def class_names(classes: list[str] | None, num_classes: int) -> list[str]:
    """``classes`` when they match ``num_classes``, else ``"0"``, ``"1"``, ..."""
    if classes is not None and len(classes) == num_classes:
        return classes
    return [str(i) for i in range(num_classes)]


def check_not_empty(loader: Any, stage: str) -> None:
    """Refuse a data set that yields no batch, before any training step is spent.

    A loader without a length (an iterable data set) is checked when it runs; ``None``
    (no data of that kind) passes.
    """
    if loader is None:
        return
    try:
        size = len(loader)
    except TypeError:
        return
    if size == 0:
        raise ConfigurationError(
            f"the {stage} data is empty: expected at least one sample, found 0 batches; "
            f"check the folder, split fractions or filters that built it"
            + (", or pass val=None to train without validation" if stage == "validation" else "")
        )


def unpack(
    batch: Any, device: torch.device, *, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of ``batch`` on ``device``, in the memory format asked for."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ConfigurationError(
            f"expected each batch to be (images, labels), got {type(batch).__name__}"
            f"{f' of length {len(batch)}' if isinstance(batch, (tuple, list)) else ''}"
        )
    x, y = batch
    if x.device != device or y.device != device:
        x, y = move_to_device((x, y), device)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def compute_loss(loss_fn: Any, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``loss_fn(outputs, targets)``, with a shape error turned into a clear message.

    Soft targets ``(batch, num_classes)``, as [`MixUp`][visionkit.callbacks.MixUp] makes
    them, go through `soft_target_loss` for ``CrossEntropyLoss`` and ``NLLLoss``, and to
    any other loss as they are.
    """
    soft = targets.dim() == 2 and targets.is_floating_point()
    if soft and isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)):
        return soft_target_loss(loss_fn, outputs, targets)
    try:
        loss: torch.Tensor = loss_fn(outputs, targets)
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, IndexError) as error:
        if "CUDA" in str(error) or "device-side" in str(error):
            raise
        expected = (
            "the soft targets of a mixing callback are (batch, num_classes) class "
            "probabilities: use a loss that takes them, such as CrossEntropyLoss"
            if soft
            else "the labels must be (batch,) class indices"
        )
        raise ConfigurationError(
            f"the loss {type(loss_fn).__name__} failed on model outputs of shape "
            f"{tuple(outputs.shape)} and labels of shape {tuple(targets.shape)} "
            f"({str(error).splitlines()[0]}): the model must output (batch, num_classes) "
            f"scores and {expected}"
        ) from error
    return loss


def soft_target_loss(
    loss_fn: nn.CrossEntropyLoss | nn.NLLLoss, outputs: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """The cross-entropy of soft targets ``(batch, num_classes)`` with ``outputs``.

    ``CrossEntropyLoss`` takes class probabilities itself, with its ``weight``,
    ``reduction`` and ``label_smoothing``. ``NLLLoss`` does not: its loss is computed as
    ``CrossEntropyLoss`` with the same ``weight`` and ``reduction``, that is
    ``-(weight * targets * log_softmax(outputs)).sum(1)`` averaged over the batch (or
    summed). ``log_softmax`` gives log-probabilities back unchanged, so this is the
    ``NLLLoss`` of models that output them; with a ``weight`` the mean divides by the
    batch size, as ``CrossEntropyLoss`` does for probabilities, not by the labels' summed
    weights.

    Raises:
        ConfigurationError: if the targets do not have the outputs' shape, or the loss
            has an ``ignore_index``, which soft targets have no class index for.
    """
    if targets.shape != outputs.shape:
        raise ConfigurationError(
            f"the soft targets have shape {tuple(targets.shape)} but the model outputs "
            f"{tuple(outputs.shape)} scores: give the mixing callback num_classes="
            f"{outputs.shape[-1]}, the number of the model's outputs"
        )
    if loss_fn.ignore_index != -100:
        raise ConfigurationError(
            f"{type(loss_fn).__name__}(ignore_index={loss_fn.ignore_index}) cannot apply to "
            "soft targets, which have no class index to ignore: drop ignore_index, or leave "
            "those samples out of the training data"
        )
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        loss: torch.Tensor = loss_fn(outputs, targets)
        return loss
    return nn.functional.cross_entropy(
        outputs, targets, weight=loss_fn.weight, reduction=loss_fn.reduction
    )


def num_outputs(outputs: torch.Tensor) -> int:
    """The number of classes of ``(batch, num_classes)`` outputs."""
    if outputs.dim() != 2:
        raise ConfigurationError(
            f"the model returned outputs of shape {tuple(outputs.shape)}; a classifier must "
            "return (batch, num_classes) scores"
        )
    return int(outputs.shape[1])


def check_class_names(classes: list[str] | None, outputs: int) -> None:
    """Refuse class names that do not fit the model, before they reach a checkpoint.

    A ``Predictor`` names each output by its class, so a checkpoint with 3 names for 10
    outputs could not be used; the mismatch is reported on the first training batch.
    """
    if classes is not None and len(classes) != outputs:
        raise ConfigurationError(
            f"the training data has {len(classes)} classes but the model outputs {outputs} "
            f"scores: build the model with num_classes={len(classes)}, or give the data "
            "set the class names of every output"
        )


def check_labels(
    targets: torch.Tensor, outputs: torch.Tensor, bounds: tuple[int, int] | None = None
) -> None:
    """Check the label range on the first batch, before CUDA can hit a device assert.

    ``bounds`` are the smallest and largest label of the whole data set when it knows them
    (visionkit's data sets do), so a bad label in a later batch is caught here too.
    """
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise ConfigurationError(f"labels must be integer class indices, got dtype {targets.dtype}")
    if targets.numel() == 0:
        return
    cpu = targets.detach().cpu()
    low, high = int(cpu.min()), int(cpu.max())
    if bounds is not None:
        low, high = min(low, bounds[0]), max(high, bounds[1])
    classes = outputs.shape[1]
    if low < 0 or high >= classes:
        raise ConfigurationError(
            f"found label {high if high >= classes else low} but the model outputs {classes} "
            f"classes (labels must be 0..{classes - 1}): build the model with "
            f"num_classes={max(high + 1, classes)} or fix the labels"
        )


def _preprocess_of(dataset: Any) -> Preprocess | None:
    if isinstance(dataset, TensorImageDataset):
        c, h, w = dataset.image_shape
        return Preprocess(
            mode="L" if c == 1 else "RGB",
            size=(h, w),
            mean=tuple(dataset.mean) if dataset.mean else None,
            std=tuple(dataset.std) if dataset.std else None,
        )
    described = getattr(dataset, "preprocess", None)
    return described if isinstance(described, Preprocess) else None


def eval_loader(trainer: Trainer, data: Data | None, batch_size: int) -> EpochLoader | None:
    """The loader of validation or test ``data`` (``None`` for no data), in order."""
    if data is None:
        return None
    loader = make_loader(
        data,
        batch_size,
        shuffle=False,
        device=trainer.device,
        num_workers=trainer.num_workers,
        rank=trainer.rank,
        world_size=trainer.world_size,
    )
    return trainer._strategy.eval_loader(loader, data)


def fit_loaders(
    trainer: Trainer,
    train: Data,
    val: Data | None,
    *,
    batch_size: int,
    val_batch_size: int,
    shuffle: bool,
) -> tuple[EpochLoader, EpochLoader | None]:
    """The training and validation loaders of ``fit``, both refused when empty."""
    describe_data(trainer, train)
    train_loader = make_loader(
        train,
        batch_size,
        shuffle=shuffle,
        seed=trainer.seed,
        device=trainer.device,
        augment=True,
        num_workers=trainer.num_workers,
        rank=trainer.rank,
        world_size=trainer.world_size,
    )
    trainer._data_replay.loader = train_loader
    train_loader = trainer._strategy.train_loader(train_loader, train)
    val_loader = eval_loader(trainer, val, val_batch_size)
    check_not_empty(train_loader, "training")
    check_not_empty(val_loader, "validation")
    return train_loader, val_loader
