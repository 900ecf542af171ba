"""When training stops: step and time budgets, and agreeing on the stop under DDP."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from visionkit.training._hooks import Hooks
    from visionkit.training.trainer import Trainer

__all__ = ["StopRule"]

# Under DDP, how often (in batches) a stop asked for outside a callback hook is agreed on.
AGREE_EVERY = 16
# Hooks that can run before the stop check at the end of a training step.
MID_EPOCH_HOOKS = (
    "on_fit_start",
    "on_load_checkpoint",
    "on_train_epoch_start",
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_optimizer_step",
    "on_train_log",
    "on_save_checkpoint",
)


class StopRule:
    """Decides whether ``trainer`` stops now; every process gets the same answer."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.start_time = 0.0
        self.agree_every_step = True

    def start(self, hooks: Hooks) -> None:
        """Start the ``max_time`` clock and decide how often processes must agree."""
        self.start_time = time.monotonic()
        self.agree_every_step = self._needs_agreement_every_step(hooks)

    def now(self) -> bool:
        """Whether training must end now (a callback asked, or a budget ran out)."""
        trainer = self.trainer
        return trainer._strategy.any(trainer.should_stop or self.out_of_budget())

    def in_epoch(self, batch_index: int, *, stepped: bool = True) -> bool:
        """Whether to end the epoch after this batch; every process gets the same answer.

        A stop asked for inside an accumulation group waits for the group's optimizer step
        (``stepped``), so no accumulated gradient is lost and a checkpoint written then
        resumes exactly.

        Agreeing costs a collective under DDP (a few hundred microseconds on a small
        machine), so when no process can decide differently at a given step it is done
        every ``AGREE_EVERY`` batches only: ``max_steps`` ends every process at the same
        step, and a ``should_stop`` set outside a callback hook (a signal handler, the
        model or the loss) then stops all processes together within that many batches.
        """
        if stepped and (self.agree_every_step or (batch_index + 1) % AGREE_EVERY == 0):
            return self.now()
        return self.out_of_steps()

    def out_of_steps(self) -> bool:
        """Whether ``max_steps`` optimizer steps were made."""
        max_steps = self.trainer.max_steps
        return max_steps is not None and self.trainer.global_step >= max_steps

    def out_of_budget(self) -> bool:
        """Whether ``max_steps`` or ``max_time`` ran out (this process's view)."""
        if self.out_of_steps():
            return True
        max_time = self.trainer.max_time
        return max_time is not None and time.monotonic() - self.start_time >= max_time

    def _needs_agreement_every_step(self, hooks: Hooks) -> bool:
        """Whether processes may decide to stop at different steps of an epoch.

        True with one process (agreeing is free), with ``max_time`` (clocks differ) and
        with a callback of yours that overrides a hook running inside the epoch (it may
        set ``should_stop`` on one process and expects the stop at that step).
        visionkit's own callbacks set it only at an epoch end.
        """
        trainer = self.trainer
        if trainer.world_size == 1 or trainer.max_time is not None:
            return True
        return any(
            not getattr(method, "__module__", "").startswith("visionkit.")
            for hook in MID_EPOCH_HOOKS
            for method in hooks.overriding(hook)
        )
