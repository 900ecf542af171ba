"""What the benchmarks of ``run_all.py`` share: problem sizes, the memory meter, devices."""

from __future__ import annotations

import importlib.util
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bench_data
import torch

HAS_LIGHTNING = importlib.util.find_spec("lightning") is not None
Result = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    """Problem sizes; ``--quick`` shrinks the CPU workloads, never the targets."""

    data_copies: int = 6  # tiles of the 10,000 real digits: 60,000 training digits
    data_repeats: int = 5
    trainer_mlp: tuple[int, int] = (48000, 12000)
    trainer_convnet: tuple[int, int] = (6400, 1600)
    trainer_repeats: int = 7  # rounds side by side
    alone_repeats: int = 3  # interleaved runs alone, for wall time
    defaults_data: tuple[int, int] = (3584, 896)  # short epochs: 56 batches of 64
    defaults_epochs: int = 3
    defaults_repeats: int = 11
    compile_mlp: tuple[int, int] = (19200, 4800)
    compile_convnet: tuple[int, int] = (3200, 800)
    compile_epochs: int = 4
    compile_repeats: int = 2
    accuracy_repeats: int = 7  # rounds: side by side on the CPU, one after another on CUDA
    predict_n: int = 2000
    predict_repeat: int = 15
    predict_rounds: int = 7  # side by side
    flowers: bool = True
    accuracy_max_time: float = 600.0
    accuracy_devices: tuple[str, ...] = ("cpu", "cuda")  # CUDA only where there is a device
    gpu_n: int = 50000
    gpu_epochs: int = 4
    gpu_batch: int = 512
    gpu_models: tuple[str, ...] = ("resnet_deep", "resnet18")
    gpu_rounds: int = 3  # of the hand loop and the plain Trainer


QUICK = Sizes(
    data_copies=2,
    data_repeats=3,
    trainer_mlp=(9600, 2400),
    trainer_convnet=(3200, 800),
    trainer_repeats=3,
    alone_repeats=2,
    defaults_epochs=2,
    defaults_repeats=3,
    compile_mlp=(4800, 1200),
    compile_convnet=(1600, 400),
    compile_epochs=3,
    compile_repeats=1,
    accuracy_repeats=3,
    predict_n=1000,
    predict_repeat=3,
    predict_rounds=3,
    flowers=False,
    accuracy_max_time=170.0,
    gpu_n=10240,
    gpu_epochs=3,
)
SMOKE = Sizes(  # --gpu-smoke: the GPU benchmark's code paths on the CPU, tiny sizes
    gpu_n=256, gpu_epochs=2, gpu_batch=64, gpu_models=("resnet_deep",), gpu_rounds=2
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


Runs = dict[str, list[tuple[float, float, Peak]]]
AGAIN = "hand loop, again"  # a base loop's second copy side by side: their ratio is noise
DEFAULT_HEAP = ", default heap"  # the suffix of a loop run with glibc's default heap


def paired_ratios(runs: Runs, name: str, base: str, column: int = 1) -> list[float]:
    """``name``'s time / ``base``'s in each repeat (column 0: wall, 1: CPU)."""
    pairs = zip(runs[name], runs[base], strict=True)
    return [a[column] / b[column] for a, b in pairs]


def paired(runs: Runs, name: str, base: str, column: int = 1) -> float:
    """Median over repeats of ``name``'s time / ``base``'s (column 0: wall, 1: CPU)."""
    return statistics.median(paired_ratios(runs, name, base, column))


def rotated(names: list[str], repeat: int) -> list[str]:
    """Round ``repeat``'s order of ``names``: rotated by one per round, so none always leads."""
    shift = repeat % len(names)
    return names[shift:] + names[:shift]


def round_ratios(
    runs: dict[str, list[dict[str, Any]]], name: str, base: str, key: str
) -> list[float]:
    """``name``'s ``key`` / ``base``'s in each round (runs of the same round paired); a
    round where either has no figure (``None``: it did not get there) is left out."""
    pairs = zip(runs[name], runs[base], strict=True)
    return [a[key] / b[key] for a, b in pairs if a[key] is not None and b[key] is not None]


def median_ratio(runs: dict[str, list[dict[str, Any]]], name: str, base: str, key: str) -> float:
    """Median over rounds of ``name``'s ``key`` / ``base``'s (runs of the same round paired)."""
    return statistics.median(round_ratios(runs, name, base, key))


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a timer sees it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """``cuda (<GPU name>)`` or ``cpu (<CPU name>)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({bench_data._cpu_name()})"


def interleaved(
    loops: dict[str, Callable[..., tuple[float, float]]],
    work: Any,
    data: Any,
    repeats: int,
    epochs: int,
) -> Runs:
    """Each of ``loops`` run alone, one after another in this process, ``repeats`` times in
    a rotating order after a one-epoch warm-up: ``(wall, cpu)`` per epoch and memory."""
    for run in loops.values():
        run(work, *data, 1)
    runs: Runs = {name: [] for name in loops}
    for repeat in range(repeats):
        for name in rotated(list(loops), repeat):
            with Peak() as peak:
                wall, cpu = loops[name](work, *data, epochs)
            runs[name].append((wall, cpu, peak))
    return runs


def loop_row(
    workload: str, loop: str, together: dict[str, list[dict[str, Any]]], alone: Runs, base: str
) -> dict[str, Any]:
    """One loop's row: CPU time side by side (median, and ratio to ``base``), wall time
    alone (when it ran alone) and the memory of its worst round side by side."""
    results = together[loop]
    row: dict[str, Any] = {
        "workload": workload,
        "loop": loop,
        "CPU s/epoch": statistics.median(r["cpu"] for r in results),
        "CPU time / hand loop": median_ratio(together, loop, base, "cpu"),
    }
    if loop in alone:
        row["best wall s/epoch, alone"] = min(r[0] for r in alone[loop])
        row["wall time / hand loop, alone"] = paired(alone, loop, base, 0)
    worst = max(results, key=lambda r: r["peak RSS MiB"])
    row.update({key: worst[key] for key in ("peak RSS MiB", "RSS rise MiB")})
    return row
