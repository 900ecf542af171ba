"""The checkpoint file format: self-describing, written atomically, loaded safely.

A checkpoint is one ``torch.save`` file holding a dict of plain values and tensors:

| key | contents |
| --- | --- |
| ``format`` | ``"visionkit-checkpoint"`` |
| ``format_version`` | integer, [`FORMAT_VERSION`][visionkit.predict.FORMAT_VERSION] when written |
| ``versions`` | visionkit and torch versions that wrote it |
| ``model`` | registry ``name``, ``kwargs`` (``None`` unless built by ``create_model``), class |
| ``state_dict`` | the model's weights |
| ``classes`` | class names, index = label |
| ``preprocess`` | how raw images become input ([`Preprocess`][visionkit.predict.Preprocess]) |
| ``metrics`` | the metrics of the epoch it was saved at |
| ``trainer_state`` | optional: optimizer, scheduler, callbacks, counters and RNG states |
| ``averaged_weights`` | optional: EMA / SWA weights (``state_dict`` then holds the raw ones) |
| ``averaging`` | optional: how, e.g. ``{"kind": "ema", "decay": 0.999, "steps": 1200}`` |

It is only ever read with ``torch.load(weights_only=True)``, which refuses to build
arbitrary Python objects, so a file crafted to run code when unpickled fails to load
instead.
"""

from __future__ import annotations

import errno
import functools
import os
import pickle
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Literal

import torch
from torch import nn

from visionkit._images import Preprocess
from visionkit._version import __version__
from visionkit.exceptions import CheckpointError, ConfigurationError

__all__ = [
    "AVERAGED_WEIGHTS",
    "AVERAGING",
    "FORMAT",
    "FORMAT_VERSION",
    "Preprocess",
    "atomic_link",
    "atomic_save",
    "atomic_write",
    "check_checkpoint",
    "checkpoint_weights",
    "load_checkpoint",
    "load_weights",
    "make_checkpoint",
    "non_finite_tensors",
    "remove_stale_temporaries",
    "unwrap_model",
    "save_checkpoint",
    "snapshot",
]

FORMAT = "visionkit-checkpoint"
FORMAT_VERSION = 1
"""Version of the checkpoint format this visionkit writes; it reads this and older ones."""
AVERAGED_WEIGHTS = "averaged_weights"
"""Key of the averaged weights (EMA / SWA) in a checkpoint, beside the raw ``state_dict``."""
AVERAGING = "averaging"
"""Key of the description of how ``averaged_weights`` were averaged."""
WeightsChoice = Literal["averaged", "raw"]
_SAFE_SCALARS = (type(None), bool, int, float, str)
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"  # the legacy (pre-zip) torch.save format starts with a pickle


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
    """Check that ``checkpoint`` holds only safe types and finite weights, then write it.

    The write is atomic (see `atomic_save`): whatever happens, ``path`` holds either
    the previous file or the complete new one.

    Raises:
        CheckpointError: if the checkpoint holds an object that would not load safely,
            a weight that is NaN or infinite (no file is written), or the write failed
            (disk full, folder not writable, ...; the previous file is unchanged).
    """
    check_checkpoint(checkpoint, path)
    return atomic_save(checkpoint, path)


def check_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Refuse a checkpoint that would not load safely or holds non-finite weights.

    The checks `save_checkpoint` makes before writing, for callers that write later.

    Raises:
        CheckpointError: if ``checkpoint`` holds an object that would not load safely, or
            a weight that is NaN or infinite; the message names ``path``.
    """
    _check_safe(checkpoint, "checkpoint")
    bad = non_finite_tensors(checkpoint.get("state_dict", {}))
    bad += non_finite_tensors(checkpoint.get(AVERAGED_WEIGHTS) or {})
    if bad:
        raise CheckpointError(
            f"refused to write checkpoint {path}: the weights {bad[:5]} hold NaN or infinite "
            "values, and such a checkpoint could only spread them. Nothing was written; the "
            "previous checkpoints are unchanged"
        )


def snapshot(value: Any) -> Any:
    """A copy of a checked checkpoint (or part of one) that later training cannot change.

    Dicts, lists and tuples are rebuilt and every tensor's storage is copied, once per
    storage, so tensors that shared memory still share it: ``torch.save`` writes the copy
    byte for byte as it would have written ``value``. Other values (numbers, strings,
    ``None``, dtypes, sizes) are immutable and kept. Used to write checkpoints in the
    background while training goes on.

    Examples:
        >>> weights = torch.zeros(2)
        >>> copy = snapshot({"state_dict": {"w": weights}})
        >>> _ = weights.add_(1.0)  # a later optimizer step
        >>> copy["state_dict"]["w"].tolist()
        [0.0, 0.0]
    """
    return _snapshot(value, {})


def _snapshot(value: Any, storages: dict[tuple[int, int, str], Any]) -> Any:
    if isinstance(value, torch.Tensor):
        return _copy_tensor(value, storages)
    if isinstance(value, dict):
        return {key: _snapshot(item, storages) for key, item in value.items()}
    if isinstance(value, list):
        return [_snapshot(item, storages) for item in value]
    if isinstance(value, tuple) and not isinstance(value, torch.Size):
        return tuple(_snapshot(item, storages) for item in value)
    return value


def _copy_tensor(tensor: torch.Tensor, storages: dict[tuple[int, int, str], Any]) -> torch.Tensor:
    tensor = tensor.detach()
    if tensor.layout != torch.strided or tensor.is_quantized or type(tensor) is not torch.Tensor:
        return tensor.clone()  # no plain storage to share: a copy of its own
    storage = tensor.untyped_storage()
    key = (storage.data_ptr(), storage.nbytes(), str(tensor.device))
    copied = storages.get(key) if storage.nbytes() else None
    if copied is None:
        copied = storages[key] = storage.clone()  # type: ignore[no-untyped-call]
    view = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
    return view.set_(copied, tensor.storage_offset(), tensor.size(), tensor.stride())


def non_finite_tensors(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``state`` holding a NaN or an infinity."""
    names = [
        name
        for name, value in state.items()
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex())
    ]
    if not names:
        return []
    # One reduction per tensor, read back once: abs().amax() propagates NaN and, unlike a
    # sum or a norm, cannot overflow to infinity on large finite weights.
    peaks = torch.stack(
        [state[n].detach().abs().amax().float().cpu() if state[n].numel() else _ZERO for n in names]
    )
    finite = torch.isfinite(peaks).tolist()
    return [name for name, ok in zip(names, finite, strict=True) if not ok]


_ZERO = torch.zeros(())


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync it, then ``os.replace``.

    A crash at any moment leaves either the old file or the new one, never half a file.
    A failed write (disk full, file-size limit, folder not writable) removes the temporary
    file and raises [`CheckpointError`][visionkit.CheckpointError] saying what happened;
    ``path`` keeps its previous contents.
    """
    return atomic_write(path, functools.partial(torch.save, obj), kind="checkpoint")


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[BinaryIO], object], *, kind: str = "file"
) -> Path:
    """Call ``write(stream)`` on a temporary file beside ``path``, then publish it.

    The file is flushed and fsynced, renamed over ``path`` with ``os.replace`` and the
    folder is fsynced, so ``path`` holds either its previous contents or all of the new
    ones. On failure the temporary file is removed and a
    [`CheckpointError`][visionkit.CheckpointError] says what happened, calling the file
    a ``kind`` (``"checkpoint"``, ``"exported model"``).

    A ``path`` that is a folder is refused before anything is written. A ``path`` that is
    a symbolic link is replaced by the new file, and the file the link pointed to is left
    as it was: a write never goes through a link to a file outside the folder.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise CheckpointError(
            f"could not write {kind} {path}: it is a folder, expected a file path; pass a "
            f"file name inside it, e.g. {path / 'last.ckpt'}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent
        )
    except OSError as error:
        raise _write_error(path, error, kind) from error
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, 0o666 & ~_umask())  # mkstemp makes 0600; use normal permissions
        os.replace(temp_name, path)
    except BaseException as error:
        Path(temp_name).unlink(missing_ok=True)
        if isinstance(error, Exception):  # not KeyboardInterrupt / SystemExit
            raise _write_error(path, error, kind) from error
        raise
    _fsync_directory(path.parent)
    return path


def atomic_link(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Publish the written file ``source`` under the name ``path`` too, atomically.

    A hard link (the bytes are not written twice), made under a temporary name beside
    ``path`` and renamed over it with ``os.replace``; where the file system has no hard
    links, a copy written with `atomic_write`. Either way ``path`` holds its previous
    contents or all of ``source``'s, and later atomic writes of either name (which replace
    the file, never change it) leave the other as it was.

    Raises:
        CheckpointError: if ``path`` cannot be written (see `atomic_write`).
    """
    source, path = Path(source), Path(path)
    temp = path.parent / f".{path.name}.{os.urandom(4).hex()}{TEMP_SUFFIX}"
    try:
        os.link(source, temp)
    except OSError:  # no hard links here (FAT, some network file systems): copy the bytes
        with source.open("rb") as original:
            return atomic_write(
                path, functools.partial(shutil.copyfileobj, original), kind="checkpoint"
            )
    try:
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise _write_error(path, error, "checkpoint") from error
    _fsync_directory(path.parent)
    return path


TEMP_SUFFIX = ".tmp"
"""Suffix of the temporary files `atomic_write` makes (``.<name>.<random>.tmp``)."""


def remove_stale_temporaries(folder: Path, pattern: str = "*.ckpt") -> None:
    """Delete the temporary files that killed `atomic_write` calls left in ``folder``.

    Only the names it makes for targets matching ``pattern`` are touched
    (``.<name>.<random>.tmp``); a finished or failed write never leaves one behind.
    """
    for stale in folder.glob(f".{pattern}.*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


_WRITE_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or save to another disk",
    errno.EDQUOT: "the disk quota is used up: free some space or save to another disk",
    errno.EFBIG: "the file is larger than this system allows (a file-size limit, ulimit -f)",
    errno.EACCES: "the folder is not writable by this user: choose a writable folder",
    errno.EPERM: "the folder is not writable by this user: choose a writable folder",
    errno.EROFS: "the file system is read-only: choose a writable folder",
}


def _write_error(path: Path, error: Exception, kind: str) -> CheckpointError:
    """A clear error for a failed file write, from torch's or the OS's."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, OSError):  # torch wraps OSErrors
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, OSError):
        what = f"{cause.strerror or cause} (errno {errno.errorcode.get(cause.errno or 0, '?')})"
        hint = _WRITE_HINTS.get(cause.errno or 0, "check the folder and the disk")
    else:
        what = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        hint = "check the folder and the disk"
    kept = "its previous contents are unchanged" if path.exists() else "no file was created"
    return CheckpointError(
        f"could not write {kind} {path}: {what}; {hint}. Nothing partial was left behind and {kept}"
    )


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
            "(pip install -U visionkit-torch)"
        )
    _check_layout(checkpoint, path)
    return checkpoint


def checkpoint_weights(
    checkpoint: Mapping[str, Any], weights: WeightsChoice = "averaged"
) -> dict[str, torch.Tensor]:
    """The weights of ``checkpoint``: the averaged ones or the raw training ones.

    ``weights="averaged"`` gives the averaged weights (EMA / SWA) when the checkpoint has
    them and its ``state_dict`` otherwise; ``"raw"`` always gives the ``state_dict``.

    Raises:
        ConfigurationError: if ``weights`` is neither ``"averaged"`` nor ``"raw"``.
    """
    if weights not in ("averaged", "raw"):
        raise ConfigurationError(
            f"weights must be 'averaged' (the EMA / SWA weights when the checkpoint has them) "
            f"or 'raw' (the training weights), got {weights!r}"
        )
    averaged = checkpoint.get(AVERAGED_WEIGHTS)
    state: dict[str, torch.Tensor] = checkpoint["state_dict"]
    return averaged if weights == "averaged" and averaged is not None else state


def load_weights(
    model: nn.Module,
    checkpoint: Mapping[str, Any],
    *,
    source: str = "",
    weights: WeightsChoice = "raw",
) -> None:
    """Load the checkpoint's weights into ``model``, or explain why they do not fit.

    ``weights="raw"`` loads the training weights (what resuming needs); ``"averaged"``
    the averaged ones when the checkpoint has them (see `checkpoint_weights`).
    """
    state = checkpoint_weights(checkpoint, weights)
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
    _check_magic(path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of odd files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise _unpickling_error(path, error) from None
    except Exception as error:  # any other failure deep inside torch means a damaged file
        if "legacy .tar format" in str(error):  # a tar without the POSIX magic bytes
            raise _legacy_tar_error(path) from None
        first = str(error).splitlines()[0].split(". ")[0] if str(error) else "no detail"
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(error).__name__}: {first}); "
            "use another checkpoint"
        ) from None


def _check_magic(path: Path) -> None:
    with path.open("rb") as stream:
        head = stream.read(512)
    if head.startswith(_ZIP_MAGIC):
        return
    if head[257:262] == b"ustar":  # torch.load would try any tar archive before the pickle
        raise _legacy_tar_error(path)
    if head.startswith(_PICKLE_PROTO):
        return
    raise CheckpointError(
        f"{path} is not a PyTorch checkpoint file (it starts with bytes {head[:4].hex(' ')}, "
        "expected a zip archive written by torch.save): the file is corrupt or of another "
        "kind; use another checkpoint"
    )


def _legacy_tar_error(path: Path) -> CheckpointError:
    return CheckpointError(
        f"refused to load {path}: it is a tar archive, the checkpoint format of the first "
        "PyTorch versions, whose pickles cannot be read without letting them run code. Use "
        "another checkpoint; only if you trust the file and its source, load it once with "
        "torch.load(path, weights_only=False) and save it again with a current torch"
    )


def _unpickling_error(path: Path, error: Exception) -> CheckpointError:
    text = str(error)
    blocked = re.search(r"GLOBAL ([\w.]+)", text)
    if blocked:
        return CheckpointError(
            f"refused to load {path}: it contains Python objects other than tensors and plain "
            "data, which could run code when loaded, so visionkit does not unpickle them "
            f"(it references {blocked.group(1)}). Only load checkpoints from sources you trust"
        )
    operand = re.search(r"Unsupported operand (\d+)", text)
    if operand:
        import pickletools

        code = int(operand.group(1))
        name = next((op.name for op in pickletools.opcodes if ord(op.code) == code), None)
        found = f"the pickle instruction {name}" if name else "a byte that is no pickle instruction"
        return CheckpointError(
            f"refused to load {path}: its pickle data holds {found} (byte {code:#04x}), which "
            "the safe loader (torch.load with weights_only=True) does not run: the file was "
            "not written by torch.save, is corrupt, or was crafted to run code when loaded. "
            "Use another checkpoint"
        )
    detail = text.partition("WeightsUnpickler error:")[2] or text
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    reason = next((line for line in lines if not line.startswith("Check the documentation")), "")
    return CheckpointError(
        f"refused to load {path}: its pickle data is corrupt or asks for operations that "
        f"cannot be loaded safely ({reason or 'no detail'}); use another checkpoint"
    )


def _check_layout(checkpoint: dict[str, Any], path: Path) -> None:
    state = checkpoint.get("state_dict")
    model = checkpoint.get("model")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"{path} claims to be a visionkit checkpoint but its 'state_dict' is not a dict "
            f"of tensors (found {type(state).__name__}); the file is damaged"
        )
    if not isinstance(model, dict):
        raise CheckpointError(
            f"{path} claims to be a visionkit checkpoint but has no 'model' description "
            f"(found {type(model).__name__}); the file is damaged"
        )
    averaged = checkpoint.get(AVERAGED_WEIGHTS)
    if averaged is not None and not (
        isinstance(averaged, dict)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in averaged.items())
    ):
        raise CheckpointError(
            f"{path} has an '{AVERAGED_WEIGHTS}' entry that is not a dict of tensors (found "
            f"{type(averaged).__name__}); the file is damaged"
        )


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


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
