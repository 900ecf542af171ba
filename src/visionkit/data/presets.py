"""Transform presets for MNIST, CIFAR-10 and ImageNet-style photos, on ``transforms.v2``.

As in the W5 tutorial and torchvision's reference recipes, the geometric steps run on the PIL image and the
preset ends with [`ToFloatTensor`][visionkit.data.presets.ToFloatTensor] (what ``ToTensor`` did, to
the bit) and ``Normalize``. The evaluation presets are deterministic, and
[`preprocess_from_transform`][visionkit.data.preprocess_from_transform] turns them into the
[`Preprocess`][visionkit.predict.Preprocess] that checkpoints store, so
[`Predictor`][visionkit.Predictor] reproduces them exactly.

For the in-memory data sets (MNIST, Fashion-MNIST, CIFAR-10),
[`mnist_batch_augment`][visionkit.data.presets.mnist_batch_augment] and
[`cifar_batch_augment`][visionkit.data.presets.cifar_batch_augment] give the same kind of
augmentation as batched tensor operations (see [`BatchAugment`][visionkit.data.BatchAugment]).

Examples:
    >>> from visionkit.data import presets
    >>> presets.preprocess_from_transform(presets.imagenet_eval())
    Preprocess(mode='RGB', size=None, resize=256, center_crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), interpolation='bilinear')
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2

from visionkit._checks import check_int, check_number, describe
from visionkit._images import Preprocess, check_normalization, float_values
from visionkit._images.decode import INTERPOLATIONS
from visionkit.data._loaders import BatchAugment
from visionkit.exceptions import ConfigurationError, DataError
from visionkit.models.backbones import PreprocessConfig, preprocess_config

__all__ = [
    "CIFAR10_MEAN",
    "ToFloatTensor",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "cifar_batch_augment",
    "cifar_eval",
    "cifar_train",
    "imagenet_eval",
    "imagenet_train",
    "mnist_batch_augment",
    "mnist_eval",
    "mnist_train",
    "model_eval",
    "model_train",
    "preprocess_from_transform",
]

MNIST_MEAN = (0.1307,)
"""Mean pixel of the 60,000 MNIST training digits, scaled to ``[0, 1]``."""
MNIST_STD = (0.3081,)
"""Standard deviation of the MNIST training pixels."""
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of the 50,000 CIFAR-10 training images (W3 computes it)."""
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""Per-channel (population) standard deviation of the CIFAR-10 training images."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""The ImageNet statistics every torchvision pretrained model expects (W5)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""The ImageNet standard deviations matching `IMAGENET_MEAN`."""

Stats = Sequence[float]
_NO_OPS = {
    "ToImage",
    "PILToTensor",
    "ToTensor",
    "ToFloatTensor",
    "ToPureTensor",
    "ConvertImageDtype",
}


class ToFloatTensor:
    """PIL image or ``uint8`` array to a ``float32`` tensor in ``[0, 1]``, as ``ToTensor`` did.

    ``v2.ToImage`` followed by a division by 255. ``v2.ToDtype(float32, scale=True)``
    multiplies by ``1/255`` instead, which differs in the last bit for some pixel values;
    dividing keeps the file-based path, the in-memory path and the
    [`Predictor`][visionkit.Predictor] bit-identical to each other and to seed code using
    ``ToTensor``.

    Examples:
        >>> import numpy as np
        >>> ToFloatTensor()(np.full((1, 2, 3), 255, dtype=np.uint8)).shape
        torch.Size([3, 1, 2])
    """

    def __call__(self, image: Any) -> torch.Tensor:
        """Convert one image (``H x W x C`` arrays, ``C x H x W`` tensors, PIL images).

        Raises:
            DataError: if the image is not a PIL image, array or tensor, has too few
                dimensions (or an array more than 3), or holds integers other than
                ``uint8`` (16-bit or ``int32`` pixels divided by 255 would leave ``[0, 1]``:
                convert such images first).
        """
        flat = isinstance(image, torch.Tensor) and image.ndim < 2
        if flat or (isinstance(image, np.ndarray) and image.ndim not in (2, 3)):
            raise DataError(
                f"expected an image of 2 or 3 dimensions (an H x W (x C) array or a "
                f"(... x) C x H x W tensor), got shape {tuple(image.shape)}"
            )
        try:
            tensor: torch.Tensor = v2.functional.to_image(image).as_subclass(torch.Tensor)
        except TypeError as error:
            raise DataError(
                f"cannot convert {describe(image)} to an image tensor: {error}"
            ) from None
        if tensor.is_floating_point():
            return tensor
        if tensor.dtype != torch.uint8:
            raise DataError(
                f"ToFloatTensor scales uint8 pixels (0..255) to [0, 1], got {tensor.dtype} "
                "pixels: convert the image to 8 bits first (PIL: image.convert('L') or "
                "image.convert('RGB')), or to float in [0, 1]"
            )
        return tensor.float().div_(255)

    def __repr__(self) -> str:
        return "ToFloatTensor()"


def _tail(mean: Stats | float | None, std: Stats | float | None, channels: int) -> list[Any]:
    steps: list[Any] = [ToFloatTensor()]
    if (mean is None) != (std is None):
        raise ConfigurationError(
            "pass both mean and std (to normalize), or mean=None and std=None (to keep "
            f"pixels in [0, 1]); got mean={mean!r} and std={std!r}"
        )
    if mean is not None and std is not None:
        mean_l, std_l = float_values(mean, "mean"), float_values(std, "std")
        if len(mean_l) != len(std_l) or len(mean_l) not in (1, channels):
            raise ConfigurationError(
                f"expected {'1' if channels == 1 else f'1 or {channels}'} values of mean and "
                "of std (one per channel), got "
                f"{len(mean_l)} and {len(std_l)}: with more values than the image has "
                "channels, Normalize would invent channels"
            )
        check_normalization(mean_l, std_l)
        steps.append(v2.Normalize(mean_l, std_l))
    return steps


def _size(name: str, value: Any) -> int | list[int]:
    """A crop or resize size: a positive int, or an ``(h, w)`` pair of them."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ConfigurationError(
                f"{name} must be a positive integer or an (height, width) pair, got {value!r}"
            )
        return [check_int(f"{name}[{i}]", v, least=1) for i, v in enumerate(value)]
    return check_int(name, value, least=1)


def mnist_train(
    *, padding: int = 2, mean: Stats | None = MNIST_MEAN, std: Stats | None = MNIST_STD
) -> v2.Compose:
    """MNIST training transform: random crop with ``padding`` pixels of zero padding.

    Digits are never flipped (a flipped 2 is not a 2). Pass ``mean=None, std=None`` to keep
    pixels in ``[0, 1]`` as the W1 tutorial does.
    """
    padding = check_int("padding", padding, least=0)
    return v2.Compose([v2.RandomCrop(28, padding=padding), *_tail(mean, std, 1)])


def mnist_eval(*, mean: Stats | None = MNIST_MEAN, std: Stats | None = MNIST_STD) -> v2.Compose:
    """MNIST evaluation transform: ``ToTensor`` then ``Normalize`` (W2's pipeline)."""
    return v2.Compose(_tail(mean, std, 1))


def mnist_batch_augment(*, padding: int = 2) -> BatchAugment:
    """`mnist_train`'s random crop for the in-memory path (no flip)."""
    return BatchAugment(crop_padding=padding, flip=False)


def cifar_train(
    *, padding: int = 4, mean: Stats | None = CIFAR10_MEAN, std: Stats | None = CIFAR10_STD
) -> v2.Compose:
    """CIFAR-10 training transform: random crop with padding 4 and horizontal flip."""
    padding = check_int("padding", padding, least=0)
    return v2.Compose(
        [
            v2.RandomCrop(32, padding=padding),
            v2.RandomHorizontalFlip(),
            *_tail(mean, std, 3),
        ]
    )


def cifar_eval(*, mean: Stats | None = CIFAR10_MEAN, std: Stats | None = CIFAR10_STD) -> v2.Compose:
    """CIFAR-10 evaluation transform: ``ToTensor`` then ``Normalize``."""
    return v2.Compose(_tail(mean, std, 3))


def cifar_batch_augment(*, padding: int = 4) -> BatchAugment:
    """`cifar_train`'s crop and flip for the in-memory path."""
    return BatchAugment(crop_padding=padding, flip=True)


def imagenet_train(
    size: int = 224,
    *,
    rotation: float = 30,
    mean: Stats | None = IMAGENET_MEAN,
    std: Stats | None = IMAGENET_STD,
) -> v2.Compose:
    """W5's training transform for photos and pretrained ImageNet models.

    ``RandomRotation(30)``, ``RandomResizedCrop(224)``, ``RandomHorizontalFlip()``, then
    scaling to ``[0, 1]`` and ``Normalize`` with the ImageNet statistics.

    Args:
        size: Side of the square crop (or an ``(h, w)`` pair), at least 1.
        rotation: Largest rotation in degrees, a finite number >= 0; ``0`` disables it.
        mean: Per-channel mean (1 or 3 values), ``None`` (with ``std=None``) to skip
            ``Normalize``.
        std: Per-channel standard deviation, positive.

    Raises:
        ConfigurationError: for a size below 1, a negative or non-finite rotation, only
            one of ``mean`` and ``std``, or statistics that are not finite numbers, one
            or three of each, with positive ``std``. Every preset checks its arguments
            when it is built, not at the first image.
    """
    crop = _size("size", size)
    rotation = check_number("rotation", rotation, least=0.0)
    rotate = [v2.RandomRotation(rotation)] if rotation else []
    return v2.Compose(
        [
            *rotate,
            v2.RandomResizedCrop(crop, antialias=True),
            v2.RandomHorizontalFlip(),
            *_tail(mean, std, 3),
        ]
    )


def imagenet_eval(
    size: int = 224,
    *,
    resize: int = 256,
    mean: Stats | None = IMAGENET_MEAN,
    std: Stats | None = IMAGENET_STD,
) -> v2.Compose:
    """W5's evaluation transform: ``Resize(256)``, ``CenterCrop(224)``, ``Normalize``.

    It is the preprocessing [`Predictor`][visionkit.Predictor] applies for a checkpoint trained
    with it, operation for operation, so predictions match evaluation bit for bit.
    """
    crop = _size("size", size)
    resize = check_int("resize", resize, least=1)
    return v2.Compose(
        [
            v2.Resize(resize, antialias=True),
            v2.CenterCrop(crop),
            *_tail(mean, std, 3),
        ]
    )


def model_eval(model: nn.Module) -> v2.Compose:
    """The evaluation transform of a backbone's pretrained weights.

    ``Resize``, ``CenterCrop``, scaling to ``[0, 1]`` and ``Normalize`` with the numbers
    [`preprocess_config`][visionkit.models.preprocess_config] recorded when
    [`create_model`][visionkit.models.create_model] built the torchvision or timm model. Data sets
    built with it describe it to checkpoints, so ``Predictor.from_checkpoint`` prepares
    images exactly the same way.

    Raises:
        ConfigurationError: if the model has no recorded preprocessing.
    """
    config = _config_of(model)
    return v2.Compose(
        [
            v2.Resize(
                config.resize, interpolation=INTERPOLATIONS[config.interpolation], antialias=True
            ),
            v2.CenterCrop(config.center_crop),
            *_tail(config.mean, config.std, len(config.mean)),
        ]
    )


def model_train(model: nn.Module, *, rotation: float = 0.0) -> v2.Compose:
    """The training transform for a backbone's pretrained weights.

    ``RandomResizedCrop`` to the weights' input size and ``RandomHorizontalFlip`` (with an
    optional ``RandomRotation`` first), then scaling and ``Normalize`` with the weights'
    statistics: [`imagenet_train`][visionkit.data.presets.imagenet_train] with the numbers of
        [`model_eval`][visionkit.data.presets.model_eval].

    Raises:
        ConfigurationError: if the model has no recorded preprocessing, or ``rotation``
            is negative or not finite.
    """
    config = _config_of(model)
    rotation = check_number("rotation", rotation, least=0.0)
    rotate = [v2.RandomRotation(rotation)] if rotation else []
    mode = INTERPOLATIONS[config.interpolation]
    return v2.Compose(
        [
            *rotate,
            v2.RandomResizedCrop(config.center_crop, interpolation=mode, antialias=True),
            v2.RandomHorizontalFlip(),
            *_tail(config.mean, config.std, len(config.mean)),
        ]
    )


def _config_of(model: nn.Module) -> PreprocessConfig:
    config = preprocess_config(model)
    if config is None:
        raise ConfigurationError(
            f"{type(model).__name__} has no recorded preprocessing: build torchvision and "
            "timm backbones with visionkit.models.create_model (which records their "
            "weights' resize, crop, mean and std), or use imagenet_train / imagenet_eval"
        )
    if config.interpolation not in INTERPOLATIONS:
        raise ConfigurationError(
            f"the weights of {type(model).__name__} resize with {config.interpolation!r} "
            f"interpolation; visionkit reproduces {sorted(INTERPOLATIONS)}: build the "
            "transforms yourself and pass preprocess=Preprocess(...) to the data set"
        )
    return config


def preprocess_from_transform(transform: Any, *, mode: str = "RGB") -> Preprocess:
    """Describe a deterministic evaluation transform as a `Preprocess`.

    Understands ``Compose``, [`ToFloatTensor`][visionkit.data.presets.ToFloatTensor],
    ``ToImage``/``ToTensor``/``PILToTensor``, ``ToDtype`` with scaling, ``Resize`` (shorter side, or
    an exact ``(h, w)``), square ``CenterCrop``, ``Normalize`` and ``Grayscale(1)``, from
    ``transforms`` and ``transforms.v2``. ``None`` means ``ToTensor`` alone.

    Args:
        transform: The evaluation transform.
        mode: Pillow mode the images are converted to before the transform.

    Raises:
        ConfigurationError: if the transform is random or holds a step a checkpoint cannot
            describe; pass a [`Preprocess`][visionkit.predict.Preprocess] yourself then.
    """
    fields: dict[str, Any] = {"mode": mode}
    for step in transform_steps(transform):
        _describe(step, fields)
    return Preprocess(**fields)


def transform_steps(transform: Any) -> list[Any]:
    """The steps of ``transform``, ``Compose`` objects flattened (none for ``None``)."""
    if transform is None:
        return []
    if type(transform).__name__ == "Compose":
        return [s for t in transform.transforms for s in transform_steps(t)]
    return [transform]


def _describe(step: Any, fields: dict[str, Any]) -> None:
    name = type(step).__name__
    if name in _NO_OPS:
        return
    if name == "ToDtype":
        _check(step, bool(getattr(step, "scale", False)), "does not scale pixels to [0, 1]")
    elif name == "Resize":
        _describe_resize(step, fields)
    elif name == "CenterCrop":
        crop = list(step.size) if isinstance(step.size, (list, tuple)) else [step.size]
        _check(step, len(set(crop)) == 1, "is not square")
        _check(step, not {"center_crop", "size"} & set(fields), "follows a crop or a (h, w) resize")
        fields["center_crop"] = int(crop[0])
    elif name == "Normalize":
        fields["mean"] = tuple(float(m) for m in step.mean)
        fields["std"] = tuple(float(s) for s in step.std)
    elif name == "Grayscale" and step.num_output_channels == 1:
        fields["mode"] = "L"
    else:
        kind = "is random" if name.startswith("Random") else "has no checkpoint description"
        raise ConfigurationError(
            f"cannot describe the evaluation transform: {step!r} {kind}. Use a deterministic "
            "evaluation transform (Resize, CenterCrop, Normalize), or pass preprocess="
            "Preprocess(...) describing how the Predictor should prepare images"
        )


def _describe_resize(step: Any, fields: dict[str, Any]) -> None:
    size = list(step.size) if isinstance(step.size, (list, tuple)) else [step.size]
    interpolation = getattr(step.interpolation, "value", step.interpolation)
    interpolation = {2: "bilinear", 3: "bicubic"}.get(interpolation, interpolation)
    _check(
        step,
        interpolation in INTERPOLATIONS and getattr(step, "antialias", True) is not False,
        "is not antialiased bilinear or bicubic",
    )
    if interpolation != "bilinear":
        fields["interpolation"] = str(interpolation)
    _check(step, getattr(step, "max_size", None) is None, "sets max_size")
    _check(step, not {"center_crop", "resize", "size"} & set(fields), "follows a resize or crop")
    if len(size) == 1:
        fields["resize"] = int(size[0])
    else:
        fields["size"] = (int(size[0]), int(size[1]))


def _check(step: Any, ok: bool, problem: str) -> None:
    if not ok:
        raise ConfigurationError(
            f"cannot describe {step!r} in a checkpoint: it {problem}. The Predictor reproduces "
            "one antialiased bilinear Resize, then one square CenterCrop, ToDtype(scale=True) "
            "and Normalize; use those, or pass preprocess=Preprocess(...) yourself"
        )
