"""The GPU benchmark of ``run_all.py``: images/s of each fast-path flag on CIFAR-shaped data."""

from __future__ import annotations

import contextlib
import math
import statistics
import sys
import time
from typing import Any

import torch
import torchvision
from _common import HAS_LIGHTNING, Peak, Result, Sizes, rotated, round_ratios, sync
from _targets import gpu_checks
from torch import nn

from visionkit import Trainer
from visionkit.data import BatchAugment, TensorImageDataset, make_loader
from visionkit.models import create_model


def cifar_shaped(n: int) -> TensorImageDataset:
    """Random ``uint8`` images and labels of CIFAR-10's shapes (no real CIFAR-10 offline)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)
    classes = [f"class {i}" for i in range(10)]
    mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
    return TensorImageDataset(images, labels, classes, mean=mean, std=std)


def gpu_model(name: str) -> nn.Module:
    """``resnet_deep`` (the W4 tutorial's NetResDeep) or torchvision's ``resnet18``, 10 classes."""
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
        sync(torch.device(device))
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
    overhead: dict[str, list[float]] = {}
    for name in sizes.gpu_models:
        variants = _gpu_variants()
        paired = variants[:2]  # the hand loop and the plain Trainer: rounds, interleaved
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in paired}
        for round_index in range(sizes.gpu_rounds):
            for label, kind, options in rotated(paired, round_index):
                runs[label].append(_gpu_row(name, label, kind, options, data, sizes, device))
        rows += [_median_row(rounds) for rounds in runs.values()]
        hand, plain = (label for label, _, _ in paired)
        overhead[name] = round_ratios(runs, hand, plain, "images/s")  # plain's time / hand's
        for label, kind, options in variants[2:]:
            rows.append(_gpu_row(name, label, kind, options, data, sizes, device))
    return {
        "title": title,
        "setup": f"{sizes.gpu_n} random uint8 3x32x32 images, batch {sizes.gpu_batch}, "
        f"SGD(momentum 0.9, nesterov), {sizes.gpu_epochs} epochs per variant; images/s from "
        "the median epoch after the first (warm-up and compilation excluded); "
        f"cudnn.benchmark on for all variants; the hand loop and the plain Trainer run "
        f"{sizes.gpu_rounds} interleaved rounds (their row: the median round), the other "
        "variants once",
        "rows": rows,
        "checks": gpu_checks(rows, overhead),
    }


def _median_row(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median images/s (the lower middle one of an even number)."""
    ranked = sorted(rounds, key=lambda row: row["images/s"])
    return {**ranked[(len(ranked) - 1) // 2], "rounds": len(rounds)}


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
    try:
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
    except Exception as error:  # e.g. torch's compiler failing inside Lightning: a row says so
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        print(f"{name}, {label}: failed: {first_line}", file=sys.stderr, flush=True)
        return {"model": name, "variant": label, "images/s": math.nan, "error": first_line}
    finally:
        del model
        with contextlib.suppress(RuntimeError):
            torch.cuda.empty_cache()
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    print(f"{name}, {label}: {len(data) / steady:.0f} images/s", file=sys.stderr, flush=True)
    return {
        "model": name,
        "variant": label,
        "images/s": len(data) / steady,
        "first epoch s": times[0],
        "steady epoch s": steady,
        **peak.columns(),
    }
