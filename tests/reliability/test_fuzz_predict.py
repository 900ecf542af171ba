"""Fuzzing prediction and models: ``Predictor`` inputs and ``create_model`` arguments.

A prediction either comes back right (one result per input, probabilities that sum to 1,
valid class names, the same answer twice) or the call raises a
:class:`~visionkit.VisionKitError` saying what was wrong with the input. Models built from
random arguments either refuse them clearly or give outputs of shape
``(N, num_classes)``. Each checked example is counted as ``fuzz_cases.<target>``.

The tests at the end pin bugs the fuzzing found in ``Preprocess`` and the image readers
behind it (zero-size and non-image arrays, unconvertible modes, bad fields); they were
``xfail`` until those were fixed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fuzzing import Count, arguments, as_int, checked, expect_clean
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from visionkit import ConfigurationError, DataError, Prediction, Predictor
from visionkit.models import create_model, list_models, model_spec
from visionkit.predict import Preprocess, load_checkpoint, make_checkpoint, save_checkpoint

CLASSES = ["ant", "bee", "cat", "dog", "eel"]
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I", "F", "CMYK"]
DTYPES = [
    np.uint8,
    np.uint8,
    np.uint8,
    np.float32,
    np.float64,
    np.float16,
    np.int32,
    np.int64,
    np.bool_,
    np.complex64,
]
HOSTILE = [None, "1", b"x", [], {}, object(), 1 + 1j, True, False, 1.5, float("nan")]


# --------------------------------------------------------------------------- predictors
@pytest.fixture(scope="module")
def predictors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Predictor]:
    """A grey 8x8 predictor rebuilt from a checkpoint file, and an RGB resize-and-crop one."""
    torch.manual_seed(0)
    grey = create_model("mlp", in_features=64, hidden=[8], num_classes=len(CLASSES))
    spec = Preprocess(mode="L", size=(8, 8), mean=(0.5,), std=(0.25,))
    path = tmp_path_factory.mktemp("predict") / "grey.ckpt"
    save_checkpoint(make_checkpoint(grey, classes=CLASSES, preprocess=spec), path)
    rgb = create_model(
        "convnet",
        in_channels=3,
        input_size=6,
        channels=[4],
        padding=1,
        hidden=[],
        num_classes=len(CLASSES),
        dropout2d=0.0,
        dropout=0.0,
    )
    return {
        "grey": Predictor.from_checkpoint(path, device="cpu"),
        "rgb": Predictor(
            rgb,
            classes=CLASSES,
            preprocess=Preprocess(resize=7, center_crop=6, mean=(0.4,) * 3, std=(0.2,) * 3),
            device="cpu",
        ),
    }


@st.composite
def valid_images(draw: st.DrawFn, which: str) -> Any:
    """A raw image or model input the ``which`` predictor must accept."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    side = st.integers(1, 300) if draw(st.integers(0, 4)) == 0 else st.integers(1, 24)
    height, width = draw(side), draw(side)
    kind = draw(st.sampled_from(["pil", "array", "tensor", "model input"]))
    if kind == "pil":
        rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        return rgb.convert(draw(st.sampled_from(MODES)))
    if kind == "model input":
        shape = (1, 8, 8) if which == "grey" else (3, 6, 6)
        batch = draw(st.sampled_from([(), (1,), (3,)]))
        return torch.from_numpy(rng.standard_normal(batch + shape).astype(np.float32))
    channels = draw(st.sampled_from([(), (1,), (3,), (4,)]))
    array = rng.integers(0, 256, (height, width, *channels), dtype=np.uint8)
    if kind == "array":
        return array
    tensor = torch.from_numpy(array)
    return tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor


@st.composite
def images(draw: st.DrawFn) -> Any:
    """One thing passed as an image: often a real one, often not."""
    kind = draw(st.sampled_from(["pil", "pil", "array", "array", "tensor", "model input", "other"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    side = st.integers(1, 300) if draw(st.integers(0, 4)) == 0 else st.integers(1, 24)
    height, width = draw(side), draw(side)
    if kind == "pil":
        rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        return rgb.convert(draw(st.sampled_from(MODES)))
    if kind == "model input":  # float C x H x W as the data sets give it: maybe NaN
        shape = draw(st.sampled_from([(1, 8, 8), (3, 6, 6), (2, 1, 8, 8), (1, 8, 7)]))
        tensor = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        if draw(st.integers(0, 3)) == 0:
            tensor.view(-1)[0] = draw(st.sampled_from([math.nan, math.inf]))
        return tensor
    if kind == "other":
        return draw(st.sampled_from([*HOSTILE, "no-such-file.png", 7, [np.zeros((2, 2))]]))
    shape = tuple(draw(st.lists(st.integers(0, 6), max_size=5)))
    if draw(st.booleans()):  # an image-like shape
        shape = (height, width, *draw(st.sampled_from([(), (1,), (3,), (4,), (2,)])))
    dtype = draw(st.sampled_from(DTYPES))
    array = np.array(rng.random(shape) * 255).astype(dtype)
    if kind == "array":
        return array
    tensor = torch.from_numpy(array.copy())
    return tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor


def _raw_ok(image: Any) -> bool:
    """Whether ``image`` is a raw image the readers accept (a documented input kind)."""
    if isinstance(image, Image.Image):
        if image.mode == "F":  # floating-point pixels must be in [0, 1], which maps to 0..255
            low, high = image.getextrema()
            return min(image.size) >= 1 and float(low) >= 0.0 and float(high) <= 1.0
        return min(image.size) >= 1
    if isinstance(image, np.ndarray):
        array = image
    elif isinstance(image, torch.Tensor):
        array = image.numpy()
        if array.ndim == 3:
            array = array.transpose(1, 2, 0)
    else:
        return False
    if array.dtype != np.uint8 or array.size == 0 or array.ndim not in (2, 3):
        return False
    return array.ndim == 2 or array.shape[2] in (1, 3, 4)


def _expected_count(image: Any, predictor: Predictor) -> int | None:
    """How many predictions ``image`` stands for, or ``None`` if it must be refused.

    A 4-d array or tensor is a batch (of ``H x W x C`` arrays or ``C x H x W`` tensors);
    a float array or tensor is model input, which must have the checkpoint's input shape.
    """
    if isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim == 4:
        if len(image) == 0:
            return None
        counts = [_expected_count(item, predictor) for item in image]
        return None if None in counts else len(counts)
    is_float = (isinstance(image, np.ndarray) and image.dtype.kind == "f") or (
        isinstance(image, torch.Tensor) and image.is_floating_point()
    )
    if is_float:
        tensor = torch.as_tensor(image)
        if tensor.ndim != 3 or tuple(tensor.shape) != predictor.preprocess.input_shape:
            return None
        return 1 if bool(torch.isfinite(tensor).all()) else None
    return 1 if _raw_ok(image) else None


def _check_predictions(
    predictor: Predictor, inputs: Any, results: list[Prediction], top_k: int
) -> None:
    probabilities = predictor.predict_proba(inputs)
    assert probabilities.shape == (len(results), len(CLASSES))
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(len(results)), atol=1e-5)
    for row, result in zip(probabilities, results, strict=True):
        assert len(result.names) == len(result.indices) == len(result.probabilities) == top_k
        assert result.name == CLASSES[result.index] == result.names[0]
        assert all(name == CLASSES[i] for name, i in zip(result.names, result.indices, strict=True))
        assert list(result.probabilities) == sorted(result.probabilities, reverse=True)
        assert abs(result.probability - float(row.max())) < 1e-6
        assert all(0.0 <= p <= 1.0 for p in result.probabilities)
    if top_k == len(CLASSES):
        assert all(abs(sum(r.probabilities) - 1) < 1e-5 for r in results)


@given(
    which=st.sampled_from(["grey", "rgb"]),
    data=st.data(),
    single=st.booleans(),
    top_k=st.sampled_from([1, 2, 5, 1, 3, np.int64(2), 0, -1, 6, 1.0, True, "2", None]),
    batch_size=st.sampled_from([1, 2, 3, 64, 0, 2.5, None]),
)
def test_predictor_inputs(
    which: str,
    data: st.DataObject,
    single: bool,
    top_k: Any,
    batch_size: Any,
    predictors: dict[str, Predictor],
    count: Count,
) -> None:
    predictor = predictors[which]
    batch = data.draw(
        st.lists(valid_images(which), min_size=1, max_size=5) | st.lists(images(), max_size=5),
        label="batch",
    )
    inputs: Any = batch[0] if single and batch else batch
    ok, result = expect_clean(lambda: predictor.predict(inputs, top_k=top_k, batch_size=batch_size))
    counts = [
        _expected_count(item, predictor) for item in (batch[:1] if single and batch else batch)
    ]
    k, size = as_int(top_k), as_int(batch_size)
    valid = (
        k is not None
        and 1 <= k <= len(CLASSES)
        and size is not None
        and size >= 1
        and bool(counts)
        and None not in counts
        and sum(counts) > 0  # type: ignore[arg-type]
    )
    assert ok == valid, f"predict({inputs!r:.200}, top_k={top_k!r}): {result!r}"
    if ok:
        results = result if isinstance(result, list) else [result]
        expected_len = sum(counts)  # type: ignore[arg-type]
        assert len(results) == expected_len, "one prediction per image"
        is_one = single and not (
            isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim == 4
        )
        assert isinstance(result, Prediction) == is_one
        _check_predictions(predictor, inputs, results, int(top_k))
        again = predictor.predict(inputs, top_k=top_k, batch_size=batch_size)
        assert again == result, "the same input gives the same answer"
    checked(count, "predictor")


@given(
    args=arguments(
        classes=(
            st.sampled_from([CLASSES, None, tuple(CLASSES)])
            | st.lists(st.text(max_size=4), min_size=5, max_size=5, unique=True),
            st.lists(st.text(max_size=4), max_size=6)
            | st.sampled_from(["abcde", [1, 2, 3, 4, 5], ["a"] * 5]),
        ),
        precision=(st.sampled_from(["32", "bf16", "16"]), st.sampled_from([32, "64", None])),
        device=(
            st.sampled_from(["cpu", "auto", torch.device("cpu")]),
            st.sampled_from(["gpu", "", "cuda:99", None, 3]),
        ),
        preprocess=(
            st.sampled_from([None, Preprocess(mode="L", size=(8, 8))]),
            st.sampled_from(["L", {"mode": "L"}]),
        ),
        model=(st.just("mlp"), st.sampled_from([None, "model.ckpt", 3])),
    )
)
def test_predictor_constructor(args: dict[str, Any], count: Count) -> None:
    classes, precision, device, preprocess, model = args.values()
    features = 64 if isinstance(preprocess, Preprocess) else 3 * 8 * 8  # grey 8x8 or RGB
    module = create_model("mlp", in_features=features, hidden=[], num_classes=5)
    module = module if model == "mlp" else model
    ok, result = expect_clean(
        lambda: Predictor(
            module, classes=classes, precision=precision, device=device, preprocess=preprocess
        )
    )
    names_ok = classes is None or (
        isinstance(classes, (list, tuple))
        and all(isinstance(c, str) for c in classes)
        and len(set(classes)) == len(classes)
    )
    valid = (
        model == "mlp"
        and names_ok
        and precision in ("32", "bf16", "16")
        and (device in ("cpu", "auto") or isinstance(device, torch.device))
        and (preprocess is None or isinstance(preprocess, Preprocess))
    )
    assert ok == valid, f"Predictor(classes={classes!r}, {precision!r}, {device!r}): {result!r}"
    if ok:
        image = np.zeros((8, 8), dtype=np.uint8)
        done, prediction = expect_clean(lambda: result.predict(image, top_k=1))
        assert done == (classes is None or len(classes) == 5), repr(prediction)
        if done:
            names = list(classes) if classes is not None else [str(i) for i in range(5)]
            assert prediction.name in names
    checked(count, "predictor")


# --------------------------------------------------------------------------- models
POOLS: dict[str, dict[str, list[Any]]] = {
    "mlp": {
        "in_features": [4, 12, 0, -3, 1.5, True, np.int64(6), None],
        "hidden": [[], [3], [4, 2], 5, None, [0], [1.5], "12", (2,)],
        "num_classes": [1, 2, 5, 0, True, np.int64(3), 2.0],
        "activation": ["relu", "tanh", "GELU", "nope", None, 3],
        "dropout": [0.0, 0.5, 1.0, -0.1, math.nan, "0.1", True, np.float32(0.25)],
    },
    "convnet": {
        "in_channels": [1, 3, 0, True, np.int64(2)],
        "num_classes": [2, 7, 0, 1.0],
        "input_size": [8, 12, (8, 10), 0, (8,), 1.5, True, "8", np.int64(9), [6, 6]],
        "channels": [[4], [4, 6], [], 3, [0], [True], None],
        "kernel_size": [1, 3, 5, 0, -1, 1.5, 40],
        "padding": [0, 1, 2, -1, 0.5],
        "pool_every": [1, 2, 0, True],
        "activation": ["relu", "elu", "nope"],
        "dropout2d": [0.0, 0.1, 1.0, math.nan],
        "batch_norm": [False, True, "yes", 1],
        "hidden": [[], [4], 6, None, [0]],
        "dropout": [0.0, 0.3, -1.0, "x"],
        "log_softmax": [True, False, "no"],
    },
    "convnet_cifar": {
        "in_channels": [3, 1, 0],
        "num_classes": [2, 10, -1],
        "input_size": [8, 16, (8, 12), 1, 3],
        "channels": [[4], [4, 2], [], [0]],
        "activation": ["tanh", "silu", ""],
        "dropout2d": [0.0, 0.2, 2.0],
        "batch_norm": [False, True, None],
        "hidden": [[4], [], None, [-1]],
        "dropout": [0.0, 0.5, math.inf],
        "kernel_size": [3],  # not an argument of convnet_cifar: refused by name
    },
    "resnet_deep": {
        "in_channels": [3, 1, 0, 2.0],
        "num_classes": [2, 10, 0],
        "n_channels": [4, 8, 0, True],
        "n_blocks": [0, 1, 2, -1, 1.5],
        "input_size": [4, 8, (4, 8), 3, (2, 8), 0],
        "hidden": [4, 8, 0, None],
    },
    "vgg16_transfer": {
        "num_classes": [2, 5, 0, True],
        "hidden": [None, 8, [8, 4], [], 0, [8, 0], "8"],
        "dropout": [0.0, 0.2, 1.0, math.nan],
        "log_softmax": [True, False, "yes"],
        "weights": [None, None, "", 3, "no-such-file.pth", Path("missing.pth")],
        "freeze_features": [True, False, "no"],
        "progress": [True, False, 0],
    },
}


def _input_shape(model: nn.Module) -> tuple[int, ...]:
    """A valid input of one sample: VGG takes any size >= 32, an MLP flat features."""
    if type(model).__name__ == "VGG16Transfer":
        return (3, 32, 40)
    shape = getattr(model, "input_shape", None)
    return tuple(shape) if shape is not None else (int(model.in_features),)  # type: ignore[arg-type]


@given(
    name=st.sampled_from(sorted(POOLS)),
    data=st.data(),
    batch=st.integers(1, 3),
)
def test_create_model_arguments(name: str, data: st.DataObject, batch: int, count: Count) -> None:
    pool = POOLS[name]
    keys = data.draw(st.lists(st.sampled_from(sorted(pool)), unique=True, max_size=len(pool)))
    kwargs = {key: data.draw(st.sampled_from(pool[key]), label=key) for key in keys}
    meta = name == "vgg16_transfer"  # 15 million weights: build it on the meta device
    with torch.device("meta" if meta else "cpu"):
        ok, model = expect_clean(lambda: create_model(name, **kwargs))
    if ok:
        assert model_spec(model) is not None
        assert model_spec(model).name == name
        spec_kwargs = model_spec(model).kwargs
        assert all(type(v).__module__ != "numpy" for v in spec_kwargs.values()), (
            "numpy scalars are recorded as Python numbers, which checkpoints can store"
        )
        expected_classes = int(kwargs.get("num_classes", 102 if meta else 10))
        shape = _input_shape(model)
        x = torch.rand(batch, *shape, device="meta" if meta else "cpu")
        model.eval()
        with torch.no_grad():
            out = model(x)
        assert tuple(out.shape) == (batch, expected_classes)
        if not meta:
            assert bool(torch.isfinite(out).all())
            if name == "convnet" and kwargs.get("log_softmax", True) is True:
                assert torch.allclose(out.exp().sum(dim=1), torch.ones(batch), atol=1e-5)
            wrong = torch.rand(batch, *[s + 1 for s in shape])
            refused, _ = expect_clean(lambda: model(wrong))
            assert not refused, "a batch of the wrong shape is refused with a clear message"
    checked(count, "create_model")


@given(
    name=st.sampled_from(list_models()) | st.sampled_from(["MLP", "resnet", "", None, 3]),
)
def test_model_names(name: Any, count: Count) -> None:
    with torch.device("meta"):
        ok, result = expect_clean(lambda: create_model(name))
    assert ok == (name in list_models()), repr(result)
    if not ok and isinstance(name, str) and name.lower() == "mlp":
        assert "mlp" in str(result), "the message suggests the closest name"
    checked(count, "create_model")


@given(
    in_channels=st.integers(1, 3),
    size=st.integers(4, 20),
    depth=st.integers(1, 3),
    kernel=st.sampled_from([1, 3, 5]),
    batch_norm=st.booleans(),
    num_classes=st.integers(1, 6),
)
def test_valid_convnets_always_build(
    in_channels: int,
    size: int,
    depth: int,
    kernel: int,
    batch_norm: bool,
    num_classes: int,
    count: Count,
) -> None:
    """Size-preserving convolutions pooled fewer times than the image can halve: must work."""
    pools = max(0, min(depth, int(math.log2(size))))
    model = create_model(
        "convnet",
        in_channels=in_channels,
        num_classes=num_classes,
        input_size=size,
        channels=[4] * pools,
        kernel_size=kernel,
        padding=kernel // 2,
        pool_every=1,
        batch_norm=batch_norm,
        hidden=[],
    )
    model.eval()
    out = model(torch.rand(2, in_channels, size, size))
    assert out.shape == (2, num_classes)
    assert bool(torch.isfinite(out).all())
    checked(count, "create_model")


# --------------------------------------------------------------------------- checkpoints
@given(num_classes=st.integers(1, 4), hidden=st.lists(st.integers(1, 4), max_size=2))
def test_created_models_round_trip_through_checkpoints(
    num_classes: int, hidden: list[int], tmp_path: Path, count: Count
) -> None:
    model = create_model("mlp", in_features=np.int64(4), hidden=hidden, num_classes=num_classes)
    path = save_checkpoint(make_checkpoint(model), tmp_path / f"m{num_classes}.ckpt")
    assert load_checkpoint(path)["model"]["kwargs"]["in_features"] == 4
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert predictor.predict_proba(torch.rand(2, 1, 2, 2)).shape == (2, num_classes)
    checked(count, "create_model")


# --------------------------------------------------------------------------- plots
def _drawable(image: np.ndarray) -> bool:
    return (
        image.dtype.kind != "c"
        and image.size > 0
        and (image.ndim == 2 or image.shape[2] in (1, 3, 4))
    )


@settings(max_examples=max(2, settings.default.max_examples // 8))  # a figure costs ~0.1 s
@given(
    shapes=st.lists(
        st.tuples(st.integers(0, 5), st.integers(1, 5)).flatmap(
            lambda hw: st.sampled_from([hw, (*hw, 1), (*hw, 3), (*hw, 4), (*hw, 2)])
        ),
        max_size=3,
    ),
    dtype=st.sampled_from([np.float32, np.float64, np.uint8, np.float16, np.bool_, np.complex64]),
    columns=st.integers(1, 4) | st.sampled_from([0, -1, 2.5, None]),
    extra_name=st.booleans(),
)
def test_plots(
    shapes: list[tuple[int, ...]],
    dtype: Any,
    columns: Any,
    extra_name: bool,
    tmp_path: Path,
    count: Count,
) -> None:
    pytest.importorskip("matplotlib")
    from visionkit.predict import plot_prediction_grid, plot_topk

    rng = np.random.default_rng(len(shapes))
    images = [np.array(rng.random(shape)).astype(dtype) for shape in shapes]
    names = [CLASSES[i % 5] for i in range(len(images))]
    ok, figure = expect_clean(
        lambda: plot_prediction_grid(images, names + ["x"] * extra_name, names, columns=columns)
    )
    valid = (
        all(_drawable(image) for image in images)
        and not extra_name
        and as_int(columns) is not None
        and columns >= 1
    )
    assert ok == valid, f"{[(i.dtype, i.shape) for i in images]}, columns={columns!r}: {figure!r}"
    if ok:
        assert len(figure.axes) == len(images)
    if images:
        prediction = Prediction(0, "ant", 0.6, (0, 1), ("ant", "bee"), (0.6, 0.4))
        ok, figure = expect_clean(lambda: plot_topk(images[0], prediction))
        assert ok == _drawable(images[0]), repr(figure)
    checked(count, "plots")


# --------------------------------------------------------------- Preprocess: once xfail, fixed
GREY = Preprocess(mode="L", size=(8, 8))


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((0, 0), dtype=np.uint8),
        np.zeros((0, 5, 3), dtype=np.uint8),
        torch.zeros((3, 0, 5), dtype=torch.uint8),
        Image.new("L", (0, 0)),
    ],
    ids=["array-0x0", "array-0x5x3", "tensor-3x0x5", "pil-0x0"],
)
def test_preprocess_refuses_empty_images(image: Any) -> None:
    with pytest.raises(DataError, match=r"pixels|empty|size"):
        GREY(image)


@pytest.mark.parametrize(
    "image",
    [np.array(7, dtype=np.uint8), np.zeros(5, np.uint8), np.zeros((8, 8, 1, 2), np.uint8)],
    ids=["0-d", "1-d", "4-d"],
)
def test_preprocess_refuses_arrays_that_are_not_images(image: np.ndarray) -> None:
    with pytest.raises(DataError):
        GREY(image)


@pytest.mark.parametrize(
    "fields",
    [
        {"size": (0, 5)},
        {"size": (-1, 5)},
        {"size": (2.5, 5)},
        {"size": (2, 5, 3)},
        {"resize": 0},
        {"center_crop": 0},
        {"center_crop": -2},
        {"mean": (0.1, 0.2), "std": (0.1, 0.2)},
        {"mean": (0.1,), "std": (0.0,)},
        {"mean": (0.1,), "std": (math.nan,)},
        {"mean": "1", "std": "2"},
    ],
    ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()),
)
def test_preprocess_validates_its_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Preprocess(mode="L", **fields)


def test_preprocess_unconvertible_modes_are_data_errors() -> None:
    with pytest.raises(DataError, match=r"'LAB' to 'L'.*ImageCms"):
        GREY(Image.new("LAB", (4, 4)))


@pytest.mark.parametrize(("mode", "via"), [("La", "LA"), ("RGBa", "RGBA")])
def test_preprocess_converts_premultiplied_alpha_like_the_straight_mode(
    mode: str, via: str
) -> None:
    image = Image.new(mode, (4, 4), (200, 100) if mode == "La" else (200, 100, 50, 100))
    for spec in (GREY, Preprocess(mode="RGB", size=(8, 8))):
        assert torch.equal(spec.to_uint8(image), spec.to_uint8(image.convert(via)))


@pytest.mark.parametrize("value", [5, None, [[0]], b"image.png"], ids=repr)
def test_preprocess_refuses_non_images(value: Any) -> None:
    with pytest.raises(DataError, match=r"expected an image: a file path .* uint8 tensor"):
        GREY(value)


def test_preprocess_keeps_accepting_what_checkpoints_hold() -> None:
    spec = Preprocess(
        mode="RGB",
        size=np.array([28, 28]),
        mean=[np.float32(0.5)],  # one value for every channel, as Normalize broadcasts it
        std=torch.tensor([0.25, 0.5, 1.0]),
    )
    assert spec.size == (28, 28)
    assert type(spec.size[0]) is int
    assert spec.mean == (0.5,)
    assert spec.std == (0.25, 0.5, 1.0)
    assert Preprocess.from_dict(spec.to_dict()) == spec
    stored = {"mode": "L", "size": [8, 8], "resize": None, "center_crop": None}
    assert Preprocess.from_dict({**stored, "mean": [0.1307], "std": [0.3081]}).size == (8, 8)
    assert Preprocess.from_dict({"mode": "RGB", "resize": 256, "center_crop": 224}) == Preprocess(
        resize=256, center_crop=224
    )
