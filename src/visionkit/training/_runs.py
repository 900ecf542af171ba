"""Run folders that never collide, and finding the checkpoint a restarted run resumes from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionkit.callbacks.checkpoint import ModelCheckpoint
from visionkit.exceptions import CheckpointError, ConfigurationError
from visionkit.predict.checkpoint import load_checkpoint

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = [
    "check_resume_from",
    "checkpoint_path",
    "claim_run_dir",
    "latest_run_dir",
    "newest_checkpoint",
    "resume_target",
    "run_dir",
    "trainer_run_dir",
]

_ATTEMPTS = 10_000


def claim_run_dir(root: Path, *, prefix: str = "version_") -> Path:
    """Create and return the first free ``root/<prefix>N`` (``version_N`` by default).

    The folder is created with ``mkdir`` (no ``exist_ok``), which succeeds for exactly one
    process, so two runs started together in the same ``root`` get different folders.
    """
    root.mkdir(parents=True, exist_ok=True)
    number = _next_version(root, prefix)
    for _ in range(_ATTEMPTS):
        candidate = root / f"{prefix}{number}"
        try:
            candidate.mkdir()
        except FileExistsError:
            number += 1
            continue
        return candidate
    raise ConfigurationError(
        f"could not claim a run folder in {root}: {prefix}0 to {prefix}{number} exist; "
        "choose another folder"
    )


def latest_run_dir(root: Path) -> Path | None:
    """The ``root/version_N`` with the highest ``N`` that holds a checkpoint, or ``None``."""
    runs = [p for p in root.glob("version_*") if p.is_dir() and _version(p) is not None]
    for run in sorted(runs, key=lambda p: _version(p) or 0, reverse=True):
        if newest_checkpoint(run / "checkpoints") is not None:
            return run
    return None


def newest_checkpoint(folder: Path) -> Path | None:
    """The complete checkpoint in ``folder`` that got furthest, or ``None``.

    Furthest by the position it holds (global step, epoch, batch), not by modification
    time: a restarted run that saved less progress does not win. Temporary files of a
    write in progress (``.<name>.<random>.tmp``) and files that cannot be read as a
    resumable checkpoint are never picked.
    """
    if not folder.is_dir():
        return None
    best: tuple[tuple[int, int, int, int], Path] | None = None
    for path in sorted(folder.glob("*.ckpt")):
        if path.name.startswith(".") or not path.is_file():
            continue
        position = _position(path)
        if position is None:
            continue
        ranked = (*position, path.name == "last.ckpt")
        if best is None or ranked > best[0]:
            best = (ranked, path)
    return best[1] if best is not None else None


def check_resume_from(resume_from: Any) -> None:
    """Refuse a ``resume_from`` that is neither a path, ``"auto"``, ``True`` nor ``None``."""
    usable = isinstance(resume_from, (str, os.PathLike)) or resume_from in (None, True)
    if usable:
        return
    raise ConfigurationError(
        f"resume_from must be a checkpoint path, 'auto' (the newest checkpoint of this run, "
        f"if any) or None, got {type(resume_from).__name__} {resume_from!r}"
    )


def resume_target(resume_from: Any, checkpoint_folder: Path | None) -> Path | None:
    """What ``fit(resume_from=...)`` resumes from: a path, or ``None`` to start afresh.

    ``"auto"`` (or ``True``) is the newest complete checkpoint in ``checkpoint_folder``.
    """
    check_resume_from(resume_from)
    if resume_from is None:
        return None
    if resume_from is True or resume_from == "auto":
        return newest_checkpoint(checkpoint_folder) if checkpoint_folder is not None else None
    return Path(resume_from)


def run_dir(root: Path, resume_from: Any) -> Path:
    """The run folder for ``fit(resume_from=...)``.

    A fresh run claims a new ``version_N``; ``"auto"`` reuses the latest one that holds a
    checkpoint (and claims a new one when there is none). A run resumed from a checkpoint
    path keeps writing to the folder its checkpoint callback had, so nothing is claimed:
    the next free name is returned, and created only if a file is written there.
    """
    if resume_from is True or resume_from == "auto":
        latest = latest_run_dir(root)
        if latest is not None:
            return latest
    elif resume_from is not None:
        return root / f"version_{_next_version(root) if root.is_dir() else 0}"
    return claim_run_dir(root)


def _position(path: Path) -> tuple[int, int, int] | None:
    try:
        state = load_checkpoint(path).get("trainer_state")
    except CheckpointError:
        return None
    if not isinstance(state, dict):
        return None
    try:
        return int(state["global_step"]), int(state["epoch"]), int(state["batch_in_epoch"])
    except (KeyError, TypeError, ValueError):
        return None


def _version(path: Path, prefix: str = "version_") -> int | None:
    suffix = path.name.removeprefix(prefix)
    return int(suffix) if path.name.startswith(prefix) and suffix.isdigit() else None


def _next_version(root: Path, prefix: str = "version_") -> int:
    numbers = [n for p in root.glob(f"{prefix}*") if (n := _version(p, prefix)) is not None]
    return max(numbers, default=-1) + 1


def trainer_run_dir(trainer: Trainer, resume_from: Any) -> Path | None:
    """The trainer's run folder, claimed by rank 0 when a checkpoint callback writes there."""
    wanted = any(isinstance(c, ModelCheckpoint) and c.dirpath is None for c in trainer.callbacks)
    if not wanted or not trainer.is_global_zero:
        return None
    return run_dir(trainer.default_root_dir, resume_from)


def checkpoint_path(trainer: Trainer, ckpt: str | os.PathLike[str]) -> Path:
    """``ckpt`` as a path: ``"best"`` and ``"last"`` are this run's (rank 0's) checkpoints."""
    if ckpt in ("best", "last"):
        path = trainer.best_checkpoint if ckpt == "best" else trainer.last_checkpoint
        path = trainer._strategy.broadcast_object(path)  # only rank 0 saved it
        if path is None:
            raise ConfigurationError(
                f"ckpt={ckpt!r} but no checkpoint was saved in this run: train with a "
                "ModelCheckpoint callback first, or pass a checkpoint path"
            )
        return Path(path)
    return Path(ckpt)
