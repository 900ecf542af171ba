"""Exported models give the original model's outputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from visionkit import ConfigurationError, Predictor
from visionkit.models import create_model
from visionkit.predict import export, load_exported


@pytest.mark.parametrize(
    ("fmt", "name"), [("torch.export", "model.pt2"), ("torchscript", "model.pt")]
)
def test_exported_model_matches_the_checkpoint(
    mlp_checkpoint: Path, tmp_path: Path, fmt: str, name: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation or tracer warnings reach the user
        path = export(mlp_checkpoint, tmp_path / name, format=fmt)  # type: ignore[arg-type]
    module, metadata = load_exported(path)
    original = Predictor.from_checkpoint(mlp_checkpoint, device="cpu").model
    batch = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(module(batch), original(batch), rtol=0, atol=1e-6)
    assert metadata["classes"] == [str(i) for i in range(10)]
    assert metadata["preprocess"]["size"] == [28, 28]
    assert metadata["model"] == {
        "name": "mlp",
        "kwargs": {"in_features": 784, "hidden": [16], "num_classes": 10},
    }


def test_export_a_bare_model_needs_an_example(tmp_path: Path) -> None:
    model = create_model("mlp", in_features=12, hidden=[4], num_classes=3, dropout=0.5)
    model.train()
    with pytest.raises(ConfigurationError, match=r"pass example_input=torch\.zeros"):
        export(model, tmp_path / "m.pt2")
    path = export(model, tmp_path / "m.pt2", example_input=torch.ones(2, 3, 2, 2))
    assert model.training  # the caller's mode is restored
    module, _ = load_exported(path)
    batch = torch.randn(4, 3, 2, 2)
    with torch.no_grad():
        assert torch.allclose(module(batch), model.eval()(batch), atol=1e-6)


def test_unknown_format(mlp_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"format must be .* got 'tflite'"):
        export(mlp_checkpoint, tmp_path / "m.tflite", format="tflite")  # type: ignore[arg-type]


def test_predictor_export_and_from_exported(mlp_checkpoint: Path, tmp_path: Path) -> None:
    predictor = Predictor.from_checkpoint(mlp_checkpoint, device="cpu")
    path = predictor.export(tmp_path / "model.pt2")  # torch.export, by the suffix
    deployed = Predictor.from_exported(path)
    assert deployed.classes == predictor.classes
    assert deployed.preprocess == predictor.preprocess
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert torch.allclose(deployed.predict_proba(images), predictor.predict_proba(images))
