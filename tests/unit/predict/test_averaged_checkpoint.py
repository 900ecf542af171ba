"""A checkpoint with averaged weights (EMA / SWA): what the Predictor and ``test`` load.

The Predictor loads the averaged weights unless told ``weights="raw"``; a checkpoint
without averaged weights loads its only weights either way. These tests run once
``Predictor.from_checkpoint`` and ``Trainer.load_weights`` take ``weights=``.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from torch import nn

from visionkit import Predictor, Trainer, seed_everything
from visionkit.callbacks import EMA
from visionkit.data import mnist_sample
from visionkit.models import create_model

pytestmark = pytest.mark.skipif(
    "weights" not in inspect.signature(Predictor.from_checkpoint).parameters,
    reason="Predictor.from_checkpoint does not choose between averaged and raw weights yet",
)


def _same(a: nn.Module, b: nn.Module) -> bool:
    right = b.state_dict()
    return all(torch.equal(v, right[k]) for k, v in a.state_dict().items())


def _trained(tmp_path: Path, callbacks: list[EMA]) -> tuple[Trainer, Path]:
    seed_everything(0)
    data = mnist_sample(normalize=(0.1307, 0.3081))
    model = create_model("mlp", in_features=784, hidden=[16], num_classes=10)
    trainer = Trainer(
        model,
        max_steps=8,
        device="cpu",
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(data.train.select(range(256)), batch_size=32)
    return trainer, trainer.save_checkpoint(tmp_path / "run.ckpt")


def test_predictor_loads_the_averaged_weights_unless_told_raw(tmp_path: Path) -> None:
    ema = EMA(decay=0.9)
    trainer, path = _trained(tmp_path, [ema])
    assert ema.averaged_model is not None
    averaged = Predictor.from_checkpoint(path, device="cpu")
    raw = Predictor.from_checkpoint(path, device="cpu", weights="raw")
    assert _same(averaged.model, ema.averaged_model)
    assert _same(raw.model, trainer.model)
    assert not _same(averaged.model, raw.model)


def test_a_checkpoint_without_an_average_loads_its_weights_either_way(tmp_path: Path) -> None:
    trainer, path = _trained(tmp_path, [])
    for weights in ("averaged", "raw"):
        predictor = Predictor.from_checkpoint(path, device="cpu", weights=weights)
        assert _same(predictor.model, trainer.model)


@pytest.mark.skipif(
    "weights" not in inspect.signature(Trainer.load_weights).parameters,
    reason="Trainer.load_weights does not choose between averaged and raw weights yet",
)
def test_trainer_tests_the_averaged_weights_of_a_checkpoint(tmp_path: Path) -> None:
    ema = EMA(decay=0.9)
    trainer, path = _trained(tmp_path, [ema])
    assert ema.averaged_model is not None
    averaged = [v.clone() for v in ema.averaged_model.state_dict().values()]
    trainer.load_weights(path)
    loaded = trainer.model.state_dict().values()
    assert all(torch.equal(a, b) for a, b in zip(averaged, loaded, strict=True))
