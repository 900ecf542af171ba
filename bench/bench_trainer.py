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

The loops run side by side (``_side_by_side.py``): in each round, the hand loop, the
Trainer and a second hand loop start together as processes on one CPU core, so a change of
the machine's speed reaches all three alike, and each reports the CPU time of its epochs
(``time.process_time``). The ratio printed is the median of the per-round ratios; the hand
loop's second copy gives the noise of the method. Usage::

    python bench/bench_trainer.py                 # both workloads, a few minutes
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


def run_loop(
    loop: Callable[..., tuple[float, float]],
    workload: str,
    sizes: tuple[int, int],
    epochs: int,
) -> tuple[float, float]:
    """``loop(work, train, val, epochs)`` on ``workload`` with ``sizes`` (train, val) digits.

    The data and the model are built here, so a spawned process can run it: this is a
    contender of ``_side_by_side.side_by_side``.
    """
    return loop(_workloads()[workload], *_data(*sizes), epochs)


def main() -> None:
    from _common import AGAIN
    from _side_by_side import side_by_side, training_contenders

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["mlp", "convnet"], default=None)
    parser.add_argument("--train-size", type=int, default=48000)
    parser.add_argument("--val-size", type=int, default=12000)
    parser.add_argument("--convnet-train-size", type=int, default=6400)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.repeats} rounds")
    loops = {"hand loop": hand_loop, "visionkit Trainer": trainer_loop}
    for name in _workloads():
        if args.only not in (None, name):
            continue
        size = args.train_size if name == "mlp" else args.convnet_train_size
        sizes = (size, args.val_size if name == "mlp" else max(size // 4, 1))
        contenders = training_contenders(loops, name, sizes, args.epochs, base="hand loop")
        runs = side_by_side(contenders, args.repeats, args.threads)
        cpu = {loop: [run["cpu"] for run in results] for loop, results in runs.items()}
        ratio = statistics.median(
            t / h for t, h in zip(cpu["visionkit Trainer"], cpu["hand loop"], strict=True)
        )
        noise = statistics.median(a / h for a, h in zip(cpu[AGAIN], cpu["hand loop"], strict=True))
        verdict = "OK" if ratio <= 1.05 else "OVER TARGET"
        print(
            f"RESULT {name}: Trainer / hand loop = {ratio:.3f}x CPU time per epoch "
            f"(target <= 1.05x) {verdict}; hand loop again / hand loop = {noise:.3f}x (noise)"
        )


if __name__ == "__main__":
    main()
