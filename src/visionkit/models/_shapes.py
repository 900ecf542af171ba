"""Input-shape helpers shared by the convolutional models: sizes, layer math, clear errors."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch

from visionkit._checks import check_int, describe
from visionkit.exceptions import ConfigurationError

__all__ = [
    "check_images",
    "check_ints",
    "conv_output",
    "format_shape",
    "hidden_sizes",
    "image_size",
]


def image_size(input_size: int | Sequence[int]) -> tuple[int, int]:
    """Return ``(height, width)`` for an ``input_size`` given as ``28`` or ``(28, 28)``."""
    problem = ConfigurationError(
        f"input_size must be a positive int or a (height, width) pair, got {input_size!r}"
    )
    if _is_int(input_size):
        size: tuple[Any, ...] = (input_size, input_size)
    elif isinstance(input_size, (tuple, list)):
        size = tuple(input_size)
    else:
        raise problem
    if len(size) != 2 or not all(_is_int(s) and s > 0 for s in size):
        raise problem
    return int(size[0]), int(size[1])


def hidden_sizes(hidden: int | Sequence[int] | None, name: str = "hidden") -> list[int]:
    """Hidden layer sizes given as one int, a sequence of ints, or ``None`` (no layer)."""
    if hidden is None:
        return []
    if _is_int(hidden):
        sizes: list[Any] = [hidden]
    elif isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise ConfigurationError(
            f"{name} must be a list of layer sizes (or one int, or None), got {describe(hidden)}"
        )
    else:
        sizes = list(hidden)
    return [check_int(f"{name}[{i}]", size, least=1) for i, size in enumerate(sizes)]


def format_shape(shape: Sequence[int]) -> str:
    """``(3, 32, 32)`` -> ``"3x32x32"``."""
    return "x".join(str(s) for s in shape)


def check_images(model: str, x: torch.Tensor, expected: tuple[int, int, int]) -> None:
    """Raise a `ConfigurationError` unless ``x`` is an ``(N, *expected)`` batch.

    Only Python-side shape comparisons: no device synchronisation, so it is free per step.
    """
    found = tuple(x.shape[1:])
    if x.dim() == 4 and found == expected:
        return
    want = format_shape(expected)
    if x.dim() != 4:
        hint = (
            "add a batch dimension with x.unsqueeze(0)"
            if tuple(x.shape) == expected
            else (f"pass batches of shape (N, {', '.join(map(str, expected))})")
        )
        raise ConfigurationError(
            f"{model} expected a 4-d batch (N, C, H, W) of {want} images, got a tensor of "
            f"shape {tuple(x.shape)}: {hint}"
        )
    raise ConfigurationError(
        f"{model} expected {want} images, got {format_shape(found)}: "
        f"{_fix(found, expected)} to create_model, or resize the images to {want}"
    )


def _fix(found: tuple[int, ...], expected: tuple[int, int, int]) -> str:
    args = []
    if found[0] != expected[0]:
        args.append(f"in_channels={found[0]}")
    if found[1:] != expected[1:]:
        height, width = found[1:]
        args.append(f"input_size={height if height == width else (height, width)}")
    return "pass " + ", ".join(args)


def conv_output(size: int, *, kernel_size: int, padding: int, stride: int = 1) -> int:
    """Spatial size after a convolution (or pooling) layer."""
    return (size + 2 * padding - kernel_size) // stride + 1


def check_ints(*, least: int = 1, **values: int) -> None:
    """Raise a `ConfigurationError` naming the first value that is not an int >= least.

    NumPy integers count as integers; ``bool`` does not.
    """
    for name, value in values.items():
        check_int(name, value, least=least)


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)
