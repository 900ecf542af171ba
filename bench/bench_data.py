"""Benchmark: visionkit's in-memory data path against the W1 tutorial's pipeline and a hand loop.

One training epoch of the W1 tutorial's MLP (784-512-512-10, dropout 0.2, CrossEntropy,
SGD(lr=0.01), batch 64) over MNIST-sized data: 60,000 training digits in the IDX files of
torchvision's ``MNIST/raw`` layout, 20% held out for validation, so 48,000 per epoch. The
digits are the real MNIST test set (``../shared/data/mnist``) tiled 6 times.

Three pipelines feed the same model and loop body:

* ``visionkit``: ``mnist(root)`` then ``make_loader(data.train, 64, shuffle=True)``, the
  in-memory path (one ``uint8`` tensor, a seeded permutation, batched normalization);
* ``torchvision`` (a): the W1 tutorial's code, ``datasets.MNIST`` + ``ToTensor`` + ``DataLoader``
  with a ``SubsetRandomSampler``;
* ``hand`` (b): a minimal loop over the training digits preloaded as one ``float32``
  tensor, indexed with ``randperm`` batches: the compute limit.

Each run is a fresh subprocess, so its peak memory is its own: the peak resident memory
while building the data set and running the epoch, above the resident memory just before,
with every module already imported (Linux ``VmHWM`` after resetting it through
``/proc/self/clear_refs``). The runs are interleaved: each of ``--repeats`` rounds runs
every pipeline once, the order rotated by one each round (visionkit, a, b; then a, b,
visionkit; ...), so a slow moment of a shared host falls on all of them. Each run reports
wall time and the process's CPU time; each figure is the median over rounds and each ratio
the median of the per-round ratios. Targets: visionkit at least 2.5x faster than (a),
within 1.10x of (b), peak memory under twice the ``uint8`` size of the data set.

Usage::

    python bench/bench_data.py                 # 3 rounds, about 1.5 minutes on 1 core
    python bench/bench_data.py --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, SubsetRandomSampler
from torchvision import datasets, transforms

from visionkit.data import make_loader, mnist, read_idx

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
PIPELINES = ("visionkit", "torchvision", "hand")
BATCH = 64


class Net(nn.Module):
    """The W1 tutorial's MLP, verbatim apart from formatting."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 512)
        self.fc2 = nn.Linear(512, 512)
        self.fc3 = nn.Linear(512, 10)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 28 * 28)
        x = self.dropout(F.relu(self.fc1(x)))
        x = self.dropout(F.relu(self.fc2(x)))
        return self.fc3(x)


def write_mnist(source: Path, root: Path, copies: int = 6) -> int:
    """Write ``copies`` tiles of the real test digits as torchvision's ``MNIST/raw`` files."""
    images = read_idx(source / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(source / "t10k-labels-idx1-ubyte.gz")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    _write_idx(raw / "train-images-idx3-ubyte", images.repeat(copies, 1, 1))
    _write_idx(raw / "train-labels-idx1-ubyte", labels.repeat(copies))
    _write_idx(raw / "t10k-images-idx3-ubyte", images)
    _write_idx(raw / "t10k-labels-idx1-ubyte", labels)
    return (copies + 1) * images.numel()


def _write_idx(path: Path, data: torch.Tensor) -> None:
    header = bytes([0, 0, 0x08, data.dim()])
    header += b"".join(int(n).to_bytes(4, "big") for n in data.shape)
    path.write_bytes(header + data.numpy().tobytes())


def _memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    # Not Linux, or not allowed: the peak then includes start-up.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _visionkit_loader(root: Path) -> Any:
    data = mnist(root, val_fraction=0.2, seed=0)
    return make_loader(data.train, BATCH, shuffle=True, seed=0)


def _torchvision_loader(root: Path) -> Any:
    train_data = datasets.MNIST(
        str(root), train=True, download=False, transform=transforms.ToTensor()
    )
    datasets.MNIST(str(root), train=False, download=False, transform=transforms.ToTensor())
    indices = list(range(len(train_data)))
    np.random.shuffle(indices)
    split = int(np.floor(0.2 * len(train_data)))
    sampler = SubsetRandomSampler(indices[split:])
    return DataLoader(train_data, batch_size=BATCH, sampler=sampler, num_workers=0)


class _HandLoader:
    """Preloaded float32 digits, batches by indexing with a fresh ``randperm``."""

    def __init__(self, root: Path) -> None:
        raw = root / "MNIST" / "raw"
        images = read_idx(raw / "train-images-idx3-ubyte")
        labels = read_idx(raw / "train-labels-idx1-ubyte").long()
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
        keep = order[len(labels) // 5 :]
        self.x = images[keep].unsqueeze(1).float().div_(255)
        self.y = labels[keep]

    def __iter__(self) -> Any:
        order = torch.randperm(len(self.y))
        for start in range(0, len(self.y), BATCH):
            index = order[start : start + BATCH]
            yield self.x[index], self.y[index]


def run_one(name: str, root: Path) -> dict[str, float]:
    """One pipeline in this process: build its data, train one epoch, report time and memory."""
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    criterion = nn.CrossEntropyLoss()
    _warm_up(model, optimizer, criterion)
    rss_before = _memory_kb("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    builders = {
        "visionkit": _visionkit_loader,
        "torchvision": _torchvision_loader,
        "hand": _HandLoader,
    }
    loader = builders[name](root)
    loaded, cpu_loaded = time.perf_counter(), time.process_time()
    samples = _epoch(model, optimizer, criterion, loader)
    done, cpu_done = time.perf_counter(), time.process_time()
    return {
        "load_s": loaded - start,
        "epoch_s": done - loaded,
        "epoch_cpu_s": cpu_done - cpu_loaded,
        "samples": samples,
        "peak_mb": (_memory_kb("VmHWM") - rss_before) / 1024,
        "peak_rss_mb": _memory_kb("VmHWM") / 1024,
    }


def _warm_up(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module) -> None:
    x, y = torch.rand(BATCH, 1, 28, 28), torch.randint(0, 10, (BATCH,))
    for _ in range(20):
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()


def _epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module, loader: Any
) -> int:
    model.train()
    samples = 0
    for images, labels in loader:
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        samples += len(labels)
    return samples


def _spawn(name: str, root: Path, threads: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", name, "--root", str(root)]
    command += ["--threads", str(threads)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def interleaved_runs(root: Path, threads: int, repeats: int) -> dict[str, list[dict[str, float]]]:
    """Every pipeline once per round, each in a fresh process, the order rotated per round."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in PIPELINES}
    for repeat in range(repeats):
        shift = repeat % len(PIPELINES)
        for name in PIPELINES[shift:] + PIPELINES[:shift]:
            runs[name].append(_spawn(name, root, threads))
    return runs


def _paired(runs: dict[str, list[dict[str, float]]], name: str, base: str, key: str) -> float:
    pairs = zip(runs[name], runs[base], strict=True)
    return statistics.median(a[key] / b[key] for a, b in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--mnist", type=Path, default=SHARED_MNIST, help="real t10k files")
    parser.add_argument("--child", choices=PIPELINES, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(run_one(args.child, args.root)))
        return
    with tempfile.TemporaryDirectory() as folder:
        data_bytes = write_mnist(args.mnist, Path(folder))
        runs = interleaved_runs(Path(folder), args.threads, args.repeats)
    _report(runs, data_bytes, args)


def _report(runs: dict[str, list[dict[str, float]]], data_bytes: int, args: Any) -> None:
    median = {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for name, results in runs.items()
    }
    print(f"machine: {_cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {args.repeats} interleaved "
        "rounds: medians over rounds, ratios the median of the per-round ratios"
    )
    print(f"data: 60,000 + 10,000 digits, {data_bytes / 2**20:.1f} MiB as uint8\n")
    header = ("pipeline", "epoch CPU s", "epoch wall s", "load s", "peak MiB", "samples")
    print(f"{header[0]:<12}" + "".join(f"{h:>14}" for h in header[1:]))
    for name, m in median.items():
        values = (m["epoch_cpu_s"], m["epoch_s"], m["load_s"], m["peak_mb"])
        print(f"{name:<12}" + "".join(f"{v:14.2f}" for v in values) + f"{m['samples']:14.0f}")
    vk = median["visionkit"]
    print()
    for clock, label in (("epoch_cpu_s", "CPU time "), ("epoch_s", "wall time")):
        speedup = _paired(runs, "torchvision", "visionkit", clock)
        overhead = _paired(runs, "visionkit", "hand", clock)
        _verdict(
            f"{label}: speed-up over the W1 tutorial (a)  {speedup:6.2f}x", speedup >= 2.5, ">= 2.5"
        )
        _verdict(
            f"{label}: vs preloaded float loop (b) {overhead:6.3f}x", overhead <= 1.1, "<= 1.10"
        )
        limit = _paired(runs, "hand", "torchvision", clock)
        print(f"{label}: (b) / (a)                      {limit:6.2f}")
    memory = vk["peak_mb"] * 2**20 / data_bytes
    _verdict(f"peak memory / uint8 data size:        {memory:6.2f}x", memory < 2.0, "< 2")


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _verdict(text: str, ok: bool, target: str) -> None:
    print(f"{text}  target {target}x: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
