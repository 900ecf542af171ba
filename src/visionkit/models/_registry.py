"""The model registry: one name per model factory, as in timm.

A factory is any callable that takes keyword arguments and returns an ``nn.Module``.
[`create_model`][visionkit.models.create_model] records the name and the arguments on the module it
returns, so that a checkpoint can rebuild the same architecture later (see
[`model_spec`][visionkit.models.model_spec]).

Besides the registered models, every torchvision classifier is found by name
(``"resnet50"``, or ``"torchvision/resnet50"``, which no registered model can shadow), and
every timm model as ``"timm/<name>"`` (see `visionkit.models.backbones`).
"""

from __future__ import annotations

import contextlib
import difflib
import enum
import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypeVar

from torch import nn

from visionkit.exceptions import ConfigurationError

__all__ = [
    "ModelLibrary",
    "ModelSpec",
    "add_library",
    "create_model",
    "get_model_factory",
    "list_models",
    "model_spec",
    "register_model",
]

Library: TypeAlias = Literal["visionkit", "torchvision", "timm", "all"]
"""Which models [`list_models`][visionkit.models.list_models] lists."""

_SPEC_ATTRIBUTE = "_visionkit_spec"
_Factory = TypeVar("_Factory", bound=Callable[..., nn.Module])
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


@dataclass(frozen=True)
class ModelSpec:
    """How a registered model was built: its registry name and constructor arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, **overrides: Any) -> nn.Module:
        """Build a fresh model from this spec, with ``overrides`` replacing arguments."""
        return create_model(self.name, **{**self.kwargs, **overrides})


def register_model(
    factory: _Factory | None = None, *, name: str | None = None
) -> _Factory | Callable[[_Factory], _Factory]:
    """Register a model factory under its function name (or ``name``).

    Use it bare or with a name::

        @register_model
        def tiny_cnn(*, num_classes: int = 10) -> nn.Module: ...

        @register_model(name="tiny-cnn-v2")
        def _build(*, num_classes: int = 10) -> nn.Module: ...

    Registering a second factory under a name already taken raises
    [`ConfigurationError`][visionkit.ConfigurationError], so two projects cannot silently replace
    each other's models.
    """

    def decorate(fn: _Factory) -> _Factory:
        key = name or getattr(fn, "__name__", None)
        if not key:
            raise ConfigurationError(
                f"cannot register {fn!r}: it has no __name__; pass register_model(name=...)"
            )
        if key.partition("/")[0] in _LIBRARIES:
            raise ConfigurationError(
                f"cannot register a model as {key!r}: names starting with "
                f"{' or '.join(f'{p}/' for p in _LIBRARIES)} mean those libraries' models; "
                "choose another name with register_model(name=...)"
            )
        existing = _REGISTRY.get(key)
        if existing is not None and existing is not fn:
            raise ConfigurationError(
                f"a model named {key!r} is already registered ({_describe(existing)}); "
                "choose another name with register_model(name=...)"
            )
        _REGISTRY[key] = fn
        return fn

    return decorate(factory) if factory is not None else decorate


def get_model_factory(name: str) -> Callable[..., nn.Module]:
    """Return the factory of model ``name``, or raise with the closest names.

    A registered name comes first; then a torchvision classifier (bare or
    ``"torchvision/<name>"``) or a timm model (``"timm/<name>"``), whose factory is a
    `Backbone` (see `add_library`).
    """
    return _lookup(name)[1]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with keyword arguments ``kwargs``.

    ``name`` may also be any torchvision classifier (``"resnet50"``, ``"torchvision/resnet50"``) or,
    with ``pip install "visionkit-torch[timm]"``, any timm model (``"timm/convnext_tiny"``): their
    head is sized for ``num_classes``, ``weights=`` takes ``None``, ``"DEFAULT"``, a weights name or
    a local file, and ``freeze_backbone=True`` trains the head only (see
    [`torchvision_model`][visionkit.models.torchvision_model] and
    [`timm_model`][visionkit.models.timm_model]).

    The returned module remembers its name (``"torchvision/resnet50"`` for a bare torchvision name)
    and ``kwargs`` ([`model_spec`][visionkit.models.model_spec]), which checkpoints store so
    [`visionkit.Predictor.from_checkpoint`][visionkit.Predictor.from_checkpoint] can rebuild it.

    Examples:
        >>> from visionkit.models import create_model
        >>> model = create_model("mlp", in_features=784, hidden=[512, 512], num_classes=10)
        >>> sum(p.numel() for p in model.parameters())
        669706
        >>> model_spec(create_model("resnet18", num_classes=7)).name
        'torchvision/resnet18'
    """
    key, factory = _lookup(name)
    try:
        model = factory(**kwargs)
    except TypeError as error:
        raise ConfigurationError(
            f"create_model({name!r}, ...) got bad arguments: {error}"
        ) from error
    if not isinstance(model, nn.Module):
        raise ConfigurationError(
            f"the factory registered as {name!r} returned {type(model).__name__}, "
            "expected a torch.nn.Module"
        )
    recorded = getattr(factory, "spec_kwargs", None)  # a Backbone: pretrained=True as weights
    spec_kwargs = recorded(kwargs) if callable(recorded) else kwargs
    object.__setattr__(model, _SPEC_ATTRIBUTE, ModelSpec(key, _recordable(spec_kwargs)))
    return model


def model_spec(model: nn.Module) -> ModelSpec | None:
    """Return how ``model`` was built by `create_model`, or ``None`` if it was not."""
    spec = getattr(model, _SPEC_ATTRIBUTE, None)
    return spec if isinstance(spec, ModelSpec) else None


def list_models(pattern: str = "*", *, library: Library = "visionkit") -> list[str]:
    """Names of the models matching the shell-style ``pattern``, sorted.

    Args:
        pattern: Matched against the full name and against the name without its
            ``"torchvision/"`` or ``"timm/"`` prefix.
        library: ``"visionkit"``: the registered models (visionkit's own and yours);
            ``"torchvision"``: torchvision's classifiers, as ``"torchvision/<name>"``;
            ``"timm"``: timm's models, as ``"timm/<name>"`` (needs timm); ``"all"``:
            those three lists one after the other (timm's only if it is installed).

    Every name listed works with [`create_model`][visionkit.models.create_model].

    Examples:
        >>> from visionkit.models import list_models
        >>> "mlp" in list_models("ml*")
        True
        >>> list_models("resnet1*", library="torchvision")
        ['torchvision/resnet101', 'torchvision/resnet152', 'torchvision/resnet18']
    """
    choices = ("visionkit", *_LIBRARIES, "all")
    if library not in choices:
        raise ConfigurationError(
            f"library must be one of {', '.join(map(repr, choices))}, got {library!r}"
        )
    groups = [sorted(_REGISTRY)] if library in ("visionkit", "all") else []
    for prefix, source in _LIBRARIES.items():
        if library == prefix:
            groups.append([f"{prefix}/{n}" for n in source.names()])
        elif library == "all":
            with contextlib.suppress(ConfigurationError):  # the library is not installed
                groups.append([f"{prefix}/{n}" for n in source.names()])
    return [name for group in groups for name in group if _matches(name, pattern)]


@dataclass(frozen=True)
class ModelLibrary:
    """Models of another library, found by ``"<prefix>/<name>"`` (see `add_library`).

    Attributes:
        find: The factory of a model name (without the prefix), or ``None``.
        names: Every model name of the library (without the prefix).
        bare_names: Whether a name without the prefix is looked up too (after the
            registered models, so these always keep their meaning).
    """

    find: Callable[[str], Callable[..., nn.Module] | None]
    names: Callable[[], list[str]]
    bare_names: bool = False


_LIBRARIES: dict[str, ModelLibrary] = {}


def add_library(prefix: str, library: ModelLibrary) -> None:
    """Make the models of ``library`` available as ``"<prefix>/<name>"``.

    `visionkit.models.backbones` adds ``"torchvision"`` and ``"timm"``.
    """
    _LIBRARIES[prefix] = library


def _matches(name: str, pattern: str) -> bool:
    prefix, _, bare = name.partition("/")
    bare = bare if prefix in _LIBRARIES else name
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(bare, pattern)


def _lookup(name: str) -> tuple[str, Callable[..., nn.Module]]:
    """``(name to record, factory)`` of model ``name``."""
    if not isinstance(name, str):
        raise ConfigurationError(
            f"a model name must be a string, got {name!r} ({type(name).__name__}); "
            f"known models: {', '.join(sorted(_REGISTRY)) or 'none'}"
        )
    if name in _REGISTRY:
        return name, _REGISTRY[name]
    prefix, _, bare = name.partition("/") if "/" in name else ("", "", name)
    for key, library in _LIBRARIES.items():
        if prefix == key or (not prefix and library.bare_names):
            factory = library.find(bare)
            if factory is not None:
                return f"{key}/{bare}", factory
    raise _unknown(name)


def _unknown(name: str) -> ConfigurationError:
    names = list(_REGISTRY)
    for key, library in _LIBRARIES.items():
        if library.bare_names or name.startswith(f"{key}/"):  # others may be slow to list
            listed = library.names()
            names += [f"{key}/{n}" for n in listed] + (listed if library.bare_names else [])
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "."
    return ConfigurationError(
        f"no model named {name!r} is known{hint} "
        f"Known models: {', '.join(sorted(_REGISTRY)) or 'none'}, every torchvision "
        "classifier (list_models(library='torchvision')) and, with timm installed, "
        "'timm/<name>' (list_models(library='timm')). Import the module that registers "
        "your model, or call list_models() to see the registered ones"
    )


def _describe(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _recordable(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Paths and enum members as strings, NumPy scalars as Python numbers.

    Checkpoints are read with ``weights_only=True``, which loads only plain values.
    """
    plain = {}
    for key, value in kwargs.items():
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif isinstance(value, enum.Enum):
            value = f"{type(value).__name__}.{value.name}"
        elif type(value).__module__ == "numpy" and hasattr(value, "item"):
            value = value.item()  # numpy.int64(3) -> 3: numpy scalars do not load safely
        plain[key] = value
    return plain
