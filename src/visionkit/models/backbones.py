"""Any torchvision classifier, or any timm model, by name, with a head sized for your classes.

[`create_model`][visionkit.models.create_model] finds them besides visionkit's own models:
``"resnet50"`` or, unambiguously, ``"torchvision/resnet50"`` for every torchvision
classifier, and ``"timm/convnext_tiny"`` for timm's models (``pip install
"visionkit-torch[timm]"``). Both take the same options:

- ``num_classes``: the classification head is replaced for this many classes
  (see [`output_layers`][visionkit.models.output_layers] for where the head is, family by family);
- ``weights``: ``None`` (random), ``"DEFAULT"`` (the library's pretrained weights,
  downloaded once), a torchvision weights name, or the path of a local state-dict file;
- ``freeze_backbone``: train the head only ([`freeze`][visionkit.models.freeze]).

The created model records how its input should be prepared
([`preprocess_config`][visionkit.models.preprocess_config]).

Examples:
    >>> from visionkit.models import create_model, preprocess_config, trainable_parameters
    >>> model = create_model("resnet18", num_classes=5, freeze_backbone=True)
    >>> [tuple(p.shape) for p in trainable_parameters(model)]  # the new head only
    [(5, 512), (5,)]
    >>> preprocess_config(model).center_crop
    224
"""

from __future__ import annotations

import difflib
import functools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, TypeAlias, cast

from torch import nn
from torchvision import models as tv_models
from torchvision.models import WeightsEnum

from visionkit._checks import check_bool, describe
from visionkit.exceptions import ConfigurationError
from visionkit.models._registry import ModelLibrary, add_library
from visionkit.models._shapes import check_ints
from visionkit.models._state_files import load_state_file
from visionkit.models.transfer import freeze, unfreeze

__all__ = [
    "PreprocessConfig",
    "output_layers",
    "preprocess_config",
    "timm_model",
    "torchvision_model",
]

Weights: TypeAlias = "str | os.PathLike[str] | WeightsEnum"
"""What ``weights=`` accepts besides ``None``: a weights name or member, or a file path."""
_Library: TypeAlias = Literal["torchvision", "timm"]

_PREPROCESS_ATTRIBUTE = "_visionkit_preprocess"
_HEAD_ATTRIBUTES = ("fc", "classifier", "heads", "head")
_AUX_HEADS = ("AuxLogits.fc", "aux1.fc2", "aux2.fc2")  # inception_v3, googlenet
_AUX_MODELS = ("googlenet", "inception_v3")
_TIMM_INSTALL = 'pip install "visionkit-torch[timm]"'


@dataclass(frozen=True)
class PreprocessConfig:
    """How images should be prepared for a backbone's pretrained weights.

    The evaluation transform the weights were trained with: resize, centre-crop, scale to
    ``[0, 1]``, normalize. For a model built with ``weights=None`` the numbers are those
    of the architecture's default weights (its native input size, ImageNet statistics).

    Attributes:
        resize: An int resizes the shorter side to it; ``(height, width)`` resizes to
            exactly that size (as ``torchvision.transforms.Resize``).
        center_crop: Side of the square centre crop, or ``(height, width)``: the model's
            input size.
        mean: Per-channel mean subtracted after scaling to ``[0, 1]``.
        std: Per-channel standard deviation divided by.
        interpolation: Resize interpolation: ``"bilinear"``, ``"bicubic"``, ...
        source: The weights these numbers belong to, e.g.
            ``"torchvision ResNet50_Weights.IMAGENET1K_V2"``.
    """

    resize: int | tuple[int, int]
    center_crop: int | tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for a checkpoint or JSON)."""
        return asdict(self)


def preprocess_config(model: nn.Module) -> PreprocessConfig | None:
    """How ``model``'s input should be prepared, or ``None`` if it was not recorded.

    Recorded on every torchvision and timm model that
    [`create_model`][visionkit.models.create_model]
    builds: the resize, crop, mean and std of its pretrained weights.
    """
    config = getattr(model, _PREPROCESS_ATTRIBUTE, None)
    return config if isinstance(config, PreprocessConfig) else None


def output_layers(model: nn.Module) -> list[str]:
    """Dotted names of the layers that output class scores: the main head, then any auxiliary.

    Where the head is, by family:

    - timm models: the layer(s) named by ``model.pretrained_cfg["classifier"]``
      (``"head.fc"`` for ConvNeXt, ``"fc"`` for ResNet, ``"head"`` for ViT);
    - torchvision models: the last ``Linear`` (or ``Conv2d``, for SqueezeNet) inside the
      first of ``fc`` (ResNet, ResNeXt, Wide ResNet, RegNet, ShuffleNet, GoogLeNet,
      Inception), ``classifier`` (AlexNet, VGG, DenseNet, EfficientNet, MobileNet,
      MNASNet, ConvNeXt, MaxViT, SqueezeNet), ``heads`` (ViT: ``heads.head``) and
      ``head`` (Swin);
    - auxiliary heads, when the model has them: ``AuxLogits.fc`` (Inception v3),
      ``aux1.fc2`` and ``aux2.fc2`` (GoogLeNet).

    Examples:
        >>> import torchvision
        >>> output_layers(torchvision.models.mobilenet_v3_small())
        ['classifier.3']

    Raises:
        ConfigurationError: if ``model`` has none of these.
    """
    names = _timm_classifiers(model) or _last_layer_of_head(model)
    if not names:
        raise ConfigurationError(
            f"cannot find the classification head of {type(model).__name__}: no Linear or "
            f"Conv2d layer in attribute(s) {', '.join(_HEAD_ATTRIBUTES)}"
        )
    return names + [name for name in _AUX_HEADS if _submodule(model, name) is not None]


def torchvision_model(
    name: str,
    *,
    num_classes: int = 1000,
    weights: Weights | None = None,
    pretrained: bool | None = None,
    freeze_backbone: bool = False,
    progress: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """A torchvision classifier with its head sized for ``num_classes``.

    ``create_model("resnet50", ...)`` and ``create_model("torchvision/resnet50", ...)``
    call this.

    Args:
        name: A name from ``torchvision.models.list_models(module=torchvision.models)``.
        num_classes: Outputs of the head. With pretrained weights of another number of
            classes, the head (and any auxiliary head) is replaced by a fresh layer.
        weights: ``None`` (random initialisation), a weights member
            (``ResNet50_Weights.IMAGENET1K_V2``) or its name (``"DEFAULT"``,
            ``"IMAGENET1K_V2"``, ``"ResNet50_Weights.IMAGENET1K_V2"``; downloaded by
            torchvision into its cache), or the path of a local state-dict file of the same
            architecture, with the 1000-class ImageNet head or one of ``num_classes``.
        pretrained: ``True`` is ``weights="DEFAULT"``.
        freeze_backbone: Freeze everything but the head
            ([`output_layers`][visionkit.models.output_layers]), batch norm statistics included
            ([`freeze`][visionkit.models.freeze]).
        progress: Show torchvision's download progress bar.
        **kwargs: Passed to the torchvision builder (``dropout=``, ``image_size=`` for
            ViT, ...). ``inception_v3`` and ``googlenet`` are built with
            ``aux_logits=False`` unless you pass ``aux_logits=True`` (then the model
            returns a named tuple in training mode, which needs a custom loss).

    Raises:
        ConfigurationError: for an unknown weights name, a file that does not exist or
            holds another architecture's weights, or a failed download.
    """
    _check_name(name, _torchvision_names(), "torchvision")
    check_ints(num_classes=num_classes)
    freeze_backbone = check_bool("freeze_backbone", freeze_backbone)
    progress = check_bool("progress", progress)
    weights = _pretrained_as_weights(weights, pretrained)
    source = _torchvision_weights(name, weights)
    aux_logits = name in _AUX_MODELS and check_bool("aux_logits", kwargs.pop("aux_logits", False))
    if name in _AUX_MODELS and not isinstance(source, WeightsEnum):
        kwargs.update(aux_logits=aux_logits)
        kwargs.setdefault("init_weights", source is None)  # no warning, no wasted init
    if isinstance(source, WeightsEnum):
        if aux_logits:  # torchvision refuses aux_logits=False with weights: dropped below
            kwargs.update(aux_logits=True)
        model = _download(name, source, progress=progress, **kwargs)
        if not aux_logits:
            _drop_auxiliary_heads(model)
        _resize_output_layers(model, num_classes)
    else:
        model = _build(name, weights=None, num_classes=num_classes, **kwargs)
        if source is not None:
            load_state_file(model, source, output_layers(model), what=f"torchvision's {name}")
    config = _torchvision_preprocess(name, source, kwargs)
    return _finish(model, config, freeze_backbone=freeze_backbone)


def timm_model(
    name: str,
    *,
    num_classes: int = 1000,
    weights: str | os.PathLike[str] | None = None,
    pretrained: bool | None = None,
    freeze_backbone: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """A timm model with its head sized for ``num_classes`` (needs ``visionkit-torch[timm]``).

    ``create_model("timm/convnext_tiny", ...)`` calls this.

    Args:
        name: A timm model name, optionally with a pretrained tag
            (``"convnext_tiny.fb_in1k"``).
        num_classes: Outputs of the head (timm's ``num_classes``).
        weights: ``None`` (random), ``"DEFAULT"`` (timm's pretrained weights for
            ``name``, downloaded from the Hugging Face Hub once), or the path of a local
            state-dict or ``.safetensors`` file of the same architecture, with the original
            head or one of ``num_classes``.
        pretrained: ``True`` is ``weights="DEFAULT"``, as in ``timm.create_model``.
        freeze_backbone: Freeze everything but the classifier named by timm's
            ``pretrained_cfg["classifier"]``, batch norm statistics included.
        **kwargs: Passed to ``timm.create_model`` (``drop_rate=``, ``in_chans=``, ...).

    Raises:
        ConfigurationError: if timm is not installed, for a weights value that is neither
            ``"DEFAULT"`` nor an existing file, a file of another architecture, or a
            failed download.
    """
    timm = _import_timm(name)
    if not timm.is_model(name):
        _check_name(name, timm.list_models(), "timm")
    check_ints(num_classes=num_classes)
    freeze_backbone = check_bool("freeze_backbone", freeze_backbone)
    weights = _pretrained_as_weights(weights, pretrained)
    path = _timm_weights_file(name, weights)
    download = weights is not None and path is None
    model = _timm_create(timm, name, pretrained=download, num_classes=num_classes, **kwargs)
    if path is not None:
        load_state_file(model, path, output_layers(model), what=f"timm's {name}")
    return _finish(model, _timm_preprocess(timm, model), freeze_backbone=freeze_backbone)


def torchvision_names() -> list[str]:
    """torchvision's classification models, e.g. ``"resnet18"`` (no prefix), sorted."""
    return list(_torchvision_names())


def timm_names() -> list[str]:
    """timm's model architectures (no prefix), sorted; needs timm."""
    return list(_import_timm("").list_models())


@dataclass(frozen=True)
class Backbone:
    """A model factory for one torchvision or timm model, as the registry hands it out."""

    library: _Library
    name: str

    def __call__(self, **kwargs: Any) -> nn.Module:
        """Build the model (see `torchvision_model` and `timm_model`)."""
        build = torchvision_model if self.library == "torchvision" else timm_model
        return build(self.name, **kwargs)

    def spec_kwargs(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``kwargs`` as a checkpoint records them: ``pretrained=True`` as ``weights``.

        A checkpoint rebuilds its model without ``weights`` (its own weights replace
        them), so it never downloads anything.
        """
        recorded = dict(kwargs)
        if recorded.pop("pretrained", None) is True:
            recorded["weights"] = "DEFAULT"
        return recorded


# ---------------------------------------------------------------------------- shared


def _pretrained_as_weights(weights: Any, pretrained: bool | None) -> Any:
    if pretrained is None:
        return weights
    pretrained = check_bool("pretrained", pretrained)
    if weights is not None:
        raise ConfigurationError(
            f"got both weights={weights!r} and pretrained={pretrained}: pass only weights= "
            "('DEFAULT' for the pretrained weights)"
        )
    return "DEFAULT" if pretrained else None


def _check_name(name: str, known: Sequence[str], library: str) -> None:
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "."
        raise ConfigurationError(
            f"{library} has no model named {name!r}{hint} See "
            f"visionkit.models.list_models(library={library!r})"
        )


def _finish(
    model: nn.Module, config: PreprocessConfig | None, *, freeze_backbone: bool
) -> nn.Module:
    if config is not None:
        object.__setattr__(model, _PREPROCESS_ATTRIBUTE, config)
    if freeze_backbone:
        freeze(model)
        for name in output_layers(model):
            unfreeze(model.get_submodule(name))
    return model


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _last_layer_of_head(model: nn.Module) -> list[str]:
    for attr in _HEAD_ATTRIBUTES:
        head = getattr(model, attr, None)
        if not isinstance(head, nn.Module):
            continue
        layers = [n for n, m in head.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        if layers:
            return [f"{attr}.{layers[-1]}" if layers[-1] else attr]
    return []


def _resize_output_layers(model: nn.Module, num_classes: int) -> None:
    for name in output_layers(model):
        old = model.get_submodule(name)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, _new_output_layer(old, num_classes))


def _new_output_layer(old: nn.Module, num_classes: int) -> nn.Module:
    if isinstance(old, nn.Linear) and old.out_features != num_classes:
        return nn.Linear(
            old.in_features,
            num_classes,
            bias=old.bias is not None,
            device=old.weight.device,
            dtype=old.weight.dtype,
        )
    if isinstance(old, nn.Conv2d) and old.out_channels != num_classes:  # SqueezeNet
        pair = tuple[int, int]
        return nn.Conv2d(
            old.in_channels,
            num_classes,
            cast(pair, old.kernel_size),
            stride=cast(pair, old.stride),
            padding=cast(pair, old.padding),
            dilation=cast(pair, old.dilation),
            bias=old.bias is not None,
            device=old.weight.device,
            dtype=old.weight.dtype,
        )
    return old


# ---------------------------------------------------------------------------- torchvision


@functools.cache
def _torchvision_names() -> tuple[str, ...]:
    return tuple(sorted(tv_models.list_models(module=tv_models)))


def _torchvision_weights(name: str, weights: Any) -> WeightsEnum | Path | None:
    """``weights`` as a weights member of model ``name``, a file path, or ``None``."""
    if weights is None:
        return None
    enum = tv_models.get_model_weights(name)
    if isinstance(weights, WeightsEnum):
        if not isinstance(weights, enum):
            raise ConfigurationError(
                f"weights={weights} are not weights of torchvision's {name}: pass a member of "
                f"{enum.__name__} ({_members(enum)})"
            )
        return weights
    if not isinstance(weights, str | os.PathLike) or not os.fspath(weights).strip():
        raise ConfigurationError(
            f"weights must be None, a {enum.__name__} member or name ({_members(enum)}), or "
            f"the path of a state-dict file; got {describe(weights)}"
        )
    text = os.fspath(weights)
    member = text.removeprefix(f"{enum.__name__}.")
    if isinstance(weights, str) and member in enum.__members__:
        return enum[member]
    if Path(text).is_file():
        return Path(text)
    raise ConfigurationError(
        f"weights={text!r} is neither a {enum.__name__} name ({_members(enum)}) nor an "
        "existing file: pass one of those names, or the path of a file saved with "
        f"torch.save(torchvision.models.{name}().state_dict(), path)"
    )


def _drop_auxiliary_heads(model: nn.Module) -> None:
    """What torchvision does for ``aux_logits=False`` with weights (it refuses the argument)."""
    for attr in ("AuxLogits", "aux1", "aux2"):
        if isinstance(getattr(model, attr, None), nn.Module):
            setattr(model, attr, None)
            vars(model)["aux_logits"] = False  # a plain attribute the forward reads


def _members(enum: type[WeightsEnum]) -> str:
    return ", ".join(enum.__members__)


def _build(name: str, **kwargs: Any) -> nn.Module:
    try:
        model = tv_models.get_model_builder(name)(**kwargs)
    except ValueError as error:  # torchvision's check of arguments that the weights fix
        raise ConfigurationError(f"torchvision's {name} refused its arguments: {error}") from error
    assert isinstance(model, nn.Module)
    return model


def _download(name: str, weights: WeightsEnum, **kwargs: Any) -> nn.Module:
    try:
        return _build(name, weights=weights, **kwargs)
    except OSError as error:  # urllib's URLError is an OSError
        file = weights.url.rsplit("/", 1)[-1]
        raise ConfigurationError(
            f"cannot download {type(weights).__name__}.{weights.name} for torchvision's {name} "
            f"({error}): without network access, download {weights.url} once elsewhere and "
            f"pass weights='path/to/{file}'"
        ) from error


def _torchvision_preprocess(
    name: str, source: WeightsEnum | Path | None, kwargs: Mapping[str, Any]
) -> PreprocessConfig | None:
    weights = source if isinstance(source, WeightsEnum) else _default_weights(name)
    if weights is None:
        return None
    transform = weights.transforms()
    crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
    size = kwargs.get("image_size")  # ViT built for another input size
    if isinstance(size, int) and size != crop:
        crop, resize = size, round(resize * size / crop)
    return PreprocessConfig(
        resize=resize,
        center_crop=crop,
        mean=tuple(float(v) for v in transform.mean),
        std=tuple(float(v) for v in transform.std),
        interpolation=str(transform.interpolation.value),
        source=f"torchvision {type(weights).__name__}.{weights.name}",
    )


def _default_weights(name: str) -> WeightsEnum | None:
    try:
        weights = tv_models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):  # a model without published weights
        return None
    return weights if isinstance(weights, WeightsEnum) else None


# ---------------------------------------------------------------------------- timm


def _import_timm(name: str) -> ModuleType:
    try:
        import timm
    except ImportError:
        what = f"{name!r} is a timm model, but timm" if name else "timm"
        raise ConfigurationError(
            f"{what} is not installed: {_TIMM_INSTALL} (or pip install timm)"
        ) from None
    return timm


def _timm_weights_file(name: str, weights: Any) -> Path | None:
    if weights is None or weights == "DEFAULT":
        return None
    if isinstance(weights, str | os.PathLike) and Path(os.fspath(weights)).is_file():
        return Path(os.fspath(weights))
    raise ConfigurationError(
        f"weights for timm's {name} must be None, 'DEFAULT' (timm's pretrained weights) or "
        f"the path of an existing state-dict file; got {describe(weights)}. For other "
        f"pretrained weights, name them with their tag: 'timm/{name.split('.')[0]}.<tag>'"
    )


def _timm_create(timm: ModuleType, name: str, *, pretrained: bool, **kwargs: Any) -> nn.Module:
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError:
        raise  # bad keyword arguments: create_model says so
    except Exception as error:  # the Hugging Face Hub raises its own errors when offline
        if not pretrained:
            raise
        raise ConfigurationError(
            f"cannot load timm's pretrained weights for {name} ({type(error).__name__}: "
            f"{error}): without network access, save model.state_dict() of a pretrained "
            "model once elsewhere and pass weights='path/to/file.pth' (or the model's "
            ".safetensors file from the Hugging Face Hub)"
        ) from error
    assert isinstance(model, nn.Module)
    return model


def _timm_preprocess(timm: ModuleType, model: nn.Module) -> PreprocessConfig:
    data = timm.data.resolve_data_config({}, model=model)
    height, width = (int(v) for v in data["input_size"][-2:])
    scaled = (math.floor(height / data["crop_pct"]), math.floor(width / data["crop_pct"]))
    cfg = getattr(model, "pretrained_cfg", None) or {}
    tag = f"{cfg.get('architecture', '')}.{cfg['tag']}" if cfg.get("tag") else ""
    return PreprocessConfig(
        resize=scaled[0] if scaled[0] == scaled[1] else scaled,
        center_crop=height if height == width else (height, width),
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        interpolation=str(data["interpolation"]),
        source=f"timm {tag or cfg.get('architecture', type(model).__name__)}",
    )


def _timm_classifiers(model: nn.Module) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, Mapping) or not cfg.get("classifier"):
        return []
    names = cfg["classifier"]
    names = [names] if isinstance(names, str) else list(names)
    return [n for n in names if _has_parameters(_submodule(model, n))]


def _has_parameters(module: nn.Module | None) -> bool:
    return module is not None and any(True for _ in module.parameters())


def _find_torchvision(name: str) -> Backbone | None:
    return Backbone("torchvision", name) if name in _torchvision_names() else None


def _find_timm(name: str) -> Backbone | None:
    return Backbone("timm", name) if _import_timm(f"timm/{name}").is_model(name) else None


add_library("torchvision", ModelLibrary(_find_torchvision, torchvision_names, bare_names=True))
add_library("timm", ModelLibrary(_find_timm, timm_names))
