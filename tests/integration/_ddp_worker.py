"""One process of the distributed tests, launched with the variables torchrun sets.

``python _ddp_worker.py OUT RESUME_CKPT`` evaluates, trains with early stopping and
checkpointing, and resumes from a one-process checkpoint, writing ``OUT/rank{R}.json`` and
the weights of each phase; then it trains once more until rank 1 raises, so the job must
end with an error on both ranks. (One launch for everything: starting a process that
imports torch costs seconds.)
The test module imports :func:`make_data` and :func:`make_trainer` for its one-process
reference runs, so both sides build exactly the same data, model and optimizer.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from visionkit import Trainer, seed_everything
from visionkit.callbacks import Callback, EarlyStopping, ModelCheckpoint
from visionkit.callbacks.base import StepOutput
from visionkit.data import TensorImageDataset
from visionkit.models import create_model

NUM_TRAIN, NUM_VAL = 1000, 1001  # the validation set does not divide over 2 processes
GLOBAL_BATCH = 50


def make_data() -> tuple[TensorImageDataset, TensorImageDataset]:
    """A learnable 3-class problem of 1x6x6 images: brightness grows with the class."""
    generator = torch.Generator().manual_seed(1234)
    n = NUM_TRAIN + NUM_VAL
    targets = torch.randint(0, 3, (n,), generator=generator)
    noise = torch.randint(0, 156, (n, 1, 6, 6), generator=generator)
    images = (noise + 40 * targets[:, None, None, None]).to(torch.uint8)
    classes = ["dark", "mid", "bright"]
    train = TensorImageDataset(images[:NUM_TRAIN], targets[:NUM_TRAIN], classes)
    val = TensorImageDataset(images[NUM_TRAIN:], targets[NUM_TRAIN:], classes)
    return train, val


def make_trainer(
    root: Path, *, max_epochs: int, callbacks: list[Callback], **options: Any
) -> Trainer:
    """The same seeded model, optimizer and trainer options on every side of a comparison."""
    seed_everything(0)
    model = create_model("mlp", in_features=36, hidden=[16], num_classes=3)
    return Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9),
        max_epochs=max_epochs,
        callbacks=callbacks,
        device="cpu",
        enable_progress_bar=False,
        default_root_dir=root,
        top_k=(2,),
        **options,
    )


def early_stopping() -> EarlyStopping:
    """Stops after epoch 1: only epoch 0 can improve by more than the huge ``min_delta``."""
    return EarlyStopping("val_loss", patience=0, min_delta=1e9)


class SaveCounter(Callback):
    """Counts the checkpoints this process writes."""

    def __init__(self) -> None:
        self.saves = 0

    def on_save_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
        self.saves += 1


class RaiseOnRank1(Callback):
    """Fails on rank 1 in the middle of the first epoch."""

    def on_train_batch_end(self, trainer: Trainer, batch: Any, outputs: StepOutput) -> None:
        if trainer.rank == 1 and outputs.batch_index == 3:
            raise RuntimeError("boom on rank 1")


class StopRank1(Callback):
    """Asks to stop on rank 1 only, in the middle of the first epoch."""

    def on_train_batch_end(self, trainer: Trainer, batch: Any, outputs: StepOutput) -> None:
        if trainer.rank == 1 and outputs.batch_index == 3:
            trainer.should_stop = True


class StoppingLoss(torch.nn.CrossEntropyLoss):
    """Cross-entropy that sets ``should_stop`` on rank 1 at its 4th call, as a signal
    handler would: from outside any callback hook."""

    def __init__(self) -> None:
        super().__init__()
        self.trainer: Trainer | None = None
        self.calls = 0

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.trainer is not None and self.trainer.rank == 1 and self.calls == 4:
            self.trainer.should_stop = True
        return super().forward(outputs, targets)


def count_agreements(trainer: Trainer) -> list[int]:
    """Count the trainer's stop agreements (one collective each) in a one-item list."""
    calls = [0]
    agree = trainer._strategy.any

    def counted(flag: bool) -> bool:
        calls[0] += 1
        return agree(flag)

    trainer._strategy.any = counted  # type: ignore[method-assign]
    return calls


def _stop_checks(out: Path, train: TensorImageDataset, val: TensorImageDataset) -> dict[str, int]:
    """Collectives per fit with visionkit's callbacks only, and with one of the user's."""
    per_rank_batch = GLOBAL_BATCH // int(os.environ["WORLD_SIZE"])
    quiet = make_trainer(out / "quiet", max_epochs=2, callbacks=[], max_steps=30)
    quiet_calls = count_agreements(quiet)
    quiet.fit(train, val, batch_size=per_rank_batch)
    stopping = make_trainer(out / "stopping", max_epochs=2, callbacks=[StopRank1()])
    stop_calls = count_agreements(stopping)
    stopping.fit(train, val, batch_size=per_rank_batch)
    loss = StoppingLoss()
    signalled = make_trainer(out / "signalled", max_epochs=2, callbacks=[], loss=loss)
    loss.trainer = signalled
    signal_calls = count_agreements(signalled)
    signalled.fit(train, val, batch_size=per_rank_batch)
    return {
        "quiet_steps": quiet.global_step,
        "quiet_agreements": quiet_calls[0],
        "stopped_at_step": stopping.global_step,
        "stopped_epochs": len(stopping.history),
        "stop_agreements": stop_calls[0],
        "signal_stopped_at_step": signalled.global_step,
        "signal_agreements": signal_calls[0],
    }


def _accumulation(out: Path, train: TensorImageDataset, val: TensorImageDataset) -> dict[str, int]:
    """One epoch with 2 micro-batches per step, counting DDP's gradient all-reduces."""
    per_rank_batch = GLOBAL_BATCH // int(os.environ["WORLD_SIZE"])
    trainer = make_trainer(
        out / "accumulate", max_epochs=1, callbacks=[], accumulate_grad_batches=2
    )
    syncs = [0]

    # no annotation on ``bucket``: DDP checks it, and here it would be a string
    def counted(state: Any, bucket):  # type: ignore[no-untyped-def]
        syncs[0] += 1
        return allreduce_hook(None, bucket)  # type: ignore[arg-type]

    trainer._train_module.register_comm_hook(None, counted)  # type: ignore[operator]
    trainer.fit(train, val, batch_size=per_rank_batch)
    torch.save(trainer.model.state_dict(), out / f"accumulate_rank{trainer.rank}.pt")
    return {"accumulate_steps": trainer.global_step, "gradient_syncs": syncs[0]}


def _main(out: Path, resume_from: Path) -> None:
    train, val = make_data()
    per_rank_batch = GLOBAL_BATCH // int(os.environ["WORLD_SIZE"])
    stopper, counter = early_stopping(), SaveCounter()
    callbacks: list[Callback] = [
        ModelCheckpoint(out / "checkpoints", save_last=False),
        stopper,
        counter,
    ]
    trainer = make_trainer(out / "runs", max_epochs=6, callbacks=callbacks)
    record: dict[str, Any] = {
        "rank": trainer.rank,
        "world_size": trainer.world_size,
        "validate": trainer.validate(val, batch_size=64),
        "test": trainer.test(val, batch_size=100).to_dict(),
    }
    history = trainer.fit(train, val, batch_size=per_rank_batch)
    record.update(
        epochs_run=len(history),
        stopped_epoch=stopper.stopped_epoch,
        saves=counter.saves,
        val_loss=[row["val_loss"] for row in history],
        train_loss=[row["train_loss"] for row in history],
        test_best=trainer.test(val, ckpt="best").to_dict(),
    )
    torch.save(trainer.model.state_dict(), out / f"fit_rank{trainer.rank}.pt")

    resumed = make_trainer(out / "runs", max_epochs=3, callbacks=[])
    resumed.fit(train, val, batch_size=per_rank_batch, resume_from=resume_from)
    torch.save(resumed.model.state_dict(), out / f"resumed_rank{trainer.rank}.pt")
    resumed.save_checkpoint(out / "resumed.ckpt")  # called on every rank; rank 0 writes
    record.update(_stop_checks(out, train, val))
    record.update(_accumulation(out, train, val))
    (out / f"rank{trainer.rank}.json").write_text(json.dumps(record), encoding="utf-8")

    failing = make_trainer(out / "failing", max_epochs=50, callbacks=[RaiseOnRank1()])
    failing.fit(train, val, batch_size=per_rank_batch)


if __name__ == "__main__":
    torch.set_num_threads(1)
    _main(Path(sys.argv[1]), Path(sys.argv[2]))
