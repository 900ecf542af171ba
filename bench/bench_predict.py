"""Throughput of ``Predictor.predict`` against a hand-written batched loop and per-image calls.

Run: ``python bench/bench_predict.py`` (add ``--flowers PATH`` to also time real JPEG files).

Workload 1 (W1): 2,000 real MNIST digits from the bundled sample as PIL images (then as
``uint8`` NumPy arrays), the W1 tutorial's MLP 784-512-512-10. The hand-written loop is what the
seeds do: torchvision ``ToTensor`` + ``Normalize`` per image, ``torch.stack`` 64 at a time,
the model under ``inference_mode``, softmax and top-1 turned into Python values. Each timing
is the best of ``--repeat`` runs. Printed: images/s and the two ratios the issue asks for.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def best_time(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def hand_loop(
    model: nn.Module, images: list[Any], transform: Callable[[Any], torch.Tensor], names: list[str]
) -> list[tuple[str, float]]:
    """The tutorials' inference code, batched."""
    results: list[tuple[str, float]] = []
    model.eval()
    for start in range(0, len(images), BATCH):
        batch = torch.stack([transform(image) for image in images[start : start + BATCH]])
        with torch.inference_mode():
            probabilities = torch.softmax(model(batch), dim=1)
        values, indices = probabilities.max(dim=1)
        results += [(names[i], p) for i, p in zip(indices.tolist(), values.tolist(), strict=True)]
    return results


def digits(n: int, repeat: int, *, as_pil: bool = True) -> dict[str, float]:
    data = mnist_sample()
    arrays = [data.test.images[i % 1000, 0].numpy() for i in range(n)]
    images: list[Any] = [Image.fromarray(a) for a in arrays] if as_pil else arrays
    torch.manual_seed(0)
    model = create_model("mlp", in_features=784, hidden=[512, 512], num_classes=10, dropout=0.2)
    predictor = Predictor(
        model,
        classes=data.classes,
        preprocess=Preprocess(mode="L", size=(28, 28), mean=MEAN, std=STD),
        device="cpu",
    )
    transform = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    ours = predictor.predict(images, batch_size=BATCH)
    theirs = hand_loop(model, images, transform, data.classes)
    assert [p.name for p in ours] == [name for name, _ in theirs], "results differ"

    t_hand = best_time(lambda: hand_loop(model, images, transform, data.classes), repeat)
    t_predict = best_time(lambda: predictor.predict(images, batch_size=BATCH), repeat)
    few = images[: max(1, n // 4)]  # per-image calls are slow: time a quarter, scale up
    t_single = best_time(lambda: [predictor.predict(image) for image in few], repeat)
    t_single *= n / len(few)
    return {"hand": n / t_hand, "predict": n / t_predict, "single": n / t_single}


def flowers(folder: Path, repeat: int) -> dict[str, float]:
    paths = sorted(folder.rglob("*.jpg"))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(128, 5),
    )
    names = [f"class {i}" for i in range(5)]
    predictor = Predictor(
        model,
        classes=names,
        preprocess=Preprocess(resize=256, center_crop=224, mean=mean, std=std),
        device="cpu",
    )
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(mean, std)])

    def load(path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            return transform(image.convert("RGB"))  # type: ignore[no-any-return]

    t_hand = best_time(lambda: hand_loop(model, paths, load, names), repeat)
    t_predict = best_time(lambda: predictor.predict(paths, batch_size=BATCH), repeat)
    t_single = best_time(lambda: [predictor.predict(p) for p in paths], repeat)
    n = len(paths)
    return {"hand": n / t_hand, "predict": n / t_predict, "single": n / t_single}


def report(title: str, speeds: dict[str, float], note: str | None = None) -> None:
    print(f"\n{title}")
    print(f"  hand-written batched loop : {speeds['hand']:10.0f} images/s")
    print(f"  Predictor.predict(list)   : {speeds['predict']:10.0f} images/s")
    print(f"  predict, one image a call : {speeds['single']:10.0f} images/s")
    print(
        f"  predict / hand loop       : {speeds['predict'] / speeds['hand']:.2f}x (goal >= 0.95x)"
    )
    goal = "(goal >= 5x)" if note is None else f"({note})"
    print(f"  predict / one-at-a-time   : {speeds['predict'] / speeds['single']:.1f}x {goal}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="number of digit images")
    parser.add_argument("--repeat", type=int, default=5)
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
    results = {"digits": digits(args.n, args.repeat)}
    title = f"{args.n} MNIST digits, MLP 784-512-512-10, CPU, batch {BATCH}"
    report(f"W1: {title}, as PIL images", results["digits"])
    results["digits_numpy"] = digits(args.n, args.repeat, as_pil=False)
    report(f"W1: {title}, as uint8 NumPy arrays", results["digits_numpy"])
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
