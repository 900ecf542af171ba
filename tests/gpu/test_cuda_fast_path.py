"""The GPU fast path on a real CUDA device (skipped without one).

``tests/unit/training/test_fast_path.py`` checks the same promises on the CPU through the
calls a step makes; here CUDA's own detector (``torch.cuda.set_sync_debug_mode("error")``)
raises on any operation that makes the host wait for the GPU. Run with
``pytest tests/gpu -m gpu`` on a machine with CUDA; ``scripts/check`` deselects the
``gpu`` marker, and every test here skips when ``torch.cuda.is_available()`` is false.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from visionkit import Trainer
from visionkit.callbacks import Callback
from visionkit.callbacks.base import Batch, StepOutput
from visionkit.data import BatchAugment, InMemoryLoader, TensorImageDataset

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@contextlib.contextmanager
def _sync_debug(mode: str) -> Iterator[None]:
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


class NoSyncWindow(Callback):
    """CUDA's sync detector on, set to error, from batch ``first`` to the end of ``last``."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self.steps = 0

    def on_train_batch_start(self, trainer: Trainer, batch: Batch, batch_index: int) -> None:
        if trainer.epoch == 0 and batch_index == self.first:
            torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        if trainer.epoch == 0 and self.first <= outputs.batch_index <= self.last:
            self.steps += 1
        if trainer.epoch == 0 and outputs.batch_index == self.last:
            torch.cuda.set_sync_debug_mode("default")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _cifar_shaped(n: int = 1024) -> TensorImageDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)
    return TensorImageDataset(
        images, labels, [str(i) for i in range(10)], mean=(0.49, 0.48, 0.45), std=(0.25,) * 3
    )


def _fit(train: TensorImageDataset, **options: Any) -> tuple[Trainer, NoSyncWindow]:
    torch.manual_seed(0)
    model = Net()
    window = NoSyncWindow(first=1, last=6)
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True),
        device="cuda",
        max_epochs=1,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[window],
        **options,
    )
    trainer.fit(train, batch_size=128)  # 8 batches
    return trainer, window


@pytest.mark.parametrize("resident", [False, True], ids=["host-data", "gpu-resident"])
@pytest.mark.parametrize(
    "options",
    [{}, {"channels_last": True, "precision": "bf16", "gradient_clip_val": 1.0}],
    ids=["fp32", "fast-flags"],
)
def test_training_steps_never_wait_for_the_gpu(resident: bool, options: dict[str, Any]) -> None:
    train = _cifar_shaped().with_augment(BatchAugment(crop_padding=4, flip=True))
    if resident:
        train = train.to("cuda")
    with _sync_debug("default"):
        trainer, window = _fit(train, **options)
    assert window.steps == 6
    assert trainer.global_step == 8


def test_host_batches_are_pinned_before_the_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned: list[torch.Size] = []
    pin = torch.Tensor.pin_memory

    def counted(self: torch.Tensor, *args: Any) -> torch.Tensor:
        pinned.append(self.shape)
        return pin(self, *args)

    monkeypatch.setattr(torch.Tensor, "pin_memory", counted)
    loader = InMemoryLoader(_cifar_shaped(256), 64, device="cuda")
    batches = list(loader)
    assert len(batches) == 4
    assert all(x.device.type == "cuda" and x.dtype == torch.float32 for x, _ in batches)
    assert pinned == [torch.Size([64, 3, 32, 32]), torch.Size([64])] * 4


def test_resident_data_trains_like_host_data() -> None:
    host, _ = _fit(_cifar_shaped())
    resident, _ = _fit(_cifar_shaped().to("cuda"))
    assert resident.last_metrics["train_loss"] == pytest.approx(
        host.last_metrics["train_loss"], rel=1e-3
    )


def test_compile_trains_on_cuda() -> None:
    pytest.importorskip("triton", reason="torch.compile on CUDA needs Triton")
    eager, _ = _fit(_cifar_shaped())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled, _ = _fit(_cifar_shaped(), compile=True)
    fallbacks = [str(w.message) for w in caught if str(w.message).startswith("torch.compile")]
    assert fallbacks == []  # the messages of visionkit's fallback warning, if any
    assert compiled.last_metrics["train_loss"] == pytest.approx(
        eager.last_metrics["train_loss"], rel=1e-2
    )


def test_every_fast_flag_with_compile_trains_a_resnet18_to_the_end() -> None:
    """Every fast-path flag and ``compile=True`` on torchvision's ResNet-18.

    Where torch's compiler fails (its compiled backward pass with ``channels_last`` weights
    has failed on CUDA), the run says so in one warning and finishes eagerly.
    """
    pytest.importorskip("triton", reason="torch.compile on CUDA needs Triton")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True),
        device="cuda",
        max_epochs=2,
        channels_last=True,
        precision="bf16",
        compile=True,
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = trainer.fit(_cifar_shaped(1000).to("cuda"), batch_size=256)  # last batch 232
    fallbacks = [str(w.message) for w in caught if str(w.message).startswith("torch.compile")]
    assert len(fallbacks) <= 1, fallbacks
    print("compiled" if not fallbacks else f"fell back: {fallbacks[0]}")
    assert trainer.global_step == 8
    assert len(history) == 2
    assert torch.isfinite(torch.tensor(trainer.last_metrics["train_loss"]))
