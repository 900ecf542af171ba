"""``Trainer(compile=True)`` against ``compile=False`` on the CPU, for the W1 MLP and W2 ConvNet.

Each run trains a fresh model for a few epochs with checkpointing and the progress bar off
(so the loop and the model are what differ) and times every training epoch, on the wall
clock and as the process's CPU time. The first epoch of a compiled run includes the
compilation (forward and backward graphs, and one recompilation for the last, smaller
batch); the figure compared is the median epoch after the first. Compile time is the first
epoch minus that median. Every compiled run starts with ``torch._dynamo.reset()`` and an
empty inductor cache folder (``TORCHINDUCTOR_CACHE_DIR``), so it compiles from scratch as a
first run on a machine does; a later run of the same model reuses PyTorch's on-disk caches
and compiles faster. Kernels already loaded by an earlier run of the same process may
still be reused: the first round (the only one with ``--quick``) is the cold one.

Inductor, the default backend, builds C++ kernels on the CPU and needs a C++ compiler
(``$CXX`` or ``g++``); without one the Trainer warns once (``RuntimeWarning: torch.compile
failed ...``) and trains eagerly, and the ``compiled`` column says ``no``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import bench_trainer
import torch
from _common import Peak, Result, Sizes, rotated
from _targets import check

from visionkit import Trainer
from visionkit.callbacks import Callback

VARIANTS = ("compile=False", "compile=True")


class EpochClock(Callback):
    """Wall and CPU seconds of every training epoch."""

    def __init__(self) -> None:
        self.epochs: list[tuple[float, float]] = []
        self._start = self._cpu = 0.0

    def on_train_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._start, self._cpu = time.perf_counter(), time.process_time()

    def on_train_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        wall, cpu = time.perf_counter() - self._start, time.process_time() - self._cpu
        self.epochs.append((wall, cpu))


def compiler() -> str | None:
    """The C++ compiler inductor looks for (``$CXX``, then ``g++``), or ``None``."""
    return shutil.which(os.environ.get("CXX", "")) or shutil.which("g++")


def run(work: bench_trainer.Workload, data: Any, epochs: int, compiled: bool) -> dict[str, Any]:
    """One fit of ``epochs`` epochs: per-epoch times, whether it compiled, any warning."""
    with tempfile.TemporaryDirectory() as cache:
        if compiled:  # compile from scratch: no on-disk cache of an earlier run
            torch._dynamo.reset()
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # read by inductor on every use
        return _fit(work, data, epochs, compiled)


def _fit(work: bench_trainer.Workload, data: Any, epochs: int, compiled: bool) -> dict[str, Any]:
    clock = EpochClock()
    trainer = bench_trainer.make_trainer(
        work,
        epochs,
        compile=compiled,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[clock],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(*data, batch_size=work["batch_size"])
    active = bool(getattr(trainer._train_forward, "active", False))
    fallback = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
    later = clock.epochs[1:]
    return {
        "first_wall": clock.epochs[0][0],
        "first_cpu": clock.epochs[0][1],
        "wall": statistics.median(e[0] for e in later),
        "cpu": statistics.median(e[1] for e in later),
        "compiled": active,
        "warning": fallback[0] if fallback else None,
    }


def bench_compile(sizes: Sizes, threads: int) -> Result:
    """Per-epoch CPU and wall time of ``compile=True`` against eager, after the first epoch."""
    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    notes: list[str] = []
    cc = compiler()
    for name, work in bench_trainer._workloads().items():
        train, val = sizes.compile_mlp if name == "mlp" else sizes.compile_convnet
        data = bench_trainer._data(train, val)
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        peaks: dict[str, Peak] = {}
        for repeat in range(sizes.compile_repeats):
            for variant in rotated(list(VARIANTS), repeat):
                with Peak() as peak:
                    runs[variant].append(
                        run(work, data, sizes.compile_epochs, variant == "compile=True")
                    )
                peaks[variant] = peak
        eager = runs["compile=False"]
        for variant, results in runs.items():
            later = statistics.median(r["wall"] for r in results)
            first = statistics.median(r["first_wall"] for r in results)
            rows.append(
                {
                    "workload": name,
                    "variant": variant,
                    "compiled": "yes" if all(r["compiled"] for r in results) else "no",
                    "first epoch wall s": first,
                    "later epochs wall s/epoch": later,
                    "later epochs CPU s/epoch": statistics.median(r["cpu"] for r in results),
                    "CPU time / compile=False": statistics.median(
                        r["cpu"] / e["cpu"] for r, e in zip(results, eager, strict=True)
                    ),
                    "wall time / compile=False": statistics.median(
                        r["wall"] / e["wall"] for r, e in zip(results, eager, strict=True)
                    ),
                    "first epoch - later, wall s": first - later,
                    **peaks[variant].columns(),
                }
            )
            notes += [f"{name}, {variant}: {r['warning']}" for r in results[:1] if r["warning"]]
        speedup = statistics.median(
            e["cpu"] / c["cpu"] for e, c in zip(eager, runs["compile=True"], strict=True)
        )
        label = f"{name}: compile=False / compile=True, CPU s per epoch after the first"
        checks.append(check(label, speedup, "-"))
    if cc is None:
        notes.append(
            "No C++ compiler on this machine: inductor cannot build its CPU kernels, so the "
            "Trainer warned and trained eagerly (`compiled` is no)."
        )
    return {
        "title": "CPU torch.compile: Trainer(compile=True) vs compile=False, per epoch",
        "setup": f"MLP (W1, SGD, batch 20): {sizes.compile_mlp[0]} train + "
        f"{sizes.compile_mlp[1]} val digits; ConvNet (W2, Adadelta, batch 32): "
        f"{sizes.compile_convnet[0]} + {sizes.compile_convnet[1]}; {sizes.compile_epochs} "
        f"epochs per run, {sizes.compile_repeats} round(s) of both variants, the order rotated "
        "each round; per-epoch figures: the median epoch after the first (the first includes "
        "compilation), medians over rounds; checkpointing and progress bar off; "
        f"{threads} thread(s); torch.compile's default backend (inductor); C++ compiler: "
        f"{Path(cc).name if cc else 'none found'}. CPU time is this process's: compile "
        "workers in other processes are not in it, so compile time is given on the wall clock",
        "rows": rows,
        "checks": checks,
        "notes": notes,
    }
