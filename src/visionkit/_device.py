"""Device selection and moving batches: the one place visionkit decides where tensors live."""

from __future__ import annotations

from typing import Any

import torch

from visionkit.exceptions import ConfigurationError

__all__ = ["move_to_device", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` into a device.

    ``"auto"`` picks CUDA if available, then Apple's MPS, then the CPU. Asking for a device
    that is not available raises :class:`~visionkit.ConfigurationError` instead of failing
    later inside torch.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, torch.device):
        chosen = device
    elif device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    else:
        try:
            chosen = torch.device(device)
        except RuntimeError as error:
            raise ConfigurationError(
                f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
            ) from error
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(
            f"device {device!r} was requested but CUDA is not available here: "
            "use device='auto' or 'cpu'"
        )
    if chosen.type == "mps" and not _mps_available():
        raise ConfigurationError(
            f"device {device!r} was requested but MPS is not available: use 'auto' or 'cpu'"
        )
    return chosen


def move_to_device(value: Any, device: torch.device) -> Any:
    """Move tensors inside ``value`` (a tensor, tuple, list or dict) to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, (list, tuple)):
        return type(value)(move_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: move_to_device(v, device) for k, v in value.items()}
    return value


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
