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
from _common import (
    AGAIN,
    HAS_LIGHTNING,
    Peak,
    Result,
    Sizes,
    interleaved,
    loop_row,
    round_ratios,
)
from _short_epochs import bench_short_epochs
from _side_by_side import Contender, side_by_side, training_contenders
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
    """``Trainer`` vs the hand loop (and Lightning) per epoch: side by side, and alone."""
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
        size = sizes.trainer_mlp if name == "mlp" else sizes.trainer_convnet
        heap = ("hand loop", "visionkit Trainer") if name == "convnet" else ()
        contenders = training_contenders(
            variants, name, size, 1, base="hand loop", default_heap=heap
        )
        together = side_by_side(contenders, sizes.trainer_repeats, threads)
        alone = interleaved(variants, work, bench_trainer._data(*size), sizes.alone_repeats, 1)
        rows += [loop_row(name, loop, together, alone, "hand loop") for loop in together]
        checks += loop_checks(name, together)
    short_rows, short_checks, short_setup = bench_short_epochs(sizes, threads)
    rows += short_rows
    checks += short_checks
    notes = [] if HAS_LIGHTNING else ["Lightning is not installed: `pip install lightning`."]
    return {
        "title": "Training loop: Trainer vs hand-written loop vs Lightning, per epoch",
        "setup": f"MLP (W1, SGD, batch 20): {sizes.trainer_mlp[0]} train + "
        f"{sizes.trainer_mlp[1]} val digits; ConvNet (W2, Adadelta, batch 32): "
        f"{sizes.trainer_convnet[0]} + {sizes.trainer_convnet[1]}; 1 epoch per run, "
        f"{threads} thread(s). CPU time: {sizes.trainer_repeats} rounds side by side (every "
        "loop and a second hand loop as processes started together on one core, each "
        "warmed up, glibc's heap thresholds fixed; for the ConvNet the hand loop and the "
        "Trainer also with the default heap), ratios the median of the per-round ratios; "
        "wall time: "
        f"{sizes.alone_repeats} interleaved runs of each loop alone after a warm-up. "
        "Lightning tuned (loss summed on the device and logged once per epoch, no logger, "
        "progress bar or summary, default checkpoint on) and typical (per-step logging, "
        f"default Trainer); {short_setup}",
        "rows": rows,
        "checks": checks,
        "notes": notes,
    }


# ---------------------------------------------------------------------------- prediction
KINDS = {
    "MNIST digits as PIL images": "pil",
    "MNIST digits as uint8 arrays": "numpy",
    "MNIST digits as uint8 tensors": "tensor",
}
METHODS = {
    "hand": "hand-written batched loop",
    "predict": "Predictor.predict(list)",
    "single": "predict, one image per call",
}


def bench_prediction(sizes: Sizes, threads: int) -> Result:
    """Images/s of ``Predictor.predict`` against the hand loop and per-image calls."""
    n, r = sizes.predict_n, sizes.predict_repeat
    workloads: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (title, functools.partial(_digits_side_by_side, kind, sizes, threads))
        for title, kind in KINDS.items()
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
        for key, label in METHODS.items():
            row = {"workload": title, "method": label, "images/s": speeds[key]}
            if f"{key} CPU s" in speeds:
                row["images per CPU s, side by side"] = n / speeds[f"{key} CPU s"]
            rows.append({**row, **peak.columns()})
        checks += prediction_checks(title, speeds)
    return {
        "title": "Prediction: Predictor vs hand-written batched loop vs one image per call",
        "setup": f"{sizes.predict_n} real MNIST digits, MLP 784-512-512-10, batch "
        f"{bench_predict.BATCH}, {threads} thread(s); the hand loop is vectorised (one stack, "
        "one conversion and one normalisation per batch). CPU time: "
        f"{sizes.predict_rounds} rounds side by side (each method, and a second hand loop, as "
        f"processes started together on one core, each predicting {r} times after a "
        "warm-up), ratios the median of the per-round ratios; images/s: the three methods "
        f"run alone in one process, interleaved in a rotating order, {r} times, from the "
        "median wall time; memory columns are the peak of that process",
        "rows": rows,
        "checks": checks,
    }


def _digits_side_by_side(kind: str, sizes: Sizes, threads: int) -> dict[str, Any]:
    """``bench_predict.digits`` alone, with the CPU-time ratios of the methods side by side."""
    n, r = sizes.predict_n, sizes.predict_repeat
    speeds = bench_predict.digits(n, r, kind=kind)
    methods = {**{key: key for key in METHODS}, AGAIN: "hand"}
    contenders = {
        name: Contender(bench_predict.run_method, (method, kind, n, r), (method, kind, n, 1))
        for name, method in methods.items()
    }
    together = side_by_side(contenders, sizes.predict_rounds, threads)
    for key in METHODS:
        speeds[f"{key} CPU s"] = statistics.median(run["cpu"] for run in together[key]) / r
    for other in ("hand", "single"):
        speeds[f"predict/{other} cpu rounds"] = round_ratios(together, other, "predict", "cpu")
    speeds["noise cpu rounds"] = round_ratios(together, "hand", AGAIN, "cpu")  # speeds
    return speeds
