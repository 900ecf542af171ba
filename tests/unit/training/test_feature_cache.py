"""Frozen-backbone feature caching: the same results as without, with fewer backbone passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from visionkit import ConfigurationError, Trainer
from visionkit.callbacks import Callback, ModelCheckpoint
from visionkit.data import BatchAugment, TensorImageDataset, mnist_sample
from visionkit.models import create_model, freeze, unfreeze
from visionkit.predict import Predictor
from visionkit.training import _features

TRAIN, VAL = 96, 40


def _splits() -> tuple[TensorImageDataset, TensorImageDataset]:
    data = mnist_sample()
    return data.train.select(range(TRAIN)), data.val.select(range(VAL))


class _Small(nn.Module):
    """A frozen conv backbone (with frozen BatchNorm) and a trainable head with dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.features = freeze(
            nn.Sequential(
                nn.Conv2d(1, 4, 3),
                nn.BatchNorm2d(4),
                nn.ReLU(),
                nn.MaxPool2d(4),
                nn.Flatten(),
            )
        )
        self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(4 * 6 * 6, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # type: ignore[no-any-return]


def _model() -> _Small:
    torch.manual_seed(0)
    model = _Small()
    with torch.no_grad():  # running statistics that differ from 0 and 1
        model.features[1].running_mean.uniform_(-0.5, 0.5)
        model.features[1].running_var.uniform_(0.5, 2.0)
    return model


def _fit(model: nn.Module, train: Any, val: Any, **options: Any) -> tuple[Trainer, list[dict]]:
    options.setdefault("enable_checkpointing", False)
    options.setdefault("max_epochs", 3)
    torch.manual_seed(1)
    trainer = Trainer(model, enable_progress_bar=False, device="cpu", **options)
    history = trainer.fit(train, val, batch_size=32)
    rows = [{k: v for k, v in row.items() if k != "epoch_time"} for row in history.epochs]
    return trainer, rows


class _Count:
    """A forward hook counting the images the frozen part sees."""

    def __init__(self, module: nn.Module) -> None:
        self.images = 0
        module.register_forward_hook(self)

    def __call__(self, _: nn.Module, args: tuple[torch.Tensor], output: Any) -> None:
        self.images += args[0].shape[0]


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) == 3
    for row_a, row_b in zip(a, b, strict=True):
        assert row_a.keys() == row_b.keys()
        for key in row_a:
            assert row_a[key] == pytest.approx(row_b[key], rel=1e-5, abs=1e-6), key


def test_cached_training_equals_uncached_and_runs_the_backbone_once_per_image() -> None:
    train, val = _splits()
    plain, cached = _model(), _model()
    plain_count, cached_count = _Count(plain.features), _Count(cached.features)
    _, expected = _fit(plain, train, val)
    trainer, found = _fit(cached, train, val, cache_features=True)
    _assert_same(expected, found)
    for name, tensor in plain.state_dict().items():
        torch.testing.assert_close(cached.state_dict()[name], tensor, rtol=1e-5, atol=1e-6)
    assert plain_count.images == 3 * (TRAIN + VAL)
    assert cached_count.images == TRAIN + VAL  # once per image, for the whole run
    assert trainer.feature_cache.stages == ("training", "validation")
    assert trainer.feature_cache.head_name == "classifier"
    assert trainer.feature_cache.reason == ""
    assert trainer._train_forward is trainer.model  # the full model is back after fit


def test_a_random_training_transform_caches_validation_only() -> None:
    train, val = _splits()
    train = train.with_augment(BatchAugment(crop_padding=2))
    plain, cached = _model(), _model()
    cached_count = _Count(cached.features)
    _, expected = _fit(plain, train, val)
    trainer, found = _fit(cached, train, val, cache_features=True)
    _assert_same(expected, found)
    assert cached_count.images == 3 * TRAIN + VAL  # training every epoch, validation once
    assert trainer.feature_cache.stages == ("validation",)
    assert trainer.feature_cache.reason == "the training transform is random (augmentation)"
    with pytest.raises(ConfigurationError, match=r"cache_features='all' cannot cache the train"):
        _fit(_model(), train, val, cache_features="all")


def test_eval_mode_caches_validation_only() -> None:
    train, val = _splits()
    model = _model()
    count = _Count(model.features)
    trainer, _ = _fit(model, train, val, cache_features="eval")
    assert trainer.feature_cache.stages == ("validation",)
    assert count.images == 3 * TRAIN + VAL


class _Plain(Dataset[tuple[torch.Tensor, int]]):
    """A data set visionkit knows nothing about."""

    def __init__(self, data: TensorImageDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.data[index]


def test_an_unknown_training_set_is_cached_only_when_the_user_says_so() -> None:
    train, val = _splits()
    _, expected = _fit(_model(), _Plain(train), val)
    auto, _ = _fit(_model(), _Plain(train), val, cache_features=True)
    assert auto.feature_cache.stages == ("validation",)
    assert "unknown, so it is treated as random" in auto.feature_cache.reason
    model = _model()
    count = _Count(model.features)
    trainer, found = _fit(model, _Plain(train), val, cache_features="all")
    assert trainer.feature_cache.stages == ("training", "validation")
    assert count.images == TRAIN + VAL
    _assert_same(expected, found)
    with pytest.raises(ConfigurationError, match="the training data is a DataLoader"):
        _fit(_model(), DataLoader(_Plain(train), batch_size=32), val, cache_features="all")


def test_a_torchvision_resnet_with_a_frozen_backbone_gives_the_same_results() -> None:
    torch.manual_seed(3)
    images = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8)
    data = TensorImageDataset(images, torch.arange(48) % 5, list("abcde"), mean=[0.5], std=[0.25])
    train, val = data.select(range(32)), data.select(range(32, 48))
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(create_model("resnet18", weights=None, num_classes=5, freeze_backbone=True))
    _, expected = _fit(models[0], train, val)
    trainer, found = _fit(models[1], train, val, cache_features=True)
    _assert_same(expected, found)
    assert trainer.feature_cache.head_name == "fc"
    torch.testing.assert_close(models[1].fc.weight, models[0].fc.weight, rtol=1e-5, atol=1e-6)


def test_checkpoints_hold_the_full_model_and_resume_gives_the_uninterrupted_run(
    tmp_path: Path,
) -> None:
    train, val = _splits()
    _, expected = _fit(_model(), train, val)
    folder = tmp_path / "ckpt"
    checkpoint = ModelCheckpoint(folder, monitor=None, save_last=True)
    first = _model()
    _fit(first, train, val, max_epochs=2, cache_features=True, callbacks=[checkpoint])
    last = folder / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert sorted(saved) == sorted(first.state_dict())  # backbone and head
    predictor = Predictor.from_checkpoint(last, "cpu", model=_Small())
    for name, tensor in first.state_dict().items():
        assert torch.equal(predictor.model.state_dict()[name], tensor), name
    resumed = Trainer(
        _model(),
        max_epochs=3,
        enable_progress_bar=False,
        enable_checkpointing=False,
        device="cpu",
        cache_features=True,
    )
    history = resumed.fit(train, val, batch_size=32, resume_from=last)
    found = [{k: v for k, v in row.items() if k != "epoch_time"} for row in history.epochs]
    _assert_same(expected, found)


class _Unfreeze(Callback):
    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        unfreeze(trainer.model)


def test_unfreezing_the_backbone_during_the_run_is_refused() -> None:
    train, val = _splits()
    with pytest.raises(ConfigurationError, match="a callback made its parameters trainable"):
        _fit(_model(), train, val, cache_features=True, callbacks=[_Unfreeze()])


class _Scaled(_Small):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * self.classifier(self.features(x))


class _Twice(_Small):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        return self.classifier(features) + self.classifier(features)


class _Spread(_Small):
    def __init__(self) -> None:
        super().__init__()
        self.features[0].weight.requires_grad_(True)


def _unfrozen_norm() -> _Small:
    model = _Small()
    model.features.requires_grad_(False)
    unfreeze(model.features)
    model.features.requires_grad_(False)  # frozen weights, but BatchNorm still trains
    return model


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "every parameter trains"),
        (_Spread, "they are spread over features, classifier"),
        (_Scaled, "the output of _Scaled differs from what its head 'classifier' returns"),
        (_Twice, "the model called its head 'classifier' 2 times"),
        (_unfrozen_norm, r"features.1 \(BatchNorm2d\) would update running statistics"),
    ],
)
def test_models_without_a_usable_split_are_refused(model: Any, message: str) -> None:
    train, val = _splits()
    with pytest.raises(ConfigurationError, match=message):
        _fit(model(), train, val, cache_features=True)


def test_a_model_with_nothing_trainable_is_refused() -> None:
    train, val = _splits()
    model = freeze(_Small())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigurationError, match="in _Small no parameter trains: freeze the"):
        _fit(model, train, val, cache_features=True, optimizer=optimizer)


def test_a_frozen_dropout_keeps_training_uncached() -> None:
    train, val = _splits()
    model = _model()
    model.features.append(nn.Dropout(0.1))
    trainer, _ = _fit(model, train, val, cache_features=True, max_epochs=1)
    assert trainer.feature_cache.stages == ("validation",)
    assert trainer.feature_cache.reason == (
        "the frozen part's features.5 (Dropout) behave differently in training"
    )


def test_features_over_the_memory_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_features, "MEMORY_LIMIT", 1000)
    train, val = _splits()
    with pytest.raises(ConfigurationError, match=r"\(576 bytes per image\), more than"):
        _fit(_model(), train, val, cache_features=True)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_cache_features_must_be_a_known_mode(value: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"cache_features must be False, True"):
        Trainer(_model(), cache_features=value, device="cpu")
