"""The registry: built-in models one call away, and a downstream model used like a built-in."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from visionkit import Predictor, Trainer
from visionkit.models import _registry, count_parameters, create_model, list_models, model_spec
from visionkit.models import register_model as register

NAME = "tests_models_tiny_cnn"


class Mode(enum.Enum):
    FAST = 1


@pytest.fixture(scope="module", autouse=True)
def _tiny_cnn_registered() -> Iterator[None]:
    """Register a downstream model as a user's module would, and unregister it afterwards."""

    @register(name=NAME)
    def tiny_cnn(*, num_classes: int = 10, width: int = 4) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, num_classes),
        )

    yield
    _registry._REGISTRY.pop(NAME)


@pytest.mark.parametrize(
    ("name", "kwargs", "count"),
    [
        (
            "mlp",
            {"in_features": 784, "hidden": [512, 512], "num_classes": 10, "dropout": 0.2},
            669_706,
        ),
        (
            "mlp",
            {"in_features": 3072, "hidden": [512], "num_classes": 2, "activation": "tanh"},
            1_574_402,
        ),
        ("convnet_cifar", {"num_classes": 2}, 18_090),
        ("convnet", {}, 300_426),
        ("resnet_deep", {"n_channels": 32, "n_blocks": 10, "num_classes": 2}, 159_330),
    ],
)
def test_exact_parameter_counts_of_the_seed_models(
    name: str, kwargs: dict[str, object], count: int
) -> None:
    assert count_parameters(create_model(name, **kwargs)) == count


def test_every_builtin_is_listed() -> None:
    builtins = ["convnet", "convnet_cifar", "mlp", "resnet_deep", "vgg16_transfer"]
    assert set(builtins) <= set(list_models())
    assert list_models("convnet*") == ["convnet", "convnet_cifar"]


def test_kwargs_are_recorded_as_plain_values_for_checkpoints() -> None:
    spec = model_spec(create_model(NAME, num_classes=3, width=2))
    assert spec is not None
    assert spec.kwargs == {"num_classes": 3, "width": 2}
    recorded = _registry._recordable({"weights": Path("a") / "b.pth", "mode": Mode.FAST})
    assert recorded == {"weights": str(Path("a") / "b.pth"), "mode": "Mode.FAST"}


def test_downstream_model_trains_checkpoints_and_predicts_like_a_builtin() -> None:
    torch.manual_seed(0)
    model = create_model(NAME, num_classes=3)
    before = [p.detach().clone() for p in model.parameters()]
    data = TensorDataset(torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2]))
    trainer = Trainer(
        model, max_steps=1, enable_checkpointing=False, enable_progress_bar=False, device="cpu"
    )
    trainer.fit(data, batch_size=6)
    assert trainer.global_step == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    path = trainer.save_checkpoint("tiny.ckpt")
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert type(predictor.model) is nn.Sequential
    images = torch.randn(2, 1, 8, 8)
    model.eval()
    with torch.no_grad():
        expected = model(images)
    torch.testing.assert_close(predictor.predict_logits(images), expected)
