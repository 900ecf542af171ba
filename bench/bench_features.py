"""Frozen-backbone feature caching: a W5-shaped run with ``cache_features`` on and off.

Run: ``python bench/bench_features.py`` (``--quick`` for a smoke run), or through
``python bench/run_all.py --only features``.

The model is W5's: ``VGG16Transfer`` with its convolutional features frozen and a
``Linear -> ReLU -> Dropout -> Linear -> LogSoftmax`` head trained with ``NLLLoss``. The
feature weights are random (pretrained weights cost the same time) and the images are
random ``uint8`` pictures of 5 classes, smaller than W5's 224x224 so that the uncached run
fits a CPU; the head's hidden layer is 256 wide (W5's is 4,096, whose optimizer step alone
would dominate an epoch on a CPU). The same model and data are trained twice from the same
seed, with and without the cache; the report gives each run's per-epoch time after the
first epoch (the first builds the cache) and checks that both runs end with the same head.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

from visionkit import Trainer
from visionkit.data import TensorImageDataset
from visionkit.models import VGG16Transfer

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
FULL = {"size": 64, "train": 256, "val": 64, "epochs": 10}
QUICK = {"size": 48, "train": 96, "val": 32, "epochs": 3}
BATCH, HIDDEN, CLASSES = 32, 256, 5


def data(size: int, train: int, val: int) -> tuple[TensorImageDataset, TensorImageDataset]:
    """Random ``uint8`` RGB images of ``size`` x ``size``, 5 classes, ImageNet statistics."""
    generator = torch.Generator().manual_seed(0)
    n = train + val
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % CLASSES
    dataset = TensorImageDataset(
        images, labels, [f"class {i}" for i in range(CLASSES)], mean=IMAGENET_MEAN, std=IMAGENET_STD
    )
    return dataset.select(range(train)), dataset.select(range(train, n))


def run(cache: bool, sizes: dict[str, int], threads: int) -> dict[str, Any]:
    """Train the W5 model once; per-epoch times, the last epoch's metrics, the head."""
    train, val = data(sizes["size"], sizes["train"], sizes["val"])
    torch.manual_seed(0)
    model = VGG16Transfer(CLASSES, hidden=HIDDEN)
    trainer = Trainer(
        model,
        optimizer=torch.optim.Adam(model.trainable_parameters(), lr=1e-3),
        loss=torch.nn.NLLLoss(),
        max_epochs=sizes["epochs"],
        device="cpu",
        num_threads=threads,
        enable_checkpointing=False,
        enable_progress_bar=False,
        cache_features=cache,
    )
    start = time.perf_counter()
    history = trainer.fit(train, val, batch_size=BATCH)
    return {
        "fit_s": time.perf_counter() - start,
        "epoch_times": [row["epoch_time"] for row in history.epochs],
        "last": {k: v for k, v in history.epochs[-1].items() if k != "epoch_time"},
        "head": [p.detach().clone() for p in model.classifier.parameters()],
        "stages": trainer.feature_cache.stages,
    }


def compare(quick: bool, threads: int) -> dict[str, Any]:
    """Both runs, uncached first, and what the report needs from them."""
    sizes = QUICK if quick else FULL
    runs = {"uncached": run(False, sizes, threads), "cached": run(True, sizes, threads)}
    later = {name: statistics.median(r["epoch_times"][1:]) for name, r in runs.items()}
    head_gap = max(
        float((a - b).abs().max())
        for a, b in zip(runs["uncached"]["head"], runs["cached"]["head"], strict=True)
    )
    metric_gap = max(
        abs(runs["uncached"]["last"][k] - runs["cached"]["last"][k])
        for k in runs["uncached"]["last"]
    )
    return {
        "sizes": sizes,
        "runs": runs,
        "later_epoch_s": later,
        "speedup": later["uncached"] / later["cached"],
        "head_gap": head_gap,
        "metric_gap": metric_gap,
    }


def bench_feature_cache(sizes: Any, threads: int) -> dict[str, Any]:
    """``run_all.py``'s section: both runs' rows and the target checks (``--quick``: small)."""
    from _common import QUICK as QUICK_SIZES
    from _targets import features_checks

    found = compare(sizes == QUICK_SIZES, threads)
    rows = [
        {
            "run": f"cache_features={name == 'cached'}",
            "cached stages": ", ".join(r["stages"]) or "none",
            "first epoch s": r["epoch_times"][0],
            "later epochs, median s": found["later_epoch_s"][name],
            "fit s": r["fit_s"],
            "final val_loss": r["last"]["val_loss"],
            "final train_loss": r["last"]["train_loss"],
        }
        for name, r in found["runs"].items()
    ]
    s = found["sizes"]
    return {
        "title": "Frozen-backbone feature caching: W5's VGG16 transfer, cached vs uncached",
        "setup": f"VGG16Transfer (frozen random features, head 25088-{HIDDEN}-{CLASSES}, "
        f"Adam, NLLLoss), {s['train']} training + {s['val']} validation random "
        f"{s['size']}x{s['size']} RGB images, batch {BATCH}, {s['epochs']} epochs, "
        f"{threads} thread(s); later epochs: median epoch_time of epochs 2-{s['epochs']}",
        "rows": rows,
        "checks": features_checks(found["speedup"], found["head_gap"], found["metric_gap"]),
    }


def main() -> None:
    """Print both runs' per-epoch times and the speed-up as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    found = compare(args.quick, args.threads)
    for run_ in found["runs"].values():
        del run_["head"]
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
