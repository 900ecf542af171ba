"""What a checkpoint of the ``Trainer`` holds, assembled once for every way of writing it.

`Trainer.save_checkpoint` writes it at once;
[`ModelCheckpoint`][visionkit.callbacks.ModelCheckpoint] copies it and writes it in the
background. Both call `build_checkpoint`, so the two files are the same.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from visionkit.predict.checkpoint import make_checkpoint
from visionkit.training._state import trainer_state

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["build_checkpoint"]


def build_checkpoint(
    trainer: Trainer, path: str | os.PathLike[str], metrics: dict[str, float] | None
) -> dict[str, Any]:
    """The checkpoint of ``trainer`` as it is now, to be written to ``path`` (rank 0 only).

    The weights are checked first, so a NaN or infinite weight never reaches a file
    ([`NonFiniteLossError`][visionkit.NonFiniteLossError]); the callbacks'
    ``on_save_checkpoint`` hooks then add their entries. The dict shares the tensors of
    the model and optimizer: copy it (`visionkit.predict.checkpoint.snapshot`) before
    training goes on if it is written later.
    """
    trainer._check_weights_finite(f"refused to write checkpoint {path}")
    checkpoint = make_checkpoint(
        trainer.model,
        classes=trainer.classes,
        preprocess=trainer.preprocess,
        metrics=metrics if metrics is not None else trainer.last_metrics,
        trainer_state=trainer_state(trainer),
    )
    trainer._hooks.call("on_save_checkpoint", trainer, checkpoint)
    return checkpoint
