"""The checkpoint file format: self-describing, written atomically, loaded safely.

A checkpoint is one ``torch.save`` file holding a dict of plain values and tensors:

=================  ==================================================================
key                contents
=================  ==================================================================
``format``         ``"visionkit-checkpoint"``
``format_version`` integer, :data:`FORMAT_VERSION` when written by this visionkit
``versions``       visionkit and torch versions that wrote it
``model``          registry ``name`` and constructor ``kwargs`` (``None`` if the model
                   was not built with ``create_model``), and the class name
``state_dict``     the model's weights
``classes``        class names, index = label
``preprocess``     how raw images become model input (:class:`Preprocess` as a dict)
``metrics``        the metrics of the epoch it was saved at
``trainer_state``  optional: optimizer, scheduler, callbacks, counters and RNG states
=================  ==================================================================

It is only ever read with ``torch.load(weights_only=True)``, which refuses to build
arbitrary Python objects, so a file crafted to run code when unpickled fails to load
instead.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionkit._version import __version__
from visionkit.exceptions import CheckpointError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Preprocess",
    "atomic_save",
    "load_checkpoint",
    "load_weights",
    "make_checkpoint",
    "unwrap_model",
    "save_checkpoint",
]

FORMAT = "visionkit-checkpoint"
FORMAT_VERSION = 1
_SAFE_SCALARS = (type(None), bool, int, float, str)


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
    """

    mode: str = "RGB"
    size: tuple[int, int] | None = None
    resize: int | None = None
    center_crop: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def channels(self) -> int:
        """Number of channels of the model input."""
        return 1 if self.mode == "L" else 3

    def to_dict(self) -> dict[str, Any]:
        """Checkpoint-safe dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocess:
        """Inverse of :meth:`to_dict`."""

        def _tuple(v: Any) -> Any:
            return tuple(v) if v is not None else None

        return cls(
            mode=str(data.get("mode", "RGB")),
            size=_tuple(data.get("size")),
            resize=data.get("resize"),
            center_crop=data.get("center_crop"),
            mean=_tuple(data.get("mean")),
            std=_tuple(data.get("std")),
        )


def make_checkpoint(
    model: nn.Module,
    *,
    classes: list[str] | None = None,
    preprocess: Preprocess | None = None,
    metrics: Mapping[str, float] | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a checkpoint dict for ``model`` (see the module docs for its keys)."""
    from visionkit.models import model_spec

    spec = model_spec(model)
    model_info: dict[str, Any] = {
        "name": spec.name if spec else None,
        "kwargs": dict(spec.kwargs) if spec else {},
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
    }
    checkpoint: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": {"visionkit": __version__, "torch": str(torch.__version__)},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model_info,
        "state_dict": {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()},
        "classes": list(classes) if classes is not None else None,
        "preprocess": preprocess.to_dict() if preprocess is not None else None,
        "metrics": dict(metrics or {}),
    }
    if trainer_state is not None:
        checkpoint["trainer_state"] = trainer_state
    return checkpoint


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Check that ``checkpoint`` holds only safe types, then write it atomically."""
    _check_safe(checkpoint, "checkpoint")
    return atomic_save(checkpoint, path)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync it, then ``os.replace``.

    A crash at any moment leaves either the old file or the new one, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a visionkit checkpoint safely and check its format.

    Raises:
        CheckpointError: if the file is missing, empty, truncated or corrupt, holds
            objects other than plain data and tensors (it could run code), is not a
            visionkit checkpoint, or was written by a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes): the write that made it was interrupted; "
            "use an earlier checkpoint"
        )
    checkpoint = _safe_torch_load(path, map_location)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = type(checkpoint).__name__
        if isinstance(checkpoint, dict):
            found = f"a dict with keys {sorted(map(str, checkpoint))[:8]}"
        raise CheckpointError(
            f"{path} is not a visionkit checkpoint (found {found}). For a bare state_dict, "
            "build the model yourself and call model.load_state_dict(torch.load(path, "
            "weights_only=True))"
        )
    version = checkpoint.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}, but this visionkit "
            f"({__version__}) reads versions up to {FORMAT_VERSION}: upgrade visionkit "
            "(pip install -U visionkit)"
        )
    return checkpoint


def load_weights(model: nn.Module, checkpoint: Mapping[str, Any], *, source: str = "") -> None:
    """Load the checkpoint's weights into ``model``, or explain why they do not fit."""
    state = checkpoint["state_dict"]
    target = unwrap_model(model)
    own = target.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        saved = checkpoint.get("model", {})
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {unexpected[:5]}" if unexpected else "",
                f"shape mismatch {mismatched[:5]}" if mismatched else "",
            )
            if part
        )
        raise CheckpointError(
            f"checkpoint {source} holds weights of another model "
            f"({saved.get('class')} {saved.get('name')!r} {saved.get('kwargs')}) than "
            f"{type(target).__name__}: {details}. Build the model the checkpoint was saved "
            "from, or let Predictor.from_checkpoint rebuild it"
        )
    target.load_state_dict(state)


def _safe_torch_load(path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refused to load {path}: it contains Python objects other than tensors and plain "
            "data, which could run code when loaded, so visionkit does not unpickle them. "
            f"Only load checkpoints from sources you trust. ({_unpickling_detail(error)})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'}); "
            "use another checkpoint"
        ) from None


def _unpickling_detail(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines()]
    detail = next((line for line in lines if "Unsupported" in line or "global" in line), "")
    return detail.replace("WeightsUnpickler error: ", "") or (lines[0] if lines else "")


def _check_safe(value: Any, where: str) -> None:
    if type(value) in _SAFE_SCALARS or isinstance(value, (torch.Tensor, torch.dtype, torch.Size)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_safe(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_safe(key, f"{where} key")
            _check_safe(item, f"{where}[{key!r}]")
        return
    raise CheckpointError(
        f"cannot store {where} of type {type(value).__name__} in a checkpoint: only numbers, "
        "strings, lists, tuples, dicts and tensors load safely. Pass model arguments as "
        "plain values (e.g. a weights file path instead of a loaded object)"
    )


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
        return unwrap_model(model.module)
    original = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
    return unwrap_model(original) if isinstance(original, nn.Module) else model


def _fsync_directory(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
