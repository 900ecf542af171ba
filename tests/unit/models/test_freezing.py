"""Frozen means frozen: no gradient, and batch norm statistics that training does not move."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
import torchvision
from torch import nn

from visionkit import Trainer
from visionkit.data import TensorImageDataset
from visionkit.models import create_model, freeze, is_frozen, trainable_parameters, unfreeze
from visionkit.training.distributed import sync_batchnorm


def _images(n: int = 12, classes: int = 3) -> TensorImageDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return TensorImageDataset(images, torch.arange(n) % classes, ["a", "b", "c"])


def _norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def test_an_epoch_of_training_leaves_a_frozen_backbone_bitwise_unchanged() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3, freeze_backbone=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1),
        device="cpu",
        max_epochs=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(_images(), batch_size=4)
    after = model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["fc.bias", "fc.weight"]  # running stats and num_batches_tracked too
    assert all(not norm.training for norm in _norms(model))
    assert model.training  # the model itself trained
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("fc."))


def test_train_keeps_frozen_norms_in_eval_mode_and_unfreeze_restores_them() -> None:
    model = torchvision.models.resnet18(num_classes=3)
    freeze(model.layer1)
    model.train()
    assert [m.training for m in _norms(model.layer1)] == [False] * 4
    assert model.bn1.training  # not frozen: follows train()
    assert model.layer2[0].bn1.training
    assert is_frozen(model.layer1)
    assert not is_frozen(model)
    unfreeze(model.layer1)
    assert [m.training for m in _norms(model.layer1)] == [True] * 4  # the module's mode
    model.eval()
    assert not any(m.training for m in _norms(model))
    model.train()
    assert all(m.training for m in _norms(model))
    assert type(model.layer1[0].bn1) is nn.BatchNorm2d  # exactly the original class again


def test_a_frozen_norm_looks_like_the_original_layer() -> None:
    model = freeze(torchvision.models.resnet18(num_classes=3))
    fresh = torchvision.models.resnet18(num_classes=3)
    assert isinstance(model.bn1, nn.BatchNorm2d)
    assert repr(model) == repr(fresh)
    assert model.state_dict().keys() == fresh.state_dict().keys()
    assert trainable_parameters(model) == []


@pytest.mark.parametrize("clone", ["deepcopy", "pickle", "torch.save"])
def test_frozen_models_copy_and_pickle_and_stay_frozen(clone: str) -> None:
    model = freeze(torchvision.models.resnet18(num_classes=3))
    if clone == "deepcopy":
        copied = copy.deepcopy(model)
    elif clone == "pickle":
        copied = pickle.loads(pickle.dumps(model))
    else:
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        copied = torch.load(buffer, weights_only=False)
    assert copied.bn1 is not model.bn1
    assert not copied.train().bn1.training
    unfreeze(copied)
    assert type(copied.bn1) is nn.BatchNorm2d
    assert copied.train().bn1.training


def test_freezing_twice_and_unfreezing_an_unfrozen_module_are_harmless() -> None:
    model = torchvision.models.resnet18(num_classes=3)
    freeze(freeze(model))
    assert not model.train().bn1.training
    unfreeze(unfreeze(model))
    assert model.train().bn1.training
    assert type(model.bn1) is nn.BatchNorm2d


def test_a_frozen_model_still_exports() -> None:
    model = freeze(torchvision.models.resnet18(num_classes=3)).eval()
    x = torch.rand(1, 3, 32, 32)
    program = torch.export.export(model, (x,))
    assert torch.allclose(program.module()(x), model(x))


def test_sync_batchnorm_conversion_keeps_frozen_layers_frozen() -> None:
    model = torchvision.models.resnet18(num_classes=3)
    freeze(model.layer1)
    converted = sync_batchnorm(model).train()
    assert isinstance(converted.layer1[0].bn1, torch.nn.SyncBatchNorm)
    assert not converted.layer1[0].bn1.training  # frozen: stays in eval mode
    assert not any(p.requires_grad for p in converted.layer1.parameters())
    assert converted.layer2[0].bn1.training  # not frozen: follows train()
