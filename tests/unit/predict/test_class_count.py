"""A checkpoint whose class names do not fit the model's outputs is refused when loaded."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from torch import nn

from visionkit import CheckpointError
from visionkit.predict import Predictor, Preprocess, make_checkpoint, save_checkpoint


@pytest.mark.parametrize("count", [3, 12])
@pytest.mark.parametrize("preprocess", [True, False], ids=["forward", "num_classes"])
def test_class_names_that_do_not_fit_the_outputs_are_refused_at_load(
    tmp_path: Path,
    small_mlp: Callable[..., nn.Module],
    digits_preprocess: Preprocess,
    count: int,
    preprocess: bool,
) -> None:
    names = [f"class{i}" for i in range(count)]
    checkpoint = make_checkpoint(
        small_mlp(), classes=names, preprocess=digits_preprocess if preprocess else None
    )
    path = save_checkpoint(checkpoint, tmp_path / "model.ckpt")
    expected = (
        f"checkpoint {path} stores {count} class names but its model has 10 outputs, so its "
        "predictions cannot be named: store 10 names"
    )
    with pytest.raises(CheckpointError, match=re.escape(expected)):
        Predictor.from_checkpoint(path, device="cpu")


def test_a_model_passed_in_is_counted_by_one_forward_pass(
    tmp_path: Path, digits_preprocess: Preprocess
) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))  # not from the registry
    names = [str(i) for i in range(3)]
    checkpoint = make_checkpoint(model, classes=names, preprocess=digits_preprocess)
    path = save_checkpoint(checkpoint, tmp_path / "custom.ckpt")
    with pytest.raises(CheckpointError, match="stores 3 class names but its model has 10"):
        Predictor.from_checkpoint(path, device="cpu", model=model)
    checkpoint["classes"] = [str(i) for i in range(10)]  # the fix the message gives
    save_checkpoint(checkpoint, path)
    assert len(Predictor.from_checkpoint(path, device="cpu", model=model).classes or []) == 10
