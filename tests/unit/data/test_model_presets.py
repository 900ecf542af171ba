"""Preprocessing follows the weights: presets from the model, stored in checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionkit import ConfigurationError, Predictor, Trainer
from visionkit.data import image_folder, presets
from visionkit.models import create_model
from visionkit.predict import Preprocess


def _photo(seed: int, size: tuple[int, int] = (300, 260)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def test_model_eval_uses_the_weights_numbers_and_describes_itself() -> None:
    model = create_model("resnet18", num_classes=3)  # ResNet18_Weights: 256, 224, ImageNet
    spec = presets.preprocess_from_transform(presets.model_eval(model))
    assert spec == Preprocess(
        mode="RGB",
        resize=256,
        center_crop=224,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )


def test_bicubic_weights_are_described_and_reproduced_bit_for_bit() -> None:
    model = create_model("swin_t", num_classes=3)  # Swin_T_Weights resize bicubic to 232
    transform = presets.model_eval(model)
    spec = presets.preprocess_from_transform(transform)
    assert (spec.interpolation, spec.resize, spec.center_crop) == ("bicubic", 232, 224)
    photo = _photo(0)
    expected = transform(photo)
    assert torch.equal(spec(photo), expected)
    bilinear = Preprocess(resize=232, center_crop=224, mean=spec.mean, std=spec.std)
    assert not torch.equal(bilinear(photo), expected)  # the mode matters
    assert Preprocess.from_dict(spec.to_dict()) == spec
    assert Preprocess.from_dict({"resize": 8}).interpolation == "bilinear"  # older files


def test_model_train_crops_to_the_weights_input_size() -> None:
    model = create_model("resnet18", num_classes=3)
    out = presets.model_train(model)(_photo(1))
    assert out.shape == (3, 224, 224)
    assert out.dtype == torch.float32


def test_a_model_without_recorded_preprocessing_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"MLP has no recorded preprocessing"):
        presets.model_eval(create_model("mlp", num_classes=3))


def test_checkpoint_carries_the_weights_preprocessing_to_the_predictor(tmp_path: Path) -> None:
    for label in ("cat", "dog"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(2):
            _photo(i + (10 if label == "dog" else 0), (70, 60)).save(
                tmp_path / "photos" / label / f"{i}.png"
            )
    torch.manual_seed(0)
    model = create_model("mobilenet_v3_small", num_classes=2)
    evaluation = presets.model_eval(model)
    data = image_folder(
        tmp_path / "photos", splits=None, val_fraction=0.5, eval_transform=evaluation
    )
    trainer = Trainer(
        model, max_epochs=1, device="cpu", enable_progress_bar=False, default_root_dir=tmp_path
    )
    trainer.fit(data.train, data.val, batch_size=2)
    assert trainer.last_checkpoint is not None
    predictor = Predictor.from_checkpoint(trainer.last_checkpoint, device="cpu")
    assert predictor.preprocess == presets.preprocess_from_transform(evaluation)
    photo = _photo(3, (90, 80))
    model.eval()
    with torch.inference_mode():
        expected = torch.softmax(model(evaluation(photo)[None]), dim=1)[0]
    probabilities = predictor.predict(photo, top_k=2)
    by_name = dict(zip(probabilities.names, probabilities.probabilities, strict=True))
    assert by_name["cat"] == pytest.approx(float(expected[0]), abs=1e-6)
    assert by_name["dog"] == pytest.approx(float(expected[1]), abs=1e-6)
