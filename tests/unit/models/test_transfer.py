"""replace_head / freeze / unfreeze / trainable_parameters on visionkit and torchvision models."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from visionkit import ConfigurationError
from visionkit.models import (
    ConvNet,
    count_parameters,
    find_head,
    freeze,
    make_head,
    replace_head,
    trainable_parameters,
    unfreeze,
)


def test_replace_head_on_torchvision_resnet_fc() -> None:
    model = freeze(torchvision.models.resnet18(num_classes=10))
    assert replace_head(model, 5, hidden=32, dropout=0.5) is model
    assert [type(m).__name__ for m in model.fc] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert model.fc[0].in_features == 512
    assert count_parameters(model, trainable_only=True) == 512 * 32 + 32 + 32 * 5 + 5
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_replace_head_on_torchvision_vgg_classifier_is_the_same_mechanism() -> None:
    with torch.device("meta"):
        model = torchvision.models.vgg16()
    replace_head(model, 102, hidden=4096, dropout=0.2, log_softmax=True)
    assert find_head(model)[0] == "classifier"
    kinds = [type(m).__name__ for m in model.classifier]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "LogSoftmax"]
    assert (model.classifier[0].in_features, model.classifier[3].out_features) == (25_088, 102)
    assert model.classifier[0].weight.device.type == "meta"  # follows the old head's device


def test_layers_before_the_first_linear_are_kept() -> None:
    norm = nn.LayerNorm(16)
    model = nn.Module()
    model.head = nn.Sequential(norm, nn.Dropout(0.1), nn.Linear(16, 1000))
    replace_head(model, 3)
    assert model.head[0] is norm
    assert [type(m).__name__ for m in model.head] == ["LayerNorm", "Dropout", "Linear"]
    assert model.head[2].out_features == 3


def test_replace_head_keeps_dtype_and_explicit_attr() -> None:
    model = ConvNet(1, 10)
    model.extra = nn.Linear(4, 4)
    model.double()
    replace_head(model, 4, attr="extra")
    assert model.extra[0].weight.dtype == torch.float64
    assert model.classifier[-2].out_features == 10  # untouched


def test_model_without_a_head_is_refused_with_the_attributes_searched() -> None:
    with pytest.raises(ConfigurationError) as info:
        replace_head(nn.Sequential(nn.Conv2d(1, 1, 3)), 2)
    assert "no Linear layer in attribute(s) fc, classifier, head, heads" in str(info.value)
    assert "pass attr=" in str(info.value)


def test_freeze_unfreeze_and_trainable_parameters() -> None:
    model = ConvNet(1, 10)
    assert freeze(model) is model
    assert trainable_parameters(model) == []
    unfreeze(model.classifier)
    assert [p.shape for p in trainable_parameters(model)] == [
        (64, 4608), (64,), (10, 64), (10,),
    ]  # fmt: skip
    unfreeze(model)
    assert count_parameters(model, trainable_only=True) == 300_426


def test_make_head_shapes_and_dropout_placement() -> None:
    assert [type(m).__name__ for m in make_head(8, 2, dropout=0.3)] == ["Dropout", "Linear"]
    deep = make_head(8, 2, hidden=[6, 4], activation="tanh")
    assert [type(m).__name__ for m in deep] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    with pytest.raises(ConfigurationError, match=r"hidden\[0\] must be an integer >= 1, got 0"):
        make_head(8, 2, hidden=0)
    with pytest.raises(ConfigurationError, match=r"dropout must be in \[0, 1\), got 1.5"):
        make_head(8, 2, dropout=1.5)
