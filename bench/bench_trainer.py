"""Benchmark: ``Trainer.fit`` against a minimal hand-written loop over the same pipeline.

Two workloads, as in the tutorials:

* W1: MLP 784-512-512-10 with dropout 0.2, CrossEntropy, SGD(lr=0.01), batch 20,
  with a validation pass every epoch;
* W2: ConvNet (conv 16, conv 32, max-pool, dropout, fc 64, log-softmax), NLLLoss,
  Adadelta(lr=0.5), batch 32, with a validation pass every epoch.

Both loops use the same model, data (MNIST-sized: the bundled real MNIST sample tiled to the
requested size), loader, optimizer and number of steps. The hand loop does what the
tutorials do, written as an expert would: ``model.train()``, zero_grad / forward / loss /
backward / step, a running loss summed on the device and read once per epoch, then
``model.eval()`` and an ``inference_mode`` validation pass, and for W1 ``torch.save`` of the
weights whenever the validation loss decreased. The Trainer runs
with its defaults (progress bar to a non-terminal stream, NaN check, train metrics, the
default checkpoint callback writing ``last.ckpt`` every epoch).

Runs alternate hand / Trainer several times. Each run reports wall time and the process's
CPU time (``time.process_time``; with one intra-op thread this is the work done, and it is
not inflated when other processes share the cores). The ratio printed is the median of the
paired per-run ratios on CPU time; the fastest-run ratios are printed beside it. Usage::

    python bench/bench_trainer.py                 # both workloads, ~3 minutes on a busy core
    python bench/bench_trainer.py --only mlp --repeats 9
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from visionkit import Trainer
from visionkit.callbacks import ProgressBar
from visionkit.data import TensorImageDataset, make_loader, mnist_sample
from visionkit.models import create_model


class ConvNet(nn.Module):
    """The W2 tutorial's ConvNet, kept local so the benchmark does not depend on the model zoo."""

    def __init__(self) -> None:
        super().__init__()
        self.cn1 = nn.Conv2d(1, 16, 3, 1)
        self.cn2 = nn.Conv2d(16, 32, 3, 1)
        self.dp1 = nn.Dropout2d(0.10)
        self.dp2 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(4608, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.cn2(F.relu(self.cn1(x)))), 2)
        x = torch.flatten(self.dp1(x), 1)
        x = self.fc2(self.dp2(F.relu(self.fc1(x))))
        return F.log_softmax(x, dim=1)


def _data(train_size: int, val_size: int) -> tuple[TensorImageDataset, TensorImageDataset]:
    sample = mnist_sample(val_fraction=0.2, seed=0, normalize=(0.1302, 0.3069))
    base = sample.train

    def tiled(n: int, offset: int) -> TensorImageDataset:
        index = [(offset + i) % len(base) for i in range(n)]
        return base.select(index)

    return tiled(train_size, 0), tiled(val_size, 1234)


Workload = dict[str, Any]


def _workloads() -> dict[str, Workload]:
    return {
        "mlp": {
            "model": lambda: create_model(
                "mlp", in_features=784, hidden=[512, 512], num_classes=10, dropout=0.2
            ),
            "optimizer": lambda m: torch.optim.SGD(m.parameters(), lr=0.01),
            "loss": nn.CrossEntropyLoss,
            "batch_size": 20,
            "save_best": True,
        },
        "convnet": {
            "model": ConvNet,
            "optimizer": lambda m: torch.optim.Adadelta(m.parameters(), lr=0.5),
            "loss": nn.NLLLoss,
            "batch_size": 32,
            "save_best": False,
        },
    }


def hand_loop(
    work: Workload,
    train: TensorImageDataset,
    val: TensorImageDataset,
    epochs: int,
    *,
    count_correct: bool = False,
) -> tuple[float, float]:
    """Wall and CPU seconds per epoch of the tutorials' loop over visionkit's loader.

    ``count_correct`` also counts the correct validation predictions (summed on the
    device, read once per epoch), the accuracy the Trainer reports.
    """
    torch.manual_seed(0)
    model: nn.Module = work["model"]()
    optimizer = work["optimizer"](model)
    criterion = work["loss"]()
    train_loader = make_loader(train, work["batch_size"], shuffle=True, seed=0, augment=True)
    val_loader = make_loader(val, work["batch_size"])
    best = float("inf")
    folder = tempfile.TemporaryDirectory()
    start, cpu = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        train_loader.set_epoch(epoch)
        model.train()
        train_loss = torch.zeros(())
        for x, y in train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            train_loss += loss.detach() * x.size(0)  # summed on the device, read once
        model.eval()
        val_loss, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
        with torch.inference_mode():
            for x, y in val_loader:
                outputs = model(x)
                val_loss += criterion(outputs, y) * x.size(0)
                if count_correct:
                    correct += (outputs.argmax(1) == y).sum()
        _epoch_loss, val_total = train_loss.item(), val_loss.item()  # the epoch's figures
        _correct = correct.item()
        if work["save_best"] and val_total < best:  # W1 saves when the val loss decreases
            best = val_total
            torch.save(model.state_dict(), f"{folder.name}/model.pt")
    folder.cleanup()
    return (time.perf_counter() - start) / epochs, (time.process_time() - cpu) / epochs


def make_trainer(work: Workload, epochs: int, **options: Any) -> Trainer:
    """A CPU ``Trainer`` for ``work``'s model (built after ``torch.manual_seed(0)``), its
    optimizer and loss, for ``epochs`` epochs, with ``options`` on top."""
    torch.manual_seed(0)
    model: nn.Module = work["model"]()
    return Trainer(
        model,
        optimizer=work["optimizer"](model),
        loss=work["loss"](),
        max_epochs=epochs,
        device="cpu",
        **options,
    )


def trainer_loop(
    work: Workload, train: TensorImageDataset, val: TensorImageDataset, epochs: int
) -> tuple[float, float]:
    """Wall and CPU seconds per epoch of ``Trainer.fit`` with its default callbacks."""
    with tempfile.TemporaryDirectory() as root:
        trainer = make_trainer(
            work,
            epochs,
            default_root_dir=root,
            callbacks=[ProgressBar(stream=io.StringIO(), force_tty=False)],
        )
        start, cpu = time.perf_counter(), time.process_time()
        trainer.fit(train, val, batch_size=work["batch_size"])
        return (time.perf_counter() - start) / epochs, (time.process_time() - cpu) / epochs


def _measure(
    name: str, work: Workload, data: tuple[TensorImageDataset, TensorImageDataset], args: Any
) -> float:
    runners: dict[str, Callable[..., tuple[float, float]]] = {
        "hand": hand_loop,
        "trainer": trainer_loop,
    }
    runs: dict[str, list[tuple[float, float]]] = {"hand": [], "trainer": []}
    for repeat in range(args.repeats):
        order = ("hand", "trainer") if repeat % 2 == 0 else ("trainer", "hand")
        for kind in order:
            runs[kind].append(runners[kind](work, *data, args.epochs))
    for clock, column in (("wall", 0), ("cpu", 1)):
        hand = [run[column] for run in runs["hand"]]
        trainer = [run[column] for run in runs["trainer"]]
        paired = statistics.median(t / h for t, h in zip(trainer, hand, strict=True))
        print(
            f"{name:8s} {clock:4s} hand {min(hand):.3f} s/epoch  trainer {min(trainer):.3f} "
            f"s/epoch  fastest-run ratio {min(trainer) / min(hand):.3f}  "
            f"median paired ratio {paired:.3f}"
        )
    cpu_hand = [run[1] for run in runs["hand"]]
    cpu_trainer = [run[1] for run in runs["trainer"]]
    return statistics.median(t / h for t, h in zip(cpu_trainer, cpu_hand, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["mlp", "convnet"], default=None)
    parser.add_argument("--train-size", type=int, default=48000)
    parser.add_argument("--val-size", type=int, default=12000)
    parser.add_argument("--convnet-train-size", type=int, default=6400)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.repeats} repeats")
    ratios = {}
    for name, work in _workloads().items():
        if args.only not in (None, name):
            continue
        size = args.train_size if name == "mlp" else args.convnet_train_size
        data = _data(size, args.val_size if name == "mlp" else max(size // 4, 1))
        hand_loop(work, *data, 1), trainer_loop(work, *data, 1)  # warm-up
        ratios[name] = _measure(name, work, data, args)
    for name, ratio in ratios.items():
        verdict = "OK" if ratio <= 1.05 else "OVER TARGET"
        print(
            f"RESULT {name}: Trainer / hand loop = {ratio:.3f}x CPU time per epoch "
            f"(target <= 1.05x) {verdict}"
        )


if __name__ == "__main__":
    main()
