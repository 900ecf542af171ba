"""The model registry: one name per model factory, as in timm.

A factory is any callable that takes keyword arguments and returns an ``nn.Module``.
:func:`create_model` records the name and the arguments on the module it returns, so that a
checkpoint can rebuild the same architecture later (see :func:`model_spec`).
"""

from __future__ import annotations

import difflib
import enum
import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from visionkit.exceptions import ConfigurationError

__all__ = [
    "ModelSpec",
    "create_model",
    "get_model_factory",
    "list_models",
    "model_spec",
    "register_model",
]

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
    :class:`~visionkit.ConfigurationError`, so two projects cannot silently replace each
    other's models.
    """

    def decorate(fn: _Factory) -> _Factory:
        key = name or getattr(fn, "__name__", None)
        if not key:
            raise ConfigurationError(
                f"cannot register {fn!r}: it has no __name__; pass register_model(name=...)"
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
    """Return the factory registered under ``name``, or raise with the closest names."""
    if not isinstance(name, str):
        raise ConfigurationError(
            f"a model name must be a string, got {name!r} ({type(name).__name__}); "
            f"known models: {', '.join(sorted(_REGISTRY)) or 'none'}"
        )
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigurationError(
            f"no model named {name!r} is registered{hint} "
            f"Known models: {', '.join(sorted(_REGISTRY)) or 'none'}. "
            "Import the module that registers it, or call list_models() to see them."
        ) from None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with keyword arguments ``kwargs``.

    The returned module remembers ``name`` and ``kwargs`` (:func:`model_spec`), which
    checkpoints store so :meth:`visionkit.Predictor.from_checkpoint` can rebuild it.

    Example:
        >>> from visionkit.models import create_model
        >>> model = create_model("mlp", in_features=784, hidden=[512, 512], num_classes=10)
        >>> sum(p.numel() for p in model.parameters())
        669706
    """
    factory = get_model_factory(name)
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
    object.__setattr__(model, _SPEC_ATTRIBUTE, ModelSpec(name, _recordable(kwargs)))
    return model


def model_spec(model: nn.Module) -> ModelSpec | None:
    """Return how ``model`` was built by :func:`create_model`, or ``None`` if it was not."""
    spec = getattr(model, _SPEC_ATTRIBUTE, None)
    return spec if isinstance(spec, ModelSpec) else None


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models matching the shell-style ``pattern``, sorted.

    Example:
        >>> from visionkit.models import list_models
        >>> "mlp" in list_models("ml*")
        True
    """
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


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
