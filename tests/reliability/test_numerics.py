"""NaN and infinity in the inputs, the loss, the outputs or the gradients stop training.

Each case trains a small MLP and makes one step go wrong, at the first step, in the
middle of an epoch, or at the last step of an epoch (just before validation and the
epoch-end checkpoints). Training must stop with :class:`NonFiniteLossError` naming the
cause, every checkpoint on disk must load with finite weights, and none may have been
written after the bad step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from visionkit import NonFiniteLossError, Trainer
from visionkit.callbacks import ModelCheckpoint
from visionkit.exceptions import CheckpointError
from visionkit.predict import load_checkpoint, make_checkpoint
from visionkit.predict.checkpoint import non_finite_tensors, save_checkpoint

Count = Callable[..., None]
STEPS_PER_EPOCH = 6
BATCH = 16
WHERE = ["inputs", "loss", "outputs", "gradients"]
VALUES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
# the global step (0-based) that goes wrong: first, mid-epoch, last of the first epoch
WHEN = {"first-step": 0, "mid-epoch": 8, "epoch-end": STEPS_PER_EPOCH - 1}
CAUSES = {
    "inputs": "the input batch holds",
    "loss": "the loss itself overflowed",
    "outputs": "the model's outputs are NaN or infinite",
    "gradients": "had non-finite gradients",
}


class _Poison(torch.autograd.Function):
    """Identity forward; its backward replaces the gradient with ``value``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, value: float) -> torch.Tensor:
        ctx.value = value
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.full_like(grad, ctx.value), None


class _Model(nn.Module):
    """A small MLP that can poison its outputs or its gradients at one training step."""

    def __init__(self, where: str, value: float, at_step: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
        self.where, self.value, self.at_step, self.calls = where, value, at_step, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        if self.training:
            bad = self.calls == self.at_step
            self.calls += 1
            if bad and self.where == "outputs":
                out = out.clone()
                out[0, 0] = self.value
            elif bad and self.where == "gradients":
                out = _Poison.apply(out, self.value)
        return out


class _Loss(nn.Module):
    """Cross-entropy that returns ``value`` at one training step."""

    def __init__(self, model: _Model, value: float, at_step: int) -> None:
        super().__init__()
        self.model, self.value, self.at_step = model, value, at_step

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(outputs, targets)
        if self.model.training and self.model.calls - 1 == self.at_step:
            return loss * 0 + self.value
        return loss


def _data(poison_batch: int | None, value: float) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(BATCH * STEPS_PER_EPOCH, 1, 8, 8, generator=generator)
    if poison_batch is not None:  # no shuffling below: this image is in that batch
        images[poison_batch * BATCH + 3, 0, 2, 5] = value
    targets = torch.arange(images.shape[0]) % 4
    return TensorDataset(images, targets)  # float images: a NaN pixel can be stored


def _run(where: str, value: float, at_step: int, folder: Path) -> NonFiniteLossError:
    torch.manual_seed(0)
    model = _Model(where, value, at_step)
    poison_batch = at_step % STEPS_PER_EPOCH if where == "inputs" else None
    data = _data(poison_batch, value)
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        loss=_Loss(model, value, at_step) if where == "loss" else None,
        max_epochs=3,
        enable_progress_bar=False,
        default_root_dir=folder,
        callbacks=[ModelCheckpoint(folder, save_top_k=-1, every_n_train_steps=1)],
    )
    with pytest.raises(NonFiniteLossError) as caught:
        trainer.fit(data, data, batch_size=BATCH, shuffle=False)
    return caught.value


def _assert_clean_folder(folder: Path, at_step: int) -> None:
    for file in folder.glob("*.ckpt"):
        checkpoint = load_checkpoint(file)
        assert non_finite_tensors(checkpoint["state_dict"]) == [], file
        step = checkpoint["trainer_state"]["global_step"]
        assert step <= at_step, f"{file.name} was written after the bad step ({step})"


@pytest.mark.parametrize("when", sorted(WHEN))
@pytest.mark.parametrize("where", WHERE)
def test_a_non_finite_value_stops_training_before_any_bad_checkpoint(
    tmp_path: Path, where: str, when: str, long: bool, count: Count
) -> None:
    values = sorted(VALUES) if long else ["nan"]
    for name in values:
        folder = tmp_path / name
        error = _run(where, VALUES[name], WHEN[when], folder)
        assert CAUSES[where] in str(error), str(error)
        assert "Training stopped" in str(error)
        _assert_clean_folder(folder, WHEN[when])
    count("numerics", len(values))
    count(f"numerics.{where}", len(values))


def test_save_checkpoint_refuses_non_finite_weights(tmp_path: Path, count: Count) -> None:
    model = nn.Linear(3, 2)
    good = save_checkpoint(make_checkpoint(model), tmp_path / "model.ckpt")
    before = good.read_bytes()
    for value in VALUES.values():
        with torch.no_grad():
            model.weight[1, 2] = value
        with pytest.raises(CheckpointError, match=r"the weights \['weight'\] hold NaN"):
            save_checkpoint(make_checkpoint(model), good)
        assert good.read_bytes() == before
    with torch.no_grad():
        model.weight.fill_(3.0e38)  # huge but finite: a sum or a norm would overflow
    assert non_finite_tensors(model.state_dict()) == []
    count("numerics", len(VALUES))
    count("numerics.save_checkpoint", len(VALUES))
