"""Local weight files for torchvision and timm backbones: read safely, load around the head.

A file holds the state dict of the architecture it is loaded into, saved with
``torch.save(model.state_dict(), path)`` (or a ``.safetensors`` file). Its classification
head may have the original number of classes: those head weights are then left out and
the new head keeps its fresh initialisation.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from visionkit.exceptions import CheckpointError, ConfigurationError

__all__ = ["load_state_file"]

_AUX_PREFIXES = ("AuxLogits.", "aux1.", "aux2.")
"""Auxiliary heads of inception_v3 and googlenet: ignored when the model is built without."""


def load_state_file(model: nn.Module, path: Path, heads: Iterable[str], *, what: str) -> None:
    """Load the state dict in ``path`` into ``model``; head weights of another size are skipped.

    Raises:
        ConfigurationError: if the file holds the weights of another architecture, naming
            the first missing, unexpected and mismatched keys.
        CheckpointError: if the file cannot be read or holds no state dict.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    head_keys = {k for k in own if any(k == h or k.startswith(f"{h}.") for h in heads)}
    resized = {k for k in head_keys if k in state and state[k].shape != own[k].shape}
    state = {
        k: v
        for k, v in state.items()
        if k not in resized and (k in own or not k.startswith(_AUX_PREFIXES))
    }
    missing = sorted(set(own) - set(state) - resized)
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        raise ConfigurationError(
            f"weights={str(path)!r} does not hold the weights of {what}: "
            f"{_differences(missing, unexpected, mismatched)}. Expected the state dict of "
            f"{what} (saved with torch.save(model.state_dict(), path)); pass the name of the "
            "architecture the file was saved from, or the arguments it was built with"
        )
    model.load_state_dict(state, strict=False)  # only the resized head keys are absent


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file, read without running code (``weights_only=True``).

    A visionkit or Lightning checkpoint (a dict with a ``"state_dict"``) and timm's
    training checkpoints (``"model"``) work too; ``module.`` prefixes left by
    ``DataParallel`` are removed.
    """
    if not path.is_file():
        raise ConfigurationError(
            f"weights={str(path)!r} is not an existing file: pass the path of a file saved "
            "with torch.save(model.state_dict(), path), or a weights name"
        )
    state = _safetensors(path) if path.suffix == ".safetensors" else _torch_file(path)
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"{path} holds a {type(state).__name__} but not a state dict (names mapped to "
            "tensors): save the weights with torch.save(model.state_dict(), path)"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def _torch_file(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"cannot read weights from {path}: {first}. The file is damaged, or holds Python "
            "objects besides tensors; save the weights with torch.save(model.state_dict(), path)"
        ) from error


def _safetensors(path: Path) -> object:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ConfigurationError(
            f"reading {path} needs the safetensors package: pip install safetensors"
        ) from None
    try:
        return load_file(path, device="cpu")
    except Exception as error:  # safetensors raises its own SafetensorError on bad files
        raise CheckpointError(f"cannot read weights from {path}: {error}") from error


def _differences(missing: list[str], unexpected: list[str], mismatched: list[str]) -> str:
    parts = [
        f"{label} {keys[:5]}{f' and {len(keys) - 5} more' if len(keys) > 5 else ''}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatch", mismatched),
        )
        if keys
    ]
    return "; ".join(parts)
