"""The on_before_optimizer_step hook sees the gradients of each optimizer step."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from visionkit import Trainer
from visionkit.callbacks import Callback
from visionkit.data import TensorImageDataset
from visionkit.models import create_model


class GradNorm(Callback):
    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_before_optimizer_step(self, trainer: Trainer, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        self.norms.append(float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))))


def test_gradient_norm_recorded_once_per_optimizer_step() -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (12, 1, 4, 4), dtype=torch.uint8)
    data = TensorImageDataset(images, torch.arange(12) % 3, ["a", "b", "c"])
    model = create_model("mlp", in_features=16, hidden=[], num_classes=3)
    expected = _reference_norms(copy.deepcopy(model), data, steps=2, clip=1e-3)
    spy = GradNorm()
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        max_epochs=1,
        accumulate_grad_batches=2,
        gradient_clip_val=1e-3,
        callbacks=[spy],
        device="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(data, batch_size=3, shuffle=False)  # 4 batches, 2 optimizer steps
    assert len(spy.norms) == 2
    assert all(n > 1e-3 for n in spy.norms)  # seen before clipping to 1e-3
    assert trainer.global_step == 2
    assert spy.norms == pytest.approx(expected, rel=1e-5)


def _reference_norms(
    model: nn.Module, data: TensorImageDataset, *, steps: int, clip: float
) -> list[float]:
    """Gradient norms of a plain PyTorch loop: 2 micro-batches of 3 per step, then clip."""
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([data[i][1] for i in range(len(data))])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    norms = []
    for step in range(steps):
        for micro in range(2):
            rows = slice(6 * step + 3 * micro, 6 * step + 3 * micro + 3)
            loss = nn.functional.cross_entropy(model(x[rows]), y[rows]) / 2
            torch.autograd.backward(loss)
        grads = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.cat(grads))))
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad()
    return norms
