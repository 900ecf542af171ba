"""Throughput of ``Predictor.predict`` against vectorised hand-written loops and per-image calls.

Run: ``python bench/bench_predict.py`` (add ``--flowers PATH`` to also time real JPEG files).

Workload 1 (W1): 2,000 real MNIST digits from the bundled sample, the W1 tutorial's MLP
784-512-512-10, on the CPU, as three input kinds: ``uint8`` NumPy arrays, PIL images and
``uint8`` tensors. Each kind is compared with the loop an expert would write for it, one
batch of 64 at a time: ``np.stack`` of the arrays (of ``np.asarray(image)`` for PIL images,
``torch.stack`` of the tensors), one conversion to ``float32`` and one normalisation per
batch, the model in eval mode under ``torch.inference_mode``, softmax and top-1 turned into
Python values. The three methods (hand loop, ``Predictor.predict(list)``, one
``predictor.predict(image)`` call per image) run interleaved, in a rotating order, ``--repeat``
times after a warm-up; a ratio is the median of the ratios of runs of the same repeat, in CPU
time (``time.process_time``) and in wall time. Images/s are from the median wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from visionkit import Predictor
from visionkit.data import mnist_sample
from visionkit.models import create_model
from visionkit.predict import Preprocess

BATCH = 64
MEAN, STD = (0.1307,), (0.3081,)
KINDS = ("numpy", "pil", "tensor")
Timing = tuple[float, float]  # (wall s, CPU s)


def timed(fn: Callable[[], Any]) -> Timing:
    """Wall and CPU seconds of one call of ``fn``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(variants: dict[str, Callable[[], Any]], repeat: int) -> dict[str, list[Timing]]:
    """Each variant once to warm up, then ``repeat`` rounds in a rotating order."""
    for fn in variants.values():
        fn()
    names = list(variants)
    runs: dict[str, list[Timing]] = {name: [] for name in names}
    for r in range(repeat):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name].append(timed(variants[name]))
    return runs


def round_ratios(runs: dict[str, list[Timing]], slow: str, fast: str, column: int) -> list[float]:
    """``slow``'s time / ``fast``'s in each round (column 0: wall, 1: CPU)."""
    pairs = zip(runs[slow], runs[fast], strict=True)
    return [a[column] / b[column] for a, b in pairs]


def speeds_of(runs: dict[str, list[Timing]], n: int) -> dict[str, Any]:
    """Images/s of each method (median wall time of ``n`` images) and ``predict``'s ratios
    to the others: their median (``"predict/hand cpu"``) and each round's (``"... rounds"``)."""
    speeds: dict[str, Any] = {
        name: n / statistics.median(w for w, _ in times) for name, times in runs.items()
    }
    for column, unit in ((1, "cpu"), (0, "wall")):
        for other in ("hand", "single"):
            ratios = round_ratios(runs, other, "predict", column)
            speeds[f"predict/{other} {unit}"] = statistics.median(ratios)
            speeds[f"predict/{other} {unit} rounds"] = ratios
    return speeds


def _stacked(images: Sequence[Any], kind: str) -> torch.Tensor:
    """One ``uint8`` batch ``N x 1 x H x W`` from grey images of one kind, as an expert stacks."""
    if kind == "tensor":
        return torch.stack(list(images))
    if kind == "pil":
        return torch.from_numpy(np.stack([np.asarray(image) for image in images]))[:, None]
    return torch.from_numpy(np.stack(images))[:, None]


def hand_loop(
    model: nn.Module, images: Sequence[Any], kind: str, names: list[str]
) -> list[tuple[str, float]]:
    """A vectorised inference loop: one stack, conversion and normalisation per batch."""
    results: list[tuple[str, float]] = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(images), BATCH):
            batch = _stacked(images[start : start + BATCH], kind)
            batch = batch.float().div_(255).sub_(MEAN[0]).div_(STD[0])
            values, indices = torch.softmax(model(batch), dim=1).max(dim=1)
            results += [
                (names[i], p) for i, p in zip(indices.tolist(), values.tolist(), strict=True)
            ]
    return results


def digit_images(n: int, kind: str) -> list[Any]:
    """``n`` real MNIST digits as ``uint8`` arrays, PIL images or ``uint8`` tensors."""
    images = mnist_sample().test.images  # N x 1 x 28 x 28 uint8
    if kind == "tensor":
        return [images[i % len(images)].clone() for i in range(n)]
    arrays = [images[i % len(images), 0].numpy().copy() for i in range(n)]
    return [Image.fromarray(a) for a in arrays] if kind == "pil" else arrays


def digits(n: int, repeat: int, *, as_pil: bool = True, kind: str | None = None) -> dict[str, Any]:
    """Images/s of the three methods on ``n`` digits of one kind, and their paired ratios.

    ``kind`` is ``"numpy"``, ``"pil"`` or ``"tensor"``; without it, ``as_pil`` picks PIL
    images or NumPy arrays (the two workloads of ``run_all.py``).
    """
    kind = kind or ("pil" if as_pil else "numpy")
    methods, scale = digit_methods(n, kind, check=True)
    runs = interleaved(methods, repeat)
    runs["single"] = [(w * scale, c * scale) for w, c in runs["single"]]
    return speeds_of(runs, n)


def digit_methods(
    n: int, kind: str, *, check: bool = False
) -> tuple[dict[str, Callable[[], Any]], float]:
    """The three methods on ``n`` digits of ``kind``, and the factor that scales the time of
    ``"single"`` to ``n`` images (per-image calls are slow: it times a quarter of them).

    ``check`` first asserts that ``Predictor.predict`` gives the hand loop's results and the
    tutorials' transform's input.
    """
    images = digit_images(n, kind)
    classes = [str(d) for d in range(10)]
    torch.manual_seed(0)
    model = create_model("mlp", in_features=784, hidden=[512, 512], num_classes=10, dropout=0.2)
    predictor = Predictor(
        model,
        classes=classes,
        preprocess=Preprocess(mode="L", size=(28, 28), mean=MEAN, std=STD),
        device="cpu",
    )
    if check:
        ours = predictor.predict(images, batch_size=BATCH)
        theirs = hand_loop(model, images, kind, classes)
        assert [(p.name, p.probability) for p in ours] == theirs, "results differ"
        reference = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])  # the tutorials'
        image = images[0] if kind != "tensor" else images[0][0].numpy()
        assert torch.equal(predictor.to_input(images[0]), reference(image)), "inputs differ"
    few = images[: max(1, n // 4)]
    methods: dict[str, Callable[[], Any]] = {
        "hand": lambda: hand_loop(model, images, kind, classes),
        "predict": lambda: predictor.predict(images, batch_size=BATCH),
        "single": lambda: [predictor.predict(image) for image in few],
    }
    return methods, n / len(few)


def run_method(method: str, kind: str, n: int, repeat: int) -> Timing:
    """Wall and CPU seconds of ``repeat`` calls of ``method`` on ``n`` digits of ``kind``
    (``"single"`` scaled to ``n`` images), everything built here: a contender of
    ``_side_by_side.side_by_side``."""
    methods, scale = digit_methods(n, kind)
    wall, cpu = timed(lambda: [methods[method]() for _ in range(repeat)])
    return (wall * scale, cpu * scale) if method == "single" else (wall, cpu)


def flowers(folder: Path, repeat: int) -> dict[str, Any]:
    """Images/s on real JPEG files (resize 256, crop 224): decoding dominates."""
    paths = sorted(folder.rglob("*.jpg"))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(128, 5),
    ).eval()
    names = [f"class {i}" for i in range(5)]
    predictor = Predictor(
        model,
        classes=names,
        preprocess=Preprocess(resize=256, center_crop=224, mean=mean, std=std),
        device="cpu",
    )
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(mean, std)])

    def hand() -> list[int]:
        indices: list[int] = []
        with torch.inference_mode():
            for start in range(0, len(paths), BATCH):
                batch = []
                for path in paths[start : start + BATCH]:
                    with Image.open(path) as image:
                        batch.append(transform(image.convert("RGB")))
                indices += model(torch.stack(batch)).argmax(dim=1).tolist()
        return indices

    runs = interleaved(
        {
            "hand": hand,
            "predict": lambda: predictor.predict(paths, batch_size=BATCH),
            "single": lambda: [predictor.predict(p) for p in paths],
        },
        repeat,
    )
    return speeds_of(runs, len(paths))


def report(title: str, speeds: dict[str, float], note: str | None = None) -> None:
    """Print one workload's images/s and paired ratios."""
    print(f"\n{title}")
    print(f"  vectorised hand loop      : {speeds['hand']:10.0f} images/s")
    print(f"  Predictor.predict(list)   : {speeds['predict']:10.0f} images/s")
    print(f"  predict, one image a call : {speeds['single']:10.0f} images/s")
    hand = f"CPU {speeds['predict/hand cpu']:.2f}x, wall {speeds['predict/hand wall']:.2f}x"
    print(f"  predict / hand loop       : {hand} (goal >= 0.95x)")
    single = f"CPU {speeds['predict/single cpu']:.1f}x, wall {speeds['predict/single wall']:.1f}x"
    goal = "(goal >= 5x)" if note is None else f"({note})"
    print(f"  predict / one-at-a-time   : {single} {goal}")


def main() -> None:
    """Time every input kind (and the flowers with ``--flowers``); print, and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="number of digit images")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--flowers", type=Path, help="folder of JPEGs, e.g. shared/data/flowers")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    title = f"{args.n} MNIST digits, MLP 784-512-512-10, CPU, batch {BATCH}"
    labels = {"numpy": "uint8 NumPy arrays", "pil": "PIL images", "tensor": "uint8 tensors"}
    results = {}
    for kind in args.kinds:
        results[f"digits_{kind}"] = digits(args.n, args.repeat, kind=kind)
        report(f"W1: {title}, as {labels[kind]}", results[f"digits_{kind}"])
    if args.flowers:
        results["flowers"] = flowers(args.flowers, args.repeat)
        report(
            "W5: flower JPEG files, resize 256 + crop 224, small convnet, CPU",
            results["flowers"],
            note="JPEG decoding dominates: batching cannot help much on a CPU",
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
