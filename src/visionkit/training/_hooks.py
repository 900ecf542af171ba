"""Calling the callbacks' hooks: only those a callback overrides cost anything per step."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from visionkit._checks import describe
from visionkit.callbacks.base import Callback
from visionkit.callbacks.checkpoint import ModelCheckpoint
from visionkit.exceptions import ConfigurationError

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["Hooks", "configure_callbacks"]

Hook = Callable[..., Any]
TRANSFORM = "on_train_batch_transform"


class Hooks:
    """Calls hooks on a list of callbacks (the list is shared, not copied).

    Until `activate` (and after `reset`) every callback's method is called; once
    active, only the methods a callback overrides are, so empty hooks cost nothing.
    """

    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = callbacks
        self._active: dict[str, list[Hook]] = {}

    def activate(self) -> None:
        """Find the hooks each callback really overrides."""
        self._active = _active_hooks(self.callbacks)

    def reset(self) -> None:
        """Call every callback's method again (after callbacks were restored or changed)."""
        self._active = {}

    def overriding(self, hook: str) -> list[Hook]:
        """The active methods for ``hook`` (empty before `activate`)."""
        return self._active.get(hook, [])

    def wants(self, hook: str) -> bool:
        """Whether any callback overrides ``hook`` (so its arguments are worth building)."""
        return bool(self._active.get(hook)) if self._active else bool(self.callbacks)

    def call(self, hook: str, *args: Any) -> None:
        """Call ``hook`` on every callback that has it, in order."""
        methods = self._active.get(hook, ()) if self._active else _bound(self.callbacks, hook)
        for method in methods:
            method(*args)

    def transform_batch(
        self, trainer: Trainer, images: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pass a training batch through each callback's ``on_train_batch_transform``, in order."""
        methods = (
            self._active.get(TRANSFORM, ()) if self._active else _bound(self.callbacks, TRANSFORM)
        )
        for method in methods:
            result = method(trainer, images, targets)
            if not (
                isinstance(result, tuple)
                and len(result) == 2
                and all(isinstance(value, torch.Tensor) for value in result)
            ):
                owner = type(getattr(method, "__self__", method)).__name__
                raise ConfigurationError(
                    f"{owner}.{TRANSFORM} must return a tuple (images, targets) of two tensors, "
                    f"got {describe(result)}: return the batch, changed or not"
                )
            images, targets = result
        return images, targets


def configure_callbacks(trainer: Trainer, run_dir: Path | None) -> None:
    """Set up checkpoint callbacks in ``run_dir``, order them, check their state keys.

    ``run_dir`` is ``None`` when no checkpoint callback writes in the run folder.
    """
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint):
            root = run_dir or trainer.default_root_dir
            callback.setup(trainer, default_monitor=trainer.monitor, root=root)
    # Checkpoint callbacks decide last, so the state they save includes every other
    # callback's decision for the epoch (e.g. EarlyStopping's counter).
    trainer.callbacks.sort(key=lambda c: isinstance(c, ModelCheckpoint))
    keys = [c.state_key for c in trainer.callbacks]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ConfigurationError(
            f"several callbacks share the state key(s) {duplicates}: give each a distinct "
            "state_key so a resumed run restores the right state"
        )


def _bound(callbacks: Sequence[Callback], hook: str) -> Iterator[Hook]:
    for callback in callbacks:
        yield getattr(callback, hook)


def _active_hooks(callbacks: Sequence[Callback]) -> dict[str, list[Hook]]:
    """The hooks each callback really overrides, so no-op hooks cost nothing per step."""
    hooks: dict[str, list[Hook]] = {}
    for name in dir(Callback):
        if not name.startswith("on_"):
            continue
        base = getattr(Callback, name)
        hooks[name] = [
            getattr(c, name) for c in callbacks if getattr(type(c), name, base) is not base
        ]
    return hooks
