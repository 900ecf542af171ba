"""ConvNet: seed 004's and seed 002's networks as one family, with clear shape errors."""

from __future__ import annotations

import pytest
import torch

from visionkit import ConfigurationError
from visionkit.models import ConvNet, count_parameters, create_model


def test_seed_004_convnet_layers_count_and_output() -> None:
    model = create_model("convnet")
    kinds = [type(m).__name__ for m in model.features] + [
        type(m).__name__ for m in model.classifier
    ]
    assert kinds == [
        "Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Dropout2d",
        "Linear", "ReLU", "Dropout", "Linear", "LogSoftmax",
    ]  # fmt: skip
    assert count_parameters(model) == 160 + 4_640 + 294_976 + 650 == 300_426
    model.eval()
    out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10)
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(3))  # log-probabilities


def test_seed_002_convnet_has_18090_parameters_for_two_classes() -> None:
    model = create_model("convnet_cifar", num_classes=2)
    assert count_parameters(model) == 18_090
    assert [type(m).__name__ for m in model.features] == [
        "Conv2d", "Tanh", "MaxPool2d", "Conv2d", "Tanh", "MaxPool2d",
    ]  # fmt: skip
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 2)
    assert not torch.allclose(out.exp().sum(dim=1), torch.ones(4))  # logits, not log-probs


def test_one_family_the_cifar_factory_is_a_configured_convnet() -> None:
    direct = ConvNet(
        3, 2, input_size=32, channels=[16, 8], padding=1, pool_every=1, activation="tanh",
        dropout2d=0.0, hidden=[32], dropout=0.0, log_softmax=False,
    )  # fmt: skip
    built = create_model("convnet_cifar", num_classes=2)
    assert type(built) is ConvNet
    assert str(direct) == str(built)


def test_convnet_for_rgb_32x32_and_rectangular_input() -> None:
    model = create_model("convnet", in_channels=3, input_size=32)
    assert model.input_shape == (3, 32, 32)
    assert model.classifier[0].in_features == 32 * 14 * 14
    wide = ConvNet(1, 4, input_size=(28, 40))
    assert wide(torch.randn(2, 1, 28, 40)).shape == (2, 4)


def test_batch_norm_option_adds_a_norm_after_each_convolution() -> None:
    model = create_model("convnet_cifar", batch_norm=True, num_classes=2)
    assert [type(m).__name__ for m in model.features][:3] == ["Conv2d", "BatchNorm2d", "Tanh"]
    assert count_parameters(model) == 18_090 + 2 * 16 + 2 * 8


def test_model_for_mnist_fed_cifar_images_names_expected_found_and_fix() -> None:
    model = create_model("convnet")
    with pytest.raises(ConfigurationError) as info:
        model(torch.zeros(2, 3, 32, 32))
    message = str(info.value)
    assert "expected 1x28x28 images, got 3x32x32" in message
    assert "pass in_channels=3, input_size=32" in message


def test_only_the_differing_argument_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"got 1x32x24: pass input_size=\(32, 24\) "):
        create_model("convnet")(torch.zeros(1, 1, 32, 24))
    with pytest.raises(ConfigurationError, match=r"got 3x28x28: pass in_channels=3 to"):
        create_model("convnet")(torch.zeros(1, 3, 28, 28))


def test_unbatched_image_asks_for_a_batch_dimension() -> None:
    with pytest.raises(ConfigurationError, match=r"shape \(1, 28, 28\): add a batch dimension"):
        create_model("convnet")(torch.zeros(1, 28, 28))


def test_too_small_input_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match=r"1x4x4 are too small .* after convolution 1"):
        ConvNet(1, 10, input_size=4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": [16, 0]}, r"channels\[1\] must be an integer >= 1, got 0"),
        ({"hidden": [64, -1]}, r"hidden\[1\] must be an integer >= 1, got -1"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"input_size": (28, 28, 1)}, r"input_size must be .* got \(28, 28, 1\)"),
        ({"activation": "swish"}, r"unknown activation 'swish'"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_model("convnet", **kwargs)
