"""Run every visionkit benchmark and write ``bench/results/benchmarks.{md,json}``.

One command, one report: each benchmark runs in its own subprocess (so its peak resident
memory is its own) and reuses the functions of ``bench_data.py``, ``bench_trainer.py``,
``bench_predict.py`` and ``bench_lightning.py``:

* ``data``: the in-memory data path against seed 001's torchvision pipeline and a
  preloaded ``float32`` loop (one MLP epoch, each pipeline in a fresh process);
* ``trainer``: ``Trainer.fit`` against the hand-written loop and, if ``lightning`` is
  installed, ``lightning.Trainer.fit``, on seed 001's MLP and seed 004's ConvNet;
* ``predict``: ``Predictor.predict`` against a hand-written batched loop and one image
  per call;
* ``accuracy``: seed 004's ConvNet on the real MNIST sample (train on the first 8,000
  digits, test on the last 2,000): training time to reach 98% test accuracy, on the CPU
  and on CUDA when there is one;
* ``gpu``: CIFAR-10-shaped random ``uint8`` data, ``NetResDeep`` and a ResNet-18:
  images/s of plain fp32 eager training against each fast-path flag, and Lightning with
  its equivalent settings. Skipped, with the reason, when there is no CUDA device.

Every row records the peak resident memory of its process while it ran (Linux
``VmHWM``, reset before the row) and, on CUDA, the peak allocated GPU memory. Ratios are
measured within one run, never against numbers from elsewhere.

Usage::

    python bench/run_all.py --quick            # a few minutes on 2 CPU cores
    python bench/run_all.py                    # full sizes (about 20 minutes on a CPU)
    python bench/run_all.py --only gpu accuracy
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import operator
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import bench_data
import bench_predict
import bench_trainer
import torch
import torchvision
from torch import nn

from visionkit import Trainer
from visionkit.callbacks import Callback
from visionkit.data import BatchAugment, TensorImageDataset, make_loader, read_idx
from visionkit.models import create_model

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
LOGS = Path(tempfile.gettempdir()) / "visionkit-bench-logs"
MARK = "RUN_ALL_RESULT "
HAS_LIGHTNING = importlib.util.find_spec("lightning") is not None
Result = dict[str, Any]
MEMORY_NOTE = (
    "Memory columns: `peak RSS MiB` is the high-water mark of the benchmark's process while "
    "the row ran (it includes torch itself, about 0.7 GiB); `RSS rise MiB` is that peak minus "
    "the resident memory when the row started; `peak CUDA MiB` is "
    "`torch.cuda.max_memory_allocated()` for the row."
)


@dataclass(frozen=True)
class Sizes:
    """Problem sizes; ``--quick`` shrinks the CPU workloads, never the targets."""

    data_copies: int = 6  # tiles of the 10,000 real digits: 60,000 training digits
    data_repeats: int = 3
    trainer_mlp: tuple[int, int] = (48000, 12000)
    trainer_convnet: tuple[int, int] = (6400, 1600)
    trainer_repeats: int = 5
    predict_n: int = 2000
    predict_repeat: int = 5
    flowers: bool = True
    accuracy_max_time: float = 600.0
    gpu_n: int = 50000
    gpu_epochs: int = 4
    gpu_batch: int = 512
    gpu_models: tuple[str, ...] = ("resnet_deep", "resnet18")


QUICK = Sizes(
    data_copies=2,
    data_repeats=1,
    trainer_mlp=(9600, 2400),
    trainer_convnet=(3200, 800),
    trainer_repeats=5,
    predict_n=1000,
    predict_repeat=3,
    flowers=False,
    accuracy_max_time=170.0,
    gpu_n=10240,
    gpu_epochs=3,
)
SMOKE = Sizes(  # --gpu-smoke: the GPU benchmark's code paths on the CPU, tiny sizes
    gpu_n=256, gpu_epochs=2, gpu_batch=64, gpu_models=("resnet_deep",)
)


# ---------------------------------------------------------------------------- memory
class Peak:
    """Peak resident memory (and peak CUDA allocation) while the ``with`` block runs."""

    def __enter__(self) -> Peak:
        self.rss_before_mb = bench_data._memory_kb("VmRSS") / 1024
        bench_data._reset_peak()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: object) -> None:
        self.rss_mb = bench_data._memory_kb("VmHWM") / 1024
        self.cuda_mb = (
            torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        )

    def columns(self) -> dict[str, Any]:
        """The memory columns of a result row."""
        row = {"peak RSS MiB": self.rss_mb, "RSS rise MiB": self.rss_mb - self.rss_before_mb}
        if self.cuda_mb is not None:
            row["peak CUDA MiB"] = self.cuda_mb
        return row


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


def _check(name: str, value: float, target: str) -> dict[str, Any]:
    """A target check; ``target`` is e.g. ``">= 2.5"``, or ``"-"`` for a figure without one."""
    op, _, limit = target.partition(" ")
    ok = _COMPARE[op](value, float(limit)) if op in _COMPARE else None
    return {"check": name, "value": value, "target": target, "ok": ok}


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
        "torchvision": "(a) seed 001: torchvision DataLoader",
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
    checks = [
        _check("speed-up over (a), CPU time", tv["epoch_cpu_s"] / vk["epoch_cpu_s"], ">= 2.5"),
        _check("speed-up over (a), wall time", tv["epoch_s"] / vk["epoch_s"], ">= 2.5"),
        _check("time / (b), CPU time", vk["epoch_cpu_s"] / hand["epoch_cpu_s"], "<= 1.10"),
        _check("RSS rise / uint8 data size", memory, "< 2"),
    ]
    return {
        "title": "Data path: one MLP epoch (seed 001), in-memory vs torchvision pipeline",
        "setup": f"{vk['samples']:.0f} training digits per epoch (real MNIST digits tiled "
        f"{sizes.data_copies}x, 20% held out), batch {bench_data.BATCH}, {threads} thread(s), "
        f"median of {sizes.data_repeats} run(s), each pipeline in a fresh process",
        "rows": rows,
        "checks": checks,
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
        checks += _loop_checks(name, runs)
    notes = [] if HAS_LIGHTNING else ["Lightning is not installed: `pip install lightning`."]
    return {
        "title": "Training loop: Trainer vs hand-written loop vs Lightning, per epoch",
        "setup": f"MLP (seed 001, SGD, batch 20): {sizes.trainer_mlp[0]} train + "
        f"{sizes.trainer_mlp[1]} val digits; ConvNet (seed 004, Adadelta, batch 32): "
        f"{sizes.trainer_convnet[0]} + {sizes.trainer_convnet[1]}; 1 epoch per run, "
        f"{sizes.trainer_repeats} interleaved runs per variant after a warm-up, {threads} "
        "thread(s); ratios: median of the per-run ratios (same repeat) on CPU time",
        "rows": rows,
        "checks": checks,
        "notes": notes,
    }


Runs = dict[str, list[tuple[float, float, Peak]]]


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


def _paired(runs: Runs, name: str, base: str, column: int = 1) -> float:
    pairs = zip(runs[name], runs[base], strict=True)
    return statistics.median(a[column] / b[column] for a, b in pairs)


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
                "CPU time / hand loop": _paired(runs, name, "hand loop"),
                "wall time / hand loop": _paired(runs, name, "hand loop", 0),
                "fastest runs, CPU / hand loop": min(r[1] for r in results)
                / min(r[1] for r in runs["hand loop"]),
                **worst.columns(),
            }
        )
    return rows


def _loop_checks(workload: str, runs: Runs) -> list[dict[str, Any]]:
    ratio = _paired(runs, "visionkit Trainer", "hand loop")
    checks = [_check(f"{workload}: Trainer / hand loop, CPU time", ratio, "<= 1.05")]
    if "Lightning Trainer" in runs:
        vs = _paired(runs, "visionkit Trainer", "Lightning Trainer")
        checks.append(_check(f"{workload}: Trainer / Lightning, CPU time", vs, "<= 1.0"))
    return checks


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
        if title.startswith("MNIST"):
            for key, target in (("hand", ">= 0.95"), ("single", ">= 5")):
                label = "hand loop" if key == "hand" else "one image per call"
                ratio = speeds["predict"] / speeds[key]
                checks.append(_check(f"{title}: predict / {label}", ratio, target))
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
        _sync(trainer.device)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        _sync(trainer.device)
        self.train_seconds += time.perf_counter() - self._start

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.accuracies.append(metrics["val_accuracy"])
        if self.reached_at is None and metrics["val_accuracy"] >= self.target:
            self.reached_at = self.train_seconds
            trainer.should_stop = True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mnist_8000_2000() -> tuple[TensorImageDataset, TensorImageDataset]:
    """The real MNIST sample: the first 8,000 digits to train on, the last 2,000 to test."""
    folder = bench_data.SHARED_MNIST
    images = read_idx(folder / "t10k-images-idx3-ubyte.gz").unsqueeze(1)
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz").long()
    classes = [str(digit) for digit in range(10)]
    stats: dict[str, Any] = {"mean": [0.1302], "std": [0.3069]}  # seed 004's values
    train = TensorImageDataset(images[:8000], labels[:8000], classes, **stats)
    return train, TensorImageDataset(images[8000:], labels[8000:], classes, **stats)


def bench_accuracy(sizes: Sizes, threads: int) -> Result:
    """Seconds of training until seed 004's ConvNet reaches 98% on the 2,000 test digits."""
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
                "device": _device_name(torch.device(device)),
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
        "title": "Accuracy per second: seed 004's ConvNet to 98% test accuracy on real MNIST",
        "setup": "create_model('convnet'), Adadelta(lr=0.5), NLLLoss, batch 32 (seed 004's "
        "recipe); train on the first 8,000 digits of ../shared/data/mnist, test on the last "
        f"2,000 after every epoch; training time only (evaluation excluded); {threads} "
        f"thread(s); budget {sizes.accuracy_max_time:.0f} s",
        "rows": rows,
        "checks": [],
        "notes": notes,
    }


# ---------------------------------------------------------------------------- GPU
def cifar_shaped(n: int) -> TensorImageDataset:
    """Random ``uint8`` images and labels of CIFAR-10's shapes (no real CIFAR-10 offline)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)
    classes = [f"class {i}" for i in range(10)]
    mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
    return TensorImageDataset(images, labels, classes, mean=mean, std=std)


def gpu_model(name: str) -> nn.Module:
    """``resnet_deep`` (seed 002's NetResDeep) or torchvision's ``resnet18``, 10 classes."""
    torch.manual_seed(0)
    if name == "resnet_deep":
        return create_model("resnet_deep", num_classes=10)
    return torchvision.models.resnet18(num_classes=10)


def gpu_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of every GPU variant."""
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)


def hand_epoch_times(
    model: nn.Module, data: TensorImageDataset, *, batch_size: int, epochs: int, device: Any
) -> list[float]:
    """A minimal hand loop, fp32 eager, batches copied from pinned memory, no per-step sync."""
    model = model.to(device)
    optimizer = gpu_optimizer(model)
    criterion = nn.CrossEntropyLoss()
    loader = make_loader(data, batch_size, shuffle=True, seed=0, device=device)
    times = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        _sync(torch.device(device))
        start = time.perf_counter()
        total = torch.zeros((), device=device)
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        float(total)  # one sync per epoch, as the Trainer does
        times.append(time.perf_counter() - start)
    return times


def trainer_epoch_times(
    model: nn.Module,
    data: TensorImageDataset,
    *,
    batch_size: int,
    epochs: int,
    device: Any,
    **options: Any,
) -> list[float]:
    """``Trainer.fit`` with fast-path ``options``; ``data_on_device`` moves the data set."""
    if options.pop("data_on_device", False):
        data = data.to(device)
    if options.pop("augment", False):
        data = data.with_augment(BatchAugment(crop_padding=4, flip=True))
    trainer = Trainer(
        model,
        optimizer=gpu_optimizer(model),
        max_epochs=epochs,
        device=device,
        enable_checkpointing=False,
        enable_progress_bar=False,
        **options,
    )
    history = trainer.fit(data, batch_size=batch_size)
    return list(history["epoch_time"])


def _gpu_variants() -> list[tuple[str, str, dict[str, Any]]]:
    fast: dict[str, Any] = {}
    variants: list[tuple[str, str, dict[str, Any]]] = [
        ("hand loop, fp32 eager", "hand", {}),
        ("Trainer, fp32 eager (plain)", "trainer", {}),
    ]
    for label, option in (
        ("+ uint8 data on the GPU", {"data_on_device": True}),
        ("+ channels_last", {"channels_last": True}),
        ('+ precision="bf16"', {"precision": "bf16"}),
        ("+ compile (full fast path)", {"compile": True}),
    ):
        fast = {**fast, **option}
        variants.append((label, "trainer", fast))
    augmented = {**fast, "augment": True}
    variants.append(("fast path + BatchAugment on the GPU (crop 4, flip)", "trainer", augmented))
    if HAS_LIGHTNING:
        variants.append(("Lightning, fp32 eager", "lightning", {"fast": False}))
        variants.append(
            (
                "Lightning, bf16-mixed + channels_last + compile + data on GPU",
                "lightning",
                {"fast": True},
            )
        )
    return variants


def bench_gpu(sizes: Sizes, threads: int, *, smoke: bool = False) -> Result:
    """Images/s on CIFAR-10-shaped data: plain fp32 eager vs each fast-path flag."""
    title = "GPU fast path: images/s on CIFAR-10-shaped data"
    if not torch.cuda.is_available() and not smoke:
        reason = "skipped: no CUDA device on this machine (torch.cuda.is_available() is False)"
        return {"title": title, "skipped": reason, "rows": [], "checks": []}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True  # for every variant alike
    data = cifar_shaped(sizes.gpu_n)
    rows: list[dict[str, Any]] = []
    for name in sizes.gpu_models:
        for label, kind, options in _gpu_variants():
            rows.append(_gpu_row(name, label, kind, options, data, sizes, device))
    return {
        "title": title,
        "setup": f"{sizes.gpu_n} random uint8 3x32x32 images, batch {sizes.gpu_batch}, "
        f"SGD(momentum 0.9, nesterov), {sizes.gpu_epochs} epochs per variant; images/s from "
        "the median epoch after the first (warm-up and compilation excluded); "
        "cudnn.benchmark on for all variants",
        "rows": rows,
        "checks": _gpu_checks(rows),
    }


def _gpu_row(
    name: str,
    label: str,
    kind: str,
    options: dict[str, Any],
    data: TensorImageDataset,
    sizes: Sizes,
    device: torch.device,
) -> dict[str, Any]:
    common = {"batch_size": sizes.gpu_batch, "epochs": sizes.gpu_epochs, "device": device}
    model = gpu_model(name)
    with Peak() as peak:
        if kind == "hand":
            times = hand_epoch_times(model, data, **common)
        elif kind == "trainer":
            times = trainer_epoch_times(model, data, **common, **dict(options))
        else:
            import bench_lightning

            times = bench_lightning.lightning_epoch_times(
                model, data, optimizer=gpu_optimizer, **common, **options
            )
    del model
    with contextlib.suppress(RuntimeError):
        torch.cuda.empty_cache()
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    return {
        "model": name,
        "variant": label,
        "images/s": len(data) / steady,
        "first epoch s": times[0],
        "steady epoch s": steady,
        **peak.columns(),
    }


def _gpu_checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    checks = []
    for name in dict.fromkeys(row["model"] for row in rows):
        speed = {r["variant"]: r["images/s"] for r in rows if r["model"] == name}
        plain, hand = speed["Trainer, fp32 eager (plain)"], speed["hand loop, fp32 eager"]
        fast = speed["+ compile (full fast path)"]
        overhead = hand / plain
        checks.append(_check(f"{name}: Trainer / hand loop time, fp32", overhead, "<= 1.05"))
        target = ">= 2" if name == "resnet_deep" else "-"
        checks.append(
            _check(f"{name}: fast path / plain fp32 eager, images/s", fast / plain, target)
        )
        lightning = [v for k, v in speed.items() if k.startswith("Lightning")]
        if lightning:
            versus = fast / max(lightning)
            checks.append(_check(f"{name}: fast path / best Lightning, images/s", versus, ">= 1.0"))
    return checks


# ---------------------------------------------------------------------------- orchestration
BENCHMARKS: dict[str, Callable[[Sizes, int], Result]] = {
    "data": bench_data_path,
    "trainer": bench_training_loop,
    "predict": bench_prediction,
    "accuracy": bench_accuracy,
    "gpu": bench_gpu,
}


def machine(threads: int) -> dict[str, Any]:
    """The machine and software the benchmarks ran on."""
    cuda = torch.cuda.is_available()
    lightning = "not installed"
    if HAS_LIGHTNING:
        import lightning as L

        lightning = L.__version__
    return {
        "cpu": bench_data._cpu_name(),
        "cores": os.cpu_count(),
        "torch threads": threads,
        "load average (1 min) at start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning,
        "device": _device_name(torch.device("cuda" if cuda else "cpu")),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({bench_data._cpu_name()})"


def _run_child(name: str, args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    sizes = _sizes(args)
    with Peak() as peak:
        if name == "gpu":
            result = bench_gpu(sizes, args.threads, smoke=args.gpu_smoke)
        else:
            result = BENCHMARKS[name](sizes, args.threads)
    result["peak_rss_mb"] = peak.rss_mb
    result["peak_cuda_mb"] = peak.cuda_mb
    print(MARK + json.dumps(result), flush=True)


def _sizes(args: argparse.Namespace) -> Sizes:
    if args.gpu_smoke:
        return SMOKE
    return QUICK if args.quick else Sizes()


def _spawn(name: str, args: argparse.Namespace, log: Path) -> Result:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name]
    command += ["--threads", str(args.threads)]
    command += ["--quick"] * args.quick + ["--gpu-smoke"] * args.gpu_smoke
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.run(command, stdout=subprocess.PIPE, stderr=output, text=True)
        output.write(process.stdout)
    lines = [line for line in process.stdout.splitlines() if line.startswith(MARK)]
    if process.returncode != 0 or not lines:
        tail = log.read_text(encoding="utf-8").strip().splitlines()[-3:]
        error = f"failed (exit code {process.returncode}, log {log}): {' | '.join(tail)}"
        return {"title": name, "error": error, "rows": [], "checks": []}
    result: Result = json.loads(lines[-1][len(MARK) :])
    result["seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small CPU workloads (minutes)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the report")
    parser.add_argument("--logs", type=Path, default=LOGS, help="folder for each run's output")
    parser.add_argument("--gpu-smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=list(BENCHMARKS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _run_child(args.child, args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    args.logs.mkdir(parents=True, exist_ok=True)
    report: Result = {
        "command": _command(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "machine": machine(args.threads),
        "sizes": asdict(_sizes(args)),
        "benchmarks": {},
    }
    for name in args.only or list(BENCHMARKS):
        print(f"==> {name}", flush=True)
        result = _spawn(name, args, args.logs / f"{name}.log")
        report["benchmarks"][name] = result
        print(_section(name, result), flush=True)
    (args.out / "benchmarks.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "benchmarks.md").write_text(markdown(report), encoding="utf-8")
    print(f"wrote {args.out / 'benchmarks.md'} and {args.out / 'benchmarks.json'}")


def _command() -> str:
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(Path.cwd())
    return shlex.join(["python", str(script), *sys.argv[1:]])


# ---------------------------------------------------------------------------- report
def markdown(report: Result) -> str:
    """The whole report as Markdown: machine, command, target checks, one table per bench."""
    lines = ["# visionkit benchmarks", ""]
    lines += [f"- command: `{report['command']}`", f"- date: {report['date']}"]
    lines += [f"- {key}: {value}" for key, value in report["machine"].items()]
    lines += ["", MEMORY_NOTE, "", "## Targets", "", *_table(list(_all_checks(report))), ""]
    for name, result in report["benchmarks"].items():
        lines += [_section(name, result), ""]
    return "\n".join(lines).rstrip() + "\n"


def _all_checks(report: Result) -> Iterator[dict[str, Any]]:
    for name, result in report["benchmarks"].items():
        for check in result.get("checks", []):
            yield {"benchmark": name, **check, "ok": _verdict(check["ok"])}


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else "met" if ok else "NOT MET"


def _section(name: str, result: Result) -> str:
    lines = [f"## {result['title']} (`{name}`)", ""]
    for key in ("skipped", "error"):
        if key in result:
            return "\n".join(
                [*lines, f"**{key}**: {result[key]}" if key == "error" else result[key]]
            )
    lines += [f"Setup: {result['setup']}.", "", *_table(result["rows"]), ""]
    if result.get("checks"):
        lines += _table([{**c, "ok": _verdict(c["ok"])} for c in result["checks"]])
        lines.append("")
    peak = f"{result['peak_rss_mb']:.0f} MiB"
    if result.get("peak_cuda_mb") is not None:
        peak += f", peak CUDA allocated {result['peak_cuda_mb']:.0f} MiB"
    lines.append(f"Whole benchmark: peak RSS {peak}, {result.get('seconds', 0):.0f} s.")
    lines += list(result.get("notes", []))
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    columns = list(rows[0])
    for row in rows[1:]:
        columns += [key for key in row if key not in columns]
    numeric = [
        all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows) for c in columns
    ]
    lines = ["| " + " | ".join(columns) + " |"]
    lines.append("| " + " | ".join("---:" if n else "---" for n in numeric) + " |")
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(column)) for column in columns) + " |")
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


if __name__ == "__main__":
    main()
