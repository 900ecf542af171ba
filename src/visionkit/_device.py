"""Device selection and moving batches: the one place visionkit decides where tensors live."""

from __future__ import annotations

from typing import Any

import torch

from visionkit._checks import describe
from visionkit.exceptions import ConfigurationError

__all__ = ["move_to_device", "resolve_device", "to_device"]

_CHOICES = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` into a device.

    ``"auto"`` picks CUDA if available, then Apple's MPS, then the CPU. A ``torch.device`` of those
    types is accepted too. Anything else (``None``, ``"meta"``, which holds no data and would erase
    a model's weights, ``"cpu:1"`` or a CUDA index beyond the visible GPUs) raises
    [`ConfigurationError`][visionkit.ConfigurationError] instead of failing later inside torch.
    ``"cpu:0"`` means ``"cpu"``.

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("meta")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        visionkit.exceptions.ConfigurationError: device 'meta' is not supported: ...
    """
    if isinstance(device, torch.device):
        chosen = device
    elif not isinstance(device, str):
        raise ConfigurationError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device, got "
            f"{describe(device)}: pass device='auto' to use the best one available"
        )
    elif device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    else:
        try:
            chosen = torch.device(device)
        except (RuntimeError, ValueError, TypeError) as error:
            raise ConfigurationError(f"unknown device {device!r}: use {_CHOICES}") from error
    shown = repr(str(device))  # 'meta', for a string or a torch.device alike
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise ConfigurationError(
            f"device {shown} is not supported: visionkit runs on the CPU, CUDA or MPS, "
            f"use {_CHOICES}"
        )
    if chosen.type == "cpu":
        if chosen.index not in (None, 0):
            raise ConfigurationError(
                f"device {shown} does not exist: there is one CPU device, use device='cpu'"
            )
        return torch.device("cpu")
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigurationError(
                f"device {shown} was requested but CUDA is not available here: "
                "use device='auto' or 'cpu'"
            )
        count = torch.cuda.device_count()
        if chosen.index is not None and chosen.index >= count:
            raise ConfigurationError(
                f"device {shown} was requested but only {count} CUDA device(s) are "
                f"visible (cuda:0 to cuda:{count - 1}): use device='cuda' or one of those"
            )
    if chosen.type == "mps":
        if not _mps_available():
            raise ConfigurationError(
                f"device {shown} was requested but MPS is not available: use 'auto' or 'cpu'"
            )
        if chosen.index not in (None, 0):
            raise ConfigurationError(
                f"device {shown} does not exist: there is one MPS device, use device='mps'"
            )
    return chosen


def to_device(tensor: torch.Tensor, device: torch.device, *, pin: bool = False) -> torch.Tensor:
    """Copy ``tensor`` to ``device`` without making the host wait for the GPU.

    With ``pin``, a copy from the CPU to CUDA starts from pinned memory: from pageable
    memory the driver may wait for the stream, and torch's pinned-memory cache keeps the
    block until the copy is done.
    """
    if pin and device.type == "cuda" and tensor.device.type == "cpu":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def move_to_device(value: Any, device: torch.device) -> Any:
    """Move tensors inside ``value`` (a tensor, tuple, list or dict) to ``device``."""
    if isinstance(value, torch.Tensor):
        return to_device(value, device)
    if isinstance(value, (list, tuple)):
        return type(value)(move_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: move_to_device(v, device) for k, v in value.items()}
    return value


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
