"""Transform presets and the Preprocess description derived from evaluation transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import v2

from visionkit import ConfigurationError
from visionkit.data import TensorImageDataset, preprocess_from_transform, presets
from visionkit.predict import Preprocess


def _digit() -> np.ndarray:
    return (np.arange(28 * 28).reshape(28, 28) * 7 % 256).astype(np.uint8)


def test_to_float_tensor_equals_to_tensor_bit_for_bit() -> None:
    array = np.arange(256, dtype=np.uint8).reshape(8, 32)[..., None].repeat(3, axis=2)
    image = Image.fromarray(array)
    assert torch.equal(presets.ToFloatTensor()(image), transforms.ToTensor()(image))
    assert torch.equal(presets.ToFloatTensor()(array), transforms.ToTensor()(array))


def test_mnist_eval_equals_the_in_memory_normalization() -> None:
    digit = _digit()
    dataset = TensorImageDataset(
        torch.from_numpy(digit)[None, None],
        torch.tensor([0]),
        ["0"],
        mean=presets.MNIST_MEAN,
        std=presets.MNIST_STD,
    )
    assert torch.equal(presets.mnist_eval()(Image.fromarray(digit)), dataset[0][0])


def test_cifar_eval_equals_to_tensor_and_normalize() -> None:
    array = (np.arange(32 * 32 * 3).reshape(32, 32, 3) % 251).astype(np.uint8)
    seed_003 = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize(presets.CIFAR10_MEAN, presets.CIFAR10_STD)]
    )
    image = Image.fromarray(array)
    assert torch.equal(presets.cifar_eval()(image), seed_003(image))


def test_train_presets_shapes_and_seeded_randomness() -> None:
    photo = Image.fromarray((np.arange(300 * 400 * 3).reshape(300, 400, 3) % 256).astype(np.uint8))
    torch.manual_seed(0)
    first = presets.imagenet_train()(photo)
    torch.manual_seed(0)
    again = presets.imagenet_train()(photo)
    assert first.shape == (3, 224, 224)
    assert torch.equal(first, again)
    assert presets.cifar_train()(Image.new("RGB", (32, 32))).shape == (3, 32, 32)
    assert presets.mnist_train()(Image.fromarray(_digit())).shape == (1, 28, 28)


def test_imagenet_train_is_seed_000s_recipe() -> None:
    steps = presets.imagenet_train().transforms
    assert [type(s).__name__ for s in steps] == [
        "RandomRotation",
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "ToFloatTensor",
        "Normalize",
    ]
    assert steps[0].degrees == [-30.0, 30.0]
    assert steps[1].size == (224, 224)


def test_batch_augment_presets() -> None:
    assert repr(presets.cifar_batch_augment()) == "BatchAugment(crop_padding=4, flip=True)"
    assert repr(presets.mnist_batch_augment()) == "BatchAugment(crop_padding=2, flip=False)"


@pytest.mark.parametrize(
    ("transform", "mode", "expected"),
    [
        (None, "RGB", Preprocess(mode="RGB")),
        (presets.mnist_eval(), "L", Preprocess(mode="L", mean=(0.1307,), std=(0.3081,))),
        (
            presets.imagenet_eval(200, resize=230, mean=None, std=None),
            "RGB",
            Preprocess(resize=230, center_crop=200),
        ),
        (v2.Compose([v2.Resize((32, 48)), v2.ToImage()]), "RGB", Preprocess(size=(32, 48))),
        (
            transforms.Compose([transforms.Grayscale(1), transforms.ToTensor()]),
            "RGB",
            Preprocess(mode="L"),
        ),
        (v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]), "RGB", Preprocess()),
    ],
)
def test_preprocess_from_transform(transform: object, mode: str, expected: Preprocess) -> None:
    assert preprocess_from_transform(transform, mode=mode) == expected


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        (presets.cifar_train(), "RandomCrop.*is random"),
        (v2.Lambda(lambda x: x), "Lambda.*has no checkpoint description"),
        (v2.CenterCrop((10, 20)), "is not square"),
        (v2.ToDtype(torch.float32), r"does not scale pixels to \[0, 1\]"),
        (v2.Resize(10, interpolation=v2.InterpolationMode.NEAREST), "not antialiased bilinear"),
        (v2.Compose([v2.CenterCrop(10), v2.Resize(20)]), "follows a resize or crop"),
    ],
)
def test_transforms_a_checkpoint_cannot_describe(transform: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        preprocess_from_transform(transform)


def test_real_flower_through_the_eval_preset(flowers_dir: Path) -> None:
    path = flowers_dir / "test" / "54" / "image_05402.jpg"
    image = presets.imagenet_eval()(Image.open(path).convert("RGB"))
    assert image.shape == (3, 224, 224)
    assert image.dtype == torch.float32
