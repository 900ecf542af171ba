"""``Preprocess``: how a raw image becomes model input, as checkpoints store it."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from visionkit._checks import check_int, check_items, check_number, describe
from visionkit._images.decode import INTERPOLATIONS, ImageInput, to_uint8
from visionkit.exceptions import ConfigurationError

__all__ = ["Preprocess", "check_normalization", "float_values"]


@dataclass(frozen=True)
class Preprocess:
    """How a raw image becomes the model's input, stored in every checkpoint.

    Attributes:
        mode: Pillow mode the image is converted to (``"L"`` for 1 channel, ``"RGB"``).
        size: ``(height, width)`` the image is resized to when neither ``resize`` nor
            ``center_crop`` is set (small in-memory data sets such as MNIST).
        resize: Resize the shorter side to this many pixels first (ImageNet eval: 256).
        center_crop: Then crop the centre to this square size (ImageNet eval: 224).
        mean: Per-channel mean subtracted after scaling to ``[0, 1]``, or ``None``.
        std: Per-channel standard deviation divided by, or ``None``.
        interpolation: How ``resize`` and ``size`` resample: ``"bilinear"`` (the default,
            and what checkpoints without this field used) or ``"bicubic"`` (many timm and
            some torchvision weights), antialiased either way.

    Every field is checked when the ``Preprocess`` is made (also when a checkpoint is read with
    [`from_dict`][visionkit.predict.Preprocess.from_dict]): ``size`` is two integers ``>= 1``;
    ``resize`` and ``center_crop`` are integers ``>= 1``; ``mean`` and ``std`` come together, each
    with one finite number per channel (or one for all channels), and every ``std`` is positive.
    Lists (e.g. from JSON) become tuples and NumPy or 0-d tensor numbers become plain ``int`` /
    ``float``.

    Raises:
        ConfigurationError: naming the field, what was expected and what was found.
    """

    mode: str = "RGB"
    size: tuple[int, int] | None = None
    resize: int | None = None
    center_crop: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigurationError(
                f"Preprocess interpolation must be one of {sorted(INTERPOLATIONS)}, got "
                f"{self.interpolation!r}"
            )
        if self.mode not in ("L", "RGB"):
            raise ConfigurationError(
                f"Preprocess mode must be 'L' (1 channel) or 'RGB' (3 channels), got {self.mode!r}"
            )
        if (self.mean is None) != (self.std is None):
            raise ConfigurationError(
                "Preprocess needs both mean and std, or neither: got "
                f"mean={self.mean!r} and std={self.std!r}"
            )
        if self.size is not None:  # lists (e.g. from JSON) become tuples of ints
            sides = check_items("Preprocess size", self.size, lengths=(2,), what="(height, width)")
            size = tuple(
                check_int(f"Preprocess size[{i}]", side, least=1) for i, side in enumerate(sides)
            )
            object.__setattr__(self, "size", size)
        for name in ("resize", "center_crop"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_int(f"Preprocess {name}", value, least=1))
        if self.mean is not None and self.std is not None:
            self._set_stats(self.mean, self.std)

    def _set_stats(self, mean: Any, std: Any) -> None:
        stats = {}
        for name, value in (("mean", mean), ("std", std)):
            values = float_values(value, f"Preprocess {name}")
            if len(values) not in (1, self.channels):
                raise ConfigurationError(
                    f"Preprocess {name} must hold {self.channels} value(s) for mode "
                    f"{self.mode!r} (one per channel), or one for all channels; got "
                    f"{len(values)}: {values}"
                )
            stats[name] = values
        check_normalization(stats["mean"], stats["std"])
        object.__setattr__(self, "mean", tuple(stats["mean"]))
        object.__setattr__(self, "std", tuple(stats["std"]))

    @property
    def channels(self) -> int:
        """Number of channels of the model input."""
        return 1 if self.mode == "L" else 3

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        """``(C, H, W)`` of one model input, or ``None`` when the size is not fixed."""
        if self.center_crop is not None:
            return (self.channels, self.center_crop, self.center_crop)
        if self.resize is None and self.size is not None:
            return (self.channels, *self.size)
        return None

    def __call__(self, image: ImageInput) -> torch.Tensor:
        """Preprocess one raw image into a ``float32`` ``C x H x W`` model input.

        Examples:
            >>> import numpy as np
            >>> spec = Preprocess(mode="L", size=(2, 2), mean=(0.5,), std=(0.5,))
            >>> spec(np.array([[0, 255], [255, 0]], dtype=np.uint8))
            tensor([[[-1.,  1.],
                     [ 1., -1.]]])
        """
        return self.normalize(self.to_uint8(image))

    def to_uint8(self, image: ImageInput) -> torch.Tensor:
        """Convert, resize and crop one raw image: a ``uint8`` ``C x H x W`` tensor.

        ``image`` is a path, a PIL image, a ``uint8`` NumPy array (``H x W`` or
        ``H x W x C``) or a ``uint8`` tensor (``C x H x W``). The result equals torchvision's
        ``Resize``, ``CenterCrop`` and ``PILToTensor`` applied to the PIL image. Images of
        16 bits per channel, 32-bit integers or floats are scaled to 8 bits first (see
        [`image_folder`][visionkit.data.image_folder], which decodes files the same way).
        """
        return to_uint8(image, self)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Scale ``uint8`` images (``C x H x W`` or a batch) to ``[0, 1]``, then normalize.

        Bit-identical to torchvision's ``ToTensor`` followed by ``Normalize(mean, std)``.
        """
        result = images.float().div_(255)
        if self.mean is not None and self.std is not None:
            mean, std = _stats_tensors(self.mean, self.std, images.device)
            result.sub_(mean).div_(std)
        return result

    def to_dict(self) -> dict[str, Any]:
        """Checkpoint-safe dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocess:
        """Inverse of [`to_dict`][visionkit.predict.Preprocess.to_dict]."""

        def _tuple(v: Any) -> Any:
            return tuple(v) if v is not None else None

        return cls(
            mode=str(data.get("mode", "RGB")),
            size=_tuple(data.get("size")),
            resize=data.get("resize"),
            center_crop=data.get("center_crop"),
            mean=_tuple(data.get("mean")),
            std=_tuple(data.get("std")),
            interpolation=str(data.get("interpolation", "bilinear")),
        )


@functools.lru_cache(maxsize=16)
def _stats_tensors(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean`` and ``std`` as ``(C, 1, 1)`` float32 tensors on ``device``, made once."""
    as_tensor = functools.partial(torch.tensor, dtype=torch.float32, device=device)
    return as_tensor(mean).view(-1, 1, 1), as_tensor(std).view(-1, 1, 1)


def check_normalization(mean: list[float], std: list[float]) -> None:
    """Refuse statistics that would not map pixels in ``[0, 1]`` to finite ``float32``."""
    if any(s <= 0 for s in std):
        raise ConfigurationError(f"std values must be positive, got {std}")
    edges = torch.tensor([[0.0], [1.0]])
    normalized = (edges - torch.tensor(mean)) / torch.tensor(std)
    if not bool(torch.isfinite(normalized).all()):
        raise ConfigurationError(
            f"mean {mean} and std {std} turn pixels in [0, 1] into infinite float32 values: "
            "std is too small or mean too large; use the statistics of the pixels scaled to "
            "[0, 1] (compute_mean_std gives them)"
        )


def float_values(value: Any, name: str) -> list[float]:
    """``value``, one finite number or a sequence of them, as a list of floats (or an error)."""
    expected = f"{name} must be a number or a sequence of numbers (one per channel)"
    items: list[Any]
    if isinstance(value, numbers.Real):
        items = [value]
    elif isinstance(value, (str, bytes)):
        raise ConfigurationError(f"{expected}, got {describe(value)}")
    else:
        try:
            items = [x.item() if isinstance(x, torch.Tensor) else x for x in value]
        except (TypeError, ValueError, RuntimeError):
            raise ConfigurationError(f"{expected}, got {describe(value)}") from None
    if not items:
        raise ConfigurationError(f"{name} is empty: give one value per channel")
    return [check_number(f"{name}[{i}]", x) for i, x in enumerate(items)]
