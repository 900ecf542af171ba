"""VGG16 transfer learning (W5): a frozen ImageNet feature extractor with a new head.

Weights come from torchvision's ``VGG16_Weights`` (downloaded once into the torch hub cache)
or, offline, from a local state-dict file. Only the feature extractor's weights are used:
the ImageNet classifier is replaced by a new head, so it is never built.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

import torch
from torch import nn
from torchvision.models import VGG16_Weights, WeightsEnum

from visionkit._checks import check_bool, describe
from visionkit.exceptions import CheckpointError, ConfigurationError
from visionkit.models._registry import register_model
from visionkit.models._shapes import format_shape
from visionkit.models.transfer import freeze, make_head, trainable_parameters, unfreeze

__all__ = ["VGG16Transfer", "vgg16_transfer"]

Weights: TypeAlias = "str | os.PathLike[str] | WeightsEnum"
"""What ``weights=`` accepts besides ``None``: a ``VGG16_Weights`` member or name, or a path."""

_VGG16_LAYERS = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)
_FEATURES = 512 * 7 * 7
_MIN_SIZE = 32  # five 2x2 max-pools


class VGG16Transfer(nn.Module):
    """VGG16 with its convolutional ``features`` frozen and a new ``classifier`` head.

    The module layout (``features``, ``avgpool``, ``classifier``) and the ``features.*``
    state-dict keys are torchvision's, so torchvision VGG16 weight files load directly.
    The head is [`make_head`][visionkit.models.make_head] on the 25,088 pooled features:
    ``Linear(hidden) -> ReLU -> Dropout -> Linear(num_classes) [-> LogSoftmax]``.

    Args:
        num_classes: Number of outputs of the new head.
        hidden: Hidden size(s) of the head, or ``None`` for a single ``Linear``.
        dropout: Dropout probability in the head.
        log_softmax: End with ``LogSoftmax`` and train with ``NLLLoss``, as the W5 tutorial does
            (``CrossEntropyLoss`` gives the same loss on log-probabilities).
        weights: ``None`` (random features), a ``VGG16_Weights`` member or its name
            (``"DEFAULT"``, ``"IMAGENET1K_V1"``, ``"IMAGENET1K_FEATURES"``; downloaded by
            torchvision), or the path of a local state-dict file holding ``features.*``
            keys, e.g. torchvision's ``vgg16-397923af.pth``.
        freeze_features: Freeze the feature extractor (transfer learning); ``False`` trains
            everything (fine-tuning).
        progress: Show torchvision's download progress bar.

    Examples:
        >>> import torch
        >>> model = VGG16Transfer(5, hidden=64)
        >>> model(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 5])
        >>> sum(p.numel() for p in model.trainable_parameters())  # the head only
        1606021
    """

    def __init__(
        self,
        num_classes: int = 102,
        *,
        hidden: int | Sequence[int] | None = 4096,
        dropout: float = 0.2,
        log_softmax: bool = True,
        weights: Weights | None = None,
        freeze_features: bool = True,
        progress: bool = True,
    ) -> None:
        super().__init__()
        freeze_features = check_bool("freeze_features", freeze_features)
        progress = check_bool("progress", progress)
        if weights is not None and not isinstance(weights, (str, os.PathLike, WeightsEnum)):
            raise ConfigurationError(
                f"weights must be None, a VGG16_Weights member or name, or the path of a "
                f"weights file, got {describe(weights)}"
            )
        if isinstance(weights, str) and not weights.strip():
            raise ConfigurationError(
                "weights is an empty string: pass None for random features, 'DEFAULT' for "
                "ImageNet weights, or the path of a weights file"
            )
        self.input_shape = (3, 224, 224)
        self.features = _vgg16_features()
        if weights is None:
            _init_features(self.features)
        else:
            _load_features(self.features, weights, progress=progress)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.flatten = nn.Flatten(1)
        self.classifier = make_head(
            _FEATURES, num_classes, hidden=hidden, dropout=dropout, log_softmax=log_softmax
        )
        if freeze_features:
            self.freeze()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(N, num_classes)`` outputs for ``(N, 3, H, W)`` images, H and W >= 32."""
        if x.dim() != 4 or x.shape[1] != 3 or min(x.shape[2:]) < _MIN_SIZE:
            _raise_bad_input(x)
        return self.classifier(self.flatten(self.avgpool(self.features(x))))  # type: ignore[no-any-return]

    def freeze(self) -> VGG16Transfer:
        """Freeze the feature extractor, leaving the head trainable; return ``self``."""
        freeze(self.features)
        return self

    def unfreeze(self) -> VGG16Transfer:
        """Make every parameter trainable (fine-tune the whole network); return ``self``."""
        unfreeze(self)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters that require gradients: pass these to the optimizer."""
        return trainable_parameters(self)


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    width = 3
    for item in _VGG16_LAYERS:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            assert isinstance(item, int)
            layers += [nn.Conv2d(width, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            width = item
    return nn.Sequential(*layers)


def _init_features(features: nn.Sequential) -> None:
    """torchvision's VGG initialisation of the convolutions."""
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _load_features(features: nn.Sequential, weights: Weights, *, progress: bool) -> None:
    state, source = _fetch_state_dict(weights, progress=progress)
    selected = {
        k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
    }
    if not selected:
        raise CheckpointError(
            f"{source} holds no VGG16 feature weights: expected keys like 'features.0.weight', "
            f"found {sorted(state)[:3]}; save torchvision's vgg16().state_dict() to this file"
        )
    try:
        features.load_state_dict(selected)
    except RuntimeError as error:
        raise CheckpointError(
            f"{source} does not fit VGG16's feature extractor: {error}; expected the weights of "
            "torchvision.models.vgg16 (not vgg16_bn or another VGG)"
        ) from error


def _fetch_state_dict(
    weights: WeightsEnum | str | os.PathLike[str], *, progress: bool
) -> tuple[Mapping[str, torch.Tensor], str]:
    """Download (torchvision, cached) or read the state dict that ``weights`` names."""
    if isinstance(weights, WeightsEnum):
        if not isinstance(weights, VGG16_Weights):
            raise ConfigurationError(
                f"weights={weights} are not VGG16 weights: pass a VGG16_Weights member, e.g. "
                "VGG16_Weights.DEFAULT"
            )
        try:
            return weights.get_state_dict(progress=progress, check_hash=True), str(weights)
        except OSError as error:  # urllib's URLError is an OSError
            raise ConfigurationError(
                f"cannot download {weights} ({error}): without network access, download "
                "the file once elsewhere and pass weights='path/to/vgg16-397923af.pth'"
            ) from error
    name = os.fspath(weights).removeprefix("VGG16_Weights.")
    if name in VGG16_Weights.__members__:
        return _fetch_state_dict(VGG16_Weights[name], progress=progress)
    return _read_state_dict(Path(os.fspath(weights))), os.fspath(weights)


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigurationError(
            f"weights={str(path)!r} is neither a VGG16_Weights name "
            f"({', '.join(VGG16_Weights.__members__)}) nor an existing file: pass one of those "
            "names, or the path of a file saved with torch.save(vgg16.state_dict(), path)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"cannot read VGG16 weights from {path}: {error}") from error
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a visionkit or Lightning checkpoint
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, expected a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _raise_bad_input(x: torch.Tensor) -> None:
    found = format_shape(x.shape[1:]) if x.dim() == 4 else f"a tensor of shape {tuple(x.shape)}"
    raise ConfigurationError(
        f"VGG16Transfer expected (N, 3, H, W) RGB images with H, W >= {_MIN_SIZE} "
        f"(224x224 for ImageNet weights), got {found}: convert images to RGB and resize them, "
        "e.g. with visionkit.data.presets.imagenet_eval()"
    )


@register_model
def vgg16_transfer(
    *,
    num_classes: int = 102,
    hidden: int | Sequence[int] | None = 4096,
    dropout: float = 0.2,
    log_softmax: bool = True,
    weights: Weights | None = None,
    freeze_features: bool = True,
    progress: bool = True,
) -> VGG16Transfer:
    """W5's VGG16 transfer model for 3x224x224 images (see `VGG16Transfer`).

    Defaults: 102 Oxford flower classes, head 25088-4096-102 with dropout 0.2 and
    log-softmax, random features. Pass ``weights="DEFAULT"`` for ImageNet features (needs
    internet once) or ``weights="vgg16.pth"`` for a local file.
    """
    return VGG16Transfer(
        num_classes,
        hidden=hidden,
        dropout=dropout,
        log_softmax=log_softmax,
        weights=weights,
        freeze_features=freeze_features,
        progress=progress,
    )
