"""The learning-rate finder: an exponential sweep of the learning rate over training batches.

The sweep trains for up to ``num_steps`` steps while the learning rate grows from
``min_lr`` to ``max_lr`` by the same factor every step, records the smoothed loss, and
suggests the rate where the loss falls fastest (as Lightning's ``lr_find``; fastai's
"steep" suggestion). Everything the sweep touches is put back: weights and buffers, the
optimizer's state and rates, every random number generator, the trainer's counters, and
callbacks are not called at all.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from visionkit._checks import check_int, check_number
from visionkit._seed import get_rng_state, set_rng_state
from visionkit._threads import num_threads
from visionkit.data._loaders import make_loader
from visionkit.exceptions import ConfigurationError
from visionkit.training._batches import Data, check_not_empty, compute_loss, unpack
from visionkit.training._loop import autocast

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from visionkit.training.trainer import Trainer

__all__ = ["LRFinderResult", "lr_find"]


@dataclass(frozen=True)
class LRFinderResult:
    """What a learning-rate sweep found.

    Attributes:
        lrs: The learning rate of every step of the sweep.
        losses: The smoothed training loss after each step (same length as ``lrs``).
        suggestion: The rate where the smoothed loss fell fastest, or ``None`` when the
            sweep was too short to tell (fewer than 10 steps before the loss diverged).
    """

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    suggestion: float | None = None

    def plot(self, *, path: str | os.PathLike[str] | None = None) -> Figure:
        """Loss against learning rate (log scale), the suggestion marked (``plot`` extra)."""
        from visionkit.plots import plot_lr_find

        return plot_lr_find(self, path=path)


def lr_find(
    trainer: Trainer,
    train: Data,
    *,
    batch_size: int = 32,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 100,
    diverge_factor: float = 4.0,
) -> LRFinderResult:
    """Sweep the learning rate exponentially over ``train`` and suggest one.

    Args:
        trainer: The trainer whose model, optimizer, loss and precision are used.
        train: Training data: a data set or a ``DataLoader``.
        batch_size: Samples per batch (ignored for a ``DataLoader``).
        min_lr: The first learning rate (> 0).
        max_lr: The last learning rate (> ``min_lr``).
        num_steps: Steps of the sweep (>= 2); the data is reshuffled and reused when it
            has fewer batches.
        diverge_factor: Stop early once the smoothed loss exceeds this many times its
            lowest value.

    Returns:
        The rates, smoothed losses and the suggested rate.

    Raises:
        ConfigurationError: on an argument out of range or empty data.
    """
    min_lr = check_number("min_lr", min_lr, above=0.0, hint="pass e.g. min_lr=1e-7")
    max_lr = check_number("max_lr", max_lr, above=0.0, hint="pass e.g. max_lr=10.0")
    if max_lr <= min_lr:
        raise ConfigurationError(
            f"max_lr must be greater than min_lr, got min_lr={min_lr} and max_lr={max_lr}: "
            "pass e.g. min_lr=1e-7, max_lr=10"
        )
    num_steps = check_int("num_steps", num_steps, least=2, hint="pass e.g. num_steps=100")
    diverge_factor = check_number(
        "diverge_factor", diverge_factor, above=1.0, hint="pass e.g. diverge_factor=4.0"
    )
    saved = _snapshot(trainer)
    try:
        with num_threads(trainer._thread_count()):
            lrs, losses = _sweep(
                trainer, train, batch_size, min_lr, max_lr, num_steps, diverge_factor
            )
    finally:
        _restore(trainer, saved)
    return LRFinderResult(lrs=lrs, losses=losses, suggestion=_steepest(lrs, losses))


def _sweep(
    trainer: Trainer,
    train: Data,
    batch_size: int,
    min_lr: float,
    max_lr: float,
    num_steps: int,
    diverge_factor: float,
) -> tuple[list[float], list[float]]:
    loader = make_loader(
        train,
        batch_size,
        shuffle=True,
        seed=trainer.seed,
        device=trainer.device,
        augment=True,
        num_workers=trainer.num_workers,
    )
    check_not_empty(loader, "training")
    factor = (max_lr / min_lr) ** (1.0 / (num_steps - 1))
    optimizer, model = trainer.optimizer, trainer.model
    model.train()
    lrs: list[float] = []
    losses: list[float] = []
    smoothed, best, epoch = 0.0, math.inf, 0
    while len(lrs) < num_steps:
        loader.set_epoch(epoch)
        for batch in loader:
            lr = min_lr * factor ** len(lrs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = unpack(batch, trainer.device, channels_last=trainer.channels_last)
            with autocast(trainer):
                loss = compute_loss(trainer.loss_fn, model(x), y)
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimizer.step()
            value = float(loss.detach())
            smoothed = 0.98 * smoothed + 0.02 * value  # bias-corrected below, as fastai
            unbiased = smoothed / (1 - 0.98 ** (len(lrs) + 1))
            lrs.append(lr)
            losses.append(unbiased)
            best = min(best, unbiased)
            if not math.isfinite(unbiased) or unbiased > diverge_factor * best:
                return lrs, losses
            if len(lrs) == num_steps:
                break
        epoch += 1
    return lrs, losses


def _steepest(lrs: list[float], losses: list[float]) -> float | None:
    """The rate where the loss falls fastest against log(lr), past the first 10 steps."""
    if len(losses) < 12:
        return None
    finite = [(math.log(lr), loss) for lr, loss in zip(lrs, losses, strict=True)]
    slopes = [
        (finite[i + 1][1] - finite[i - 1][1]) / (finite[i + 1][0] - finite[i - 1][0])
        for i in range(10, len(finite) - 1)
    ]
    if not all(math.isfinite(s) for s in slopes):
        slopes = [s if math.isfinite(s) else math.inf for s in slopes]
    best = min(range(len(slopes)), key=slopes.__getitem__)
    return lrs[10 + best]


def _snapshot(trainer: Trainer) -> dict[str, Any]:
    return {
        "model": copy.deepcopy(trainer.model.state_dict()),
        "training": trainer.model.training,
        "optimizer": copy.deepcopy(trainer.optimizer.state_dict()),
        "rng": get_rng_state(),
    }


def _restore(trainer: Trainer, saved: dict[str, Any]) -> None:
    trainer.model.load_state_dict(saved["model"])
    trainer.model.train(saved["training"])
    trainer.optimizer.load_state_dict(saved["optimizer"])
    trainer.optimizer.zero_grad(set_to_none=True)
    set_rng_state(saved["rng"])
