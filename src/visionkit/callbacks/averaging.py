"""Weight averaging: an exponential moving average (``EMA``) or stochastic weight averaging
(``SWA``) of the weights, validated, checkpointed and resumed exactly.

Both keep an averaged copy of the model beside the one the optimizer trains. The copy is
what validation sees: it is swapped into ``trainer.model`` for the validation pass and
swapped out right after, so training, exact resume and every other hook see the raw
training weights. A checkpoint keeps the raw weights as its ``state_dict`` (so resuming is
exact) and adds the averaged ones under ``"averaged_weights"``, described by
``"averaging"`` (``{"kind": "ema", "decay": 0.999, "steps": 1200, ...}``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, update_bn
from torch.utils.data import DataLoader

from visionkit._checks import check_bool, check_int, check_number, describe
from visionkit._seed import get_rng_state, set_rng_state
from visionkit.callbacks.base import Batch, Callback, StepOutput
from visionkit.exceptions import CheckpointError, ConfigurationError
from visionkit.predict.checkpoint import (
    AVERAGED_WEIGHTS,
    AVERAGING,
    non_finite_tensors,
    unwrap_model,
)

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["AVERAGED_WEIGHTS", "AVERAGING", "EMA", "SWA", "WeightAveraging"]


State = dict[str, torch.Tensor]


class WeightAveraging(Callback):
    """Base class of [`EMA`][visionkit.callbacks.EMA] and [`SWA`][visionkit.callbacks.SWA].

    Keeps an averaged copy of the trained model (on the trainer's device) and folds the
    model's weights into it with [`update`][visionkit.callbacks.WeightAveraging.update].
    Parameters and floating-point buffers (BatchNorm running statistics) are averaged, as
    ``AveragedModel(use_buffers=True)`` does; integer buffers (BatchNorm's batch counter)
    are copied. The first update copies the weights; update ``n`` (counted from 0) then
    moves every averaged tensor toward the model's by the weight
    [`averaging_weight(n)`][visionkit.callbacks.WeightAveraging.averaging_weight].

    While validating, the averaged weights are swapped into ``trainer.model``; they are
    swapped out right after the validation pass (or when it fails), before the epoch-end
    hooks, and a checkpoint written during validation still gets the raw weights as its
    ``state_dict``. Checkpoints keep the raw weights as their
    ``state_dict`` and add the averaged ones under ``"averaged_weights"`` with a
    description under ``"averaging"``; the callback's state (the averaged weights and the
    count) travels under its ``state_key``, so a resumed run continues exactly.

    For another averaging scheme, subclass it: override
    [`averaging_weight`][visionkit.callbacks.WeightAveraging.averaging_weight] and call
    [`update`][visionkit.callbacks.WeightAveraging.update] from the hook that should fold
    the weights in.

    Args:
        validate_with_average: Validate the averaged weights (once there are any) instead
            of the raw ones.

    Attributes:
        validate_with_average: As given.
    """

    kind: ClassVar[str] = "average"

    def __init__(self, *, validate_with_average: bool = True) -> None:
        self.validate_with_average = check_bool("validate_with_average", validate_with_average)
        self._averaged: nn.Module | None = None
        self._source: nn.Module | None = None
        self._num_averaged = 0
        self._pending: dict[str, Any] | None = None  # state loaded before the model is known
        self._raw: State | None = None  # the trainer's weights while the average is in

    # ------------------------------------------------------------------ public API
    @property
    def averaged_model(self) -> nn.Module | None:
        """The averaged copy of the model (``None`` before training starts)."""
        return self._averaged

    @property
    def num_averaged(self) -> int:
        """How many times the weights were folded into the average (0: no average yet)."""
        return self._num_averaged

    def averaging_weight(self, num_averaged: int) -> float:
        """Weight of the model's weights in update ``num_averaged`` (counted from 0)."""
        raise NotImplementedError

    def description(self) -> dict[str, Any]:
        """What the checkpoint's ``"averaging"`` entry says: ``kind``, ``steps`` and options."""
        return {"kind": self.kind, "steps": self._num_averaged}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` into the average (the first call copies)."""
        source = unwrap_model(model)
        if self._averaged is None or self._source is not source:
            self._start(source)
        assert self._averaged is not None
        weight = 1.0 if self._num_averaged == 0 else self.averaging_weight(self._num_averaged)
        pairs = list(zip(_tensors(self._averaged), _tensors(source), strict=True))
        floats = [(a, c) for a, c in pairs if weight < 1.0 and a.is_floating_point()]
        if floats:  # one fused kernel per device and dtype, as AveragedModel's EMA
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], weight)
        for averaged, current in pairs:
            if weight == 1.0 or not averaged.is_floating_point():  # first update; counters
                averaged.copy_(current)
        self._num_averaged += 1

    def copy_to(self, model: nn.Module) -> None:
        """Copy the averaged weights and buffers into ``model`` (e.g. ``trainer.model``).

        Raises:
            ConfigurationError: if nothing was averaged yet.
        """
        if self._averaged is None or not self._num_averaged:
            raise ConfigurationError(
                f"{type(self).__name__} has no averaged weights yet: train with it first "
                "(the average starts with the first update)"
            )
        unwrap_model(model).load_state_dict(self._averaged.state_dict())

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: Trainer) -> None:
        self._prepare(trainer)

    def on_load_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
        self._prepare(trainer)

    def on_validation_epoch_start(self, trainer: Trainer) -> None:
        if self.validate_with_average and self._num_averaged and self._averaged is not None:
            model = unwrap_model(trainer.model)
            self._raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(self._averaged.state_dict())

    def on_validation_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self._swap_back(trainer)

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        self._swap_back(trainer)

    def on_fit_end(self, trainer: Trainer) -> None:
        self._swap_back(trainer)

    def on_save_checkpoint(self, trainer: Trainer, checkpoint: dict[str, Any]) -> None:
        if self._raw is not None:  # saved from inside validation: keep the raw weights
            checkpoint["state_dict"] = {k: v.detach().cpu() for k, v in self._raw.items()}
        if not self._num_averaged:
            return
        callbacks = (checkpoint.get("trainer_state") or {}).get("callbacks") or {}
        saved = (callbacks.get(self.state_key) or {}).get("weights")
        weights = saved if saved is not None else self._averaged_state()  # stored once
        bad = non_finite_tensors(weights)
        if bad:
            raise CheckpointError(
                f"refused to write the checkpoint: the averaged weights {bad[:5]} hold NaN or "
                "infinite values. Nothing was written; lower the learning rate or check the "
                "data, then resume from an earlier checkpoint"
            )
        checkpoint[AVERAGED_WEIGHTS] = weights
        checkpoint[AVERAGING] = self.description()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            **self.description(),
            "num_averaged": self._num_averaged,
            "weights": self._averaged_state() if self._num_averaged else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise ConfigurationError(
                f"the checkpoint holds the state of a {state.get('kind')!r} average, but this "
                f"callback is {type(self).__name__} ({self.kind!r}): resume with the callback "
                "the run was trained with, or give this one another state_key"
            )
        self._pending = state
        if self._averaged is not None:
            self._apply_pending()

    # ------------------------------------------------------------------ helpers
    def _prepare(self, trainer: Trainer) -> None:
        source = unwrap_model(trainer.model)
        if self._averaged is None or self._source is not source:
            self._start(source)
        self._apply_pending()

    def _start(self, source: nn.Module) -> None:
        """A fresh average of ``source``: a frozen copy on its device, nothing averaged yet."""
        averaged = copy.deepcopy(source).eval()
        for parameter in averaged.parameters():
            parameter.requires_grad_(False)
            parameter.grad = None
        self._averaged, self._source, self._num_averaged = averaged, source, 0

    def _apply_pending(self) -> None:
        state, self._pending = self._pending, None
        if state is None or self._averaged is None:
            return
        if state.get("weights") is not None:
            self._averaged.load_state_dict(state["weights"])
        self._num_averaged = int(state["num_averaged"])
        self._load_extra_state(state)

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what a subclass adds to ``state_dict()``."""

    def _averaged_state(self) -> State:
        assert self._averaged is not None
        return {k: v.detach().cpu() for k, v in self._averaged.state_dict().items()}

    def _swap_back(self, trainer: Trainer) -> None:
        if self._raw is not None:
            unwrap_model(trainer.model).load_state_dict(self._raw)
            self._raw = None


class EMA(WeightAveraging):
    """An exponential moving average of the weights, as timm's ``ModelEmaV3``.

    After every ``every_n_steps`` optimizer steps the average moves toward the weights:
    ``average = decay * average + (1 - decay) * weights``, for the parameters and the
    floating-point buffers (BatchNorm statistics), as
    ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)``.
    The first update copies the weights and there is no warm-up unless asked for, as in
    ``AveragedModel``. With ``warmup=True`` update ``n`` (counted from 0) uses timm's
    ``min(decay, 1 - (1 + n) ** (-2 / 3))``, so early averages forget the random
    initial weights quickly.

    Validation sees the averaged weights; checkpoints hold the raw ones as their
    ``state_dict`` and the averaged ones under ``"averaged_weights"`` (see
    [`WeightAveraging`][visionkit.callbacks.WeightAveraging]). After ``fit``,
    ``trainer.model`` holds the raw weights: use
    [`averaged_model`][visionkit.callbacks.WeightAveraging.averaged_model] or
    [`copy_to`][visionkit.callbacks.WeightAveraging.copy_to] for the average.

    Args:
        decay: How much of the average each update keeps, in ``[0, 1)``; the average
            spans about ``1 / (1 - decay)`` updates (0.999: about a thousand).
        every_n_steps: Update after every this many optimizer steps.
        warmup: Use timm's warm-up of the decay.
        validate_with_average: Validate the averaged weights instead of the raw ones.

    Raises:
        ConfigurationError: if ``decay`` is not a number in ``[0, 1)``, ``every_n_steps``
            is not an integer >= 1, or a flag is not ``True`` / ``False``.

    Examples:
        >>> from visionkit.data import mnist_sample
        >>> from visionkit.models import create_model
        >>> from visionkit import Trainer
        >>> data = mnist_sample()
        >>> ema = EMA(decay=0.99)
        >>> trainer = Trainer(create_model("mlp", hidden=[16], num_classes=10), max_steps=5,
        ...                   callbacks=[ema], device="cpu", enable_checkpointing=False,
        ...                   enable_progress_bar=False)
        >>> _ = trainer.fit(data.train, data.val, batch_size=64)
        >>> ema.num_averaged, ema.description()["kind"]
        (5, 'ema')
    """

    kind: ClassVar[str] = "ema"

    def __init__(
        self,
        decay: float = 0.999,
        *,
        every_n_steps: int = 1,
        warmup: bool = False,
        validate_with_average: bool = True,
    ) -> None:
        super().__init__(validate_with_average=validate_with_average)
        self.decay = check_number(
            "decay", decay, least=0.0, below=1.0, hint="e.g. 0.999 averages over ~1000 steps"
        )
        self.every_n_steps = check_int("every_n_steps", every_n_steps, least=1)
        self.warmup = check_bool("warmup", warmup)
        self._seen_step = 0

    def averaging_weight(self, num_averaged: int) -> float:
        """``1 - decay`` (with ``warmup``, ``1 - min(decay, 1 - (1 + n) ** (-2/3))``)."""
        decay = self.decay
        if self.warmup:
            decay = min(decay, 1.0 - (1.0 + num_averaged) ** (-2.0 / 3.0))
        return 1.0 - decay

    def description(self) -> dict[str, Any]:
        return {
            **super().description(),
            "decay": self.decay,
            "every_n_steps": self.every_n_steps,
            "warmup": self.warmup,
        }

    def on_fit_start(self, trainer: Trainer) -> None:
        super().on_fit_start(trainer)
        self._seen_step = trainer.global_step

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        step = trainer.global_step
        if step == self._seen_step:  # an accumulation batch: no optimizer step yet
            return
        self._seen_step = step
        if step % self.every_n_steps == 0:
            self.update(trainer.model)


AnnealingStrategy = Literal["cos", "linear"]


class SWA(WeightAveraging):
    """Stochastic weight averaging: the mean of the weights at the end of each epoch.

    From epoch ``swa_start_epoch`` (counted from 0) on, the weights at the end of every
    complete epoch are added to an equal-weight running mean, as
    ``torch.optim.swa_utils.AveragedModel`` does. With ``swa_lr`` the learning rate
    follows ``SWALR``: it anneals from its value at ``swa_start_epoch`` to ``swa_lr`` over
    ``annealing_epochs`` epochs and stays there, and the trainer's own scheduler is
    paused until ``fit`` ends. Without ``swa_lr`` the learning rate is left alone.

    BatchNorm statistics: the averaged model's running statistics are the average of the
    model's (as with ``use_buffers=True``), which is only an estimate of the statistics of
    the averaged weights. Pass ``bn_data`` (a data set or ``DataLoader`` of training
    samples, without augmentation preferably) to recompute them exactly as
    ``torch.optim.swa_utils.update_bn`` does, after each update, so that validation,
    checkpoints and the final model all have them; a few thousand samples are enough. The
    pass leaves the training's random number generators untouched.

    Validation sees the averaged weights once there are any; checkpoints hold the raw ones
    as their ``state_dict`` and the averaged ones under ``"averaged_weights"`` (see
    [`WeightAveraging`][visionkit.callbacks.WeightAveraging]).

    Args:
        swa_start_epoch: First epoch whose end weights are averaged (an integer >= 0).
        swa_lr: The learning rate to anneal to, or ``None`` to leave it alone.
        annealing_epochs: Epochs of the annealing (0 jumps to ``swa_lr`` at once).
        annealing_strategy: ``"cos"`` or ``"linear"``.
        bn_data: Training samples to recompute the BatchNorm statistics of the average
            with (ignored for a model without BatchNorm).
        bn_batch_size: Batch size for ``bn_data`` when it is a data set.
        validate_with_average: Validate the averaged weights instead of the raw ones.

    Raises:
        ConfigurationError: for an argument of the wrong type or out of range.

    Examples:
        >>> swa = SWA(swa_start_epoch=5, swa_lr=0.01)
        >>> swa.description()["kind"], swa.num_averaged
        ('swa', 0)
    """

    kind: ClassVar[str] = "swa"

    def __init__(
        self,
        swa_start_epoch: int,
        *,
        swa_lr: float | None = None,
        annealing_epochs: int = 10,
        annealing_strategy: AnnealingStrategy = "cos",
        bn_data: Any | None = None,
        bn_batch_size: int = 64,
        validate_with_average: bool = True,
    ) -> None:
        super().__init__(validate_with_average=validate_with_average)
        self.swa_start_epoch = check_int("swa_start_epoch", swa_start_epoch, least=0)
        self.swa_lr = None if swa_lr is None else check_number("swa_lr", swa_lr, above=0.0)
        self.annealing_epochs = check_int("annealing_epochs", annealing_epochs, least=0)
        if annealing_strategy not in ("cos", "linear"):
            raise ConfigurationError(
                f"annealing_strategy must be 'cos' or 'linear', got {describe(annealing_strategy)}"
            )
        self.annealing_strategy: AnnealingStrategy = annealing_strategy
        self.bn_data = _check_bn_data(bn_data)
        self.bn_batch_size = check_int("bn_batch_size", bn_batch_size, least=1)
        self._schedule: SWALR | None = None
        self._schedule_state: dict[str, Any] | None = None
        self._paused: Any | None = None  # the trainer's scheduler, paused by SWALR
        self._paused_any = False

    def averaging_weight(self, num_averaged: int) -> float:
        """``1 / (n + 1)``: every epoch's weights count equally."""
        return 1.0 / (num_averaged + 1)

    def description(self) -> dict[str, Any]:
        return {
            **super().description(),
            "swa_start_epoch": self.swa_start_epoch,
            "swa_lr": self.swa_lr,
            "annealing_epochs": self.annealing_epochs,
            "annealing_strategy": self.annealing_strategy,
            "bn_recomputed": self.bn_data is not None,
        }

    def on_fit_start(self, trainer: Trainer) -> None:
        super().on_fit_start(trainer)
        if trainer.epoch >= self.swa_start_epoch:
            self._start_schedule(trainer)

    def on_train_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch >= self.swa_start_epoch:
            self._start_schedule(trainer)

    def on_train_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        complete = trainer.batch_in_epoch >= trainer.num_train_batches
        if epoch >= self.swa_start_epoch and complete:
            self.update(trainer.model)
            self._recompute_batch_norm(trainer.device)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if self._schedule is not None and trainer.epoch > epoch:  # a complete epoch
            self._schedule.step()

    def on_fit_end(self, trainer: Trainer) -> None:
        super().on_fit_end(trainer)
        self._resume_scheduler(trainer)

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        super().on_exception(trainer, exception)
        self._resume_scheduler(trainer)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        schedule = self._schedule.state_dict() if self._schedule is not None else None
        state["schedule"] = schedule
        return state

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._schedule_state = state.get("schedule")
        self._schedule = None  # rebuilt from the state when training goes on

    def _start_schedule(self, trainer: Trainer) -> None:
        if self.swa_lr is None or self._schedule is not None:
            return
        optimizer = trainer.optimizer
        rates = [group["lr"] for group in optimizer.param_groups]
        if not self._paused_any:
            self._paused, self._paused_any = trainer.scheduler, True
        trainer.scheduler = None  # SWALR sets the learning rate from here on
        self._schedule = SWALR(
            optimizer,
            swa_lr=self.swa_lr,
            anneal_epochs=self.annealing_epochs,
            anneal_strategy=self.annealing_strategy,
        )
        if self._schedule_state is not None:  # resuming: the optimizer holds the rates
            self._schedule.load_state_dict(self._schedule_state)
            self._schedule_state = None
            for group, rate in zip(optimizer.param_groups, rates, strict=True):
                group["lr"] = rate

    def _resume_scheduler(self, trainer: Trainer) -> None:
        if self._paused_any:
            trainer.scheduler = self._paused
            self._paused, self._paused_any = None, False
        if self._schedule is not None:
            self._schedule_state = self._schedule.state_dict()
            self._schedule = None  # a later fit() rebuilds it, where it was

    def _recompute_batch_norm(self, device: torch.device) -> None:
        averaged = self._averaged
        if self.bn_data is None or averaged is None or not _has_batch_norm(averaged):
            return
        loader = self.bn_data
        if not isinstance(loader, DataLoader):
            loader = DataLoader(loader, batch_size=self.bn_batch_size, shuffle=False)
        rng = get_rng_state()  # a DataLoader draws a seed: keep the training's RNG as it was
        try:
            update_bn(loader, averaged, device=device)
        finally:
            set_rng_state(rng)
        averaged.eval()


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    """Parameters then buffers of ``module``, detached, in a fixed order."""
    return [t.detach() for t in (*module.parameters(), *module.buffers())]


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _check_bn_data(bn_data: Any) -> Any:
    if bn_data is None or isinstance(bn_data, DataLoader):
        return bn_data
    if hasattr(bn_data, "__getitem__") and hasattr(bn_data, "__len__"):
        if len(bn_data) == 0:
            raise ConfigurationError(
                "bn_data is empty: pass training samples to recompute the BatchNorm statistics "
                "with, or bn_data=None to average them instead"
            )
        return bn_data
    if isinstance(bn_data, Iterable) and not isinstance(bn_data, (str, bytes)):
        raise ConfigurationError(
            f"bn_data must be a data set or a DataLoader (it is read once after every update), "
            f"got {describe(bn_data)}: pass data.train or a DataLoader over it"
        )
    raise ConfigurationError(
        f"bn_data must be a data set of (image, label) samples or a DataLoader, got "
        f"{describe(bn_data)}"
    )
