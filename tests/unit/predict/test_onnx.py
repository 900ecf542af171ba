"""ONNX export: parity with PyTorch in ONNX Runtime on real images, metadata, clear errors."""

from __future__ import annotations

import json
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from visionkit import CheckpointError, ConfigurationError, Predictor
from visionkit.data import mnist_sample, presets
from visionkit.models import create_model
from visionkit.predict import Preprocess, check_onnx_parity, export, load_exported

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

FLOWER_IDS = ["1", "10", "102", "54", "74"]  # sorted as strings, as class folders sort
DIGITS_PREPROCESS = Preprocess(mode="L", size=(28, 28), mean=(0.1307,), std=(0.3081,))


def _trained(model: nn.Module, steps: int = 30) -> nn.Module:
    """A few SGD steps on real digits, so that predictions are confident, not uniform."""
    data = mnist_sample()
    images = DIGITS_PREPROCESS.normalize(data.train.images[: steps * 32])
    labels = torch.as_tensor(data.train.targets[: steps * 32])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for start in range(0, len(images), 32):
        loss = nn.functional.cross_entropy(
            model(images[start : start + 32]), labels[start : start + 32]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _mnist_case(name: str, **kwargs: Any) -> Callable[[Path], tuple[Predictor, list[Any]]]:
    def make(flowers_dir: Path) -> tuple[Predictor, list[Any]]:
        torch.manual_seed(0)
        model = _trained(create_model(name, num_classes=10, **kwargs))
        predictor = Predictor(
            model, classes=[str(i) for i in range(10)], preprocess=DIGITS_PREPROCESS, device="cpu"
        )
        return predictor, list(mnist_sample().test.images[:24])  # real digits, raw uint8

    return make


def _flowers_case(
    name: str, size: int, **kwargs: Any
) -> Callable[[Path], tuple[Predictor, list[Any]]]:
    def make(flowers_dir: Path) -> tuple[Predictor, list[Any]]:
        names = json.loads((flowers_dir / "cat_to_name.json").read_text(encoding="utf-8"))
        torch.manual_seed(0)
        model = create_model(name, num_classes=5, **kwargs)  # random weights
        preprocess = Preprocess(
            resize=size * 8 // 7,
            center_crop=size,
            mean=presets.IMAGENET_MEAN,
            std=presets.IMAGENET_STD,
        )
        predictor = Predictor(
            model, classes=[names[i] for i in FLOWER_IDS], preprocess=preprocess, device="cpu"
        )
        return predictor, sorted((flowers_dir / "test").rglob("*.jpg"))  # 15 real photos

    return make


CASES = {
    "mlp": _mnist_case("mlp", in_features=784, hidden=[64]),
    "convnet": _mnist_case("convnet", in_channels=1),
    "resnet_deep": _flowers_case("resnet_deep", 32, n_channels=8, n_blocks=2),
    "resnet18": _flowers_case("resnet18", 224),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_onnx_runtime_gives_the_pytorch_probabilities_on_real_images(
    kind: str, tmp_path: Path, flowers_dir: Path
) -> None:
    predictor, images = CASES[kind](flowers_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the exporter's chatter never reaches the user
        path = predictor.export(tmp_path / f"{kind}.onnx")  # checked in ONNX Runtime too

    report = check_onnx_parity(predictor, path, images)
    print(f"{kind}: {report}")  # the measured difference, with pytest -s
    assert report.passed, str(report)
    assert report.num_images == len(images)
    assert report.max_abs_diff <= 1e-4
    assert report.top1_mismatches == ()
    deployed = Predictor.from_exported(path)  # names and preprocessing from the ONNX file
    assert [p.names for p in deployed.predict(images[:5], top_k=3)] == [
        p.names for p in predictor.predict(images[:5], top_k=3)
    ]


def test_the_onnx_file_describes_itself(tmp_path: Path, flowers_dir: Path) -> None:
    predictor, _ = CASES["mlp"](flowers_dir)
    path = export(predictor, tmp_path / "digits.onnx")
    model = onnx.load(str(path))
    props = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert props["visionkit.classes"] == [str(i) for i in range(10)]
    assert Preprocess.from_dict(props["visionkit.preprocess"]) == DIGITS_PREPROCESS
    assert props["visionkit.model"]["name"] == "mlp"
    assert {o.domain: o.version for o in model.opset_import}[""] == 18
    (batch, *rest) = model.graph.input[0].type.tensor_type.shape.dim
    assert batch.dim_param  # a dynamic batch size
    assert [d.dim_value for d in rest] == [1, 28, 28]

    module, metadata = load_exported(path)
    assert metadata["classes"] == props["visionkit.classes"]
    batch_input = torch.randn(7, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for size in (1, 7):
        with torch.no_grad():
            expected = predictor.model(batch_input[:size])
        assert torch.allclose(module(batch_input[:size]), expected, atol=1e-5)


def test_a_parity_check_against_another_model_fails(tmp_path: Path, flowers_dir: Path) -> None:
    predictor, images = CASES["mlp"](flowers_dir)
    path = predictor.export(tmp_path / "digits.onnx")
    other = Predictor(
        create_model("mlp", in_features=784, hidden=[64], num_classes=10),
        classes=list("abcdefghij"),
        preprocess=DIGITS_PREPROCESS,
        device="cpu",
    )
    report = check_onnx_parity(other, path, images)
    assert not report.passed
    assert not report.same_classes
    assert str(report).startswith("FAILED")


class _BranchOnValues(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # Python control flow on a tensor value
            return x * 2
        return x


class _Svd(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.linalg.svd(x.reshape(-1, 2, 2)).S.sum(1, keepdim=True)


@pytest.mark.parametrize(
    ("layer", "reason"),
    [
        (_BranchOnValues(), r"branches on the values of a tensor .* torch\.where"),
        (_Svd(), r"aten\._linalg_svd.*no ONNX implementation in opset 18"),
    ],
)
def test_a_layer_that_cannot_be_exported_is_named(
    layer: nn.Module, reason: str, tmp_path: Path
) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.Sequential(nn.ReLU(), layer))
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the model exported before")
    with pytest.raises(ConfigurationError) as caught:
        export(model.eval(), target, example_input=torch.rand(2, 1, 2, 2))
    message = str(caught.value)
    assert message.startswith("cannot export Sequential to ONNX: its layer '2.1' (")
    assert f"({type(layer).__name__}) cannot be exported" in message
    assert re.search(reason, message, flags=re.S), message
    assert target.read_bytes() == b"the model exported before"  # nothing half written


def test_a_model_that_fixes_its_batch_size_is_padded(tmp_path: Path) -> None:
    class FixedBatch(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(2, 4)

    model = nn.Sequential(nn.Linear(4, 4), FixedBatch(), nn.Linear(4, 3)).eval()
    with pytest.warns(UserWarning, match="batches of exactly 2"):
        path = export(model, tmp_path / "fixed.onnx", example_input=torch.rand(2, 4))
    module, _ = load_exported(path)
    inputs = torch.rand(5, 4)
    with torch.no_grad():
        expected = torch.cat([model(inputs[:2]), model(inputs[2:4]), model(inputs[3:5])[1:]])
    assert torch.allclose(module(inputs), expected, atol=1e-5)


def test_the_format_follows_the_suffix(mlp_checkpoint: Path, tmp_path: Path) -> None:
    path = export(mlp_checkpoint, tmp_path / "model.onnx")
    assert onnx.load(str(path)).graph.input[0].name == "input"
    with pytest.raises(ConfigurationError, match=r"format must be .* got 'tflite'"):
        export(mlp_checkpoint, tmp_path / "m.onnx", format="tflite")  # type: ignore[arg-type]


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x00not a model")
    with pytest.raises(CheckpointError, match=r"cannot read .*model\.onnx as an ONNX model"):
        load_exported(path)
    with pytest.raises(CheckpointError, match="exported model not found"):
        load_exported(tmp_path / "missing.onnx")


@pytest.mark.parametrize("missing", ["onnx", "onnxscript", "onnxruntime"])
def test_without_the_onnx_extra_the_error_names_it(
    missing: str, mlp_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    with pytest.raises(ConfigurationError, match=r'pip install "visionkit-torch\[onnx\]"'):
        export(mlp_checkpoint, tmp_path / "model.onnx")
