"""The learning-rate finder: the sweep's rates, its suggestion, and a state left untouched."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
import torch

from visionkit import ConfigurationError, Trainer
from visionkit.callbacks import Callback
from visionkit.data import mnist_sample
from visionkit.models import create_model
from visionkit.training import LRFinderResult


class _Calls(Callback):
    def __init__(self) -> None:
        self.calls = 0

    def on_train_batch_start(self, trainer: Trainer, batch: Any, batch_index: int) -> None:
        self.calls += 1


def _trainer(callbacks: list[Callback]) -> Trainer:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=784, hidden=[32], num_classes=10, dropout=0.2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9)
    return Trainer(
        model,
        optimizer=optimizer,
        max_epochs=1,
        device="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=callbacks,
    )


def test_lr_find_leaves_weights_optimizer_rng_and_callbacks_as_they_were() -> None:
    data = mnist_sample(normalize=(0.1302, 0.3069)).train.select(range(256))
    calls = _Calls()
    trainer = _trainer([calls])
    trainer.fit(data, batch_size=64)  # momentum buffers exist now
    calls.calls = 0
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    momentum = [s["momentum_buffer"].clone() for s in trainer.optimizer.state.values()]
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    trainer.model.eval()

    result = trainer.lr_find(data, batch_size=32, num_steps=30)

    assert (random.random(), float(np.random.rand())) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    after = [s["momentum_buffer"] for s in trainer.optimizer.state.values()]
    assert all(torch.equal(a, b) for a, b in zip(after, momentum, strict=True))
    assert trainer.optimizer.param_groups[0]["lr"] == 0.03
    assert not trainer.model.training
    assert calls.calls == 0
    assert trainer.global_step == 4
    assert isinstance(result, LRFinderResult)


def test_lr_find_sweeps_exponentially_and_suggests_a_rate_where_loss_falls() -> None:
    data = mnist_sample(normalize=(0.1302, 0.3069)).train.select(range(512))
    trainer = _trainer([])
    result = trainer.lr_find(data, batch_size=32, min_lr=1e-4, max_lr=10.0, num_steps=60)
    assert result.lrs[0] == pytest.approx(1e-4)
    ratios = {round(b / a, 9) for a, b in zip(result.lrs, result.lrs[1:], strict=False)}
    assert ratios == {round((10.0 / 1e-4) ** (1 / 59), 9)}
    assert len(result.losses) == len(result.lrs) >= 12
    assert result.suggestion is not None
    assert result.suggestion in result.lrs[10:]
    index = result.lrs.index(result.suggestion)
    # at the suggestion the smoothed loss is falling: lower a few steps on than before
    assert result.losses[index + 1] < result.losses[index - 1]
    assert min(result.losses) < result.losses[0]
    assert 1e-3 < result.suggestion < 10.0
    assert all(math.isfinite(x) for x in result.losses[:-1])


def test_lr_find_refuses_a_range_that_does_not_grow() -> None:
    trainer = _trainer([])
    data = mnist_sample().train.select(range(64))
    with pytest.raises(ConfigurationError, match=r"max_lr must be greater than min_lr"):
        trainer.lr_find(data, min_lr=1.0, max_lr=0.1)
