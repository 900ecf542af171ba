"""VGG16 transfer (W5): frozen features, configurable head, weights from a local file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch.utils.data import TensorDataset
from torchvision.models import VGG16_Weights

from visionkit import CheckpointError, ConfigurationError, Trainer
from visionkit.models import VGG16Transfer, count_parameters, create_model, model_spec


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def small_vgg() -> VGG16Transfer:
    """One VGG16 (14.7M feature parameters) shared by the read-only tests."""
    return VGG16Transfer(3, hidden=16)


def test_default_head_counts_and_frozen_features() -> None:
    with torch.device("meta"):  # 118M parameters: count them without allocating
        model = create_model("vgg16_transfer")
    assert count_parameters(model) == 14_714_688 + 25_088 * 4_096 + 4_096 + 4_096 * 102 + 102
    assert count_parameters(model, trainable_only=True) == 102_764_544 + 417_894
    kinds = [type(m).__name__ for m in model.classifier]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "LogSoftmax"]
    assert model.classifier[2].p == 0.2


def test_feature_keys_and_shapes_match_torchvision(small_vgg: VGG16Transfer) -> None:
    with torch.device("meta"):
        reference = torchvision.models.vgg16().features.state_dict()
    ours = small_vgg.features.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in reference.items()}


def test_forward_small_input_and_trainable_parameters(small_vgg: VGG16Transfer) -> None:
    small_vgg.eval()
    with torch.no_grad():
        out = small_vgg(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 3)
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(2))
    head = list(small_vgg.classifier.parameters())
    assert [id(p) for p in small_vgg.trainable_parameters()] == [id(p) for p in head]


def test_gray_or_tiny_images_raise_a_clear_error(small_vgg: VGG16Transfer) -> None:
    with pytest.raises(ConfigurationError, match=r"expected \(N, 3, H, W\) RGB .* got 1x28x28"):
        small_vgg(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ConfigurationError, match=r"H, W >= 32 .* got 3x16x16"):
        small_vgg(torch.zeros(1, 3, 16, 16))


def test_training_step_keeps_frozen_features_bit_identical() -> None:
    torch.manual_seed(0)
    model = create_model("vgg16_transfer", num_classes=3, hidden=16, dropout=0.0)
    features, head = _snapshot(model.features), _snapshot(model.classifier)
    data = TensorDataset(torch.randn(2, 3, 32, 32), torch.tensor([0, 2]))
    trainer = Trainer(
        model,
        optimizer=torch.optim.Adam(model.trainable_parameters(), lr=1e-2),
        loss=torch.nn.NLLLoss(),
        max_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        device="cpu",
    )
    trainer.fit(data, batch_size=2)
    assert trainer.global_step == 1
    after = model.features.state_dict()
    assert all(torch.equal(features[k], after[k]) for k in features)
    changed = [k for k, v in model.classifier.state_dict().items() if not torch.equal(v, head[k])]
    assert changed == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_frozen_features_stay_put_even_with_all_parameters_and_weight_decay() -> None:
    model = VGG16Transfer(2, hidden=None, dropout=0.0)
    before = _snapshot(model.features)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.1)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in model.features.state_dict().items())
    assert all(p.grad is None for p in model.features.parameters())


def test_freeze_and_unfreeze() -> None:
    with torch.device("meta"):
        model = VGG16Transfer(5, hidden=8)
    head = count_parameters(model.classifier)
    assert count_parameters(model, trainable_only=True) == head
    assert model.unfreeze() is model
    assert count_parameters(model, trainable_only=True) == count_parameters(model)
    model.freeze()
    assert count_parameters(model, trainable_only=True) == head
    with torch.device("meta"):
        tuned = create_model("vgg16_transfer", freeze_features=False)
    assert count_parameters(tuned, trainable_only=True) == count_parameters(tuned)


def test_weights_from_a_local_state_dict_file(small_vgg: VGG16Transfer) -> None:
    path = Path("vgg16.pth")
    torch.save({f"module.{k}": v for k, v in small_vgg.state_dict().items()}, path)
    loaded = create_model("vgg16_transfer", num_classes=7, hidden=32, weights=path)
    expected = small_vgg.features.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.features.state_dict().items())
    assert loaded.classifier[-2].out_features == 7  # a fresh head of the requested size
    assert model_spec(loaded).kwargs["weights"] == "vgg16.pth"  # type: ignore[union-attr]


def test_checkpoint_rebuild_with_weights_none_gives_the_same_architecture() -> None:
    with torch.device("meta"):
        model = create_model("vgg16_transfer", num_classes=5, hidden=[64, 32], dropout=0.1)
        spec = model_spec(model)
        assert spec is not None
        rebuilt = spec.build(weights=None)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}
    assert [p.requires_grad for p in rebuilt.parameters()] == [
        p.requires_grad for p in model.parameters()
    ]


def test_weights_name_goes_through_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_download(self: VGG16_Weights, progress: bool, check_hash: bool) -> dict[str, object]:
        calls.append(f"{self} progress={progress} check_hash={check_hash}")
        return {"classifier.0.weight": torch.zeros(1)}  # no features: fails after the call

    monkeypatch.setattr(VGG16_Weights, "get_state_dict", fake_download)
    for name in ("DEFAULT", "VGG16_Weights.IMAGENET1K_V1", VGG16_Weights.IMAGENET1K_V1):
        with pytest.raises(CheckpointError, match="no VGG16 feature weights"):
            VGG16Transfer(2, hidden=None, weights=name, progress=False)
    assert calls == ["VGG16_Weights.IMAGENET1K_V1 progress=False check_hash=True"] * 3


def test_missing_weights_file_names_the_path_and_the_choices() -> None:
    with pytest.raises(ConfigurationError) as info:
        VGG16Transfer(2, weights="missing/vgg16.pth")
    assert "weights='missing/vgg16.pth' is neither a VGG16_Weights name" in str(info.value)
    assert "IMAGENET1K_V1, IMAGENET1K_FEATURES, DEFAULT" in str(info.value)


def test_wrong_weight_files_raise_checkpoint_errors() -> None:
    torch.save({"fc.weight": torch.zeros(2, 2)}, "resnet.pth")
    with pytest.raises(CheckpointError, match=r"resnet.pth holds no VGG16 feature weights"):
        VGG16Transfer(2, weights="resnet.pth")
    torch.save({"features.0.weight": torch.zeros(2, 2)}, "other.pth")
    with pytest.raises(CheckpointError, match=r"other.pth does not fit VGG16's feature extractor"):
        VGG16Transfer(2, weights="other.pth")
    Path("garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"cannot read VGG16 weights from garbage.pth"):
        VGG16Transfer(2, weights="garbage.pth")


def test_other_torchvision_weights_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="are not VGG16 weights"):
        VGG16Transfer(2, weights=torchvision.models.ResNet18_Weights.DEFAULT)
