"""The on_before_optimizer_step hook sees the gradients of each optimizer step."""

from __future__ import annotations

import pytest
import torch

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
    trainer.fit(data, batch_size=3)  # 4 batches, 2 optimizer steps
    assert len(spy.norms) == 2
    assert all(n > 1e-3 for n in spy.norms)  # seen before clipping to 1e-3
    assert trainer.global_step == 2
    assert spy.norms[0] == pytest.approx(spy.norms[0])
