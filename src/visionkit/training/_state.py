"""The ``Trainer``'s resumable state: what a checkpoint holds, and restoring it exactly.

A checkpoint written inside an epoch resumes at the next batch with the same random
numbers: visionkit's loaders skip batches without drawing any, and a ``DataLoader`` you
built is replayed from the random states of the epoch's start (`DataReplay`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from visionkit._seed import get_rng_state, set_rng_state
from visionkit.data._loaders import EpochLoader, _DataLoaderAdapter
from visionkit.exceptions import ConfigurationError
from visionkit.predict.checkpoint import load_checkpoint, load_weights

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["DataReplay", "restore_state", "resume", "trainer_state"]


class DataReplay:
    """Where the training data's order comes from, so an epoch can restart at any batch."""

    def __init__(self) -> None:
        self.loader: EpochLoader | None = None
        self.epoch_start: dict[str, Any] | None = None

    def generators(self) -> list[torch.Generator]:
        """The ``torch.Generator`` objects of the loader (a ``DataLoader``'s and its sampler's)."""
        loader = self.loader
        if not isinstance(loader, _DataLoaderAdapter):
            return []
        found: list[torch.Generator] = []
        for owner in (loader.loader, loader.loader.sampler, loader.loader.batch_sampler):
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
                found.append(generator)
        return found

    def batches(self, loader: EpochLoader, start: int) -> Iterator[Any]:
        """Iterate ``loader`` from batch ``start``, consuming random numbers as if from 0.

        visionkit's loaders skip batches without drawing random numbers. A ``DataLoader``
        you built is replayed instead: the RNG and generator states of the epoch's start
        are restored, the first ``start`` batches drawn and dropped, then the states of the
        checkpoint are put back, so batch ``start`` sees exactly what it saw the first time.
        """
        generators = self.generators()
        replay = isinstance(loader, _DataLoaderAdapter) and loader.sampler is None
        if not start:
            if generators or replay:
                self.epoch_start = {
                    "rng": get_rng_state() if replay else None,
                    "generators": [g.get_state() for g in generators],
                }
            return iter(loader)
        saved = self.epoch_start or {"rng": None, "generators": []}
        for generator, state in zip(generators, saved["generators"], strict=False):
            generator.set_state(state)
        if not replay or saved["rng"] is None:
            loader.skip_batches(start)
            return iter(loader)
        checkpoint_rng = get_rng_state()
        set_rng_state(saved["rng"])
        iterator = iter(loader)
        for _ in range(start):
            next(iterator)
        set_rng_state(checkpoint_rng)
        return iterator

    def state_dict(self, *, mid_epoch: bool) -> dict[str, Any]:
        """The generators' states, and the epoch start's when resuming inside an epoch."""
        return {
            "generators": [g.get_state() for g in self.generators()],
            "epoch_start": self.epoch_start if mid_epoch else None,
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore what `state_dict` returned (``None``: a checkpoint without it)."""
        state = state or {"generators": [], "epoch_start": None}
        for generator, generator_state in zip(self.generators(), state["generators"], strict=False):
            generator.set_state(generator_state)
        self.epoch_start = state["epoch_start"]


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """Everything needed to continue ``trainer``'s run exactly (weights are saved apart)."""
    mid_epoch = bool(trainer.batch_in_epoch)
    return {
        "epoch": trainer.epoch,
        "global_step": trainer.global_step,
        "batch_in_epoch": trainer.batch_in_epoch,
        "seed": trainer.seed,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "scaler": trainer.scaler.state_dict(),
        "callbacks": {c.state_key: c.state_dict() for c in trainer.callbacks},
        "history": trainer.history.state_dict(),
        "rng": get_rng_state(),
        "train_metrics": trainer._train_groups.state_dict() if mid_epoch else None,
        "data": trainer._data_replay.state_dict(mid_epoch=mid_epoch),
        "monitor": trainer.monitor,
    }


def restore_state(trainer: Trainer, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load weights and trainer state from ``path``; return the checkpoint.

    Raises:
        ConfigurationError: if the checkpoint holds weights only.
    """
    checkpoint = load_checkpoint(path, map_location="cpu")
    state = checkpoint.get("trainer_state")
    if state is None:
        raise ConfigurationError(
            f"{path} holds weights only, no trainer state to resume from: load it with "
            "trainer.load_weights() or Predictor.from_checkpoint() instead"
        )
    load_weights(trainer.model, checkpoint, source=str(path))
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.scheduler is not None and state["scheduler"] is not None:
        trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.scaler.load_state_dict(state["scaler"])
    for callback in trainer.callbacks:
        if callback.state_key in state["callbacks"]:
            callback.load_state_dict(state["callbacks"][callback.state_key])
    trainer.history.load_state_dict(state["history"])
    trainer.epoch, trainer.global_step = int(state["epoch"]), int(state["global_step"])
    trainer.batch_in_epoch = int(state["batch_in_epoch"])
    trainer.seed = int(state["seed"])
    if state.get("train_metrics") is not None:
        trainer._train_groups.load_state_dict(state["train_metrics"], trainer.device)
        trainer.train_metrics = trainer._train_groups.metrics
    trainer._data_replay.load_state_dict(state.get("data"))
    set_rng_state(state["rng"])
    return checkpoint


def resume(trainer: Trainer, path: str | os.PathLike[str]) -> None:
    """Restore ``trainer`` from ``path`` and tell the callbacks (``on_load_checkpoint``)."""
    checkpoint = restore_state(trainer, path)
    trainer._resume_batch = trainer.batch_in_epoch
    trainer._hooks.reset()
    trainer._hooks.call("on_load_checkpoint", trainer, checkpoint)
