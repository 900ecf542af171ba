"""Image folders: deep images are scaled to 8 bits, and a link loop is one clear problem."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionkit import DataError
from visionkit.data import image_folder
from visionkit.predict import Preprocess

MakeFolder = Callable[..., Path]
RAMP = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every 8-bit value once


def _write_pair(folder: Path) -> tuple[Path, Path]:
    """The ramp as an 8-bit PNG and as its 16-bit copy (each value times 257)."""
    folder.mkdir(parents=True)
    Image.fromarray(RAMP).save(folder / "a_8bit.png")
    sixteen = Image.fromarray(RAMP.astype(np.uint16) * 257)
    assert sixteen.mode == "I;16"
    sixteen.save(folder / "b_16bit.png")
    return folder / "a_8bit.png", folder / "b_16bit.png"


def _symlink(link: Path, target: str) -> None:
    try:
        link.symlink_to(target, target_is_directory=True)
    except (OSError, NotImplementedError):  # pragma: no cover - e.g. Windows without rights
        pytest.skip("this system cannot create symbolic links")


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_16_bit_copy_of_an_8_bit_image_loads_to_the_same_tensor(tmp_path: Path, mode: str) -> None:
    _write_pair(tmp_path / "data" / "train" / "ramp")
    data = image_folder(tmp_path / "data", splits=("train", None, None), mode=mode)
    (eight, _), (sixteen, _) = data.train[0], data.train[1]
    assert torch.equal(sixteen, eight)
    expected = torch.from_numpy(RAMP).float().div(255).expand(len(mode), 16, 16)
    assert torch.equal(sixteen, expected)


def test_folder_and_predictor_decode_a_16_bit_file_alike(tmp_path: Path) -> None:
    _, path = _write_pair(tmp_path / "data" / "train" / "ramp")
    data = image_folder(tmp_path / "data", splits=("train", None, None), mode="L")
    spec = Preprocess(mode="L")
    assert torch.equal(data.train[1][0], spec(path))
    assert torch.equal(spec.to_uint8(path)[0], torch.from_numpy(RAMP))


def test_16_bit_values_round_to_the_nearest_8_bit_value(tmp_path: Path) -> None:
    values = np.array([[0, 128, 129, 32767, 32768, 65406, 65407, 65535]], dtype=np.uint16)
    folder = tmp_path / "data" / "train" / "deep"
    folder.mkdir(parents=True)
    Image.fromarray(values).save(folder / "deep.png")
    data = image_folder(tmp_path / "data", splits=("train", None, None), mode="L")
    pixels = (data.train[0][0] * 255).round().to(torch.uint8)
    assert pixels.flatten().tolist() == [0, 0, 1, 127, 128, 254, 255, 255]


def test_32_bit_image_out_of_the_16_bit_range_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "train" / "deep"
    folder.mkdir(parents=True)
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(folder / "deep.tif")
    data = image_folder(tmp_path / "data", splits=("train", None, None), mode="L")
    with pytest.raises(DataError) as caught:
        data.train[0]
    assert str(caught.value) == (
        f"image {folder / 'deep.tif'} is a 32-bit integer image (Pillow mode 'I') with values "
        "from 0 to 70000; expected 16-bit values 0..65535, which are scaled to 8 bits: scale "
        "it to 0..255 and convert it to 'L' yourself first"
    )


def test_link_looping_back_to_its_class_folder_is_one_problem(make_folder: MakeFolder) -> None:
    root = make_folder(classes=("a", "b"), splits=("train",))
    _symlink(root / "train" / "a" / "loop", ".")
    with pytest.raises(DataError) as caught:
        image_folder(root, splits=("train", None, None))
    link, target = root / "train" / "a" / "loop", root / "train" / "a"
    assert str(caught.value) == (
        f"1 problem in image folder {root}; nothing was loaded:\n"
        f"  - the symbolic link {link} leads back to the folder {target}, which contains it, "
        f"so the folder never ends: remove the link, or point it at a folder outside {target}"
    )


def test_loop_through_two_links_names_the_link_that_closes_it(make_folder: MakeFolder) -> None:
    root = make_folder(classes=("a",), splits=("train",))
    outside = root / "extra"
    outside.mkdir()
    Image.fromarray(RAMP).save(outside / "x.png")
    _symlink(root / "train" / "a" / "more", os.path.relpath(outside, root / "train" / "a"))
    _symlink(outside / "back", os.path.relpath(root / "train" / "a", outside))
    with pytest.raises(DataError) as caught:
        image_folder(root, splits=("train", None, None))
    link, target = root / "train" / "a" / "more" / "back", root / "train" / "a"
    assert str(caught.value).splitlines()[1:] == [
        f"  - the symbolic link {link} leads back to the folder {target}, which contains it, "
        f"so the folder never ends: remove the link, or point it at a folder outside {target}"
    ]


def test_link_to_a_folder_outside_is_followed(make_folder: MakeFolder) -> None:
    root = make_folder(classes=("a",), splits=("train",))
    outside = root / "extra"
    outside.mkdir()
    Image.fromarray(RAMP).save(outside / "x.png")
    _symlink(root / "train" / "a" / "more", str(outside))
    data = image_folder(root, splits=("train", None, None))
    folder = root / "train" / "a"
    assert data.train.paths == [folder / "0.png", folder / "1.png", folder / "more" / "x.png"]
