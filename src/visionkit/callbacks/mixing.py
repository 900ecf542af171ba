"""MixUp and CutMix: each training batch mixed with itself rolled by one, with soft targets.

The callbacks follow ``torchvision.transforms.v2.MixUp`` and ``CutMix`` exactly (the same
random draws in the same order, so the same batches for the same seed), applied to the batch
on the device through
[`on_train_batch_transform`][visionkit.callbacks.Callback.on_train_batch_transform]. Random
numbers come from torch's global generator on the CPU, which checkpoints save and restore,
so a resumed run mixes exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

import torch

from visionkit._checks import check_number, check_optional_int, describe
from visionkit.callbacks.base import Callback
from visionkit.exceptions import ConfigurationError

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["CutMix", "MixUp", "MixUpCutMix"]

_LABEL_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8)


def _check_probability(name: str, value: Any, example: str) -> float:
    """``value`` as a ``float`` in ``[0, 1]`` (not a ``bool``, not NaN)."""
    number = math.nan if isinstance(value, bool) or not isinstance(value, numbers.Real) else value
    if not 0 <= float(number) <= 1:  # NaN fails too
        raise ConfigurationError(
            f"{name} must be a probability in [0, 1], got {describe(value)}: e.g. {example}"
        )
    return float(number)


def _check_alpha(name: str, value: Any) -> float:
    return check_number(
        name, value, above=0.0, hint="the Beta(alpha, alpha) distribution needs alpha > 0"
    )


class _Mixing(Callback):
    """What MixUp and CutMix share: arguments, soft targets and the per-batch coin."""

    def __init__(self, *, p: float, num_classes: int | None) -> None:
        self.p = _check_probability("p", p, "p=0.5 mixes about half of the batches")
        self.num_classes = check_optional_int(
            "num_classes",
            num_classes,
            least=1,
            hint="pass the number of the model's outputs, or None to use the training data's "
            "class names",
        )

    def on_train_batch_transform(
        self, trainer: Trainer, images: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix the batch with probability ``p``; the targets become soft either way."""
        soft = self.soft_targets(targets, self._classes(trainer))
        if images.shape[0] != soft.shape[0]:
            raise ConfigurationError(
                f"{type(self).__name__} got {images.shape[0]} images but {soft.shape[0]} "
                "labels in one batch: each batch must hold one label per image"
            )
        if self.p == 0 or (self.p < 1 and float(torch.rand(())) >= self.p):
            return images, soft
        return self.mix(images, soft)

    def mix(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix ``images`` and soft ``targets`` with the batch rolled by one, always.

        Args:
            images: A batch of images, batch first.
            targets: Soft targets ``(batch, num_classes)``.

        Returns:
            The mixed images and targets.
        """
        raise NotImplementedError  # pragma: no cover - each subclass mixes

    def soft_targets(self, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
        """``float32`` one-hot rows of class indices; soft targets are returned as they are.

        Class indices outside ``0..num_classes-1`` give rows of zeros here, without a read
        on the host; the [`Trainer`][visionkit.Trainer] checks the labels as loaded on the
        first batch and names a wrong one.

        Args:
            targets: Class indices ``(batch,)`` or soft targets ``(batch, num_classes)``.
            num_classes: Number of classes.

        Returns:
            Soft targets ``(batch, num_classes)``.

        Raises:
            ConfigurationError: for labels of another type or shape.

        Examples:
            >>> MixUp().soft_targets(torch.tensor([2, 0]), 3)
            tensor([[0., 0., 1.],
                    [1., 0., 0.]])
        """
        if targets.dim() == 1 and targets.dtype in _LABEL_DTYPES:
            classes = torch.arange(num_classes, device=targets.device)
            return (targets[:, None] == classes).float()
        if targets.dim() == 2 and targets.is_floating_point() and targets.shape[1] == num_classes:
            return targets
        raise ConfigurationError(
            f"{type(self).__name__} mixes integer class indices (batch,) or soft targets "
            f"(batch, {num_classes}), got labels of dtype {targets.dtype} and shape "
            f"{tuple(targets.shape)}: yield (images, class indices) batches"
        )

    def _classes(self, trainer: Trainer) -> int:
        if self.num_classes is not None:
            return self.num_classes
        if trainer.classes:
            return len(trainer.classes)
        raise ConfigurationError(
            f"{type(self).__name__} needs the number of classes to build soft targets, but the "
            f"training data has no class names: pass {type(self).__name__}(num_classes=N) "
            "with N the number of the model's outputs"
        )

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({options})"

    def _options(self) -> dict[str, Any]:
        return {"p": self.p, "num_classes": self.num_classes}


def _beta(alpha: float) -> torch.distributions.Beta:
    """``Beta(alpha, alpha)`` as torchvision builds it, so the draws are the same."""
    concentration = torch.tensor([alpha])
    return torch.distributions.Beta(concentration, concentration)


def _mix_rolled(values: torch.Tensor, lam: float) -> torch.Tensor:
    """``lam * values + (1 - lam) * values.roll(1, 0)``, bit for bit torchvision's result.

    The sum is formed on ``values * lam``, so the result keeps the memory format of
    ``values`` (channels-last batches stay channels-last).
    """
    return values.mul(lam).add_(values.roll(1, 0).mul_(1.0 - lam))


class MixUp(_Mixing):
    """MixUp: each training image blended with the one before it in the batch.

    With probability ``p`` per batch, ``lam ~ Beta(alpha, alpha)`` is drawn once and
    ``images = lam * images + (1 - lam) * images.roll(1, 0)``, and the same for the
    one-hot targets, as ``torchvision.transforms.v2.MixUp`` does (mixup, Zhang et al. 2018).
    The targets reach the loss as soft targets ``(batch, num_classes)`` on every batch,
    mixed or not: ``CrossEntropyLoss`` takes them (with ``label_smoothing`` too),
    ``NLLLoss`` is computed as their cross-entropy with the model's log-probabilities, and
    any other loss receives them as they are. The reported training loss is this
    soft-target loss; the training accuracy (and top-k accuracy) is NaN, since a mixed
    image has no one right class: judge the model by its validation accuracy, which is
    never mixed. The mixed images must be floating point (normalized images are).

    Args:
        alpha: The Beta distribution's parameter, a finite number > 0; small values (0.2,
            timm's and the paper's ImageNet choice) keep most images close to one of the
            two, 1.0 draws ``lam`` uniformly.
        p: Probability that a batch is mixed, in ``[0, 1]``.
        num_classes: Width of the soft targets; ``None`` takes the number of the training
            data's class names.

    Raises:
        ConfigurationError: if ``alpha`` is not a finite number > 0, ``p`` is not in
            ``[0, 1]`` (or is NaN or a ``bool``), or ``num_classes`` is not an integer >= 1.

    Examples:
        >>> mixup = MixUp(alpha=0.2)
        >>> images, targets = mixup.mix(torch.tensor([[0.0], [1.0]]), torch.eye(2))
        >>> bool(torch.equal(images[:, 0], targets[:, 1]))  # an image's value is its share of 1
        True
    """

    def __init__(
        self, alpha: float = 0.2, *, p: float = 1.0, num_classes: int | None = None
    ) -> None:
        super().__init__(p=p, num_classes=num_classes)
        self.alpha = _check_alpha("alpha", alpha)
        self._beta = _beta(self.alpha)

    def mix(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not images.is_floating_point():
            raise ConfigurationError(
                f"MixUp blends pixel values, so the images must be floating point, got "
                f"{images.dtype}: normalize the images or convert them to float first"
            )
        lam = float(self._beta.sample(()))
        return _mix_rolled(images, lam), _mix_rolled(targets, lam)

    def _options(self) -> dict[str, Any]:
        return {"alpha": self.alpha, **super()._options()}


class CutMix(_Mixing):
    """CutMix: a box of each training image replaced by the same box of the one before it.

    With probability ``p`` per batch, ``lam ~ Beta(alpha, alpha)`` is drawn, then a box
    centre uniformly over the image; the box has sides ``sqrt(1 - lam)`` times the image's,
    cut at the image's edges, and is pasted from ``images.roll(1, 0)`` into every image.
    The targets are mixed with the share of the image each source really covers,
    ``1 - box area / image area``, as ``torchvision.transforms.v2.CutMix`` does (Yun et al.
    2019). Soft targets, the training loss and accuracy are as for
    [`MixUp`][visionkit.callbacks.MixUp]: the accuracy is NaN while training with it.

    Args:
        alpha: The Beta distribution's parameter, a finite number > 0 (1.0, the paper's
            and torchvision's default, draws the box area uniformly).
        p: Probability that a batch is mixed, in ``[0, 1]``.
        num_classes: Width of the soft targets; ``None`` takes the number of the training
            data's class names.

    Raises:
        ConfigurationError: if ``alpha`` is not a finite number > 0, ``p`` is not in
            ``[0, 1]`` (or is NaN or a ``bool``), or ``num_classes`` is not an integer >= 1;
            when training, for images that are not ``(batch, channels, height, width)``.

    Examples:
        >>> cutmix = CutMix(alpha=1.0)
        >>> black_and_white = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 1, 4, 4)
        >>> images, targets = cutmix.mix(black_and_white, torch.eye(2))
        >>> float(targets[0, 1]) == float((images[0] == 1).float().mean())  # the box's share
        True
    """

    def __init__(
        self, alpha: float = 1.0, *, p: float = 1.0, num_classes: int | None = None
    ) -> None:
        super().__init__(p=p, num_classes=num_classes)
        self.alpha = _check_alpha("alpha", alpha)
        self._beta = _beta(self.alpha)

    def mix(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dim() != 4:
            raise ConfigurationError(
                f"CutMix pastes boxes into images of shape (batch, channels, height, width), "
                f"got shape {tuple(images.shape)}: yield batches of 2-D images"
            )
        lam = float(self._beta.sample(()))
        height, width = images.shape[-2:]
        x1, y1, x2, y2 = _box(lam, height, width)
        mixed = images.clone()
        mixed[..., y1:y2, x1:x2] = images[..., y1:y2, x1:x2].roll(1, 0)
        share = 1.0 - (x2 - x1) * (y2 - y1) / (width * height)
        return mixed, _mix_rolled(targets, share)

    def _options(self) -> dict[str, Any]:
        return {"alpha": self.alpha, **super()._options()}


def _box(lam: float, height: int, width: int) -> tuple[int, int, int, int]:
    """``(x1, y1, x2, y2)`` of a box of ``1 - lam`` of the image, centre drawn uniformly.

    The draws and the rounding are torchvision's ``CutMix``: the centre's column, then its
    row, from torch's global generator; half-sides rounded down; the box cut at the edges.
    """
    centre_x = int(torch.randint(width, size=(1,)))
    centre_y = int(torch.randint(height, size=(1,)))
    r = 0.5 * math.sqrt(1.0 - lam)
    half_w, half_h = int(r * width), int(r * height)
    x1, y1 = max(centre_x - half_w, 0), max(centre_y - half_h, 0)
    x2, y2 = min(centre_x + half_w, width), min(centre_y + half_h, height)
    return x1, y1, x2, y2


class MixUpCutMix(_Mixing):
    """MixUp or CutMix, one of them per mixed batch, like timm's ``Mixup(switch_prob=)``.

    With probability ``p`` a batch is mixed; it is then mixed by
    [`CutMix`][visionkit.callbacks.CutMix] with probability ``switch_p``, else by
    [`MixUp`][visionkit.callbacks.MixUp] (torchvision's reference recipe,
    ``RandomChoice([MixUp, CutMix])``, is ``switch_p=0.5``). Soft targets, the training
    loss and accuracy are as for [`MixUp`][visionkit.callbacks.MixUp].

    Args:
        mixup_alpha: MixUp's Beta parameter, a finite number > 0.
        cutmix_alpha: CutMix's Beta parameter, a finite number > 0.
        p: Probability that a batch is mixed, in ``[0, 1]``.
        switch_p: Probability that a mixed batch uses CutMix, in ``[0, 1]``.
        num_classes: Width of the soft targets; ``None`` takes the number of the training
            data's class names.

    Raises:
        ConfigurationError: for an argument that MixUp or CutMix would refuse, or a
            ``switch_p`` outside ``[0, 1]``.

    Examples:
        >>> MixUpCutMix(switch_p=0.5)
        MixUpCutMix(mixup_alpha=0.2, cutmix_alpha=1.0, switch_p=0.5, p=1.0, num_classes=None)
    """

    def __init__(
        self,
        mixup_alpha: float = 0.2,
        cutmix_alpha: float = 1.0,
        *,
        p: float = 1.0,
        switch_p: float = 0.5,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(p=p, num_classes=num_classes)
        self.switch_p = _check_probability(
            "switch_p", switch_p, "switch_p=0.5 mixes half of the mixed batches by CutMix"
        )
        self.mixup = MixUp(_check_alpha("mixup_alpha", mixup_alpha), num_classes=num_classes)
        self.cutmix = CutMix(_check_alpha("cutmix_alpha", cutmix_alpha), num_classes=num_classes)

    def mix(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        switch = self.switch_p == 1 or (self.switch_p > 0 and float(torch.rand(())) < self.switch_p)
        return (self.cutmix if switch else self.mixup).mix(images, targets)

    def _options(self) -> dict[str, Any]:
        return {
            "mixup_alpha": self.mixup.alpha,
            "cutmix_alpha": self.cutmix.alpha,
            "switch_p": self.switch_p,
            **super()._options(),
        }
