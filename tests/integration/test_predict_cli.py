"""``visionkit predict``: folders in batches, bad files reported and skipped, CSV or JSON rows."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from visionkit import Predictor
from visionkit.__main__ import EXIT_ERROR, EXIT_OK, EXIT_SKIPPED, main
from visionkit.models import create_model
from visionkit.predict import Preprocess, make_checkpoint, save_checkpoint

FLOWER_IDS = ["1", "10", "102", "54", "74"]
HEADER = ["path", "name_1", "prob_1", "name_2", "prob_2", "name_3", "prob_3"]


@pytest.fixture
def photos(tmp_path: Path, flowers_dir: Path) -> Path:
    """photos/ with 3 real photos, photos/sub/ with 3 more and a corrupt .jpg, and a note."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for source, target in (("1", folder), ("54", folder / "sub")):
        for image in sorted((flowers_dir / "test" / source).glob("*.jpg")):
            shutil.copy(image, target / image.name)
    (folder / "sub" / "broken.jpg").write_bytes(b"this is not a JPEG file")
    (folder / "notes.txt").write_text("not an image, and not an image suffix either")
    return folder


@pytest.fixture
def checkpoint(tmp_path: Path, flowers_dir: Path) -> Path:
    names = json.loads((flowers_dir / "cat_to_name.json").read_text(encoding="utf-8"))
    torch.manual_seed(0)
    model = create_model("mlp", in_features=3 * 16 * 16, hidden=[8], num_classes=5)
    preprocess = Preprocess(
        resize=18, center_crop=16, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )
    classes = [names[i] for i in FLOWER_IDS]
    return save_checkpoint(
        make_checkpoint(model, classes=classes, preprocess=preprocess), tmp_path / "flowers.ckpt"
    )


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.reader(stream))


def test_predict_a_folder_end_to_end(photos: Path, checkpoint: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "visionkit", "predict", str(checkpoint), "photos"]
    command += ["--top-k", "3", "--batch-size", "4", "--workers", "3", "-o", "predictions.csv"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)

    assert result.returncode == EXIT_SKIPPED == 3, result.stderr
    assert result.stdout == ""
    broken = Path("photos", "sub", "broken.jpg")
    assert f"skipped {broken}: cannot read image {broken}: it is not an image Pillow" in (
        result.stderr
    )
    assert "predicted 6 images" in result.stderr
    header, *rows = _rows(tmp_path / "predictions.csv")
    assert header == HEADER
    expected_paths = sorted(
        str(p.relative_to(tmp_path)) for p in photos.rglob("*.jpg") if p.name != "broken.jpg"
    )
    assert [row[0] for row in rows] == expected_paths
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    assert predictor.classes is not None
    for row in rows:
        names, probabilities = row[1::2], [float(p) for p in row[2::2]]
        assert len(set(names)) == 3
        assert set(names) <= set(predictor.classes)
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) <= 1 + 1e-6
        prediction = predictor.predict(tmp_path / row[0], top_k=3)
        assert names == list(prediction.names)
        assert probabilities == [round(p, 6) for p in prediction.probabilities]


def test_an_existing_output_is_replaced_only_when_asked(
    photos: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = photos.parent / "predictions.csv"
    output.write_text("my own notes\n")
    arguments = ["predict", str(checkpoint), str(photos), "--output", str(output)]
    assert main(arguments) == EXIT_ERROR
    assert "already exists: pass --overwrite" in capsys.readouterr().err
    assert output.read_text() == "my own notes\n"
    assert main([*arguments, "--overwrite", "--quiet"]) == EXIT_SKIPPED
    assert _rows(output)[0] == ["path", "name_1", "prob_1"]
    assert len(_rows(output)) == 1 + 6


def test_the_onnx_model_gives_the_same_rows(photos: Path, checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = Predictor.from_checkpoint(checkpoint, device="cpu").export(tmp_path / "model.onnx")
    common = [str(photos), "--top-k", "3", "-q"]
    torch_run = [
        "predict",
        str(checkpoint),
        *common,
        "--workers",
        "1",
        "-o",
        str(tmp_path / "a.csv"),
    ]
    assert main(torch_run) == 3
    onnx_run = [
        "predict",
        "--model",
        str(model),
        *common,
        "--workers",
        "4",
        "-o",
        str(tmp_path / "b.csv"),
    ]
    assert main(onnx_run) == 3
    torch_rows, onnx_rows = _rows(tmp_path / "a.csv"), _rows(tmp_path / "b.csv")
    assert len(onnx_rows) == len(torch_rows) == 7
    for ours, theirs in zip(torch_rows[1:], onnx_rows[1:], strict=True):
        assert (ours[0], ours[1::2]) == (theirs[0], theirs[1::2])  # path and class names
        differences = [
            abs(float(a) - float(b)) for a, b in zip(ours[2::2], theirs[2::2], strict=True)
        ]
        assert max(differences) <= 2e-6  # rounded to 6 decimals from within 1e-6


def test_json_lines_on_stdout_and_status_0_when_every_image_is_read(
    photos: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = sorted(str(p) for p in photos.glob("*.jpg"))
    assert main(["predict", str(checkpoint), *images, "--format", "jsonl", "-q"]) == EXIT_OK
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [row["path"] for row in rows] == images
    assert all(len(row["names"]) == len(row["probabilities"]) == 1 for row in rows)
    assert captured.err == ""


def test_missing_paths_are_skipped_and_a_mismatched_checkpoint_refused(
    photos: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = str(next(photos.glob("*.jpg")))
    assert main(["predict", str(checkpoint), image, "missing.png", "-q"]) == EXIT_SKIPPED
    assert "skipped missing.png: no such file or folder" in capsys.readouterr().err

    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    other = Predictor(
        create_model("mlp", in_features=3 * 16 * 16, hidden=[8], num_classes=5),
        classes=list("abcde"),
        preprocess=Preprocess(resize=18, center_crop=16),
        device="cpu",
    ).export(tmp_path / "other.onnx")
    assert main(["predict", "--model", str(other), str(checkpoint), image]) == EXIT_ERROR
    assert "names its classes ['a', 'b', 'c', 'd', 'e']" in capsys.readouterr().err


def test_tta_rows_are_the_flip_averaged_predictions(
    photos: Path, checkpoint: Path, tmp_path: Path
) -> None:
    good = sorted(p for p in photos.rglob("*.jpg") if p.name != "broken.jpg")[:3]
    argv = ["predict", str(checkpoint), *map(str, good), "--top-k", "2", "-q", "--device", "cpu"]
    assert main([*argv, "--tta", "-o", "tta.csv"]) == EXIT_OK
    assert main([*argv, "-o", "plain.csv"]) == EXIT_OK
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    tta_rows, plain_rows = _rows(tmp_path / "tta.csv")[1:], _rows(tmp_path / "plain.csv")[1:]
    assert len(tta_rows) == len(plain_rows) == len(good)
    for path, tta_row in zip(good, tta_rows, strict=True):
        flipped = predictor.predict(path, top_k=2, tta=True)
        assert tta_row[1::2] == list(flipped.names)
        assert [float(p) for p in tta_row[2::2]] == [round(p, 6) for p in flipped.probabilities]
    assert tta_rows != plain_rows  # the mirror images change the probabilities
