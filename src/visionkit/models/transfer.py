"""Transfer-learning helpers: new classification heads, freezing, trainable parameters.

They work on any ``nn.Module``: visionkit's models and torchvision classifiers alike
(``resnet*.fc``, ``vgg*.classifier``, ``efficientnet*.classifier``, ``vit*.heads``, ...).

Examples:
    >>> import torch
    >>> from visionkit.models import ConvNet, count_parameters, freeze, replace_head
    >>> model = freeze(ConvNet(1, 10))           # every parameter frozen ...
    >>> model = replace_head(model, 5)           # ... then a new, trainable head
    >>> count_parameters(model, trainable_only=True)
    23045
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 5])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsIndex, TypeVar

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from typing_extensions import Self

from visionkit._checks import check_bool, check_fraction
from visionkit.exceptions import ConfigurationError
from visionkit.models._mlp import make_activation
from visionkit.models._shapes import check_ints, hidden_sizes

__all__ = [
    "HEAD_ATTRIBUTES",
    "count_parameters",
    "find_head",
    "freeze",
    "is_frozen",
    "make_head",
    "replace_head",
    "trainable_parameters",
    "unfreeze",
]

HEAD_ATTRIBUTES = ("fc", "classifier", "head", "heads")
"""Attributes searched, in order, for a model's classification head."""

_Module = TypeVar("_Module", bound=nn.Module)


def make_head(
    in_features: int,
    num_classes: int,
    *,
    hidden: int | Sequence[int] | None = None,
    dropout: float = 0.0,
    activation: str = "relu",
    log_softmax: bool = False,
) -> nn.Sequential:
    """A fully connected classification head.

    Each hidden size adds ``Linear -> activation -> Dropout(dropout)``; a last ``Linear``
    gives ``num_classes`` outputs, followed by ``LogSoftmax(dim=1)`` if ``log_softmax``.
    Without hidden layers, the dropout goes before the single ``Linear`` instead.

    Args:
        in_features: Width of the features the head receives.
        num_classes: Number of outputs.
        hidden: One hidden size, several, or ``None`` for a single ``Linear``.
        dropout: Dropout probability (0 adds no dropout layer).
        activation: Activation name after each hidden layer.
        log_softmax: End with ``LogSoftmax`` (for ``NLLLoss``) instead of logits.

    Examples:
        >>> make_head(512, 102, hidden=256, dropout=0.2, log_softmax=True)
        Sequential(
          (0): Linear(in_features=512, out_features=256, bias=True)
          (1): ReLU()
          (2): Dropout(p=0.2, inplace=False)
          (3): Linear(in_features=256, out_features=102, bias=True)
          (4): LogSoftmax(dim=1)
        )
    """
    sizes = hidden_sizes(hidden)
    check_ints(in_features=in_features, num_classes=num_classes)
    dropout = check_fraction("dropout", dropout)
    log_softmax = check_bool("log_softmax", log_softmax)
    layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout and not sizes else []
    for size in sizes:
        layers += [nn.Linear(in_features, size), make_activation(activation)]
        layers += [nn.Dropout(dropout)] if dropout else []
        in_features = size
    layers.append(nn.Linear(in_features, num_classes))
    layers += [nn.LogSoftmax(dim=1)] if log_softmax else []
    return nn.Sequential(*layers)


def find_head(model: nn.Module, *, attr: str | None = None) -> tuple[str, nn.Module]:
    """Return ``(attribute name, module)`` of the classification head of ``model``.

    The head is the first of `HEAD_ATTRIBUTES` (or ``attr``) that holds a ``Linear``
    layer. Raises [`ConfigurationError`][visionkit.ConfigurationError] when there is none.
    """
    names = (attr,) if attr else HEAD_ATTRIBUTES
    for name in names:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module) and _first_linear(module) is not None:
            return name, module
    raise ConfigurationError(
        f"cannot find the classification head of {type(model).__name__}: no Linear layer in "
        f"attribute(s) {', '.join(names)}; pass attr='<name of the head attribute>'"
    )


def replace_head(
    model: _Module,
    num_classes: int,
    *,
    hidden: int | Sequence[int] | None = None,
    dropout: float = 0.0,
    activation: str = "relu",
    log_softmax: bool = False,
    attr: str | None = None,
) -> _Module:
    """Replace the classification head of ``model`` by a new `make_head`; return ``model``.

    The old head is replaced from its first ``Linear`` layer on: layers before it that only
    reshape or normalize (a ``Flatten``, a ``LayerNorm``, a ``Dropout``) stay. The new head
    takes that ``Linear``'s ``in_features``, sits on the same device and dtype, and is
    trainable even if the rest of the model is frozen. A whole ``vgg16().classifier`` is
    replaced (its first layer is a ``Linear``), as is a ``resnet18().fc``.

    Args:
        model: The network; changed in place.
        num_classes: Number of outputs of the new head.
        hidden: Hidden sizes of the new head (see [`make_head`][visionkit.models.make_head]).
        dropout: Dropout probability in the new head.
        activation: Activation after each hidden layer.
        log_softmax: End the head with ``LogSoftmax``.
        attr: Name of the head attribute; default: the first of `HEAD_ATTRIBUTES`.

    Examples:
        >>> import torchvision
        >>> model = replace_head(torchvision.models.resnet18(), 5)
        >>> model.fc
        Sequential(
          (0): Linear(in_features=512, out_features=5, bias=True)
        )
    """
    name, old = find_head(model, attr=attr)
    index, linear = _first_linear(old) or (0, None)
    assert linear is not None  # find_head guarantees a Linear layer
    with torch.device(linear.weight.device):  # built in place: no copy from the CPU
        head = make_head(
            linear.in_features,
            num_classes,
            hidden=hidden,
            dropout=dropout,
            activation=activation,
            log_softmax=log_softmax,
        ).to(dtype=linear.weight.dtype)
    if isinstance(old, nn.Sequential) and index > 0:
        head = nn.Sequential(*list(old)[:index], *head)
    setattr(model, name, head)
    return model


def freeze(module: _Module) -> _Module:
    """Freeze ``module``: no parameter trains and no normalization statistic moves; return it.

    Every parameter gets ``requires_grad=False``, so it receives no gradient and no
    optimizer changes it, whichever parameters the optimizer was given. Every
    normalization layer with running statistics inside (``BatchNorm*``, ``SyncBatchNorm``,
    ``InstanceNorm*`` that track statistics) is put in eval mode and *stays* there:
    ``model.train()``, which the ``Trainer`` calls every epoch, leaves it alone, so its
    running mean and variance are used, never updated. Frozen means bitwise unchanged.

    The layer keeps its class for every ``isinstance`` check, its state-dict keys and its printed
    name; only its ``train()`` changes. Frozen models pickle, ``deepcopy`` and ``torch.save`` like
    any other, and come back frozen. [`unfreeze`][visionkit.models.unfreeze] undoes all of it.

    Examples:
        >>> import torchvision
        >>> model = freeze(torchvision.models.resnet18())
        >>> model.train().bn1.training  # stays in eval mode
        False
    """
    module.requires_grad_(False)
    for layer in module.modules():
        if isinstance(layer, _NormBase) and not isinstance(layer, _KeepsEvalMode):
            setattr(layer, "__class__", _frozen_class(type(layer)))  # noqa: B010
            nn.Module.train(layer, False)
    return module


def unfreeze(module: _Module) -> _Module:
    """Make every parameter of ``module`` trainable again; return it.

    Normalization layers frozen by [`freeze`][visionkit.models.freeze] follow ``train()`` and
    ``eval()`` again and take the current mode of ``module`` (training, after ``model.train()``).
    """
    module.requires_grad_(True)
    for layer in module.modules():
        if isinstance(layer, _KeepsEvalMode):
            setattr(layer, "__class__", layer.unfrozen_class)  # noqa: B010
            layer.train(module.training)
    return module


def is_frozen(module: nn.Module) -> bool:
    """Whether ``module`` has parameters and none of them trains.

    Examples:
        >>> from torch import nn
        >>> is_frozen(freeze(nn.Linear(2, 2))), is_frozen(nn.Linear(2, 2))
        (True, False)
    """
    flags = [p.requires_grad for p in module.parameters()]
    return bool(flags) and not any(flags)


class _KeepsEvalMode(nn.Module):
    """Mixed into a frozen normalization layer's class: ``train()`` keeps it in eval mode.

    [`freeze`][visionkit.models.freeze] swaps the layer's class for a subclass ``(_KeepsEvalMode,
    original)`` made once per original class (`_frozen_class`). Pickling and ``deepcopy`` store the
    original class and rebuild the frozen one on load (`_new_frozen`), so the made-up class never
    has to be importable by name.
    """

    unfrozen_class: type[nn.Module]

    def train(self, mode: bool = True) -> Self:
        """Stay in eval mode whatever ``mode`` is: the layer is frozen."""
        return super().train(False)

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        reduced = super().__reduce_ex__(protocol)
        assert isinstance(reduced, tuple)  # objects reduce to a tuple, never a global name
        return (_new_frozen, (self.unfrozen_class,), *reduced[2:])


_FROZEN_CLASSES: dict[type[nn.Module], type[_KeepsEvalMode]] = {}


def _frozen_class(original: type[nn.Module]) -> type[_KeepsEvalMode]:
    """The frozen subclass of ``original``, made once; it prints as ``original`` does."""
    if original not in _FROZEN_CLASSES:
        namespace = {"unfrozen_class": original, "__module__": __name__}
        namespace["__qualname__"] = original.__qualname__
        _FROZEN_CLASSES[original] = type(original.__name__, (_KeepsEvalMode, original), namespace)
    return _FROZEN_CLASSES[original]


def _new_frozen(original: type[nn.Module]) -> nn.Module:
    """Unpickling: an empty frozen ``original`` layer; pickle then restores its state."""
    frozen = _frozen_class(original)
    return frozen.__new__(frozen)


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``module`` that require gradients, for an optimizer.

    Examples:
        >>> import torch
        >>> from visionkit.models import ConvNet
        >>> model = replace_head(freeze(ConvNet(1, 10)), 5)
        >>> optimizer = torch.optim.Adam(trainable_parameters(model), lr=1e-3)
        >>> [tuple(p.shape) for p in trainable_parameters(model)]  # the new head only
        [(5, 4608), (5,)]
    """
    return [p for p in module.parameters() if p.requires_grad]


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter values in ``module`` (each shared tensor counted once)."""
    params = trainable_parameters(module) if trainable_only else module.parameters()
    return sum(p.numel() for p in params)


def _first_linear(module: nn.Module) -> tuple[int, nn.Linear] | None:
    if isinstance(module, nn.Linear):
        return 0, module
    for index, child in enumerate(module.children()):
        found = _first_linear(child)
        if found is not None:
            return index, found[1]
    return None
