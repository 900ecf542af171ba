"""fine_tune and FineTune: frozen means frozen, discriminative rates, exact resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from visionkit import ConfigurationError, Trainer
from visionkit.callbacks import Callback, FineTune, ModelCheckpoint, fine_tune_param_groups
from visionkit.data import TensorImageDataset
from visionkit.training import fine_tune


def _data(n: int = 48, seed: int = 0) -> TensorImageDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % 3
    return TensorImageDataset(images, labels, ["a", "b", "c"], mean=(0.5,) * 3, std=(0.25,) * 3)


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=3)


class _Record(Callback):
    """Records per epoch the BN mode of the stem and the group rates at batch 1."""

    def __init__(self) -> None:
        self.bn_training: list[bool] = []
        self.rates: list[list[float]] = []

    def on_train_batch_start(self, trainer: Trainer, batch: Any, batch_index: int) -> None:
        if batch_index == 1:
            self.bn_training.append(trainer.model.bn1.training)  # type: ignore[union-attr]
            self.rates.append([g["lr"] for g in trainer.optimizer.param_groups])


def _options(root: Path, **more: Any) -> dict[str, Any]:
    return {"device": "cpu", "enable_progress_bar": False, "default_root_dir": root, **more}


def test_frozen_epoch_leaves_backbone_bitwise_unchanged_then_all_of_it_trains(
    tmp_path: Path,
) -> None:
    model = _resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    record = _Record()
    trainer = fine_tune(
        model,
        _data(),
        epochs=1,
        freeze_epochs=1,
        batch_size=16,
        callbacks=[record],
        **_options(tmp_path, enable_checkpointing=False, max_steps=3),
    )
    assert trainer.global_step == 3
    assert trainer.epoch == 1
    after = model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["fc.bias", "fc.weight"]
    assert record.bn_training == [False]
    # the second phase unfreezes everything: BatchNorm trains, every group has a rate
    trainer = fine_tune(
        _resnet(),
        _data(),
        epochs=1,
        freeze_epochs=1,
        batch_size=16,
        callbacks=[record],
        **_options(tmp_path, enable_checkpointing=False),
    )
    assert record.bn_training == [False, False, True]
    assert all(p.requires_grad for p in trainer.model.parameters())


def test_groups_get_discriminative_rates_in_the_unfrozen_phase() -> None:
    groups = fine_tune_param_groups(_resnet(), base_lr=1e-3, lr_mult=100.0, num_groups=3)
    assert [g["fine_tune_group"] for g in groups] == ["backbone", "backbone", "head"]
    assert [g["lr_scale"] for g in groups] == pytest.approx([0.01, 0.1, 1.0])
    head = groups[-1]["params"]
    assert [tuple(p.shape) for p in head] == [(3, 512), (3,)]
    record = _Record()
    fine_tune(
        _resnet(),
        _data(),
        epochs=1,
        freeze_epochs=1,
        base_lr=1e-3,
        batch_size=16,
        callbacks=[record],
        device="cpu",
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    unfrozen = record.rates[1]
    assert unfrozen[0] / unfrozen[2] == pytest.approx(0.01)
    assert unfrozen[1] / unfrozen[2] == pytest.approx(0.1)
    assert unfrozen[2] < 1e-3 / 2  # below the second phase's peak, early in its warm-up


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize(
    "stop_at_step", [2, 3, 5], ids=["inside-frozen", "at-unfreeze", "inside-unfrozen"]
)
def test_resume_across_the_unfreeze_point_is_exact(tmp_path: Path, stop_at_step: int) -> None:
    def run(folder: str, **options: Any) -> Trainer:
        return fine_tune(
            _resnet(),
            _data(),
            epochs=2,
            freeze_epochs=1,
            batch_size=16,
            callbacks=[ModelCheckpoint(tmp_path / folder, monitor=None)],
            device="cpu",
            enable_progress_bar=False,
            **options,
        )

    whole = run("whole")
    cut = run("cut", max_steps=stop_at_step)  # 3 steps an epoch: 3 ends the frozen epoch
    assert cut.last_checkpoint is not None
    resumed = run("resumed", resume_from=cut.last_checkpoint)
    assert resumed.global_step == whole.global_step == 9
    for name, value in _weights(whole).items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_fine_tune_callback_refuses_an_optimizer_without_its_groups(tmp_path: Path) -> None:
    model = _resnet()
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        max_epochs=2,
        callbacks=[FineTune(1)],
        **_options(tmp_path, enable_checkpointing=False),
    )
    with pytest.raises(ConfigurationError, match=r"fine_tune_param_groups\(model\)"):
        trainer.fit(_data(), batch_size=16)
