"""The CPU benchmarks of ``run_all.py``: data path, training loop, prediction.

Each function runs one benchmark and returns its section of the report (title, setup,
rows, target checks and notes); ``_targets.py`` holds the targets. Time to accuracy is in
``_accuracy.py``, CPU ``torch.compile`` in ``_compile_cpu.py``, the GPU in ``_gpu.py``.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_data
import bench_predict
import bench_trainer
from _common import HAS_LIGHTNING, Peak, Result, Runs, Sizes, paired
from _short_epochs import bench_short_epochs
from _targets import LIGHTNING_TUNED, LIGHTNING_TYPICAL, data_checks, loop_checks, prediction_checks


# ---------------------------------------------------------------------------- data path
def bench_data_path(sizes: Sizes, threads: int) -> Result:
    """One MLP epoch fed by each pipeline of ``bench_data.py``: interleaved fresh processes."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        data_bytes = bench_data.write_mnist(bench_data.SHARED_MNIST, root, sizes.data_copies)
        runs = bench_data.interleaved_runs(root, threads, sizes.data_repeats)
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
    memory = med["visionkit"]["peak_mb"] * 2**20 / data_bytes
    return {
        "title": "Data path: one MLP epoch (W1), in-memory vs torchvision pipeline",
        "setup": f"{med['visionkit']['samples']:.0f} training digits per epoch (real MNIST "
        f"digits tiled {sizes.data_copies}x, 20% held out), batch {bench_data.BATCH}, "
        f"{threads} thread(s); {sizes.data_repeats} round(s), each running every pipeline once "
        "in a fresh process, the order rotated each round; rows: medians over rounds; "
        "ratios: median of the per-round ratios",
        "rows": rows,
        "checks": data_checks(runs, memory),
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

        variants[LIGHTNING_TUNED] = bench_lightning.lightning_loop
        variants[LIGHTNING_TYPICAL] = functools.partial(
            bench_lightning.lightning_loop, typical=True
        )
    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    for name, work in bench_trainer._workloads().items():
        train, val = sizes.trainer_mlp if name == "mlp" else sizes.trainer_convnet
        data = bench_trainer._data(train, val)
        runs = _interleaved(variants, work, data, sizes.trainer_repeats)
        rows += _loop_rows(name, runs)
        checks += loop_checks(name, runs)
    short_rows, short_checks, short_setup = bench_short_epochs(sizes)
    rows += short_rows
    checks += short_checks
    notes = [] if HAS_LIGHTNING else ["Lightning is not installed: `pip install lightning`."]
    return {
        "title": "Training loop: Trainer vs hand-written loop vs Lightning, per epoch",
        "setup": f"MLP (W1, SGD, batch 20): {sizes.trainer_mlp[0]} train + "
        f"{sizes.trainer_mlp[1]} val digits; ConvNet (W2, Adadelta, batch 32): "
        f"{sizes.trainer_convnet[0]} + {sizes.trainer_convnet[1]}; 1 epoch per run, "
        f"{sizes.trainer_repeats} interleaved runs per variant after a warm-up, {threads} "
        "thread(s); ratios: median of the per-run ratios (same repeat) on CPU time; "
        "Lightning tuned (loss summed on the device and logged once per epoch, no logger, "
        "progress bar or summary, default "
        f"checkpoint on) and typical (per-step logging, default Trainer); {short_setup}",
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
        ("MNIST digits as uint8 tensors", lambda: bench_predict.digits(n, r, kind="tensor")),
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
        f"{bench_predict.BATCH}, {threads} thread(s); the hand loop is vectorised (one stack, "
        "one conversion and one normalisation per batch); the three methods run interleaved "
        f"in a rotating order, {r} times, images/s from the median wall time, ratios the "
        "median of the same repeat's ratios; memory columns are the peak over all three "
        "methods of a workload",
        "rows": rows,
        "checks": checks,
    }
