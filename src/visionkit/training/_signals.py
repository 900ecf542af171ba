"""Preemption: SIGTERM and Ctrl-C during ``fit`` end with a checkpoint of the exact step.

A scheduler (SLURM, Kubernetes, a spot instance, ``torchrun``) stops a job with SIGTERM and may
start it again. While ``fit`` runs, the first SIGTERM or SIGINT asks the loop to stop after the
optimizer step in progress; the processes agree on that step, rank 0 writes ``last.ckpt`` of exactly
that point (atomically, like every checkpoint), the callbacks' ``on_exception`` hooks run, and
``fit`` ends with [`TrainingPreempted`][visionkit.training.TrainingPreempted] (SIGTERM: the process
exits with status ``128 + 15``) or ``KeyboardInterrupt`` (Ctrl-C). A second signal stops at once.
The handlers exist only while ``fit`` runs; the ones before are put back.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from visionkit.callbacks.checkpoint import ModelCheckpoint

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["Preemption", "TrainingPreempted"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingPreempted(SystemExit):
    """``fit`` was stopped by SIGTERM after writing a checkpoint to resume from.

    A ``SystemExit``: a script that does not catch it exits with status ``128 + 15`` (as a
    process killed by SIGTERM would), after visionkit printed where the checkpoint is.

    Attributes:
        checkpoint: The checkpoint written at the step training stopped, or ``None`` when
            no ``ModelCheckpoint`` was set up.
        message: What happened and how to resume.
    """

    def __init__(self, message: str, checkpoint: Any, signum: int = signal.SIGTERM) -> None:
        super().__init__(128 + signum)
        self.message = message
        self.checkpoint = checkpoint

    def __str__(self) -> str:
        return self.message


class Preemption:
    """Signal handling around ``fit``; a context manager, a no-op when disabled.

    Handlers can only be installed from the main thread; ``fit`` run in another thread
    handles no signal.
    """

    def __init__(self, trainer: Trainer, *, enabled: bool) -> None:
        self.trainer = trainer
        self.enabled = enabled
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._asked_at: int | None = None

    def __enter__(self) -> Preemption:
        self.received, self._asked_at = None, None
        if self.enabled and threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # the second signal: stop now
            self._restore()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            message = (
                f"training stopped at once by a second {signal.Signals(signum).name}; no "
                "checkpoint was written for this step (resume_from='auto' continues from "
                "the last one written before)"
            )
            print(f"visionkit: {message}", file=sys.stderr, flush=True)
            raise TrainingPreempted(message, None, signum)
        self.received = signum
        self.trainer.should_stop = True  # the loop stops after the step in progress

    def stop_if_signalled(self) -> None:
        """If any process got a signal, write ``last.ckpt`` of this point and stop.

        Every process calls this at the same point (after an epoch was cut short, or when
        they agreed to stop), so the agreement below is a collective they all enter; asked
        twice at the same step (an epoch cut short, then the stop), it agrees once.
        """
        trainer = self.trainer
        if self._asked_at == trainer.global_step:
            return
        self._asked_at = trainer.global_step
        if not trainer._strategy.any(self.received is not None):
            return
        signum = self.received or signal.SIGTERM
        callback = trainer.checkpoint_callback
        path = None
        if isinstance(callback, ModelCheckpoint) and callback.dirpath is not None:
            path = callback.dirpath / "last.ckpt"
            callback.wait_for_writes()  # a last.ckpt still being written must not land after
            trainer.save_checkpoint(path)
            callback.last_model_path = path
        name = signal.Signals(signum).name
        where = (
            f"wrote {path} at epoch {trainer.epoch}, batch {trainer.batch_in_epoch} (global "
            f"step {trainer.global_step}); run the same command with fit(..., "
            "resume_from='auto') to continue exactly from there"
            if path is not None
            else "no checkpoint was written (no ModelCheckpoint is set up)"
        )
        message = f"training stopped by {name}: {where}"
        if trainer.is_global_zero:
            print(f"visionkit: {message}", file=sys.stderr, flush=True)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt(message)
        raise TrainingPreempted(message, path, signum)
