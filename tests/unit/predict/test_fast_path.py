"""The Predictor's batched fast path and its test-time augmentation.

Runs of raw images that need no resizing are stacked as they are; the probabilities must be
those of converting each image alone. With ``tta=True`` the probabilities are the mean of
the model's softmax on the image and on its mirror image, computed here by hand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from visionkit import ConfigurationError, DataError, Prediction, Predictor
from visionkit.data import TensorImageDataset
from visionkit.models import create_model
from visionkit.predict import Preprocess, _inputs

HEIGHT, WIDTH = 6, 5  # not square: a height/width mix-up changes the pixels


@pytest.fixture
def rgb_predictor() -> Predictor:
    """A 4-class MLP on RGB 6x5 images, normalized with per-channel statistics."""
    torch.manual_seed(0)
    model = create_model("mlp", in_features=3 * HEIGHT * WIDTH, hidden=[8], num_classes=4)
    spec = Preprocess(size=(HEIGHT, WIDTH), mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    return Predictor(model, classes=["a", "b", "c", "d"], preprocess=spec, device="cpu")


def _arrays(count: int, seed: int, size: tuple[int, int] = (HEIGHT, WIDTH)) -> list[np.ndarray]:
    generator = np.random.default_rng(seed)
    return [generator.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


def _mixed(kind: str) -> list[Any]:
    """Nine images of one kind, two of them of another size (resized one by one)."""
    arrays = _arrays(7, seed=1)
    arrays[3:3] = _arrays(1, seed=2, size=(9, 7))
    arrays.append(_arrays(1, seed=3, size=(4, 8))[0])
    if kind == "pil":
        return [Image.fromarray(a) for a in arrays]
    if kind == "tensor":
        return [torch.from_numpy(a).permute(2, 0, 1) for a in arrays]
    return arrays


def _count_conversions(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every input converted one by one (the slow path)."""
    converted: list[Any] = []
    convert = _inputs.convert

    def counting(item: Any, spec: Preprocess) -> tuple[torch.Tensor, bool]:
        converted.append(item)
        return convert(item, spec)

    monkeypatch.setattr(_inputs, "convert", counting)
    return converted


@pytest.mark.parametrize("kind", ["numpy", "pil", "tensor"])
def test_fast_path_gives_the_probabilities_of_each_image_converted_alone(
    rgb_predictor: Predictor, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = _mixed(kind)
    converted = _count_conversions(monkeypatch)
    for inputs in (images, [image for i, image in enumerate(images) if i not in (3, 8)]):
        alone = torch.stack([rgb_predictor.to_input(image) for image in inputs])
        expected = rgb_predictor.predict_proba(alone, batch_size=4)
        converted.clear()
        assert torch.equal(rgb_predictor.predict_proba(inputs, batch_size=4), expected)
        if len(inputs) == 9:
            # a first batch of 6x5, 6x5, 6x5, 9x7 images is converted one by one; the next
            # four, all 6x5, are stacked as they are; the last image (4x8) is resized
            assert [id(item) for item in converted] == [id(images[i]) for i in (0, 1, 2, 3, 8)]
        else:
            assert converted == []  # seven 6x5 images: batches of 4 and 3, one stack each


def test_fast_path_stacks_grey_arrays_of_both_layouts(
    digit_images: list[np.ndarray], small_mlp: Callable[..., torch.nn.Module]
) -> None:
    spec = Preprocess(mode="L", size=(28, 28), mean=(0.1307,), std=(0.3081,))
    predictor = Predictor(small_mlp(), preprocess=spec, device="cpu")
    images: list[Any] = [a if i % 2 else a[..., None] for i, a in enumerate(digit_images)]
    alone = torch.stack([predictor.to_input(a) for a in digit_images])
    assert torch.equal(predictor.predict_proba(images), predictor.predict_proba(alone))
    tensors = torch.from_numpy(np.stack(digit_images))[:, None]  # 8 x 1 x 28 x 28 uint8
    first = next(_inputs.batches(images[1::2], spec, batch_size=64))
    assert first[1] is True
    assert torch.equal(first[0], tensors[1::2])


def test_model_inputs_are_stacked_as_they_are_with_any_preprocessing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = Preprocess(resize=7, center_crop=HEIGHT, mean=(0.4, 0.5, 0.6), std=(0.2, 0.2, 0.2))
    predictor = Predictor(torch.nn.Flatten(), preprocess=spec, device="cpu")  # logits = pixels
    inputs = [predictor.to_input(a) for a in _arrays(6, seed=7, size=(9, 11))]
    assert inputs[0].shape == (3, HEIGHT, HEIGHT)
    converted = _count_conversions(monkeypatch)
    got = predictor.predict_logits(inputs, batch_size=4)
    assert converted == []
    assert torch.equal(got, predictor.predict_logits(torch.stack(inputs), batch_size=4))


def test_fast_path_keeps_the_errors_of_single_inputs(rgb_predictor: Predictor) -> None:
    arrays = _arrays(5, seed=0)
    arrays[2] = arrays[2].astype(bool)  # a bool image among uint8 ones
    with pytest.raises(DataError, match=r"raw image arrays must be uint8 .* got dtype bool"):
        rgb_predictor.predict(arrays)
    inputs = [rgb_predictor.to_input(a) for a in _arrays(5, seed=0)]
    inputs[3][0, 0, 0] = float("nan")
    with pytest.raises(
        DataError, match=r"model input of shape \(3, 6, 5\) holds NaN or infinite values"
    ):
        rgb_predictor.predict(inputs)


@pytest.mark.parametrize("top_k", [1, 3])
def test_predictions_are_ordinary_frozen_predictions(rgb_predictor: Predictor, top_k: int) -> None:
    images = _arrays(3, seed=4)
    results = rgb_predictor.predict(images, top_k=top_k)
    probabilities = rgb_predictor.predict_proba(images)
    for result, row in zip(results, probabilities, strict=True):
        values, indices = row.sort(descending=True, stable=True)
        expected = Prediction(
            index=int(indices[0]),
            name="abcd"[int(indices[0])],
            probability=float(values[0]),
            indices=tuple(indices[:top_k].tolist()),
            names=tuple("abcd"[i] for i in indices[:top_k].tolist()),
            probabilities=tuple(values[:top_k].tolist()),
        )
        assert result == expected
        assert hash(result) == hash(expected)
        assert repr(result) == repr(expected)
        assert dataclasses.replace(result, source="x.png").source == "x.png"
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.name = "changed"  # type: ignore[misc]


def test_tta_averages_the_softmax_of_each_image_and_its_mirror(rgb_predictor: Predictor) -> None:
    images = _arrays(6, seed=5)
    x = torch.stack([rgb_predictor.to_input(image) for image in images])
    with torch.no_grad():
        plain = rgb_predictor.model(x).softmax(dim=1)
        mirrored = rgb_predictor.model(x.flip(dims=(-1,))).softmax(dim=1)
    expected = (plain + mirrored) / 2

    got = rgb_predictor.predict_proba(images, tta=True, batch_size=4)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert (got - plain).abs().max() > 1e-3  # the mirror images change the probabilities
    torch.testing.assert_close(rgb_predictor.predict_proba(images), plain, rtol=1e-6, atol=1e-7)

    results = rgb_predictor.predict(images, top_k=2, tta=True)
    top = expected.topk(2, dim=1)
    assert [r.indices for r in results] == [tuple(i) for i in top.indices.tolist()]
    for result, values in zip(results, top.values.tolist(), strict=True):
        assert result.probabilities == pytest.approx(values, rel=1e-6)


def test_evaluate_with_tta_scores_the_averaged_probabilities(rgb_predictor: Predictor) -> None:
    images = torch.from_numpy(np.stack(_arrays(10, seed=6))).permute(0, 3, 1, 2)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    data = TensorImageDataset(images, labels, ["a", "b", "c", "d"])
    x = torch.stack([data[i][0] for i in range(10)])  # the data set's model input
    with torch.no_grad():
        model = rgb_predictor.model
        expected = (model(x).softmax(1) + model(x.flip(dims=(-1,))).softmax(1)) / 2
    report = rgb_predictor.evaluate(data, top_k=(2,), batch_size=4, tta=True)
    loss = float(torch.nn.functional.nll_loss(expected.log(), labels))
    assert report.loss == pytest.approx(loss, rel=1e-5)
    assert report.accuracy == int((expected.argmax(1) == labels).sum()) / 10
    top2 = int((expected.topk(2, dim=1).indices == labels[:, None]).any(1).sum())
    assert report.top_k_accuracy == {2: top2 / 10}


def test_tta_must_be_a_bool(rgb_predictor: Predictor) -> None:
    with pytest.raises(ConfigurationError, match=r"tta must be True or False, got 'yes' \(str\)"):
        rgb_predictor.predict(_arrays(1, seed=0)[0], tta="yes")  # type: ignore[call-overload]
