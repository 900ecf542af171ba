"""W4's deep residual network (``NetResDeep``) with distinct residual blocks.

The W4 tutorial builds its blocks with ``nn.Sequential(*(n_blocks * [ResBlock(n_chans)]))``:
the list repeats *one* block object, so all ``n_blocks`` blocks share a single set of weights
and the network is much smaller than it looks. [`ResNetDeep`][visionkit.models.ResNetDeep]
creates a new [`ResBlock`][visionkit.models.ResBlock] for every position.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from visionkit.exceptions import ConfigurationError
from visionkit.models._registry import register_model
from visionkit.models._shapes import check_images, check_ints, image_size

__all__ = ["ResBlock", "ResNetDeep", "resnet_deep"]


class ResBlock(nn.Module):
    """``x + relu(batch_norm(conv3x3(x)))``: a residual block that keeps shape and width.

    Args:
        n_channels: Input and output channels.

    Examples:
        >>> import torch
        >>> ResBlock(8)(torch.zeros(2, 8, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
    """

    def __init__(self, n_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(n_channels, n_channels, kernel_size=3, padding=1, bias=False)
        self.batch_norm = nn.BatchNorm2d(n_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block; the output has the shape of ``x``."""
        return torch.relu(self.batch_norm(self.conv(x))) + x


class ResNetDeep(nn.Module):
    """W4's ``NetResDeep``: stem, ``n_blocks`` residual blocks, two linear layers.

    ``stem`` is ``Conv2d(3x3) -> ReLU -> MaxPool2d(2)``; ``blocks`` holds ``n_blocks`` independent
    [`ResBlock`][visionkit.models.ResBlock]\\ s; then ``MaxPool2d(2)``, flatten, and ``classifier``
    ``Linear(hidden) -> ReLU -> Linear(num_classes)`` returning logits.

    Args:
        in_channels: Channels of the input images.
        num_classes: Number of outputs.
        n_channels: Width of the stem and of every residual block.
        n_blocks: Number of residual blocks (the depth); 0 is allowed.
        input_size: Image size, ``32`` or ``(height, width)``; each side must be at least 4.
        hidden: Width of the hidden linear layer.

    Examples:
        >>> import torch
        >>> model = ResNetDeep(3, 2, n_channels=32, n_blocks=10)
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        *,
        n_channels: int = 32,
        n_blocks: int = 10,
        input_size: int | Sequence[int] = 32,
        hidden: int = 32,
    ) -> None:
        super().__init__()
        check_ints(in_channels=in_channels, num_classes=num_classes, n_channels=n_channels)
        check_ints(hidden=hidden)
        check_ints(n_blocks=n_blocks, least=0)
        height, width = image_size(input_size)
        if min(height, width) < 4:
            raise ConfigurationError(
                f"ResNetDeep pools twice by 2, so images must be at least 4x4; got "
                f"input_size={input_size!r}: pass a larger input_size"
            )
        self.input_shape: tuple[int, int, int] = (int(in_channels), height, width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, n_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.blocks = nn.Sequential(*(ResBlock(n_channels) for _ in range(n_blocks)))
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(
            nn.Linear(n_channels * (height // 4) * (width // 4), hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(N, num_classes)`` logits for ``(N, C, H, W)`` images."""
        check_images(type(self).__name__, x, self.input_shape)
        features = self.pool(self.blocks(self.stem(x)))
        return self.classifier(self.flatten(features))  # type: ignore[no-any-return]


@register_model
def resnet_deep(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    n_channels: int = 32,
    n_blocks: int = 10,
    input_size: int | Sequence[int] = 32,
    hidden: int = 32,
) -> ResNetDeep:
    """W4's ``NetResDeep`` for 3x32x32 CIFAR-10 images: 32 channels, 10 residual blocks."""
    return ResNetDeep(
        in_channels,
        num_classes,
        n_channels=n_channels,
        n_blocks=n_blocks,
        input_size=input_size,
        hidden=hidden,
    )
