"""Benchmark: one epoch of the W1 tutorial's MLP under DDP on the CPU (gloo), with the Trainer.

Launch it with torchrun; rank 0 prints the epoch's wall and CPU seconds::

    torchrun --nproc-per-node=2 bench/bench_ddp.py            # 16,000 + 4,000 digits
    torchrun --nproc-per-node=2 bench/bench_ddp.py --train-size 48000 --val-size 12000

Run it on two commits, alternating, to compare them (the docs' DDP figures were measured
that way: the Trainer's per-step stop agreement, before and after it was limited to runs
that need it).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time

import torch
from bench_trainer import _data

from visionkit import Trainer
from visionkit.callbacks import ProgressBar
from visionkit.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=16000)
    parser.add_argument("--val-size", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=20, help="per process")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, val = _data(args.train_size, args.val_size)
    torch.manual_seed(0)
    model = create_model("mlp", in_features=784, hidden=[512, 512], num_classes=10, dropout=0.2)
    with tempfile.TemporaryDirectory() as root:
        trainer = Trainer(
            model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
            max_epochs=1,
            device="cpu",
            default_root_dir=root,
            callbacks=[ProgressBar(stream=io.StringIO(), force_tty=False)],
        )
        start, cpu = time.perf_counter(), time.process_time()
        trainer.fit(train, val, batch_size=args.batch_size)
        if trainer.is_global_zero:
            print(
                f"{trainer.world_size} processes, {trainer.global_step} steps each: epoch wall "
                f"{time.perf_counter() - start:.2f} s, CPU {time.process_time() - cpu:.2f} s "
                "(rank 0)"
            )


if __name__ == "__main__":
    main()
