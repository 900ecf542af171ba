"""Small convolutional classifiers: W2's MNIST ConvNet and W4's CIFAR-10 ConvNet.

Both are one configurable family, [`ConvNet`][visionkit.models.ConvNet]: a stack of 3x3 convolutions
with max-pooling every ``pool_every`` convolutions, then fully connected layers. The two registered
factories only differ in their defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from visionkit._checks import check_bool, check_fraction
from visionkit.exceptions import ConfigurationError
from visionkit.models._mlp import make_activation
from visionkit.models._registry import register_model
from visionkit.models._shapes import (
    check_images,
    check_ints,
    conv_output,
    format_shape,
    hidden_sizes,
    image_size,
)
from visionkit.models.transfer import make_head

__all__ = ["ConvNet", "convnet", "convnet_cifar"]


class ConvNet(nn.Module):
    """Convolutions with max-pooling, then fully connected layers, for fixed-size images.

    ``features`` holds, for each entry of ``channels``, ``Conv2d -> activation``; after every
    ``pool_every``-th convolution come ``MaxPool2d(2)`` and ``Dropout2d(dropout2d)``.
    ``classifier`` holds ``Linear -> activation -> Dropout(dropout)`` per ``hidden`` size and a
    last ``Linear`` to ``num_classes`` (followed by ``LogSoftmax`` when ``log_softmax=True``,
    as in the W2 tutorial, which trains with ``NLLLoss``; ``CrossEntropyLoss`` gives the same
    loss on log-probabilities, so either loss works).

    The input size is fixed at construction; a batch of another shape raises
    [`ConfigurationError`][visionkit.ConfigurationError] naming the argument to change.

    Args:
        in_channels: Channels of the input images (1 for MNIST, 3 for CIFAR-10).
        num_classes: Number of outputs.
        input_size: Image size, ``28`` or ``(height, width)``.
        channels: Output channels of each convolution.
        kernel_size: Kernel size of every convolution.
        padding: Zero padding of every convolution (``1`` keeps 3x3 convolutions size-preserving).
        pool_every: Max-pool (2x2) after every this many convolutions.
        activation: Activation name (``"relu"``, ``"tanh"``, ...), used after every layer but
            the last.
        dropout2d: Channel dropout after each pooling (0 disables it).
        batch_norm: Put ``BatchNorm2d`` between each convolution and its activation.
        hidden: Sizes of the fully connected hidden layers.
        dropout: Dropout after each fully connected hidden layer (0 disables it).
        log_softmax: Return log-probabilities instead of logits.

    Examples:
        >>> import torch
        >>> model = ConvNet(1, 10)  # W2's network
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> sum(p.numel() for p in model.parameters())
        300426
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        input_size: int | Sequence[int] = 28,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        padding: int = 0,
        pool_every: int = 2,
        activation: str = "relu",
        dropout2d: float = 0.1,
        batch_norm: bool = False,
        hidden: Sequence[int] = (64,),
        dropout: float = 0.25,
        log_softmax: bool = True,
    ) -> None:
        super().__init__()
        check_ints(in_channels=in_channels, num_classes=num_classes, pool_every=pool_every)
        check_ints(kernel_size=kernel_size)
        check_ints(padding=padding, least=0)
        widths = hidden_sizes(channels, "channels")
        check_fraction("dropout2d", dropout2d)
        check_fraction("dropout", dropout)
        batch_norm = check_bool("batch_norm", batch_norm)
        size = image_size(input_size)
        self.input_shape: tuple[int, int, int] = (int(in_channels), size[0], size[1])
        self.features, flat = _conv_stack(
            self.input_shape, widths, int(kernel_size), int(padding), int(pool_every),
            activation, dropout2d, batch_norm,
        )  # fmt: skip
        self.flatten = nn.Flatten(1)
        self.classifier = make_head(
            flat,
            num_classes,
            hidden=hidden_sizes(hidden),
            dropout=dropout,
            activation=activation,
            log_softmax=log_softmax,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(N, num_classes)`` logits (or log-probabilities) for ``(N, C, H, W)`` images."""
        check_images(type(self).__name__, x, self.input_shape)
        return self.classifier(self.flatten(self.features(x)))  # type: ignore[no-any-return]


def _conv_stack(
    shape: tuple[int, int, int],
    channels: Sequence[int],
    kernel_size: int,
    padding: int,
    pool_every: int,
    activation: str,
    dropout2d: float,
    batch_norm: bool,
) -> tuple[nn.Sequential, int]:
    """The convolutional layers, and the number of values they output per image."""
    layers: list[nn.Module] = []
    width, size = shape[0], shape[1:]
    for index, out in enumerate(channels):
        layers.append(nn.Conv2d(width, out, kernel_size, padding=padding))
        layers += [nn.BatchNorm2d(out)] if batch_norm else []
        layers.append(make_activation(activation))
        size = _after_conv(size, kernel_size, padding, shape, index)
        if (index + 1) % pool_every == 0:
            layers += [nn.MaxPool2d(2)] + ([nn.Dropout2d(dropout2d)] if dropout2d else [])
            size = (size[0] // 2, size[1] // 2)
            _check_positive_size(size, shape, f"pooling after convolution {index}")
        width = out
    return nn.Sequential(*layers), width * size[0] * size[1]


def _after_conv(
    size: tuple[int, ...], kernel_size: int, padding: int, shape: tuple[int, ...], index: int
) -> tuple[int, int]:
    out = tuple(conv_output(s, kernel_size=kernel_size, padding=padding) for s in size)
    _check_positive_size(out, shape, f"convolution {index}")
    return out[0], out[1]


def _check_positive_size(size: tuple[int, ...], shape: tuple[int, ...], where: str) -> None:
    if min(size) < 1:
        raise ConfigurationError(
            f"images of {format_shape(shape)} are too small for this network: nothing is left "
            f"after {where}; pass a larger input_size, padding=1, or fewer channels"
        )


@register_model
def convnet(
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int | Sequence[int] = 28,
    channels: Sequence[int] = (16, 32),
    kernel_size: int = 3,
    padding: int = 0,
    pool_every: int = 2,
    activation: str = "relu",
    dropout2d: float = 0.1,
    batch_norm: bool = False,
    hidden: Sequence[int] = (64,),
    dropout: float = 0.25,
    log_softmax: bool = True,
) -> ConvNet:
    """W2's MNIST ConvNet: conv 16, conv 32, max-pool, dropout2d, fc 64, log-softmax.

    Every argument of [`ConvNet`][visionkit.models.ConvNet] can be changed, e.g. ``in_channels=3,
    input_size=32``.
    """
    return ConvNet(
        in_channels,
        num_classes,
        input_size=input_size,
        channels=channels,
        kernel_size=kernel_size,
        padding=padding,
        pool_every=pool_every,
        activation=activation,
        dropout2d=dropout2d,
        batch_norm=batch_norm,
        hidden=hidden,
        dropout=dropout,
        log_softmax=log_softmax,
    )


@register_model
def convnet_cifar(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | Sequence[int] = 32,
    channels: Sequence[int] = (16, 8),
    activation: str = "tanh",
    dropout2d: float = 0.0,
    batch_norm: bool = False,
    hidden: Sequence[int] = (32,),
    dropout: float = 0.0,
) -> ConvNet:
    """W4's CIFAR-10 ConvNet: conv 16, conv 8 (3x3, padding 1), Tanh, max-pool, fc 32.

    Logits out; the W4 tutorial's dropout and batch-norm variants are ``dropout2d=`` and
    ``batch_norm=True``. 18,090 parameters with ``num_classes=2``.
    """
    return ConvNet(
        in_channels,
        num_classes,
        input_size=input_size,
        channels=channels,
        padding=1,
        pool_every=1,
        activation=activation,
        dropout2d=dropout2d,
        batch_norm=batch_norm,
        hidden=hidden,
        dropout=dropout,
        log_softmax=False,
    )
