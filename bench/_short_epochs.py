"""The Trainer's defaults on short epochs: checkpoint and progress output against a hand loop.

Short epochs are where per-epoch costs show: the default ``ModelCheckpoint`` writes
``last.ckpt`` (and the best weights) after every epoch, and the default ``ProgressBar``
prints, here to a non-terminal stream as in CI. Both loops train the W1 MLP and the W2
ConvNet on 3,584 digits (56 batches of 64) with a validation pass over 896 digits every
epoch. The hand loop is the tutorials' loop written well: no checkpoint, no output, the
running loss read once per epoch. Part of the ``trainer`` benchmark of ``run_all.py``.
"""

from __future__ import annotations

from typing import Any

import bench_trainer
from _common import Sizes, interleaved, loop_row, round_ratios
from _side_by_side import side_by_side, training_contenders
from _targets import check, noise_check

from visionkit.data import TensorImageDataset

BATCH = 64
BASE = "hand loop, short epochs"


def hand_loop(
    work: bench_trainer.Workload, train: TensorImageDataset, val: TensorImageDataset, epochs: int
) -> tuple[float, float]:
    """Wall and CPU seconds per epoch: train, validate and count the correct predictions
    (as the Trainer does); nothing saved or printed."""
    short = {**work, "batch_size": BATCH, "save_best": False}
    return bench_trainer.hand_loop(short, train, val, epochs, count_correct=True)


def trainer_defaults(
    work: bench_trainer.Workload, train: TensorImageDataset, val: TensorImageDataset, epochs: int
) -> tuple[float, float]:
    """Wall and CPU seconds per epoch of ``Trainer.fit`` with its defaults, batch 64."""
    return bench_trainer.trainer_loop({**work, "batch_size": BATCH}, train, val, epochs)


def bench_short_epochs(
    sizes: Sizes, threads: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Rows, checks and setup text of the defaults-on-short-epochs comparison."""
    variants = {BASE: hand_loop, "Trainer defaults": trainer_defaults}
    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    data = bench_trainer._data(*sizes.defaults_data)
    for name, work in bench_trainer._workloads().items():
        contenders = training_contenders(
            variants, name, sizes.defaults_data, sizes.defaults_epochs, base=BASE
        )
        together = side_by_side(contenders, sizes.defaults_repeats, threads)
        alone = interleaved(variants, work, data, sizes.alone_repeats, sizes.defaults_epochs)
        label = f"{name}, short epochs"
        rows += [loop_row(label, loop, together, alone, BASE) for loop in together]
        ratio = round_ratios(together, "Trainer defaults", BASE, "cpu")
        label = f"{name}, short epochs: Trainer defaults / hand loop, CPU time"
        checks.append(check(label, ratio, "<= 1.05"))
        checks.append(noise_check(f"{name}, short epochs", together, BASE))
    train, val = sizes.defaults_data
    setup = (
        f"short epochs: {train} train + {val} val digits, batch {BATCH}, "
        f"{sizes.defaults_epochs} epochs per run (setup included), {sizes.defaults_repeats} "
        f"rounds side by side and {sizes.alone_repeats} interleaved runs alone, each after a "
        "warm-up; the Trainer with its defaults (ModelCheckpoint every epoch into a temporary "
        "folder, ProgressBar to a non-terminal stream), the hand loop saving and printing "
        "nothing"
    )
    return rows, checks, setup
