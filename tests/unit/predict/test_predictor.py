"""The Predictor: inputs of every kind, typed results, batching, and the real flowers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from visionkit import ConfigurationError, DataError, Prediction, Predictor, Trainer
from visionkit.data import TensorImageDataset, mnist_sample
from visionkit.models import create_model
from visionkit.predict import Preprocess, make_checkpoint, save_checkpoint

FLOWER_IDS = ["1", "10", "102", "54", "74"]


def _train_and_save(tmp_path: Path) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """Train an MLP for 3 steps, save it; return the checkpoint, raw test images, logits."""
    torch.manual_seed(0)
    data = mnist_sample(normalize=(0.1307, 0.3081))
    model = create_model("mlp", in_features=784, hidden=[32], num_classes=10)
    trainer = Trainer(
        model, max_steps=3, device="cpu", enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(data.train.select(range(96)), batch_size=32)
    path = trainer.save_checkpoint(tmp_path / "trained.ckpt")
    images = data.test.images[:16]  # raw uint8 digits, 16 x 1 x 28 x 28
    with torch.inference_mode():
        logits = model.eval()(data.test.normalize(images))
    return path, images, logits


def test_round_trip_in_a_fresh_process(tmp_path: Path) -> None:
    path, images, expected = _train_and_save(tmp_path)
    torch.save(images, tmp_path / "images.pt")
    script = (
        "import sys, torch\n"
        "from visionkit import Predictor\n"
        "p = Predictor.from_checkpoint(sys.argv[1], device='cpu')\n"
        "images = torch.load(sys.argv[2], weights_only=True)\n"
        "torch.save(p.predict_logits(list(images)), sys.argv[3])\n"
    )
    out = tmp_path / "logits.pt"
    subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "images.pt"), str(out)],
        check=True,
        timeout=300,
    )
    assert torch.equal(torch.load(out, weights_only=True), expected)


def test_round_trip_from_the_checkpoint_alone(tmp_path: Path) -> None:
    path, images, expected = _train_and_save(tmp_path)
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert torch.equal(predictor.predict_logits(list(images)), expected)
    assert torch.equal(predictor.predict_logits(images), expected)  # uint8 batch N x C x H x W


def test_raw_digits_are_preprocessed_bit_identically_to_the_dataset(
    mlp_checkpoint: Path,
) -> None:
    predictor = Predictor.from_checkpoint(mlp_checkpoint, device="cpu")
    spec = predictor.preprocess
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=generator)
    dataset = TensorImageDataset(
        images, torch.zeros(5, dtype=torch.long), ["a"], mean=spec.mean, std=spec.std
    )
    for i in range(5):
        assert torch.equal(predictor.to_input(images[i]), dataset[i][0])
        assert torch.equal(predictor.to_input(images[i, 0].numpy()), dataset[i][0])
        assert torch.equal(predictor.to_input(Image.fromarray(images[i, 0].numpy())), dataset[i][0])


def test_every_input_kind_gives_the_same_prediction(
    mlp_checkpoint: Path, digit_images: list[np.ndarray], tmp_path: Path
) -> None:
    predictor = Predictor.from_checkpoint(mlp_checkpoint, device="cpu")
    array = digit_images[0]
    Image.fromarray(array).save(tmp_path / "digit.png")
    expected = predictor.predict(array, top_k=3)
    for kind in (
        str(tmp_path / "digit.png"),
        tmp_path / "digit.png",
        Image.fromarray(array),
        Image.fromarray(array).convert("RGB"),  # converted to the checkpoint's mode "L"
        torch.from_numpy(array),
        torch.from_numpy(array)[None],
        array[..., None],
        predictor.to_input(array),  # already preprocessed float input
    ):
        got = predictor.predict(kind, top_k=3)
        assert isinstance(got, Prediction)
        assert (got.indices, got.probabilities) == (expected.indices, expected.probabilities)


def test_prediction_fields(mlp_checkpoint: Path, digit_images: list[np.ndarray]) -> None:
    predictor = Predictor.from_checkpoint(mlp_checkpoint, device="cpu")
    result = predictor.predict(digit_images[0], top_k=4)
    probabilities = predictor.predict_proba(digit_images[0])[0]
    values, indices = probabilities.topk(4)
    assert result.indices == tuple(indices.tolist())
    assert result.names == tuple(str(i) for i in indices.tolist())
    assert result.probabilities == tuple(values.tolist())
    assert (result.index, result.name, result.probability) == (
        result.indices[0],
        result.names[0],
        result.probabilities[0],
    )
    assert result.source is None
    assert abs(float(probabilities.sum()) - 1.0) < 1e-6


def test_list_and_batch_match_single_calls(
    mlp_checkpoint: Path, digit_images: list[np.ndarray]
) -> None:
    predictor = Predictor.from_checkpoint(mlp_checkpoint, device="cpu")
    singles = [predictor.predict(image, top_k=2) for image in digit_images]
    batch_of_3 = predictor.predict(digit_images, top_k=2, batch_size=3)
    as_tensor = predictor.predict(
        torch.stack([predictor.to_input(i) for i in digit_images]), top_k=2
    )
    as_array = predictor.predict(np.stack(digit_images)[..., None], top_k=2)
    assert isinstance(batch_of_3, list)
    assert len(batch_of_3) == len(as_tensor) == len(as_array) == 8
    for results in (batch_of_3, as_tensor, as_array):
        assert [r.indices for r in results] == [s.indices for s in singles]
        for r, s in zip(results, singles, strict=True):
            assert np.allclose(r.probabilities, s.probabilities, atol=1e-6)


def test_folder_of_real_flowers_returns_names_from_the_json(
    flowers_checkpoint: Path, flowers_dir: Path
) -> None:
    names = json.loads((flowers_dir / "cat_to_name.json").read_text(encoding="utf-8"))
    predictor = Predictor.from_checkpoint(flowers_checkpoint, device="cpu")
    results = predictor.predict(flowers_dir / "test", top_k=5)

    assert isinstance(results, list)
    assert len(results) == 15
    expected_names = {names[i] for i in FLOWER_IDS}
    assert {"pink primrose", "globe thistle", "blackberry lily"} <= expected_names
    for result in results:
        assert set(result.names) == expected_names  # top-5 of 5 classes: every name
        assert result.name in expected_names
        assert result.source is not None
        assert Path(result.source).parent.parent == flowers_dir / "test"
    assert [Path(r.source or "").name for r in results[:3]] == [
        "image_06743.jpg",
        "image_06752.jpg",
        "image_06754.jpg",
    ]


def test_flower_preprocessing_equals_torchvision_eval_transform(
    flowers_checkpoint: Path, flowers_dir: Path
) -> None:
    predictor = Predictor.from_checkpoint(flowers_checkpoint, device="cpu")
    spec = predictor.preprocess
    transform = T.Compose(
        [
            T.Resize(spec.resize),
            T.CenterCrop(spec.center_crop),
            T.ToTensor(),
            T.Normalize(spec.mean, spec.std),
        ]
    )
    path = flowers_dir / "test" / "1" / "image_06743.jpg"
    with Image.open(path) as image:
        expected = transform(image.convert("RGB"))
    assert torch.equal(predictor.to_input(path), expected)


def test_wrong_float_input_shape_is_explained(mlp_checkpoint: Path) -> None:
    predictor = Predictor.from_checkpoint(mlp_checkpoint, device="cpu")
    with pytest.raises(
        DataError,
        match=r"expected preprocessed model input of shape \(1, 28, 28\)"
        r".*\(3, 32, 32\)",
    ):
        predictor.predict(torch.zeros(3, 32, 32))


def test_bad_inputs(mlp_checkpoint: Path, tmp_path: Path) -> None:
    predictor = Predictor.from_checkpoint(mlp_checkpoint, device="cpu")
    with pytest.raises(DataError, match=r"image file not found: .*missing\.png"):
        predictor.predict(tmp_path / "missing.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*broken\.jpg"):
        predictor.predict(tmp_path / "broken.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no image files .* found in folder .*empty"):
        predictor.predict(tmp_path / "empty")
    with pytest.raises(DataError, match="the input list or folder is empty"):
        predictor.predict([])
    with pytest.raises(ConfigurationError, match=r"top_k must be in 1\.\.10, got 11"):
        predictor.predict(np.zeros((28, 28), np.uint8), top_k=11)
    with pytest.raises(ConfigurationError, match="precision must be"):
        Predictor.from_checkpoint(mlp_checkpoint, device="cpu", precision="8")


def test_evaluate_gives_a_report(mlp_checkpoint: Path) -> None:
    predictor = Predictor.from_checkpoint(mlp_checkpoint, device="cpu")
    data = mnist_sample(normalize=(0.1307, 0.3081)).test.select(range(50))
    report = predictor.evaluate(data, top_k=(3,), batch_size=16)
    logits = predictor.predict_logits(torch.stack([data[i][0] for i in range(50)]))
    targets = torch.tensor([data[i][1] for i in range(50)])
    assert report.num_samples == 50
    assert report.accuracy == int((logits.argmax(1) == targets).sum()) / 50
    assert report.loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, targets)))
    assert report.classes == [str(i) for i in range(10)]
    assert sum(map(sum, report.confusion_matrix)) == 50
    top3 = int((logits.topk(3, dim=1).indices == targets[:, None]).any(1).sum())
    assert report.top_k_accuracy == {3: top3 / 50}


def test_checkpoint_without_registry_preprocess_uses_defaults(tmp_path: Path) -> None:
    model = create_model("mlp", in_features=3 * 8 * 8, hidden=[], num_classes=2)
    path = save_checkpoint(make_checkpoint(model, classes=["no", "yes"]), tmp_path / "m.ckpt")
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert predictor.preprocess == Preprocess()
    image = np.full((8, 8, 3), 255, dtype=np.uint8)
    assert torch.equal(predictor.to_input(image), torch.ones(3, 8, 8))
    assert predictor.predict(image).name in ("no", "yes")
