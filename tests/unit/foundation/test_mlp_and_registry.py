"""The MLP and the model registry (first slice)."""

from __future__ import annotations

import pytest
import torch

from visionkit import ConfigurationError
from visionkit.models import create_model, list_models, model_spec


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_seed_001_mlp_parameter_count() -> None:
    model = create_model("mlp", in_features=784, hidden=[512, 512], num_classes=10, dropout=0.2)
    assert _count(model) == 669_706
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_seed_003_mlp_parameter_count_with_tanh() -> None:
    model = create_model("mlp", in_features=3072, hidden=[512], num_classes=2, activation="tanh")
    assert _count(model) == 1_574_402
    assert isinstance(model.layers[1], torch.nn.Tanh)  # type: ignore[index]


def test_create_model_records_name_and_arguments() -> None:
    model = create_model("mlp", hidden=[8], num_classes=3)
    spec = model_spec(model)
    assert spec is not None
    assert spec.name == "mlp"
    assert spec.kwargs == {"hidden": [8], "num_classes": 3}
    rebuilt = spec.build()
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]


def test_list_models_filters_by_pattern() -> None:
    assert "mlp" in list_models()
    assert list_models("ml?") == ["mlp"]
    assert list_models("no-such-*") == []


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ConfigurationError, match=r"no model named 'mpl' .*did you mean 'mlp'"):
        create_model("mpl")


def test_bad_arguments_are_reported() -> None:
    with pytest.raises(
        ConfigurationError, match=r"create_model\('mlp', \.\.\.\) got bad arguments"
    ):
        create_model("mlp", width=3)


def test_wrong_input_shape_names_expected_found_and_fix() -> None:
    model = create_model("mlp", in_features=784, num_classes=10)
    with pytest.raises(
        ConfigurationError,
        match=r"expected 784 input values per sample, got 3072 \(samples of shape 3x32x32\): "
        r"pass in_features=3072",
    ):
        model(torch.zeros(2, 3, 32, 32))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"activation": "swishy"}, "unknown activation 'swishy'"),
        ({"hidden": [0]}, r"hidden\[0\] must be a positive integer"),
    ],
)
def test_bad_mlp_configuration(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_model("mlp", **kwargs)
