"""torchvision and timm backbones by name: names, weights, heads, preprocessing, checkpoints.

Nothing here downloads: torchvision's pretrained weights are replaced by state dicts the
tests make (``WeightsEnum.get_state_dict`` is patched), and files are saved by the tests.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import ResNet18_Weights, VGG16_Weights, WeightsEnum

from visionkit import CheckpointError, ConfigurationError, Predictor, Trainer
from visionkit.data import TensorImageDataset
from visionkit.models import (
    PreprocessConfig,
    _registry,
    create_model,
    get_model_factory,
    list_models,
    model_spec,
    output_layers,
    preprocess_config,
    register_model,
    timm_model,
    torchvision_model,
    trainable_parameters,
)


def _same(a: nn.Module, b: nn.Module, *, skip: str) -> bool:
    theirs = b.state_dict()
    return all(
        torch.equal(v, theirs[k]) for k, v in a.state_dict().items() if not k.startswith(skip)
    )


@pytest.fixture
def timm() -> Any:
    return pytest.importorskip("timm")


@pytest.fixture
def offline_weights(monkeypatch: pytest.MonkeyPatch) -> list[WeightsEnum]:
    """torchvision's pretrained weights, made up locally: a seeded 1000-class model's."""
    requested: list[WeightsEnum] = []

    def state_dict(self: WeightsEnum, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        requested.append(self)
        name = type(self).__name__.removesuffix("_Weights").lower()
        torch.manual_seed(1)
        aux = name in ("googlenet", "inception_v3")
        extra = {"aux_logits": True, "init_weights": False} if aux else {}
        return torchvision.models.get_model_builder(name)(**extra).state_dict()

    monkeypatch.setattr(WeightsEnum, "get_state_dict", state_dict)
    return requested


# ---------------------------------------------------------------------------- names


def test_bare_and_prefixed_names_build_the_same_model_and_record_the_prefixed_one() -> None:
    torch.manual_seed(0)
    bare = create_model("resnet18", num_classes=7)
    torch.manual_seed(0)
    prefixed = create_model("torchvision/resnet18", num_classes=7)
    assert _same(bare, prefixed, skip="-")
    assert model_spec(bare) == model_spec(prefixed)
    assert model_spec(bare).name == "torchvision/resnet18"  # type: ignore[union-attr]
    assert model_spec(bare).kwargs == {"num_classes": 7}  # type: ignore[union-attr]
    assert bare.fc.out_features == 7


def test_registered_names_keep_their_meaning_and_the_prefix_reaches_torchvision() -> None:
    @register_model(name="squeezenet1_1")
    def mine(*, num_classes: int = 10) -> nn.Module:
        return nn.Linear(4, num_classes)

    try:
        assert isinstance(create_model("squeezenet1_1", num_classes=3), nn.Linear)
        tv = create_model("torchvision/squeezenet1_1", num_classes=3)
        assert isinstance(tv, torchvision.models.SqueezeNet)
        assert model_spec(tv).name == "torchvision/squeezenet1_1"  # type: ignore[union-attr]
    finally:
        _registry._REGISTRY.pop("squeezenet1_1")


def test_library_prefixes_are_reserved() -> None:
    with pytest.raises(ConfigurationError, match="mean those libraries' models"):
        register_model(lambda: nn.Linear(1, 1), name="torchvision/mine")


def test_list_models_keeps_registered_names_and_lists_torchvision_on_request() -> None:
    own = list_models()
    assert "mlp" in own
    assert not any("/" in name or name.startswith("resnet1") for name in own)
    torchvision_names = list_models(library="torchvision")
    assert len(torchvision_names) == len(torchvision.models.list_models(module=torchvision.models))
    assert list_models("resnet1*", library="torchvision") == [
        "torchvision/resnet101",
        "torchvision/resnet152",
        "torchvision/resnet18",
    ]
    assert list_models("torchvision/vgg16", library="torchvision") == ["torchvision/vgg16"]
    everything = list_models(library="all")
    assert everything[: len(own)] == own
    assert everything[len(own) : len(own) + len(torchvision_names)] == torchvision_names
    with pytest.raises(ConfigurationError, match="library must be"):
        list_models(library="keras")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("resnet51", "'resnet50'"), ("torchvision/resnet51", "'torchvision/resnet50'")],
)
def test_unknown_names_suggest_the_closest_of_all(name: str, suggestion: str) -> None:
    with pytest.raises(ConfigurationError, match=f"no model named '{name}'.*{suggestion}") as info:
        create_model(name)
    assert "list_models(library='torchvision')" in str(info.value)


def test_the_builders_check_their_names_too(timm: Any) -> None:
    with pytest.raises(ConfigurationError, match="torchvision has no model named 'resnet19'"):
        torchvision_model("resnet19")
    with pytest.raises(ConfigurationError, match="did you mean 'convnext_tiny'"):
        timm_model("convnext_tiy")


def test_the_factory_of_a_backbone_name_builds_it() -> None:
    factory = get_model_factory("mobilenet_v3_small")
    assert isinstance(factory(num_classes=4), torchvision.models.MobileNetV3)


# ---------------------------------------------------------------------------- weights


@pytest.mark.parametrize(
    "weights",
    ["DEFAULT", "IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1", ResNet18_Weights.DEFAULT],
)
def test_pretrained_weights_load_and_the_head_is_replaced(
    weights: Any, offline_weights: list[WeightsEnum]
) -> None:
    model = create_model("resnet18", num_classes=7, weights=weights)
    assert offline_weights == [ResNet18_Weights.IMAGENET1K_V1]
    assert _same(model, torchvision.models.resnet18(), skip="fc.") is False  # random init differs
    torch.manual_seed(1)
    assert _same(model, torchvision.models.resnet18(), skip="fc.")  # the "downloaded" weights
    assert model.fc.out_features == 7
    assert model_spec(model).kwargs["weights"] in (  # type: ignore[union-attr]
        weights,
        "ResNet18_Weights.IMAGENET1K_V1",
    )


def test_pretrained_true_means_default_weights_and_is_recorded_as_such(
    offline_weights: list[WeightsEnum],
) -> None:
    model = create_model("resnet18", num_classes=7, pretrained=True)
    assert offline_weights == [ResNet18_Weights.IMAGENET1K_V1]
    assert model_spec(model).kwargs == {"num_classes": 7, "weights": "DEFAULT"}  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError, match="pass only weights="):
        create_model("resnet18", weights="DEFAULT", pretrained=True)


def test_thousand_classes_with_pretrained_weights_keep_the_imagenet_head(
    offline_weights: list[WeightsEnum],
) -> None:
    model = create_model("resnet18", weights="DEFAULT")
    torch.manual_seed(1)
    assert _same(model, torchvision.models.resnet18(), skip="-")


def test_auxiliary_heads_are_off_by_default_and_replaced_when_asked_for(
    offline_weights: list[WeightsEnum],
) -> None:
    for name, size in (("googlenet", 64), ("inception_v3", 75)):
        plain = create_model(name, num_classes=7, weights="DEFAULT")
        assert output_layers(plain) == ["fc"]
        assert plain.train()(torch.rand(2, 3, size, size)).shape == (2, 7)  # not a tuple
    with pytest.warns(UserWarning, match="auxiliary heads .* are NOT pretrained"):  # torchvision
        aux = create_model(
            "googlenet", num_classes=7, weights="DEFAULT", aux_logits=True, freeze_backbone=True
        )
    assert output_layers(aux) == ["fc", "aux1.fc2", "aux2.fc2"]
    assert [p.shape[0] for p in trainable_parameters(aux)] == [7] * 6


def test_a_download_failure_says_how_to_work_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self: WeightsEnum, *args: Any, **kwargs: Any) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(ConfigurationError, match=r"weights='path/to/resnet18-f37072fd\.pth'"):
        create_model("resnet18", num_classes=7, weights="DEFAULT")


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ("IMAGENET1K_V9", r"neither a ResNet18_Weights name \(IMAGENET1K_V1, DEFAULT\)"),
        (VGG16_Weights.DEFAULT, "are not weights of torchvision's resnet18"),
        (True, "got True"),
        ("  ", "got '  '"),
        ("missing/resnet18.pth", "nor an existing file"),
    ],
)
def test_bad_weights_are_refused_with_the_choices(weights: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_model("resnet18", num_classes=7, weights=weights)


def test_a_state_dict_file_with_the_imagenet_head_loads_around_the_new_head(
    tmp_path: Path,
) -> None:
    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = create_model("resnet18", num_classes=7, weights=tmp_path / "resnet18.pth")
    assert _same(model, source, skip="fc.")
    assert model.fc.out_features == 7
    assert model_spec(model).kwargs["weights"] == str(tmp_path / "resnet18.pth")  # type: ignore[union-attr]


def test_a_state_dict_file_with_the_new_head_loads_whole(tmp_path: Path) -> None:
    source = torchvision.models.resnet18(num_classes=7)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "tuned.ckpt")  # a checkpoint
    model = create_model("resnet18", num_classes=7, weights=str(tmp_path / "tuned.ckpt"))
    assert _same(model, source, skip="-")


def test_a_file_with_auxiliary_heads_loads_into_a_model_without(tmp_path: Path) -> None:
    source = torchvision.models.inception_v3(aux_logits=True, init_weights=False)
    torch.save(source.state_dict(), tmp_path / "inception.pth")
    model = create_model("inception_v3", num_classes=7, weights=tmp_path / "inception.pth")
    assert model.AuxLogits is None
    assert _same(model, source, skip="fc.")


def test_a_file_of_another_architecture_names_the_keys_that_differ(tmp_path: Path) -> None:
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(ConfigurationError, match=r"unexpected keys \['layer1\.2\.") as info:
        create_model("resnet18", num_classes=7, weights=tmp_path / "resnet34.pth")
    assert "does not hold the weights of torchvision's resnet18" in str(info.value)


def test_a_damaged_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "bad.pth").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        create_model("resnet18", weights=tmp_path / "bad.pth")


# ---------------------------------------------------------------------------- preprocessing


def test_the_preprocessing_of_the_weights_is_recorded(offline_weights: list[WeightsEnum]) -> None:
    v2 = preprocess_config(create_model("resnet50", num_classes=2, weights="IMAGENET1K_V2"))
    assert v2 == PreprocessConfig(
        resize=232,
        center_crop=224,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        interpolation="bilinear",
        source="torchvision ResNet50_Weights.IMAGENET1K_V2",
    )
    assert v2.to_dict()["resize"] == 232
    with torch.device("meta"):
        random = create_model("inception_v3", num_classes=2)
        vit = create_model("vit_b_16", num_classes=2, image_size=64)
    assert preprocess_config(random).center_crop == 299  # type: ignore[union-attr]
    assert (preprocess_config(vit).resize, preprocess_config(vit).center_crop) == (73, 64)  # type: ignore[union-attr]
    assert preprocess_config(create_model("mlp", in_features=4, num_classes=2)) is None


# ---------------------------------------------------------------------------- checkpoints


def test_a_trained_torchvision_model_comes_back_from_its_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3, freeze_backbone=True)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    data = TensorImageDataset(images, torch.arange(8) % 3, ["a", "b", "c"])
    trainer = Trainer(
        model,
        device="cpu",
        max_epochs=1,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
    )
    trainer.fit(data, batch_size=8)
    assert trainer.last_checkpoint is not None
    predictor = Predictor.from_checkpoint(trainer.last_checkpoint, device="cpu")
    assert model_spec(predictor.model).name == "torchvision/resnet18"  # type: ignore[union-attr]
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = model.eval()(x)
    assert torch.equal(predictor.predict_logits(x), expected)


def test_a_checkpoint_never_downloads_the_weights_it_was_started_from(
    tmp_path: Path, offline_weights: list[WeightsEnum]
) -> None:
    model = create_model("resnet18", num_classes=3, weights="DEFAULT")
    offline_weights.clear()
    trainer = Trainer(model, device="cpu", max_epochs=1, default_root_dir=tmp_path)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    Predictor.from_checkpoint(tmp_path / "model.ckpt", device="cpu")
    assert offline_weights == []


# ---------------------------------------------------------------------------- timm


def test_timm_models_by_name(timm: Any) -> None:
    model = create_model("timm/test_convnext", num_classes=5, pretrained=False)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    assert model_spec(model) == _registry.ModelSpec("timm/test_convnext", {"num_classes": 5})
    config = preprocess_config(model)
    assert config is not None
    assert (config.center_crop, config.resize, config.interpolation) == (160, 168, "bicubic")
    assert config.mean == (0.5, 0.5, 0.5)
    assert "timm/test_convnext" in list_models("test_conv*", library="timm")


def test_timm_freeze_backbone_trains_the_classifier_only(timm: Any) -> None:
    model = create_model("timm/test_resnet", num_classes=5, freeze_backbone=True)
    assert output_layers(model) == ["fc"]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    assert not any(m.training for m in model.train().modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("head_classes", [1000, 5])
def test_timm_state_dict_files_load_with_either_head(
    timm: Any, tmp_path: Path, head_classes: int
) -> None:
    source = timm.create_model("test_convnext", num_classes=head_classes)
    torch.save(source.state_dict(), tmp_path / "convnext.pth")
    model = create_model("timm/test_convnext", num_classes=5, weights=tmp_path / "convnext.pth")
    assert _same(model, source, skip="head.fc." if head_classes != 5 else "-")
    assert model.get_classifier().out_features == 5


def test_timm_pretrained_goes_to_timm_and_a_failure_says_how_to_work_offline(
    timm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    real: Callable[..., nn.Module] = timm.create_model

    def offline(name: str, **kwargs: Any) -> nn.Module:
        calls.append(kwargs)
        if kwargs["pretrained"]:
            raise OSError("cannot reach the Hugging Face Hub")
        return real(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ConfigurationError, match=r"pass weights='path/to/file\.pth'"):
        create_model("timm/test_convnext", num_classes=5, pretrained=True)
    assert calls == [{"pretrained": True, "num_classes": 5}]
    with pytest.raises(ConfigurationError, match=r"'DEFAULT' .* or the path of an existing"):
        create_model("timm/test_convnext", weights="IMAGENET1K_V1")


def test_unknown_timm_names_suggest_timm_names(timm: Any) -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'timm/test_convnext"):
        create_model("timm/test_convnex")


def test_timm_names_without_timm_say_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "timm", None)  # import timm fails
    with pytest.raises(ConfigurationError, match=r'pip install "visionkit-torch\[timm\]"'):
        create_model("timm/convnext_tiny", num_classes=5)
