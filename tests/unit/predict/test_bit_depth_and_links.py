"""The Predictor: deep images are scaled to 8 bits, and a folder's link loop is one error."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionkit import DataError, Prediction, Predictor
from visionkit.predict import Preprocess

DIGIT = (np.arange(28 * 28) * 7 % 256).astype(np.uint8).reshape(28, 28)
RAMP = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every 8-bit value once


def _write_pair(folder: Path, pixels: np.ndarray) -> tuple[Path, Path]:
    """``pixels`` as an 8-bit PNG and as its 16-bit copy (each value times 257)."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(folder / "8bit.png")
    Image.fromarray(pixels.astype(np.uint16) * 257).save(folder / "16bit.png")
    return folder / "8bit.png", folder / "16bit.png"


def _symlink(link: Path, target: str) -> None:
    try:
        link.symlink_to(target, target_is_directory=True)
    except (OSError, NotImplementedError):  # pragma: no cover - e.g. Windows without rights
        pytest.skip("this system cannot create symbolic links")


def test_16_bit_copy_predicts_exactly_as_the_8_bit_image(
    tmp_path: Path, mlp_checkpoint: Path
) -> None:
    eight, sixteen = _write_pair(tmp_path / "images", DIGIT)
    predictor = Predictor.from_checkpoint(mlp_checkpoint, device="cpu")
    assert torch.equal(predictor.preprocess(sixteen), predictor.preprocess(eight))
    first, second = predictor.predict([eight, sixteen], top_k=10)
    assert isinstance(first, Prediction)
    assert isinstance(second, Prediction)
    assert (second.indices, second.probabilities) == (first.indices, first.probabilities)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_16_bit_image_is_scaled_before_resize_and_crop(tmp_path: Path, mode: str) -> None:
    eight, sixteen = _write_pair(tmp_path / "images", RAMP)
    spec = Preprocess(mode=mode, resize=12, center_crop=10)
    assert torch.equal(spec.to_uint8(sixteen), spec.to_uint8(eight))
    with Image.open(sixteen) as image:
        assert torch.equal(spec.to_uint8(image), spec.to_uint8(eight))


def test_32_bit_integer_image_within_16_bits_is_scaled_as_16_bits() -> None:
    image = Image.fromarray(RAMP.astype(np.int32) * 257)
    assert image.mode == "I"
    assert torch.equal(Preprocess(mode="L").to_uint8(image)[0], torch.from_numpy(RAMP))


def test_float_image_in_0_1_is_scaled_to_0_255() -> None:
    image = Image.fromarray(RAMP.astype(np.float32) / 255)
    assert image.mode == "F"
    assert torch.equal(Preprocess(mode="L").to_uint8(image)[0], torch.from_numpy(RAMP))


@pytest.mark.parametrize(
    ("values", "found"),
    [([[0.0, 2.5]], "values from 0 to 2.5"), ([[0.0, np.nan]], "NaN or infinite values")],
)
def test_float_image_outside_0_1_is_refused(values: list[list[float]], found: str) -> None:
    image = Image.fromarray(np.array(values, dtype=np.float32))
    with pytest.raises(DataError) as caught:
        Preprocess(mode="L").to_uint8(image)
    assert str(caught.value) == (
        f"the image is a floating-point image (Pillow mode 'F') with {found}; expected "
        "values in [0, 1], which are scaled to 0..255: scale it to [0, 1] first, or convert "
        "it to an 8-bit 'L' image yourself"
    )


def test_negative_32_bit_image_is_refused() -> None:
    image = Image.fromarray(np.array([[-1, 300]], dtype=np.int32))
    with pytest.raises(DataError) as caught:
        Preprocess(mode="RGB").to_uint8(image)
    assert str(caught.value) == (
        "the image is a 32-bit integer image (Pillow mode 'I') with values from -1 to 300; "
        "expected 16-bit values 0..65535, which are scaled to 8 bits: scale it to 0..255 and "
        "convert it to 'L' yourself first"
    )


def test_folder_with_a_link_loop_is_one_clear_error(tmp_path: Path, mlp_checkpoint: Path) -> None:
    folder = tmp_path / "images"
    _write_pair(folder / "digits", DIGIT)
    _symlink(folder / "digits" / "loop", "..")
    predictor = Predictor.from_checkpoint(mlp_checkpoint, device="cpu")
    with pytest.raises(DataError) as caught:
        predictor.predict(folder)
    link = folder / "digits" / "loop"
    assert str(caught.value) == (
        f"the symbolic link {link} leads back to the folder {folder}, which contains it, so "
        f"the folder never ends: remove the link, or point it at a folder outside {folder}"
    )


def test_folder_follows_links_to_folders_outside(tmp_path: Path, mlp_checkpoint: Path) -> None:
    folder, outside = tmp_path / "images", tmp_path / "more"
    _write_pair(folder, DIGIT)
    _write_pair(outside, DIGIT)
    _symlink(folder / "linked", os.path.relpath(outside, folder))
    predictor = Predictor.from_checkpoint(mlp_checkpoint, device="cpu")
    predictions = predictor.predict(folder)
    assert isinstance(predictions, list)
    assert [p.source for p in predictions] == [
        str(folder / name)
        for name in ("16bit.png", "8bit.png", "linked/16bit.png", "linked/8bit.png")
    ]
