"""Checking the ``Trainer``'s arguments, all of them before anything happens."""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from visionkit._checks import (
    check_bool,
    check_int,
    check_optional_int,
    check_optional_number,
    check_path,
    check_seed,
    describe,
)
from visionkit.callbacks.base import Callback
from visionkit.callbacks.checkpoint import ModelCheckpoint
from visionkit.callbacks.progress import ProgressBar
from visionkit.exceptions import ConfigurationError

__all__ = [
    "CACHE_MODES",
    "PRECISIONS",
    "CacheFeatures",
    "Precision",
    "Settings",
    "add_default_callbacks",
    "check_arguments",
    "check_cache_features",
]

Precision = Literal["32", "bf16", "16"]
PRECISIONS: dict[str, torch.dtype | None] = {
    "32": None,
    "bf16": torch.bfloat16,
    "16": torch.float16,
}
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CacheFeatures = Literal[False, "auto", "eval", "all"]
CACHE_MODES = ("auto", "eval", "all")


@dataclass(frozen=True)
class Settings:
    """The ``Trainer``'s checked arguments, each becoming an attribute of the same name."""

    loss_fn: LossFunction
    scheduler: Any | None
    scheduler_interval: Literal["epoch", "step"]
    monitor: str | None
    max_epochs: int
    max_steps: int | None
    max_time: float | None
    log_every_n_steps: int | None
    precision: Precision
    gradient_clip_val: float | None
    accumulate_grad_batches: int
    num_workers: int
    num_threads: int | None
    seed: int
    default_root_dir: Path
    check_finite: bool
    top_k: tuple[int, ...]
    channels_last: bool
    compile: bool
    handle_signals: bool
    cache_features: CacheFeatures


def check_arguments(arguments: Mapping[str, Any]) -> tuple[Settings, list[Callback]]:
    """Check every ``Trainer`` argument; return the settings and the callback list.

    The list holds the callbacks passed, then a default ``ModelCheckpoint`` and
    ``ProgressBar`` when they are enabled and none of that kind was passed.

    Raises:
        ConfigurationError: naming the argument, what it must be and what was passed.
    """
    get = arguments.__getitem__
    model = get("model")
    if not isinstance(model, nn.Module):
        raise ConfigurationError(
            f"model must be a torch.nn.Module, got {describe(model)}: pass the network, "
            "e.g. create_model('mlp', num_classes=10)"
        )
    _check_choices(get("precision"), get("scheduler_interval"))
    numbers = _check_numbers(arguments)
    top_k = _check_top_k(get("top_k"))
    callbacks = _check_callbacks(get("callbacks"))
    _check_monitor(get("monitor"))
    _check_loss(get("loss"))
    if get("optimizer") is not None:
        _check_optimizer(model, get("optimizer"))
    flags = {
        name: check_bool(name, get(name))
        for name in (
            "enable_checkpointing",
            "enable_progress_bar",
            "check_finite",
            "channels_last",
            "compile",
            "handle_signals",
        )
    }
    scheduler = get("scheduler")
    if get("scheduler_interval") == "step" and isinstance(
        scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
    ):
        raise ConfigurationError(
            "ReduceLROnPlateau needs a metric, which exists once per epoch: use "
            "scheduler_interval='epoch' (the default) with it"
        )
    settings = Settings(
        loss_fn=get("loss") if get("loss") is not None else nn.CrossEntropyLoss(),
        scheduler=scheduler,
        scheduler_interval=get("scheduler_interval"),
        monitor=get("monitor"),
        precision=get("precision"),
        top_k=top_k,
        check_finite=flags["check_finite"],
        channels_last=flags["channels_last"],
        compile=flags["compile"],
        handle_signals=flags["handle_signals"],
        cache_features=check_cache_features(get("cache_features")),
        **numbers,
    )
    add_default_callbacks(
        callbacks,
        checkpointing=flags["enable_checkpointing"],
        progress=flags["enable_progress_bar"],
    )
    return settings, callbacks


def add_default_callbacks(
    callbacks: list[Callback], *, checkpointing: bool, progress: bool
) -> None:
    """Append a ``ModelCheckpoint`` and a ``ProgressBar`` unless ``callbacks`` has one."""
    if checkpointing and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        callbacks.append(ModelCheckpoint(None, monitor=None))
    if progress and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(ProgressBar())


def _check_numbers(arguments: Mapping[str, Any]) -> dict[str, Any]:
    get = arguments.__getitem__
    return {
        "max_epochs": check_int(
            "max_epochs", get("max_epochs"), least=1, hint="pass a whole number, e.g. max_epochs=10"
        ),
        "max_steps": check_optional_int(
            "max_steps", get("max_steps"), least=1, hint="pass a whole number of steps, or None"
        ),
        "max_time": check_optional_number(
            "max_time",
            get("max_time"),
            above=0.0,
            finite=False,
            hint="pass the seconds training may take, e.g. max_time=600, or None for no limit",
        ),
        "accumulate_grad_batches": check_int(
            "accumulate_grad_batches",
            get("accumulate_grad_batches"),
            least=1,
            hint="pass the whole number of batches per optimizer step, e.g. 4",
        ),
        "gradient_clip_val": check_optional_number(
            "gradient_clip_val",
            get("gradient_clip_val"),
            above=0.0,
            hint="pass the largest gradient norm allowed, e.g. 1.0, or None to not clip",
        ),
        "log_every_n_steps": check_optional_int(
            "log_every_n_steps",
            get("log_every_n_steps"),
            least=1,
            hint="pass a whole number of steps, or None to report once per epoch",
        ),
        "num_workers": check_int(
            "num_workers", get("num_workers"), least=0, hint="pass 0 to load data in this process"
        ),
        "num_threads": check_optional_int(
            "num_threads",
            get("num_threads"),
            least=1,
            hint="pass a whole number of threads, or None to pick them from the usable cores",
        ),
        "seed": check_seed("seed", get("seed")),
        "default_root_dir": check_path("default_root_dir", get("default_root_dir")),
    }


def _check_optimizer(model: nn.Module, optimizer: Any) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        made = isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)
        found = f"the class {optimizer.__name__}" if made else describe(optimizer)
        raise ConfigurationError(
            f"optimizer must be a torch.optim.Optimizer over the model's parameters, got "
            f"{found}: create one, e.g. torch.optim.SGD(model.parameters(), lr=0.01), "
            "or pass None for Adam(lr=1e-3)"
        )
    own = {id(p) for p in model.parameters()}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    if not any(id(p) in own for p in held):
        raise ConfigurationError(
            f"the optimizer holds {len(held)} tensors but none is a parameter of the model: "
            "create it from this model, e.g. torch.optim.SGD(model.parameters(), lr=0.01)"
        )


def _check_choices(precision: str, interval: str) -> None:
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ConfigurationError(
            f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}"
        )
    if interval not in ("epoch", "step"):
        raise ConfigurationError(f"scheduler_interval must be 'epoch' or 'step', got {interval!r}")


def _check_top_k(value: Any) -> tuple[int, ...]:
    """``top_k`` as a tuple of integers >= 1; a single integer ``k`` means ``(k,)``."""
    expected = "top_k must be an integer >= 1 or a sequence of them such as (1, 5)"
    if not isinstance(value, bool) and hasattr(value, "__index__"):
        with contextlib.suppress(TypeError):  # a float tensor has __index__ but refuses it
            return (check_int("top_k", operator.index(value), least=1),)
    if isinstance(value, (str, bytes, Mapping, AbstractSet)) or not isinstance(value, Iterable):
        raise ConfigurationError(f"{expected}, got {describe(value)}")
    return tuple(
        check_int(f"top_k[{i}]", k, least=1, hint="pass e.g. top_k=(5,) for top-5 accuracy")
        for i, k in enumerate(value)
    )


def _check_monitor(monitor: Any) -> None:
    if monitor is not None and (not isinstance(monitor, str) or not monitor):
        raise ConfigurationError(
            f"monitor must be the name of a logged metric such as 'val_loss' or "
            f"'val_accuracy', or None for the default, got {describe(monitor)}"
        )


def _check_callbacks(callbacks: Any) -> list[Callback]:
    """``callbacks`` as a new list, each checked to be a `Callback` instance."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        raise ConfigurationError(
            f"callbacks must be a list of callbacks, got a single {type(callbacks).__name__}: "
            f"pass callbacks=[{type(callbacks).__name__}(...)]"
        )
    if isinstance(callbacks, (str, bytes, Mapping)) or not isinstance(callbacks, Iterable):
        raise ConfigurationError(
            "callbacks must be a list of visionkit.callbacks.Callback objects, got "
            f"{describe(callbacks)}: pass e.g. callbacks=[EarlyStopping(patience=3)], or None"
        )
    checked: list[Callback] = []
    for i, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            fix = (
                f"pass an instance, e.g. {callback.__name__}()"
                if isinstance(callback, type) and issubclass(callback, Callback)
                else "subclass visionkit.callbacks.Callback and override the hooks you need"
            )
            raise ConfigurationError(
                f"callbacks[{i}] must be a visionkit.callbacks.Callback, got "
                f"{describe(callback)}: {fix}"
            )
        checked.append(callback)
    return checked


def _check_loss(loss: Any) -> None:
    if loss is None:
        return
    if isinstance(loss, type):
        raise ConfigurationError(
            f"loss must be a loss function, got the class {loss.__name__}: pass an instance, "
            f"e.g. loss={loss.__name__}()"
        )
    if not callable(loss):
        raise ConfigurationError(
            "loss must be a callable (outputs, targets) -> loss tensor such as "
            f"nn.CrossEntropyLoss(), got {describe(loss)}: pass one, or None for the default"
        )


def check_cache_features(value: Any) -> CacheFeatures:
    """``cache_features`` as ``False``, ``"auto"``, ``"eval"`` or ``"all"`` (``True``: ``"auto"``).

    Raises:
        ConfigurationError: for any other value.
    """
    if value is True:
        return "auto"
    if value is False or (isinstance(value, str) and value in CACHE_MODES):
        return value  # type: ignore[return-value]
    raise ConfigurationError(
        f"cache_features must be False, True (the same as 'auto'), 'auto', 'eval' or 'all', "
        f"got {describe(value)}: pass True to cache what can be cached, or False"
    )
