"""``fine_tune``: a pretrained backbone fitted to your classes in one call, as fastai's."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from visionkit._checks import check_int, check_number
from visionkit.callbacks.base import Callback
from visionkit.callbacks.finetune import FineTune, Schedule, fine_tune_param_groups
from visionkit.training._batches import Data
from visionkit.training.trainer import Trainer

__all__ = ["fine_tune"]


def fine_tune(
    model: nn.Module,
    train: Data,
    val: Data | None = None,
    *,
    epochs: int = 1,
    freeze_epochs: int = 1,
    base_lr: float = 2e-3,
    lr_mult: float = 100.0,
    num_groups: int = 3,
    weight_decay: float = 0.01,
    schedule: Schedule = "one_cycle",
    batch_size: int = 32,
    callbacks: Sequence[Callback] = (),
    resume_from: str | os.PathLike[str] | None = None,
    **trainer_options: Any,
) -> Trainer:
    """Train the head for ``freeze_epochs`` with the backbone frozen, then everything.

    The optimizer is ``AdamW`` over
    [`fine_tune_param_groups`][visionkit.callbacks.fine_tune_param_groups] (discriminative rates:
    the first layer group trains ``lr_mult`` times slower than the head) and
    [`FineTune`][visionkit.callbacks.FineTune] drives the rates and the freezing. Checkpoints,
    resume and every other ``Trainer`` option work as with ``fit``.

    Args:
        model: A network with a classification head, e.g.
            ``create_model("resnet18", num_classes=5, weights="DEFAULT")``.
        train: Training data.
        val: Validation data, or ``None``.
        epochs: Epochs that train the whole network, after the frozen ones (>= 1).
        freeze_epochs: Epochs that train the head only (>= 0).
        base_lr: Peak learning rate of the head (the unfrozen phase peaks at half of it).
        lr_mult: How many times slower the first layer group trains than the head.
        num_groups: Layer groups, the head included.
        weight_decay: ``AdamW``'s decoupled weight decay.
        schedule: ``"one_cycle"`` or ``"cosine"`` in each phase.
        batch_size: Samples per training batch.
        callbacks: More callbacks (a ``ModelCheckpoint`` and a progress bar are added as
            by the ``Trainer``).
        resume_from: A checkpoint of an earlier ``fine_tune`` run to continue exactly,
            before or after the unfreeze point.
        **trainer_options: Any other [`Trainer`][visionkit.Trainer] argument (``device``,
            ``precision``, ``default_root_dir``, ...).

    Returns:
        The trainer, after training (``trainer.history``, ``trainer.best_checkpoint``).

    Examples:
        ```python
        data = image_folder("photos/", val_fraction=0.2)
        model = create_model("resnet18", num_classes=len(data.classes), weights="DEFAULT")
        trainer = fine_tune(model, data.train, data.val, epochs=3)
        ```
    """
    epochs = check_int("epochs", epochs, least=1, hint="pass e.g. epochs=3")
    weight_decay = check_number("weight_decay", weight_decay, least=0.0, hint="pass e.g. 0.01")
    groups = fine_tune_param_groups(model, base_lr=base_lr, lr_mult=lr_mult, num_groups=num_groups)
    optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
    tuner = FineTune(freeze_epochs, base_lr=base_lr, schedule=schedule)
    trainer = Trainer(
        model,
        optimizer=optimizer,
        max_epochs=tuner.freeze_epochs + epochs,
        callbacks=[tuner, *callbacks],
        **trainer_options,
    )
    trainer.fit(train, val, batch_size=batch_size, resume_from=resume_from)
    return trainer
