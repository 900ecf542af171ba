"""Frozen-backbone feature caching: ``Trainer(cache_features=...)``.

With a frozen backbone, every epoch recomputes the same backbone features for the
validation data, and for the training data too when its transform is deterministic. The
cache runs the frozen part once per image (``inference_mode``, eval mode, the trainer's
device and precision, in batches), keeps its outputs in memory, and then trains and
evaluates the head alone on them. Results are those of the uncached run to float
tolerance: the same samples in the same order, the same head, the same random numbers.

The split: the *head* is the model's direct child module that holds every trainable
parameter (``classifier`` of [`VGG16Transfer`][visionkit.models.VGG16Transfer] and of
``create_model(..., freeze_backbone=True)`` models, ``fc`` of a ResNet, ``heads`` of a ViT);
everything else is the frozen part, and the head's input is the cached feature. The
model's output must be the head's output on that input (the head is applied last, once);
this is checked on the first batch.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase
from torch.nn.modules.dropout import _DropoutNd
from torch.utils.data import DataLoader

from visionkit.data._datasets import TensorImageDataset
from visionkit.data._loaders import EpochLoader, _DataLoaderAdapter, epoch_permutation, make_loader
from visionkit.data.folder import ImageFolderDataset
from visionkit.data.presets import transform_steps
from visionkit.exceptions import ConfigurationError
from visionkit.training._arguments import PRECISIONS
from visionkit.training._batches import Data, unpack
from visionkit.training._compile import CompiledForward

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = [
    "MEMORY_LIMIT",
    "FeatureCache",
    "FeatureLoader",
    "find_feature_head",
]

MEMORY_LIMIT = 8 * 2**30
"""Bytes of cached features above which the cache refuses to start (it keeps them in memory)."""

_STOCHASTIC = ("StochasticDepth", "DropPath", "DropBlock2d")  # torchvision / timm layers
_RANDOM_STEPS = ("ColorJitter", "AutoAugment", "RandAugment", "TrivialAugmentWide", "AugMix")


def find_feature_head(model: nn.Module) -> tuple[str, nn.Module]:
    """``(name, module)`` of the head: the direct child holding every trainable parameter.

    Raises:
        ConfigurationError: if nothing is frozen, nothing trains, or the trainable
            parameters are not all in one direct child of ``model``.
    """
    name = type(model).__name__
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    frozen = sum(1 for p in model.parameters() if not p.requires_grad)
    if not trainable or not frozen:
        found = "every parameter trains" if trainable else "no parameter trains"
        raise ConfigurationError(
            f"cache_features needs a model with a frozen backbone and a trainable head, but "
            f"in {name} {found}: freeze the backbone (create_model(..., freeze_backbone=True), "
            "or visionkit.models.freeze(model.features)) and keep the head trainable, or pass "
            "cache_features=False"
        )
    holders = []
    for child_name, child in model.named_children():
        own = {id(p) for p in child.parameters() if p.requires_grad}
        if own == trainable:
            return child_name, child
        if own:
            holders.append(child_name)
    where = f"spread over {', '.join(holders)}" if holders else "held by the model itself"
    raise ConfigurationError(
        f"cache_features needs every trainable parameter of {name} in one head attribute "
        f"applied last in forward (e.g. model.classifier or model.fc), but they are {where}: "
        "keep the trainable layers in one such attribute and freeze the rest, or pass "
        "cache_features=False"
    )


class FeatureCache:
    """The cache of one ``fit``: which stages are cached, the split, the frozen tensors.

    Attributes:
        stages: The cached stages, ``("training", "validation")``, ``("validation",)``,
            ``("training",)`` or ``()``; set by ``fit``.
        reason: Why the training data is not cached (``""`` when it is).
        head_name: The attribute name of the head.
        backbone_passes: Passes over a data set through the frozen part so far.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.stages: tuple[str, ...] = ()
        self.reason = ""
        self.head_name = ""
        self.head: nn.Module | None = None
        self.backbone_passes = 0
        self._frozen: list[torch.Tensor] = []
        self._versions: list[int] = []
        self._sums: torch.Tensor | None = None
        self._train_forward: Callable[[torch.Tensor], torch.Tensor] | None = None

    def attach(
        self,
        train: Data,
        train_loader: EpochLoader,
        val_loader: EpochLoader | None,
        *,
        shuffle: bool,
        batch_size: int,
    ) -> tuple[EpochLoader, EpochLoader | None]:
        """Swap the loaders for feature loaders and the training forward for the head's.

        Without ``cache_features`` the loaders are returned as they are.
        """
        t = self.trainer
        mode = t.cache_features
        if mode is False:
            return train_loader, val_loader
        if t.world_size > 1:
            raise ConfigurationError(
                f"cache_features works in one process, but this run has {t.world_size}: pass "
                "cache_features=False under DDP"
            )
        self.head_name, self.head = find_feature_head(t.model)
        self._frozen = _outside(t.model, self.head)
        _refuse_updating_norms(t.model, self.head_name)
        self.reason = self._training_blocker(train)
        if mode == "all" and self.reason:
            raise ConfigurationError(
                f"cache_features='all' cannot cache the training data: {self.reason}; pass "
                "cache_features=True to cache the validation data only"
            )
        cache_train = mode != "eval" and not self.reason
        if mode == "eval":
            self.reason = "cache_features='eval' caches the validation data only"
        self.stages = ("training",) * cache_train + ("validation",) * (val_loader is not None)
        if not self.stages:
            warnings.warn(
                f"cache_features caches nothing in this run: {self.reason} and there is no "
                "validation data",
                RuntimeWarning,
                stacklevel=4,
            )
        if val_loader is not None:
            val_loader = FeatureLoader(self, val_loader)
        if cache_train:
            source = make_loader(
                train, batch_size, device=t.device, num_workers=t.num_workers
            )  # in dataset order, once; each epoch then indexes it in the epoch's order
            train_loader = FeatureLoader(self, source, order=(shuffle, t.seed, batch_size))
            self._train_forward = t._train_forward
            t._train_forward = CompiledForward(self.head) if t.compile else self.head
        return train_loader, val_loader

    def release(self) -> None:
        """Give the trainer its full-model training forward back (end of ``fit``)."""
        if self._train_forward is not None:
            self.trainer._train_forward, self._train_forward = self._train_forward, None

    def check_frozen(self) -> bool:
        """Whether the frozen part is unchanged since the features were computed.

        Raises:
            ConfigurationError: if a frozen parameter trains now (a fine-tuning callback).
        """
        if any(t.requires_grad for t in self._frozen):
            raise ConfigurationError(
                "cache_features needs the backbone frozen for the whole run, but a callback "
                "made its parameters trainable (fine-tuning): pass cache_features=False"
            )
        if [t._version for t in self._frozen] == self._versions:
            return True
        return self._sums is not None and torch.equal(_sums(self._frozen), self._sums)

    def remember_frozen(self) -> None:
        """Record the frozen part's state, which the cached features were computed with."""
        self._versions = [t._version for t in self._frozen]
        self._sums = _sums(self._frozen)

    def _training_blocker(self, train: Data) -> str:
        """Why the training features cannot be cached (``""``: they can)."""
        t = self.trainer
        if isinstance(train, DataLoader):
            return "the training data is a DataLoader, whose order the cache cannot follow"
        fixed = fixed_transform(train)
        if fixed is False:
            return "the training transform is random (augmentation)"
        if fixed is None and t.cache_features != "all":
            return (
                f"the training transform of {type(train).__name__} is unknown, so it is "
                "treated as random (pass cache_features='all' if it is deterministic)"
            )
        blockers = _mode_dependent(t.model, self.head_name)
        if blockers:
            return f"the frozen part's {', '.join(blockers)} behave differently in training"
        from visionkit.training._hooks import Hooks

        hooks = Hooks(t.callbacks)
        hooks.activate()
        if hooks.wants("on_train_batch_transform"):
            return "a callback transforms the training batches (e.g. MixUp)"
        return ""


def fixed_transform(data: Any) -> bool | None:
    """Whether ``data``'s training samples are always the same: ``None`` when unknown."""
    if isinstance(data, TensorImageDataset):
        return data.augment is None
    if not isinstance(data, ImageFolderDataset):
        return None
    steps = transform_steps(data.transform)
    names = [type(step).__name__ for step in steps]
    if any(n.startswith("Random") or n in _RANDOM_STEPS for n in names):
        return False
    from visionkit.data._files import try_describe

    return True if try_describe(data.transform, data.mode) is not None else None


class FeatureLoader:
    """Batches of cached ``(features, labels)``, in the order the source loader gives images.

    Without ``order`` the source's batches are cached as they come (validation: always in
    the same order). With ``order=(shuffle, seed, batch_size)`` the features are cached per
    sample in data-set order, and each epoch indexes them in
    [`epoch_permutation`][visionkit.data.epoch_permutation] order, as visionkit's loaders do.
    """

    def __init__(
        self,
        cache: FeatureCache,
        source: EpochLoader,
        *,
        order: tuple[bool, int, int] | None = None,
    ) -> None:
        self.cache = cache
        self.source = source
        self.order = order
        self.epoch = 0
        self._skip = 0
        self._batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def head(self) -> nn.Module:
        """The module evaluated on the cached features."""
        assert self.cache.head is not None
        return self.cache.head

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffled order of ``epoch``."""
        self.epoch = epoch

    def skip_batches(self, count: int) -> None:
        """Start the next iteration ``count`` batches into the epoch."""
        self._skip = count

    def __len__(self) -> int:
        return len(self.source) if self.order is None else self._num_batches()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        start, self._skip = self._skip, 0
        if self._batches is None or not self.cache.check_frozen():
            self._batches = compute_features(self.cache, self.source, join=self.order is not None)
            self.cache.remember_frozen()
        else:
            _draw_like(self.source)  # the random number a DataLoader draws per iteration
        if self.order is None:
            yield from self._batches[start:]
            return
        shuffle, seed, batch_size = self.order
        features, labels = self._batches[0]
        n = len(labels)
        order = epoch_permutation(n, seed, self.epoch) if shuffle else torch.arange(n)
        order = order.to(labels.device)
        for index in range(start, self._num_batches()):
            picked = order[index * batch_size : (index + 1) * batch_size]
            yield features[picked], labels[picked]

    def _num_batches(self) -> int:
        assert self.order is not None
        n = len(getattr(self.source, "dataset", ()))
        return -(-n // self.order[2])


def compute_features(
    cache: FeatureCache, loader: EpochLoader, *, join: bool = False
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run the model over ``loader`` once and keep each batch's head input (the features).

    The whole model runs in eval mode under ``inference_mode``; a forward pre-hook on the
    head records its input. On the first batch the head is re-applied to that input and
    must give the model's output. With per-sample caching the batches are joined into one
    ``(features, labels)`` pair.

    Raises:
        ConfigurationError: if the head is not applied once, last, to one tensor, or the
            features would take more than `MEMORY_LIMIT` bytes.
    """
    t = cache.trainer
    head = cache.head
    assert head is not None
    inputs: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def record(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        inputs.append((args, kwargs))

    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    was_training = t.model.training
    t.model.eval()
    handle = head.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.inference_mode():
            for batch in loader:
                x, y = unpack(batch, t.device, channels_last=t.channels_last)
                inputs.clear()
                with _autocast(t):
                    outputs = t.model(x)
                    features = _head_input(cache, inputs)
                    if not batches:
                        _check_head_is_last(cache, head(features), outputs)
                        _check_memory(features, len(loader), len(y))
                batches.append((features, y))
    finally:
        handle.remove()
        t.model.train(was_training)
    cache.backbone_passes += 1
    if not batches:
        raise ConfigurationError("the data to cache is empty: it yielded no batch")
    if not join:
        return batches
    # joined outside inference_mode: the head trains on them, which inference tensors forbid
    return [(torch.cat([f for f, _ in batches]), torch.cat([y for _, y in batches]))]


def _head_input(cache: FeatureCache, inputs: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> Any:
    problem = ""
    if len(inputs) != 1:
        problem = f"the model called its head {cache.head_name!r} {len(inputs)} times"
    elif inputs[0][1] or len(inputs[0][0]) != 1 or not isinstance(inputs[0][0][0], torch.Tensor):
        problem = f"its head {cache.head_name!r} takes other inputs than one tensor"
    if problem:
        raise ConfigurationError(
            f"cache_features needs a model that applies its head once, last, to one tensor, "
            f"but {problem}: apply the head once at the end of forward, or pass "
            "cache_features=False"
        )
    return inputs[0][0][0]


def _check_head_is_last(cache: FeatureCache, from_head: Any, outputs: Any) -> None:
    same = (
        isinstance(outputs, torch.Tensor)
        and isinstance(from_head, torch.Tensor)
        and from_head.shape == outputs.shape
        and torch.allclose(from_head.float(), outputs.float(), rtol=1e-4, atol=1e-5)
    )
    if not same:
        raise ConfigurationError(
            f"cache_features needs the model's output to be its head's output, but the "
            f"output of {type(cache.trainer.model).__name__} differs from what its head "
            f"{cache.head_name!r} returns: apply the head last in forward (nothing after it), "
            "or pass cache_features=False"
        )


def _check_memory(features: torch.Tensor, num_batches: int, batch: int) -> None:
    per_sample = features.element_size() * features[0].numel() if batch else 0
    total = per_sample * batch * num_batches
    if total > MEMORY_LIMIT:
        raise ConfigurationError(
            f"cache_features would keep about {total / 2**30:.1f} GiB of features in memory "
            f"({per_sample} bytes per image), more than the {MEMORY_LIMIT / 2**30:.0f} GiB "
            "the cache allows: pass cache_features=False, or use fewer or smaller images"
        )


def _outside(model: nn.Module, head: nn.Module) -> list[torch.Tensor]:
    """Parameters and buffers of ``model`` that are not the head's: the frozen part's."""
    inside = {id(t) for t in (*head.parameters(), *head.buffers())}
    return [t for t in (*model.parameters(), *model.buffers()) if id(t) not in inside]


def _sums(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One checksum per tensor, to tell an unchanged frozen part from a changed one."""
    with torch.no_grad():
        return torch.stack([t.detach().double().sum() for t in tensors]).cpu()


def _parts(model: nn.Module, head_name: str) -> Iterator[tuple[str, nn.Module]]:
    """The named layers of the frozen part (every layer outside the head)."""
    for name, layer in model.named_modules():
        if name != head_name and not name.startswith(f"{head_name}."):
            yield name, layer


def _refuse_updating_norms(model: nn.Module, head_name: str) -> None:
    """Refuse normalization layers of the frozen part that training would update."""
    was_training = model.training
    model.train()
    found = [
        f"{name} ({type(layer).__name__})"
        for name, layer in _parts(model, head_name)
        if isinstance(layer, _NormBase) and layer.track_running_stats and layer.training
    ]
    model.train(was_training)
    if found:
        raise ConfigurationError(
            f"cache_features needs the frozen part to stay fixed, but {', '.join(found[:3])} "
            "would update running statistics in training: freeze the backbone with "
            "visionkit.models.freeze(...) (or create_model(..., freeze_backbone=True)), which "
            "keeps its normalization layers in eval mode, or pass cache_features=False"
        )


def _mode_dependent(model: nn.Module, head_name: str) -> list[str]:
    """Layers of the frozen part whose training output differs from their eval output."""
    was_training = model.training
    model.train()
    found = []
    for name, layer in _parts(model, head_name):
        random = isinstance(layer, _DropoutNd) or type(layer).__name__ in _STOCHASTIC
        rate = getattr(layer, "p", getattr(layer, "drop_prob", 1.0))
        batch_norm = isinstance(layer, _BatchNorm) and not layer.track_running_stats
        if (random and layer.training and rate) or batch_norm:
            found.append(f"{name} ({type(layer).__name__})")
    model.train(was_training)
    return found


def _draw_like(source: EpochLoader) -> None:
    """Draw the random number iterating a ``DataLoader`` you built would draw."""
    if isinstance(source, _DataLoaderAdapter) and source.sampler is None:
        torch.empty((), dtype=torch.int64).random_(generator=source.loader.generator)


def _autocast(trainer: Trainer) -> contextlib.AbstractContextManager[Any]:
    dtype = PRECISIONS[trainer.precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(trainer.device.type, dtype=dtype)
