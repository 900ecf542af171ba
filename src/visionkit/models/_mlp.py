"""Fully connected classifiers (the W1 MNIST MLP, the W3 CIFAR-10 MLP)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from visionkit._checks import check_fraction, check_int, describe
from visionkit.exceptions import ConfigurationError
from visionkit.models._registry import register_model

__all__ = ["MLP", "make_activation", "mlp"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def make_activation(name: str) -> nn.Module:
    """Return a new activation module for ``name`` (``"relu"``, ``"tanh"``, ``"gelu"``, ...)."""
    if not isinstance(name, str):
        raise ConfigurationError(
            f"activation must be the name of an activation ({', '.join(sorted(_ACTIVATIONS))}),"
            f" got {describe(name)}"
        )
    try:
        return _ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ConfigurationError(
            f"unknown activation {name!r}; expected one of {', '.join(sorted(_ACTIVATIONS))}"
        ) from None


class MLP(nn.Module):
    """A multi-layer perceptron over flattened images.

    Each hidden layer is ``Linear -> activation -> Dropout``; the last layer returns logits.

    Args:
        in_features: Number of input values per sample (784 for 1x28x28 images).
        hidden: Sizes of the hidden layers, e.g. ``[512, 512]`` (one int for one layer);
            empty or ``None`` for a linear model.
        num_classes: Number of output logits.
        activation: Name of the activation after each hidden layer.
        dropout: Dropout probability after each hidden activation.

    Examples:
        >>> import torch
        >>> model = MLP(784, [512, 512], 10, dropout=0.2)
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] | int | None,
        num_classes: int,
        *,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        in_features = _positive("in_features", in_features)
        num_classes = _positive("num_classes", num_classes)
        sizes = [_positive(f"hidden[{i}]", size) for i, size in enumerate(_layers(hidden))]
        dropout = check_fraction("dropout", dropout)
        self.in_features = in_features
        layers: list[nn.Module] = []
        width = in_features
        for size in sizes:
            layers += [nn.Linear(width, size), make_activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Flatten every sample of ``x`` and return the logits."""
        found = math.prod(x.shape[1:])
        if found != self.in_features:
            shape = "x".join(map(str, x.shape[1:]))
            raise ConfigurationError(
                f"MLP expected {self.in_features} input values per sample, got {found} "
                f"(samples of shape {shape}): pass in_features={found}"
            )
        return self.layers(x.flatten(1))  # type: ignore[no-any-return]


def _layers(hidden: Sequence[int] | int | None) -> list[Any]:
    if hidden is None:
        return []
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        return [hidden]
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise ConfigurationError(
            f"hidden must be a list of layer sizes (or one int, or None), got {describe(hidden)}"
        )
    return list(hidden)


def _positive(name: str, value: Any) -> int:
    try:
        return check_int(name, value, least=1)
    except ConfigurationError:
        raise ConfigurationError(
            f"{name} must be a positive integer, got {describe(value)}"
        ) from None


@register_model
def mlp(
    *,
    in_features: int = 784,
    hidden: Sequence[int] | int | None = (512, 512),
    num_classes: int = 10,
    activation: str = "relu",
    dropout: float = 0.0,
) -> MLP:
    """Build an [`MLP`][visionkit.models.MLP]; defaults are W1's 784-512-512-10 network."""
    return MLP(in_features, hidden, num_classes, activation=activation, dropout=dropout)
