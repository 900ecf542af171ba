"""The CPU benchmarks of ``run_all.py``: data path, training loop, prediction, accuracy.

Each function runs one benchmark and returns its section of the report (title, setup,
rows, target checks and notes); ``_targets.py`` holds the targets.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_data
import bench_predict
import bench_trainer
import torch
from _common import HAS_LIGHTNING, Peak, Result, Runs, Sizes, device_name, paired, sync
from _targets import data_checks, loop_checks, prediction_checks
from torch import nn

from visionkit import Trainer
from visionkit.callbacks import Callback
from visionkit.data import TensorImageDataset, read_idx
from visionkit.models import create_model


# ---------------------------------------------------------------------------- data path
def bench_data_path(sizes: Sizes, threads: int) -> Result:
    """One MLP epoch fed by each pipeline of ``bench_data.py``, each in a fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        data_bytes = bench_data.write_mnist(bench_data.SHARED_MNIST, root, sizes.data_copies)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in bench_data.PIPELINES}
        for _ in range(sizes.data_repeats):
            for name in bench_data.PIPELINES:
                runs[name].append(bench_data._spawn(name, root, threads))
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in runs.items()}
    labels = {
        "visionkit": "visionkit in-memory path",
        "torchvision": "(a) W1 tutorial: torchvision DataLoader",
        "hand": "(b) preloaded float32 hand loop",
    }
    rows = [
        {
            "pipeline": labels[name],
            "epoch CPU s": m["epoch_cpu_s"],
            "epoch wall s": m["epoch_s"],
            "load s": m["load_s"],
            "samples": m["samples"],
            "peak RSS MiB": m["peak_rss_mb"],
            "RSS rise MiB": m["peak_mb"],
        }
        for name, m in med.items()
    ]
    vk, tv, hand = (med[n] for n in bench_data.PIPELINES)
    memory = vk["peak_mb"] * 2**20 / data_bytes
    return {
        "title": "Data path: one MLP epoch (W1), in-memory vs torchvision pipeline",
        "setup": f"{vk['samples']:.0f} training digits per epoch (real MNIST digits tiled "
        f"{sizes.data_copies}x, 20% held out), batch {bench_data.BATCH}, {threads} thread(s), "
        f"median of {sizes.data_repeats} run(s), each pipeline in a fresh process",
        "rows": rows,
        "checks": data_checks(vk, tv, hand, memory),
    }


# ---------------------------------------------------------------------------- training loop
def bench_training_loop(sizes: Sizes, threads: int) -> Result:
    """``Trainer`` vs the hand loop (and Lightning) per epoch, runs interleaved."""
    variants: dict[str, Callable[..., tuple[float, float]]] = {
        "hand loop": bench_trainer.hand_loop,
        "visionkit Trainer": bench_trainer.trainer_loop,
    }
    if HAS_LIGHTNING:
        import bench_lightning

        variants["Lightning Trainer"] = bench_lightning.lightning_loop
    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    for name, work in bench_trainer._workloads().items():
        train, val = sizes.trainer_mlp if name == "mlp" else sizes.trainer_convnet
        data = bench_trainer._data(train, val)
        runs = _interleaved(variants, work, data, sizes.trainer_repeats)
        rows += _loop_rows(name, runs)
        checks += loop_checks(name, runs)
    notes = [] if HAS_LIGHTNING else ["Lightning is not installed: `pip install lightning`."]
    return {
        "title": "Training loop: Trainer vs hand-written loop vs Lightning, per epoch",
        "setup": f"MLP (W1, SGD, batch 20): {sizes.trainer_mlp[0]} train + "
        f"{sizes.trainer_mlp[1]} val digits; ConvNet (W2, Adadelta, batch 32): "
        f"{sizes.trainer_convnet[0]} + {sizes.trainer_convnet[1]}; 1 epoch per run, "
        f"{sizes.trainer_repeats} interleaved runs per variant after a warm-up, {threads} "
        "thread(s); ratios: median of the per-run ratios (same repeat) on CPU time",
        "rows": rows,
        "checks": checks,
        "notes": notes,
    }


def _interleaved(
    variants: dict[str, Callable[..., tuple[float, float]]], work: Any, data: Any, repeats: int
) -> Runs:
    for run in variants.values():  # warm-up
        run(work, *data, 1)
    names = list(variants)
    runs: Runs = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            with Peak() as peak:
                wall, cpu = variants[name](work, *data, 1)
            runs[name].append((wall, cpu, peak))
    return runs


def _loop_rows(workload: str, runs: Runs) -> list[dict[str, Any]]:
    rows = []
    for name, results in runs.items():
        worst = max(results, key=lambda r: r[2].rss_mb)[2]
        rows.append(
            {
                "workload": workload,
                "loop": name,
                "best wall s/epoch": min(r[0] for r in results),
                "best CPU s/epoch": min(r[1] for r in results),
                "CPU time / hand loop": paired(runs, name, "hand loop"),
                "wall time / hand loop": paired(runs, name, "hand loop", 0),
                "fastest runs, CPU / hand loop": min(r[1] for r in results)
                / min(r[1] for r in runs["hand loop"]),
                **worst.columns(),
            }
        )
    return rows


# ---------------------------------------------------------------------------- prediction
def bench_prediction(sizes: Sizes, threads: int) -> Result:
    """Images/s of ``Predictor.predict`` against the hand loop and per-image calls."""
    n, r = sizes.predict_n, sizes.predict_repeat
    workloads: list[tuple[str, Callable[[], dict[str, float]]]] = [
        ("MNIST digits as PIL images", lambda: bench_predict.digits(n, r)),
        ("MNIST digits as uint8 arrays", lambda: bench_predict.digits(n, r, as_pil=False)),
    ]
    flowers = bench_data.SHARED_MNIST.parent / "flowers"
    if sizes.flowers and flowers.is_dir():
        workloads.append(
            ("80 flower JPEGs, resize+crop 224", lambda: bench_predict.flowers(flowers, r))
        )
    rows, checks = [], []
    for title, run in workloads:
        with Peak() as peak:
            speeds = run()
        labels = ("hand", "hand-written batched loop"), ("predict", "Predictor.predict(list)")
        for key, label in (*labels, ("single", "predict, one image per call")):
            rows.append({"workload": title, "method": label, "images/s": speeds[key]})
            rows[-1].update(peak.columns())
        checks += prediction_checks(title, speeds)
    return {
        "title": "Prediction: Predictor vs hand-written batched loop vs one image per call",
        "setup": f"{sizes.predict_n} real MNIST digits, MLP 784-512-512-10, batch "
        f"{bench_predict.BATCH}, best of {r} runs, {threads} thread(s); memory columns are "
        "the peak over all three methods of a workload",
        "rows": rows,
        "checks": checks,
    }


# ---------------------------------------------------------------------------- accuracy
class TimeToAccuracy(Callback):
    """Stops training once ``val_accuracy`` reaches ``target``; times training only."""

    def __init__(self, target: float) -> None:
        self.target = target
        self.train_seconds = 0.0
        self.reached_at: float | None = None
        self.accuracies: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        sync(trainer.device)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        sync(trainer.device)
        self.train_seconds += time.perf_counter() - self._start

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.accuracies.append(metrics["val_accuracy"])
        if self.reached_at is None and metrics["val_accuracy"] >= self.target:
            self.reached_at = self.train_seconds
            trainer.should_stop = True


def mnist_8000_2000() -> tuple[TensorImageDataset, TensorImageDataset]:
    """The real MNIST sample: the first 8,000 digits to train on, the last 2,000 to test."""
    folder = bench_data.SHARED_MNIST
    images = read_idx(folder / "t10k-images-idx3-ubyte.gz").unsqueeze(1)
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz").long()
    classes = [str(digit) for digit in range(10)]
    stats: dict[str, Any] = {"mean": [0.1302], "std": [0.3069]}  # the W2 tutorial's values
    train = TensorImageDataset(images[:8000], labels[:8000], classes, **stats)
    return train, TensorImageDataset(images[8000:], labels[8000:], classes, **stats)


def bench_accuracy(sizes: Sizes, threads: int) -> Result:
    """Seconds of training until the W2 tutorial's ConvNet reaches 98% on the 2,000 test digits."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        train, test = (d.to(device) for d in mnist_8000_2000())
        torch.manual_seed(0)
        model = create_model("convnet")
        timer = TimeToAccuracy(0.98)
        trainer = Trainer(
            model,
            optimizer=torch.optim.Adadelta(model.parameters(), lr=0.5),
            loss=nn.NLLLoss(),
            max_epochs=50,
            max_time=sizes.accuracy_max_time,
            device=device,
            enable_checkpointing=False,
            enable_progress_bar=False,
            callbacks=[timer],
        )
        with Peak() as peak:
            start = time.perf_counter()
            trainer.fit(train, test, batch_size=32)
            wall = time.perf_counter() - start
        rows.append(
            {
                "device": device_name(torch.device(device)),
                "train s to 98%": timer.reached_at,
                "epochs": len(timer.accuracies),
                "fit wall s (with eval)": wall,
                "test accuracy per epoch": ", ".join(f"{a:.4f}" for a in timer.accuracies),
                **peak.columns(),
            }
        )
    notes = ["`train s to 98%` is empty when 98% was not reached within the time budget."]
    if len(devices) == 1:
        notes.append("No CUDA device here: the GPU row is missing.")
    return {
        "title": "Accuracy per second: the W2 ConvNet to 98% test accuracy on real MNIST",
        "setup": "create_model('convnet'), Adadelta(lr=0.5), NLLLoss, batch 32 (the W2 recipe); "
        "train on the first 8,000 digits of ../shared/data/mnist, test on the last "
        f"2,000 after every epoch; training time only (evaluation excluded); {threads} "
        f"thread(s); budget {sizes.accuracy_max_time:.0f} s",
        "rows": rows,
        "checks": [],
        "notes": notes,
    }
