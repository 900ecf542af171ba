"""``FineTune``: train the head with the backbone frozen, then everything, as fastai does.

The schedule is fastai's ``fine_tune``: for ``freeze_epochs`` the backbone is frozen
([`freeze`][visionkit.models.freeze]: no gradients, BatchNorm statistics fixed) and the head
trains through a one-cycle schedule peaking at ``base_lr``; then everything is unfrozen
and trains through a second one-cycle schedule peaking at ``base_lr / 2`` for the head,
with smaller rates for earlier layer groups, down to ``base_lr / 2 / lr_mult`` for the
first (discriminative learning rates).

The rates are a function of the position in the run (epoch and batch), and frozen or not is a
function of the epoch, so a run resumed on either side of the unfreeze point continues exactly. The
optimizer holds every parameter from the start, in the groups
[`fine_tune_param_groups`][visionkit.callbacks.fine_tune_param_groups] makes; frozen parameters get
no gradient, so the optimizer leaves them alone.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from torch import nn

from visionkit._checks import check_int, check_number, describe
from visionkit.callbacks.base import Batch, Callback
from visionkit.exceptions import ConfigurationError
from visionkit.models.transfer import find_head, freeze, unfreeze

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["FineTune", "fine_tune_param_groups"]

Schedule = Literal["one_cycle", "cosine"]
_GROUP = "fine_tune_group"  # "head" or "backbone", kept in the optimizer's param groups
_SCALE = "lr_scale"  # the group's share of the peak rate (as timm's layer decay)


def fine_tune_param_groups(
    model: nn.Module,
    *,
    base_lr: float = 2e-3,
    lr_mult: float = 100.0,
    num_groups: int = 3,
    head: str | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups for an optimizer that [`FineTune`][visionkit.callbacks.FineTune] drives.

    The head (found as [`find_head`][visionkit.models.find_head] does, or the attribute
    ``head``) is the last group; the backbone's parameters, in the model's order, are
    split into ``num_groups - 1`` groups of about equal size. Group ``i`` trains at
    ``lr_mult ** -(n - 1 - i) / (n - 1)`` times the head's rate, so the first group gets
    ``1 / lr_mult`` of it.

    Args:
        model: The network, with its classification head.
        base_lr: The peak learning rate of the head.
        lr_mult: How many times smaller the first group's rate is than the head's (>= 1).
        num_groups: Groups in all, the head included (>= 2).
        head: Name of the head attribute; default: found automatically.

    Examples:
        >>> import torch, torchvision
        >>> model = torchvision.models.resnet18(num_classes=5)
        >>> groups = fine_tune_param_groups(model, base_lr=1e-3, num_groups=3)
        >>> [round(g["lr_scale"], 3) for g in groups]
        [0.01, 0.1, 1.0]
        >>> optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    """
    base_lr = check_number("base_lr", base_lr, above=0.0, hint="pass e.g. base_lr=2e-3")
    lr_mult = check_number("lr_mult", lr_mult, least=1.0, hint="pass e.g. lr_mult=100")
    num_groups = check_int("num_groups", num_groups, least=2, hint="pass e.g. num_groups=3")
    _, head_module = find_head(model, attr=head)
    head_ids = {id(p) for p in head_module.parameters()}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    chunks = num_groups - 1
    size = math.ceil(len(backbone) / chunks) if backbone else 0
    groups: list[dict[str, Any]] = []
    for i in range(chunks):
        params = backbone[i * size : (i + 1) * size]
        if params:
            scale = lr_mult ** (-(chunks - i) / chunks)
            groups.append(
                {"params": params, "lr": base_lr * scale, _SCALE: scale, _GROUP: "backbone"}
            )
    groups.append(
        {"params": list(head_module.parameters()), "lr": base_lr, _SCALE: 1.0, _GROUP: "head"}
    )
    return groups


class FineTune(Callback):
    """Fine-tune a pretrained backbone: head first with the backbone frozen, then all of it.

    Use it with an optimizer built from
    [`fine_tune_param_groups`][visionkit.callbacks.fine_tune_param_groups], and ``max_epochs =
    freeze_epochs + epochs`` in the ``Trainer``;
    [`visionkit.training.fine_tune`][visionkit.training.fine_tune] does both for you.

    Args:
        freeze_epochs: Epochs that train the head only (>= 0).
        base_lr: Peak learning rate of the head in the frozen phase; the unfrozen phase
            peaks at half of it, as in fastai.
        schedule: ``"one_cycle"`` (warm up, then cosine annealing; fastai's
            ``fit_one_cycle``) or ``"cosine"`` (cosine annealing from the peak to zero).
        head: Name of the head attribute; default: found automatically.

    Examples:
        >>> import torch, torchvision
        >>> from visionkit import Trainer
        >>> model = torchvision.models.resnet18(num_classes=5)
        >>> optimizer = torch.optim.AdamW(fine_tune_param_groups(model, base_lr=1e-3))
        >>> trainer = Trainer(model, optimizer=optimizer, max_epochs=3, device="cpu",
        ...                   callbacks=[FineTune(freeze_epochs=1, base_lr=1e-3)])
    """

    def __init__(
        self,
        freeze_epochs: int = 1,
        *,
        base_lr: float = 2e-3,
        schedule: Schedule = "one_cycle",
        head: str | None = None,
    ) -> None:
        self.freeze_epochs = check_int(
            "freeze_epochs", freeze_epochs, least=0, hint="pass e.g. freeze_epochs=1"
        )
        self.base_lr = check_number("base_lr", base_lr, above=0.0, hint="pass e.g. 2e-3")
        if schedule not in ("one_cycle", "cosine"):
            raise ConfigurationError(
                f"schedule must be 'one_cycle' or 'cosine', got {describe(schedule)}"
            )
        self.schedule: Schedule = schedule
        self.head = head

    def on_fit_start(self, trainer: Trainer) -> None:
        """Check the optimizer's groups and freeze the backbone if the run is in phase one."""
        groups = trainer.optimizer.param_groups
        if not any(g.get(_GROUP) == "head" for g in groups):
            raise ConfigurationError(
                "FineTune sets the learning rate of each parameter group, but the optimizer "
                f"has {len(groups)} group(s) without the fine-tuning layout: build it with "
                "torch.optim.AdamW(fine_tune_param_groups(model)), or call "
                "visionkit.training.fine_tune(...)"
            )
        if trainer.max_epochs <= self.freeze_epochs:
            raise ConfigurationError(
                f"FineTune(freeze_epochs={self.freeze_epochs}) needs max_epochs > "
                f"{self.freeze_epochs}, got max_epochs={trainer.max_epochs}: the epochs after "
                "the frozen ones train the whole network"
            )
        self._set_frozen(trainer, trainer.epoch < self.freeze_epochs)

    def on_train_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Unfreeze the backbone when the frozen epochs are over."""
        if epoch == self.freeze_epochs:
            self._set_frozen(trainer, False)

    def on_train_batch_start(self, trainer: Trainer, batch: Batch, batch_index: int) -> None:
        """Set every group's learning rate for this point of the schedule."""
        frozen = trainer.epoch < self.freeze_epochs
        start, length = (
            (0, self.freeze_epochs)
            if frozen
            else (
                self.freeze_epochs,
                trainer.max_epochs - self.freeze_epochs,
            )
        )
        position = trainer.epoch - start + batch_index / max(trainer.num_train_batches, 1)
        peak = self.base_lr if frozen else self.base_lr / 2
        factor = self._shape(position / length, frozen)
        for group in trainer.optimizer.param_groups:
            group["lr"] = peak * float(group.get(_SCALE, 1.0)) * factor

    def _shape(self, fraction: float, frozen: bool) -> float:
        """The schedule's multiple of the peak rate at ``fraction`` (0..1) of a phase."""
        if self.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * fraction))
        pct_start, div = (0.99, 25.0) if frozen else (0.3, 5.0)  # fastai's fine_tune
        low, final = 1 / div, 1 / (div * 1e5)
        if fraction < pct_start:
            return _cosine(low, 1.0, fraction / pct_start)
        return _cosine(1.0, final, (fraction - pct_start) / (1 - pct_start))

    def _set_frozen(self, trainer: Trainer, frozen: bool) -> None:
        model = trainer.model
        _, head = find_head(model, attr=self.head)
        if frozen:
            freeze(model)
            unfreeze(head)
        else:
            unfreeze(model)


def _cosine(start: float, end: float, fraction: float) -> float:
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))
