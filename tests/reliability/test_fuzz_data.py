"""Fuzzing the data API: split fractions, label maps, image arrays, statistics, presets.

Every generated call must either succeed and pass the checks that catch a silent wrong
answer (sizes add up, splits are disjoint and seeded, labels stay in range, values equal a
reference), or raise a :class:`~visionkit.VisionKitError` (or an exception the function
documents) with a message that explains itself. Where the valid inputs are easy to tell
apart, the test also knows in advance which of the two must happen, so an input refused
by mistake fails as surely as a crash. Each checked example is counted as
``fuzz_cases.<target>``.
"""

from __future__ import annotations

import gzip
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fuzzing import Count, Pair, arguments, as_int, as_real, checked, expect_clean
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from torchvision.transforms import v2

from visionkit import ConfigurationError
from visionkit.data import (
    DataSplits,
    ImageFolderDataset,
    InMemoryLoader,
    SeededSampler,
    TensorImageDataset,
    compute_mean_std,
    fashion_mnist,
    image_folder,
    make_loader,
    mnist,
    mnist_sample,
    presets,
    read_idx,
    split_indices,
)
from visionkit.data._splits import in_memory_splits, split_in_place
from visionkit.data.presets import ToFloatTensor, preprocess_from_transform
from visionkit.predict import Preprocess

SEED_LOW, SEED_HIGH = -(2**63), 2**64 - 1
# Values no numeric argument should take, each with a type of its own.
HOSTILE = [None, "1", "", b"x", [], {}, (1,), object(), 1 + 1j, True, False, np.bool_(True)]


# --------------------------------------------------------------------------- helpers


def valid_fraction(value: Any) -> bool:
    number = as_real(value)
    return number is not None and math.isfinite(number) and 0.0 <= number < 1.0


def valid_seed(value: Any) -> bool:
    seed = as_int(value)
    return seed is not None and SEED_LOW <= seed <= SEED_HIGH


def mostly(
    valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """``valid`` three times in four."""
    return st.one_of(valid, valid, valid, invalid)


FRACTIONS: Pair = (
    st.floats(0.0, 1.0, exclude_max=True)
    | st.sampled_from([0.0, -0.0, math.nextafter(1.0, 0.0), 5e-324, np.float32(0.25), 0]),
    st.floats(1.0)
    | st.floats(max_value=-1e-320)
    | st.sampled_from([1.0, -1e-300, math.inf, math.nan, *HOSTILE, "0.2", np.int64(1)]),
)
SEEDS: Pair = (
    st.integers(-(2**10), 2**10)
    | st.sampled_from([SEED_LOW, SEED_HIGH, np.int64(7), torch.tensor(3), -1]),
    st.integers(SEED_HIGH + 1)
    | st.integers(max_value=SEED_LOW - 1)
    | st.sampled_from([*HOSTILE, 1.5, math.nan, torch.tensor(1.0)]),
)


def random_images(rng: np.random.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(rng.integers(0, 256, shape, dtype=np.uint8))


@st.composite
def datasets(draw: st.DrawFn, *, min_size: int = 0, max_size: int = 40) -> TensorImageDataset:
    """A small valid in-memory data set with random images, labels and class names."""
    n = draw(st.integers(min_size, max_size))
    channels, height, width = (
        draw(st.integers(1, 3)),
        draw(st.integers(1, 4)),
        draw(st.integers(1, 4)),
    )
    k = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    names = draw(st.lists(st.text(min_size=1, max_size=6), min_size=k, max_size=k, unique=True))
    targets = torch.from_numpy(rng.integers(0, k, n)).long()
    return TensorImageDataset(random_images(rng, (n, channels, height, width)), targets, names)


# --------------------------------------------------------------------------- splits
@given(
    args=arguments(
        n=(st.integers(0, 300), st.integers(-5, -1) | st.sampled_from([*HOSTILE, 2.0])),
        fraction=FRACTIONS,
        seed=SEEDS,
    )
)
def test_split_indices(args: dict[str, Any], count: Count) -> None:
    n, fraction, seed = args["n"], args["fraction"], args["seed"]
    ok, result = expect_clean(lambda: split_indices(n, fraction, seed=seed))
    size = as_int(n)
    valid = size is not None and size >= 0 and valid_fraction(fraction) and valid_seed(seed)
    assert ok == valid, f"split_indices({n!r}, {fraction!r}, seed={seed!r}): {result!r}"
    if ok:
        train, val = result
        assert train.dtype == val.dtype == torch.long
        assert len(val) == int(float(fraction) * size), "floor(val_fraction * n) held out"
        assert sorted(train.tolist() + val.tolist()) == list(range(size)), "disjoint, complete"
        assert size == 0 or len(train) >= 1, "a fraction below 1 always leaves training data"
        again = split_indices(n, fraction, seed=seed)
        assert torch.equal(again[0], train), "seeded"
        assert torch.equal(again[1], val), "seeded"
    checked(count, "split_indices")


@given(data=datasets(), args=arguments(fraction=FRACTIONS, seed=SEEDS))
def test_split_in_place_and_in_memory_splits(
    data: TensorImageDataset, args: dict[str, Any], count: Count
) -> None:
    fraction, seed = args["fraction"], args["seed"]
    images, targets = data.images.clone(), data.targets.clone()
    test_set = data.derive(images.clone(), targets.clone())
    ok, result = expect_clean(
        lambda: in_memory_splits(data, test_set, val_fraction=fraction, seed=seed)
    )
    assert ok == (valid_fraction(fraction) and valid_seed(seed)), repr(result)
    if not ok:  # refused before anything was reordered
        assert torch.equal(data.images, images)
        assert torch.equal(data.targets, targets)
    else:
        splits: DataSplits = result
        train_idx, val_idx = split_indices(len(images), fraction, seed=seed)
        assert torch.equal(splits.train.images, images[train_idx])
        assert torch.equal(splits.train.targets, targets[train_idx])
        if len(val_idx):
            assert splits.val is not None
            assert torch.equal(splits.val.images, images[val_idx])
            assert torch.equal(splits.val.targets, targets[val_idx])
        else:
            assert splits.val is None
        assert splits.test is test_set
        assert splits.classes == data.classes
        assert sum(len(s) for k, s in splits.splits().items() if k != "test") == len(images)
        again, _ = split_in_place(data.derive(images.clone(), targets.clone()), fraction, seed=seed)
        assert torch.equal(again.images, splits.train.images), "the same seed, the same split"
    checked(count, "split_in_place")


@pytest.fixture(scope="module")
def sample_labels() -> torch.Tensor:
    """The labels of the bundled MNIST sample, in file order."""
    folder = resources.files("visionkit.data") / "_sample"
    with resources.as_file(folder) as path:
        return read_idx(path / "mnist-sample-labels-idx1-ubyte.gz").long()


@given(args=arguments(fraction=FRACTIONS, seed=SEEDS))
def test_mnist_sample_arguments(
    args: dict[str, Any], sample_labels: torch.Tensor, count: Count
) -> None:
    fraction, seed = args["fraction"], args["seed"]
    ok, result = expect_clean(lambda: mnist_sample(val_fraction=fraction, seed=seed))
    assert ok == (valid_fraction(fraction) and valid_seed(seed)), repr(result)
    if ok:
        train_idx, val_idx = split_indices(4000, fraction, seed=seed)
        assert torch.equal(result.train.targets, sample_labels[:4000][train_idx])
        if len(val_idx):
            assert torch.equal(result.val.targets, sample_labels[:4000][val_idx])
        else:
            assert result.val is None
        assert torch.equal(result.test.targets, sample_labels[4000:])
        assert result.train.image_shape == (1, 28, 28)
    checked(count, "mnist_sample")


# --------------------------------------------------------------------------- IDX files
def _idx(code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape) + payload


IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
N_TRAIN, N_TEST = 12, 5


def _write_mnist(folder: Path, *, gz: bool) -> Path:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        files = {
            f"{prefix}-images-idx3-ubyte": _idx(8, (n, 28, 28), rng.bytes(n * 784)),
            f"{prefix}-labels-idx1-ubyte": _idx(8, (n,), bytes(rng.integers(0, 10, n).tolist())),
        }
        for name, raw in files.items():
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
    return folder


@pytest.fixture(scope="module")
def mnist_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mnist")
    return {
        "plain": _write_mnist(root / "plain", gz=False),
        "gz": _write_mnist(root / "gz" / "MNIST" / "raw", gz=True).parents[1],
        "fashion": _write_mnist(root / "fashion" / "FashionMNIST" / "raw", gz=False).parents[1],
    }


numbers_ = st.one_of(
    st.floats(-2.0, 2.0), st.floats(), st.integers(-3, 3), st.sampled_from(HOSTILE)
)
good_mean, good_std = st.floats(-1.0, 1.0), st.floats(0.01, 2.0)
NORMALIZATIONS: Pair = (
    st.none()
    | st.tuples(good_mean, good_std)
    | st.tuples(
        st.lists(good_mean, min_size=1, max_size=1), st.lists(good_std, min_size=1, max_size=1)
    ),
    st.tuples(numbers_, numbers_)
    | st.tuples(st.lists(numbers_, max_size=3), st.lists(numbers_, max_size=3))
    | st.lists(numbers_, max_size=3).map(tuple)
    | st.sampled_from([3, "ab", (None, None), ((0.5,), "x"), (0.0, 1e-300), (1e30, 1e-30)]),
)


def _floats(value: Any) -> list[float] | None:
    """One finite number or a non-empty list/tuple of them, as floats; else ``None``."""
    items = [value] if as_real(value) is not None else value
    if not isinstance(items, (list, tuple)) or not items:
        return None
    floats = [as_real(x) for x in items]
    if any(f is None or not math.isfinite(f) for f in floats):
        return None
    return [float(f) for f in floats]  # type: ignore[arg-type]


def _usable(mean: list[float], std: list[float]) -> bool:
    """Positive ``std``, and pixels 0 and 1 stay finite in float32 after normalizing."""
    if min(std) <= 0:
        return False
    edges = (torch.tensor([[0.0], [1.0]]) - torch.tensor(mean)) / torch.tensor(std)
    return bool(torch.isfinite(edges).all())


def _valid_stats(normalize: Any, channels: int) -> tuple[list[float], list[float]] | None:
    """``(mean, std)`` per channel if ``normalize`` is valid for ``channels``, else ``None``."""
    if not isinstance(normalize, (tuple, list)) or len(normalize) != 2:
        return None
    mean, std = _floats(normalize[0]), _floats(normalize[1])
    if mean is None or std is None:
        return None
    if len(mean) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    if len(mean) != channels or len(std) != channels or not _usable(mean, std):
        return None
    return mean, std


@given(
    layout=st.sampled_from(["plain", "gz", "fashion"]),
    args=arguments(
        fraction=FRACTIONS,
        seed=SEEDS,
        normalize=NORMALIZATIONS,
        download=(st.sampled_from([False, np.bool_(False)]), st.sampled_from(["no", 0, None])),
    ),
)
def test_mnist_factory_arguments(
    layout: str, args: dict[str, Any], mnist_roots: dict[str, Path], count: Count
) -> None:
    fraction, seed, normalize, download = args.values()
    factory = fashion_mnist if layout == "fashion" else mnist
    root = mnist_roots[layout]
    ok, result = expect_clean(
        lambda: factory(
            root, val_fraction=fraction, seed=seed, normalize=normalize, download=download
        )
    )
    stats = None if normalize is None else _valid_stats(normalize, 1)
    valid = (
        valid_fraction(fraction)
        and valid_seed(seed)
        and (normalize is None or stats is not None)
        and isinstance(download, (bool, np.bool_))
    )
    assert ok == valid, repr(result)
    if ok:
        splits: DataSplits = result
        n_val = int(float(fraction) * N_TRAIN)
        assert len(splits.train) == N_TRAIN - n_val
        assert len(splits.test) == N_TEST
        assert (len(splits.val) if splits.val else 0) == n_val
        assert splits.num_classes == 10
        image, label = splits.train[0]
        raw = splits.train.images[0].float() / 255
        expected = raw if stats is None else (raw - stats[0][0]) / stats[1][0]
        assert torch.allclose(image, expected, atol=1e-6)
        assert 0 <= label < 10
        assert splits.mean == (None if stats is None else tuple(stats[0]))
    checked(count, "mnist_factory")


@given(
    code=st.sampled_from([*IDX_DTYPES, 0x00, 0x0A]),
    shape=st.lists(st.integers(0, 4), max_size=4).map(tuple)
    | st.sampled_from([(2**31, 2**31, 2**31), (2**32 - 1,), tuple([1] * 40)]),
    extra=st.sampled_from([0, 0, 0, -1, 1, -3]),
    gz=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_read_idx_headers(
    code: int,
    shape: tuple[int, ...],
    extra: int,
    gz: bool,
    seed: int,
    tmp_path: Path,
    count: Count,
) -> None:
    itemsize = int(IDX_DTYPES.get(code, ">u1")[-1])
    size = math.prod(shape) * itemsize
    payload = np.random.default_rng(seed).bytes(max(0, min(size, 4096) + extra))
    raw = _idx(code, shape, payload)
    path = tmp_path / "data-idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    ok, result = expect_clean(lambda: read_idx(path))
    valid = code in IDX_DTYPES and len(shape) <= 32 and len(payload) == size
    assert ok == valid, repr(result)
    if ok:
        expected = np.frombuffer(payload, dtype=IDX_DTYPES[code]).reshape(shape)
        assert tuple(result.shape) == shape
        assert np.array_equal(
            result.numpy(),
            expected.astype(expected.dtype.newbyteorder("=")),
            equal_nan=expected.dtype.kind == "f",
        )
    checked(count, "read_idx")


# --------------------------------------------------------------------------- label maps
def _labels_spec(draw: st.DrawFn, classes: list[str]) -> Any:
    k = len(classes)
    if draw(st.integers(0, 3)):  # three times in four: a valid choice of classes
        order = draw(st.permutations(range(k)))[: draw(st.integers(1, k))]
        items = [draw(st.sampled_from([classes[i], i, np.int64(i)])) for i in order]
        if draw(st.integers(0, 3)) == 0:
            return {item: new for new, item in enumerate(items)}
        return items if draw(st.booleans()) else tuple(items)
    item = st.one_of(
        st.sampled_from(classes),
        st.integers(-2, k + 1),
        st.sampled_from(["no such class", np.int64(0), 1.0, None, True, b"x"]),
    )
    kind = draw(st.sampled_from(["list", "list", "tuple", "dict", "string", "other"]))
    if kind in ("list", "tuple"):
        chosen = draw(st.lists(item, max_size=k + 1))
        return tuple(chosen) if kind == "tuple" else chosen
    if kind == "dict":
        keys = draw(st.lists(item, max_size=k, unique_by=repr))
        values = (
            draw(st.permutations(range(len(keys))))
            if draw(st.booleans())
            else (
                draw(st.lists(st.integers(-1, len(keys)), min_size=len(keys), max_size=len(keys)))
            )
        )
        return dict(zip(keys, values, strict=True))
    if kind == "string":
        return draw(st.sampled_from(classes))
    return draw(st.sampled_from([None, 3, {"a", "b"}]))


def _expected_labels(spec: Any, classes: list[str]) -> list[int] | None:
    """The old labels ``subset(spec)`` keeps, in their new order, or ``None`` if invalid."""
    if isinstance(spec, dict):
        values = [as_int(v) for v in spec.values()]
        if any(v is None for v in values) or sorted(values) != list(range(len(spec))):  # type: ignore[type-var]
            return None
        spec = [key for _, key in sorted(zip(values, spec, strict=True))]  # values are unique
    if not isinstance(spec, (list, tuple)) or not spec:
        return None
    labels = []
    for item in spec:
        if isinstance(item, str):
            if item not in classes:
                return None
            labels.append(classes.index(item))
        else:
            label = as_int(item)
            if label is None or not 0 <= label < len(classes):
                return None
            labels.append(label)
    return labels if len(set(labels)) == len(labels) else None


@st.composite
def splits_and_spec(draw: st.DrawFn) -> tuple[DataSplits, Any]:
    data = draw(datasets(min_size=1))
    fraction = draw(st.sampled_from([0.0, 0.3, 0.5]))
    copy = data.derive(data.images.clone(), data.targets.clone())
    splits = in_memory_splits(copy, data, val_fraction=fraction, seed=draw(st.integers(0, 9)))
    if draw(st.booleans()) and splits.num_classes > 1:  # an earlier remap to compose with
        splits = splits.subset(list(reversed(splits.classes)))
    return splits, _labels_spec(draw, splits.classes)


@given(case=splits_and_spec())
def test_subset_label_maps(case: tuple[DataSplits, Any], count: Count) -> None:
    splits, spec = case
    ok, result = expect_clean(lambda: splits.subset(spec))
    expected = _expected_labels(spec, splits.classes)
    assert ok == (expected is not None), f"subset({spec!r}) of {splits.classes}: {result!r}"
    if ok:
        subset: DataSplits = result
        assert subset.classes == [splits.classes[old] for old in expected]
        for name, new in subset.splits().items():
            old = splits.splits()[name]
            assert all(0 <= t < len(expected) for t in new.targets.tolist())
            for new_label, old_label in enumerate(expected):  # every sample of a kept class
                assert int((new.targets == new_label).sum()) == int(
                    (old.targets == old_label).sum()
                )
            kept = torch.isin(old.targets, torch.tensor(expected))
            assert torch.equal(new.images, old.images[kept]), "same images, same order"
        # label_map composes with an earlier remap: original label -> label used now
        original = splits.label_map or {i: i for i in range(splits.num_classes)}
        inverse = {new: old for old, new in original.items()}
        assert subset.label_map == {inverse[old]: new for new, old in enumerate(expected)}
    checked(count, "subset")


@given(data=datasets(min_size=1, max_size=20), draw=st.data())
def test_relabel(data: TensorImageDataset, draw: st.DataObject, count: Count) -> None:
    n_names = draw.draw(st.integers(1, 4) | st.just(0), label="n_names")
    keys = mostly(
        st.integers(0, data.num_classes - 1), st.integers(-2, 6) | st.sampled_from([1.0, None, "a"])
    )
    values = mostly(st.integers(0, max(n_names - 1, 0)), st.integers(-1, 6))
    pairs = draw.draw(st.lists(st.tuples(keys, values), min_size=1, max_size=5) | st.just([]))
    label_map = dict(pairs)
    names = [f"class {i}" for i in range(n_names)]
    ok, result = expect_clean(lambda: data.relabel(label_map, names))
    valid = (
        bool(label_map)
        and all(as_int(k) is not None and 0 <= k < data.num_classes for k in label_map)
        and all(0 <= v < n_names for v in label_map.values())
    )
    assert ok == valid, f"relabel({label_map}, {names}) of {data.num_classes} classes: {result!r}"
    if ok:
        keep = [i for i, t in enumerate(data.targets.tolist()) if t in label_map]
        assert result.targets.tolist() == [label_map[data.targets[i].item()] for i in keep]
        assert torch.equal(result.images, data.images[keep])
        assert result.classes == names
    checked(count, "relabel")


# --------------------------------------------------------------------------- image arrays
DTYPES = [
    np.uint8,
    np.uint8,
    np.float16,
    np.float32,
    np.float64,
    np.int32,
    np.int64,
    np.bool_,
    np.complex64,
    np.uint16,
]


@st.composite
def arrays(
    draw: st.DrawFn,
    *,
    min_dims: int = 0,
    max_dims: int = 5,
    min_side: int = 0,
    nan: bool = True,
    dtypes: list[Any] = DTYPES,
) -> np.ndarray:
    """A random array: ``min_dims`` to ``max_dims`` dimensions of ``dtypes``, maybe NaN."""
    sides = st.integers(min_side, 4)
    shape = tuple(draw(st.lists(sides, min_size=min_dims, max_size=max_dims)))
    dtype = draw(st.sampled_from(dtypes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    array = np.array(rng.random(shape) * 255).astype(dtype)  # 0-d too: an array, not a scalar
    if nan and array.size and array.dtype.kind == "f" and draw(st.booleans()):
        array.flat[draw(st.integers(0, array.size - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf])
        )
    return array


def _tensor_or_array(draw: st.DrawFn, array: np.ndarray) -> Any:
    if array.dtype == np.uint16 or not draw(st.booleans()):
        return array
    return torch.from_numpy(array.copy())


@st.composite
def dataset_arguments(draw: st.DrawFn) -> dict[str, Any]:
    """Arguments of ``TensorImageDataset``: valid ones, of which one may be replaced."""
    n, c, h, w = (
        draw(st.integers(0, 6)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 3)),
    )
    k = draw(st.integers(1, 4))
    labels = st.lists(st.integers(0, k - 1), min_size=n, max_size=n)
    args: dict[str, Any] = {
        "images": random_images(np.random.default_rng(n), (n, c, h, w)),
        "targets": draw(
            labels
            | labels.map(torch.tensor)
            | labels.map(lambda v: torch.tensor(v, dtype=torch.float32))
            | labels.map(lambda v: np.array(v, dtype=np.int32))
        ),
        "classes": draw(st.lists(st.text(max_size=3), min_size=k, max_size=k, unique=True)),
        "mean": None,
        "std": None,
    }
    if draw(st.booleans()):
        size = draw(st.sampled_from([1, c]))
        args["mean"] = draw(st.lists(good_mean, min_size=size, max_size=size))
        args["std"] = draw(st.lists(good_std, min_size=size, max_size=size))
        if size == 1 and draw(st.booleans()):
            args["mean"], args["std"] = args["mean"][0], args["std"][0]
    broken = draw(st.sampled_from([None, None, "images", "targets", "classes", "stats"]))
    if broken == "images":
        args["images"] = _tensor_or_array(draw, draw(arrays()))
    elif broken == "targets":
        args["targets"] = draw(
            st.lists(st.integers(-1, k), max_size=n + 1)
            | st.lists(st.floats(-1, k), min_size=n, max_size=n).map(np.array)
            | st.sampled_from(
                [
                    None,
                    "0",
                    [[0]] * n,
                    torch.ones(n, dtype=torch.complex64),
                    torch.full((n,), math.nan),
                ]
            )
        )
    elif broken == "classes":
        args["classes"] = draw(
            st.lists(st.text(max_size=3), min_size=k, max_size=k)
            | st.sampled_from(["abcd"[:k], None, [1] * k, ("x",) * k, []])
        )
    elif broken == "stats":
        args["mean"], args["std"] = draw(
            st.tuples(numbers_, numbers_)
            | st.tuples(st.lists(numbers_, max_size=4), st.lists(numbers_, max_size=4))
            | st.sampled_from([(None, [0.5]), ([0.5], None), (0.5, 1e-300), (1e38, 1e-3)])
        )
    return args


def _dataset_valid(args: dict[str, Any]) -> bool:
    images, targets, classes = args["images"], args["targets"], args["classes"]
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.ndim == 4):
        return False
    if min(images.shape[1:]) < 1:
        return False
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
        return False
    if len(set(classes)) != len(classes):
        return False
    try:
        labels = np.asarray(targets.numpy() if isinstance(targets, torch.Tensor) else targets)
    except (TypeError, ValueError):
        return False
    if labels.dtype.kind not in "iubf" or labels.shape != (images.shape[0],):
        return False
    if labels.dtype.kind == "f" and not (np.isfinite(labels) & (labels == np.round(labels))).all():
        return False
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        return False
    if (args["mean"] is None) != (args["std"] is None):
        return False
    return (
        args["mean"] is None
        or _valid_stats((args["mean"], args["std"]), images.shape[1]) is not None
    )


@given(args=dataset_arguments(), batch_size=st.integers(1, 4))
def test_tensor_image_dataset(args: dict[str, Any], batch_size: int, count: Count) -> None:
    ok, result = expect_clean(lambda: TensorImageDataset(**args))
    assert ok == _dataset_valid(args), f"{args!r:.300}: {result!r}"
    if ok:
        data: TensorImageDataset = result
        images = args["images"]
        assert len(data) == images.shape[0]
        assert data.classes == list(args["classes"])
        stats = None
        if args["mean"] is not None:
            stats = _valid_stats((args["mean"], args["std"]), images.shape[1])
        loader = InMemoryLoader(data, batch_size)
        batches = list(loader)
        assert len(batches) == len(loader)
        for i in range(len(data)):
            image, label = data[i]
            expected = images[i].float() / 255
            if stats is not None:
                mean, std = (torch.tensor(s).view(-1, 1, 1) for s in stats)
                expected = (expected - mean) / std
            assert image.dtype == torch.float32
            assert torch.allclose(image, expected, atol=1e-5)
            assert label == int(data.targets[i])
            assert 0 <= label < len(data.classes)
            batch_images, _ = batches[i // batch_size]
            assert torch.equal(batch_images[i % batch_size], image), "batch == __getitem__"
        for index in (len(data), -len(data) - 1, 1.0, "0"):
            ok_index, _ = expect_clean(lambda index=index: data[index], IndexError, TypeError)
            assert not ok_index
    checked(count, "tensor_image_dataset")


@given(
    data=datasets(max_size=8),
    indices=st.one_of(
        st.lists(st.integers(-10, 10), max_size=6),
        st.lists(st.integers(0, 7), max_size=6).map(torch.tensor),
        st.lists(st.booleans(), max_size=6),
        st.lists(st.floats(0, 7), min_size=1, max_size=3),
        st.sampled_from([[[0, 1]], None, "01", torch.zeros(2, dtype=torch.bool), range(3)]),
    ),
)
def test_select(data: TensorImageDataset, indices: Any, count: Count) -> None:
    ok, result = expect_clean(lambda: data.select(indices))
    wanted = indices.numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
    valid = (
        isinstance(indices, (list, range, torch.Tensor))
        and (wanted.size == 0 or (wanted.dtype.kind in "iu" and wanted.ndim == 1))
        and all(0 <= i < len(data) for i in wanted.reshape(-1).tolist())
    )
    assert ok == valid, f"select({indices!r}) of {len(data)}: {result!r}"
    if ok:
        positions = [int(i) for i in wanted.reshape(-1).tolist()]
        assert torch.equal(result.images, data.images[positions])
        assert result.targets.tolist() == [int(data.targets[i]) for i in positions]
    checked(count, "select")


def _reference_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels = images.astype(np.float64) / (255 if images.dtype == np.uint8 else 1)
    with np.errstate(all="ignore"):
        return pixels.mean(axis=(0, 2, 3)), pixels.std(axis=(0, 2, 3))


PIXEL_DTYPES = [np.uint8, np.float16, np.float32, np.float64]


@given(
    images=mostly(
        arrays(min_dims=4, max_dims=4, min_side=1, nan=False, dtypes=PIXEL_DTYPES),
        arrays(max_dims=5),
    ),
    as_tensor=st.booleans(),
    batch_size=mostly(st.integers(1, 5), st.sampled_from([0, -1, 2.5, True, "2", None])),
    scale=st.sampled_from([1.0, 1.0, 1e30, 1e200]),
)
def test_compute_mean_std(
    images: np.ndarray, as_tensor: bool, batch_size: Any, scale: float, count: Count
) -> None:
    if images.dtype == np.float64:  # huge values: squares overflow, statistics are not finite
        images = np.asarray(images * scale)
    data = _tensor_or_array_plain(images, as_tensor)
    ok, result = expect_clean(lambda: compute_mean_std(data, batch_size=batch_size))
    valid = as_int(batch_size) is not None and as_int(batch_size) >= 1 and images.ndim == 4
    valid = valid and images.shape[0] >= 1 and min(images.shape[1:]) >= 1
    valid = valid and (images.dtype == np.uint8 or images.dtype.kind == "f")
    if valid:
        mean, std = _reference_stats(images)
        valid = bool(np.isfinite(mean).all() and np.isfinite(std).all())
    assert ok == valid, f"{images.dtype} {images.shape}, batch_size={batch_size!r}: {result!r}"
    if ok:
        got_mean, got_std = (np.array(v) for v in result)
        assert len(result[0]) == images.shape[1]
        assert np.allclose(got_mean, mean, rtol=1e-9, atol=1e-12)
        assert np.allclose(got_std, std, rtol=1e-6, atol=1e-9)
    checked(count, "compute_mean_std")


@given(
    samples=st.integers(1, 3).flatmap(
        lambda c: st.lists(
            st.tuples(
                st.just(c),
                st.integers(1, 3),
                st.integers(1, 3),
                st.sampled_from(["float32", "uint8", "float64"]),
            ),
            min_size=1,
            max_size=4,
        )
    ),
    broken=st.sampled_from(
        [
            None,
            None,
            (2, 2, 2, "float32"),
            (1, 0, 2, "float32"),
            (1, 2, 2, "int32"),
            (1, 2, 2, "bool"),
            "empty",
        ]
    ),
    seed=st.integers(0, 99),
)
def test_compute_mean_std_of_a_dataset(
    samples: list[tuple[int, int, int, str]], broken: Any, seed: int, count: Count
) -> None:
    if broken == "empty":
        samples = []
    elif broken is not None:
        samples = [*samples, broken]
    rng = np.random.default_rng(seed)
    arrays_ = [np.array(rng.random((c, h, w)) * 255).astype(dt) for c, h, w, dt in samples]
    data = [(torch.from_numpy(a), 0) for a in arrays_]
    ok, result = expect_clean(lambda: compute_mean_std(data, batch_size=2))  # type: ignore[arg-type]
    valid = (
        bool(arrays_)
        and len({a.shape[0] for a in arrays_}) == 1
        and all(min(a.shape) >= 1 and a.dtype.kind in "fu" for a in arrays_)
    )
    assert ok == valid, f"{[(a.dtype, a.shape) for a in arrays_]}: {result!r}"
    if ok:
        pixels = np.concatenate(
            [
                (a / 255 if a.dtype == np.uint8 else a).astype(np.float64).reshape(a.shape[0], -1)
                for a in arrays_
            ],
            axis=1,
        )
        assert np.allclose(result[0], pixels.mean(axis=1)), "uint8 samples are scaled to [0, 1]"
        assert np.allclose(result[1], pixels.std(axis=1))
    checked(count, "compute_mean_std")


# --------------------------------------------------------------------------- presets
SIZES: Pair = (
    st.integers(1, 12) | st.just((4, 6)),
    st.integers(-2, 0) | st.sampled_from([1.5, True, None, (4,), "8", (0, 3)]),
)


@st.composite
def _matching_stats(draw: st.DrawFn) -> tuple[Any, Any]:
    size = draw(st.sampled_from([1, 3]))
    mean = draw(st.lists(good_mean, min_size=size, max_size=size).map(tuple))
    std = draw(st.lists(good_std, min_size=size, max_size=size).map(tuple))
    return (mean[0], std[0]) if size == 1 and draw(st.booleans()) else (mean, std)


PRESET_STATS: Pair = (
    st.just((None, None)) | _matching_stats(),
    st.tuples(
        st.none() | numbers_ | st.lists(numbers_, max_size=4),
        st.none() | numbers_ | st.lists(numbers_, max_size=4),
    ),
)


def _valid_size(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return len(value) == 2 and all(as_int(v) is not None and v >= 1 for v in value)
    return as_int(value) is not None and value >= 1


def _valid_preset_stats(mean: Any, std: Any, channels: int) -> bool:
    if mean is None or std is None:
        return mean is None and std is None
    means, stds = _floats(mean), _floats(std)
    return (
        means is not None
        and stds is not None
        and len(means) == len(stds)
        and len(means) in (1, channels)
        and _usable(means, stds)
    )


@given(
    name=st.sampled_from(
        [
            "mnist_train",
            "mnist_eval",
            "cifar_train",
            "cifar_eval",
            "imagenet_train",
            "imagenet_eval",
        ]
    ),
    args=arguments(
        padding=(st.integers(0, 5), st.integers(-2, -1) | st.sampled_from([1.5, math.nan, True])),
        size=SIZES,
        resize=SIZES,
        rotation=(
            st.floats(0, 60),
            st.floats(-10, -0.1) | st.sampled_from([math.nan, math.inf, "30"]),
        ),
        stats=PRESET_STATS,
    ),
    seed=st.integers(0, 99),
)
def test_presets(name: str, args: dict[str, Any], seed: int, count: Count) -> None:
    padding, size, resize, rotation, (mean, std) = args.values()
    kwargs: dict[str, Any] = {"mean": mean, "std": std}
    channels = 1 if name.startswith("mnist") else 3
    valid = _valid_preset_stats(mean, std, channels)
    if name in ("mnist_train", "cifar_train"):
        kwargs["padding"] = padding
        valid = valid and as_int(padding) is not None and padding >= 0
    elif name == "imagenet_train":
        kwargs |= {"size": size, "rotation": rotation}
        angle = as_real(rotation)
        valid = valid and _valid_size(size) and angle is not None and 0 <= angle < math.inf
    elif name == "imagenet_eval":
        kwargs |= {"size": size, "resize": resize}
        valid = valid and _valid_size(size) and as_int(resize) is not None and resize >= 1
    ok, transform = expect_clean(lambda: getattr(presets, name)(**kwargs))
    assert ok == valid, f"{name}({kwargs}): {transform!r}"
    if ok:
        side = 28 if name.startswith("mnist") else 32 if name.startswith("cifar") else 14
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 256, (side, side + 3, 3), dtype=np.uint8)
        image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
        torch.manual_seed(seed)
        output = transform(image)
        assert output.dtype == torch.float32
        assert bool(torch.isfinite(output).all())
        assert output.shape[0] == channels, "Normalize never invents channels"
        if name.endswith("_eval"):  # deterministic, and what the Predictor reproduces
            assert torch.equal(transform(image), output)
            mode = "L" if channels == 1 else "RGB"
            described, spec = expect_clean(lambda: preprocess_from_transform(transform, mode=mode))
            assert described or (isinstance(size, (tuple, list)) and size[0] != size[1])
            if described:
                assert torch.equal(spec(image), output), "Predictor preprocessing == preset"
    checked(count, "presets")


@given(
    image=mostly(arrays(min_dims=2, max_dims=3, dtypes=PIXEL_DTYPES), arrays(max_dims=4)),
    as_tensor=st.booleans(),
)
def test_to_float_tensor(image: np.ndarray, as_tensor: bool, count: Count) -> None:
    value = _tensor_or_array_plain(image, as_tensor)
    ok, result = expect_clean(lambda: ToFloatTensor()(value))
    is_tensor = isinstance(value, torch.Tensor)
    valid = (image.ndim >= 2 if is_tensor else image.ndim in (2, 3)) and (
        image.dtype == np.uint8 or image.dtype.kind == "f"
    )
    assert ok == valid, (
        f"ToFloatTensor({type(value).__name__} {image.dtype} {image.shape}): {result!r}"
    )
    if ok:
        expected = torch.from_numpy(image.copy())
        if image.ndim == 2:
            expected = expected[None]
        elif not is_tensor:
            expected = expected.permute(2, 0, 1)
        if image.dtype == np.uint8:
            expected = expected.float() / 255
            assert result.dtype == torch.float32
        assert torch.equal(result, expected) or torch.allclose(result, expected, equal_nan=True)
    checked(count, "to_float_tensor")


def _tensor_or_array_plain(image: np.ndarray, as_tensor: bool) -> Any:
    return torch.from_numpy(image.copy()) if as_tensor and image.dtype != np.uint16 else image


# --------------------------------------------------------------------------- Preprocess
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I", "F", "CMYK", "I;16", "YCbCr", "HSV", "PA"]


@st.composite
def preprocess_specs(draw: st.DrawFn) -> Preprocess:
    """A valid ``Preprocess``: a fixed size, or a resize and a centre crop."""
    mode = draw(st.sampled_from(["L", "RGB"]))
    channels = 1 if mode == "L" else 3
    stats = draw(
        st.none() | st.lists(st.floats(0.05, 1.0), min_size=channels, max_size=channels).map(tuple)
    )
    fields: dict[str, Any] = {"mode": mode, "mean": stats, "std": stats}
    if draw(st.booleans()):
        fields["size"] = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    else:
        fields["resize"] = draw(st.integers(1, 16))
        fields["center_crop"] = draw(st.integers(1, 16))
    return Preprocess(**fields)


@st.composite
def raw_images(draw: st.DrawFn) -> Any:
    """A raw image with pixels: a PIL image of any common mode, a uint8 array or tensor."""
    kind = draw(st.sampled_from(["pil", "pil", "array", "tensor"]))
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    if draw(st.integers(0, 9)) == 0:
        height, width = draw(st.integers(200, 300)), draw(st.integers(200, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "pil":
        mode = draw(st.sampled_from(MODES))
        rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        if mode in ("I;16", "PA"):
            return Image.new(mode, (width, height))
        if mode in ("I", "F"):  # deep images as they come from files: 16-bit range, or [0, 1]
            grey = np.asarray(rgb.convert("L"))
            deep = grey.astype(np.int32) * 257 if mode == "I" else grey.astype(np.float32) / 255
            return Image.fromarray(deep, mode)
        return rgb.convert(mode)
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    shape = (height, width) if channels is None else (height, width, channels)
    array = rng.integers(0, 256, shape, dtype=np.uint8)
    if kind == "array":
        return array
    tensor = torch.from_numpy(array)
    return tensor if tensor.ndim == 2 else tensor.permute(2, 0, 1)


def _as_pil(image: Any) -> Image.Image:
    """The PIL image a raw array or tensor stands for (``H x W x C`` / ``C x H x W``)."""
    if isinstance(image, Image.Image):
        if image.mode in ("I", "F"):  # visionkit scales these to 8 bits (documented)
            values = np.asarray(image, dtype=np.float64)
            scaled = (values / 257 if image.mode == "I" else values * 255).round()
            return Image.fromarray(scaled.astype(np.uint8))
        return image
    array = image.numpy() if isinstance(image, torch.Tensor) else image
    if isinstance(image, torch.Tensor) and array.ndim == 3:
        array = array.transpose(1, 2, 0)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return Image.fromarray(np.ascontiguousarray(array))


def _torchvision_reference(image: Any, spec: Preprocess) -> torch.Tensor:
    """What ``Resize``/``CenterCrop``/``PILToTensor`` give on the image as a PIL image."""
    pil = _as_pil(image)
    pil = pil if pil.mode == spec.mode else pil.convert(spec.mode)
    steps: list[Any] = []
    if spec.resize is not None:
        steps.append(v2.Resize(spec.resize, antialias=True))
    if spec.center_crop is not None:
        steps.append(v2.CenterCrop(spec.center_crop))
    elif spec.size is not None and pil.size[::-1] != spec.size:
        steps.append(v2.Resize(list(spec.size), antialias=True))
    steps.append(v2.PILToTensor())
    return v2.Compose(steps)(pil).as_subclass(torch.Tensor)


@given(spec=preprocess_specs(), image=raw_images())
def test_preprocess_images(spec: Preprocess, image: Any, count: Count) -> None:
    ok, result = expect_clean(lambda: spec.to_uint8(image))
    assert ok, f"{spec} refused a valid {type(image).__name__}: {result!r}"
    assert result.dtype == torch.uint8
    assert result.shape[0] == spec.channels
    if spec.input_shape is not None:
        assert tuple(result.shape) == spec.input_shape
    reference = _torchvision_reference(image, spec)
    assert torch.equal(result, reference), "bit-identical to torchvision on the PIL image"
    model_input = spec(image)
    assert torch.equal(model_input, spec.normalize(result.clone()))
    assert model_input.dtype == torch.float32
    assert bool(torch.isfinite(model_input).all())
    assert torch.equal(spec.to_uint8(image), result), "deterministic"
    checked(count, "preprocess")


@given(
    spec=preprocess_specs(),
    image=st.one_of(
        arrays(min_dims=0, max_dims=5, min_side=0),  # NumPy: H x W (x C), or not an image
        arrays(min_dims=0, max_dims=5, min_side=0).map(torch.from_numpy),
    ),
)
def test_preprocess_refuses_what_is_not_an_image(
    spec: Preprocess, image: Any, count: Count
) -> None:
    # Zero-size images and arrays of other than 2 or 3 dimensions included: they were
    # mishandled until fixed (see the Preprocess tests at the end of test_fuzz_predict.py).
    ok, result = expect_clean(lambda: spec(image))
    if ok:
        assert image.dtype in (np.uint8, torch.uint8), "only uint8 pixels are raw images"
        assert image.ndim in (2, 3), "an image has 2 or 3 dimensions"
        assert all(image.shape), "an image has pixels"
        assert result.dtype == torch.float32
        assert result.shape[0] == spec.channels
        assert bool(torch.isfinite(result).all())
    checked(count, "preprocess")


# --------------------------------------------------------------------------- image_folder
@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for split in ("train", "valid"):
        for label, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                color = (40 * i, 100 * label, 7)
                Image.new("RGB", (5, 4), color).save(root / split / name / f"{i}.png")
    return root


@given(
    args=arguments(
        fraction=FRACTIONS,
        seed=SEEDS,
        mode=(st.sampled_from(["RGB", "L"]), st.sampled_from(["CMYK", "rgb", None])),
        splits=(
            st.sampled_from([("train", None, None), ("train", None, "valid")]),
            st.sampled_from(
                [("train", "valid", None), ("train", "nope", None), ("valid", "train", "train")]
            ),
        ),
        names=(
            st.sampled_from([None, {"cat": "Cat", "dog": "Dog"}]),
            st.sampled_from([{"cat": "Cat"}, {"cat": 1}]),
        ),
    )
)
def test_image_folder_arguments(args: dict[str, Any], image_root: Path, count: Count) -> None:
    fraction, seed, mode, splits, names = args.values()
    call = lambda: image_folder(  # noqa: E731
        image_root, val_fraction=fraction, seed=seed, mode=mode, splits=splits, names=names
    )
    ok, result = expect_clean(call)
    holds_out = valid_fraction(fraction) and float(fraction) > 0  # 0 means no split
    valid = (
        mode in ("RGB", "L")
        and splits[1] != "nope"
        and names in (None, {"cat": "Cat", "dog": "Dog"})
        and not (holds_out and splits[1] is not None)  # a fraction and a validation folder
        and valid_fraction(fraction)  # checked even with no split: None or "" is a mistake
        and valid_seed(seed)
    )
    assert ok == valid, f"{fraction!r}, {seed!r}, {mode!r}, {splits}, {names}: {result!r}"
    if ok:
        data: DataSplits = result
        assert data.classes == (["cat", "dog"] if names is None else ["Cat", "Dog"])
        if splits[1] is None:
            # Stratified: per class of 3, round(3 * fraction) half up, at least 1, and
            # at least 1 of the 3 left for training.
            per_class = min(2, max(1, math.floor(3 * float(fraction) + 0.5))) if holds_out else 0
            assert len(data.train) == 6 - 2 * per_class
            assert (len(data.val) if data.val else 0) == 2 * per_class
            if data.val is not None:
                assert sorted(data.val.targets.tolist()) == [0] * per_class + [1] * per_class
        image, label = data.train[0]
        assert image.shape == (1 if mode == "L" else 3, 4, 5)
        assert label in (0, 1)
    checked(count, "image_folder")


@pytest.mark.parametrize(
    "bad",
    [
        {"splits": ("train",)},
        {"splits": None},
        {"splits": "train"},
        {"splits": (None, None, None)},
        {"splits": ("../", None, None)},
        {"splits": ("train", "..", None)},
        {"splits": ("train", None, "/tmp")},
        {"splits": ("train/cat", None, None)},
        {"splits": ("train", 3, None)},
        {"names": 3},
        {"names": b"names.json"},
        {"root": None},
        {"root": 3},
        {"preprocess": 3},
        {"train_transform": 3},
        {"val_fraction": None},
        {"val_fraction": ""},
        {"val_fraction": []},
        {"seed": None},
        {"verify": "no"},
    ],
    ids=lambda bad: ",".join(f"{k}={v!r}" for k, v in bad.items()),
)
def test_image_folder_refuses_bad_arguments_up_front(image_root: Path, bad: dict[str, Any]) -> None:
    # Found by fuzzing: these failed deep inside (ValueError, TypeError, KeyError,
    # AttributeError), or, for "../", scanned the folders beside the root.
    arguments = {"root": image_root, "splits": ("train", None, None), **bad}
    with pytest.raises(ConfigurationError, match=r"must be|must name"):
        image_folder(**arguments)


def test_image_folder_dataset_refuses_class_folders_outside_the_root(image_root: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"plain folder name"):
        ImageFolderDataset(image_root / "train", class_folders=["cat", "../valid/dog"])


# --------------------------------------------------------------------------- loaders
@given(
    data=datasets(max_size=30),
    args=arguments(
        batch_size=(st.integers(1, 8), st.sampled_from([0, 2.0, True, None])),
        shuffle=(st.booleans(), st.sampled_from([1, "yes"])),
        seed=SEEDS,
        shard=(
            st.integers(1, 4).flatmap(lambda w: st.tuples(st.integers(0, w - 1), st.just(w))),
            st.tuples(st.integers(-1, 4), st.integers(0, 4) | st.sampled_from([1.0, None])),
        ),
        drop_last=(st.booleans(), st.sampled_from([None, 0])),
    ),
    epoch=st.integers(0, 3),
)
def test_loaders(data: TensorImageDataset, args: dict[str, Any], epoch: int, count: Count) -> None:
    batch_size, shuffle, seed, (rank, world_size), drop_last = args.values()
    options = {"shuffle": shuffle, "seed": seed, "drop_last": drop_last}
    plain = torch.utils.data.TensorDataset(data.images, data.targets)
    loaders = []
    for dataset in (data, plain):
        ok, loader = expect_clean(
            lambda dataset=dataset: make_loader(
                dataset, batch_size, rank=rank, world_size=world_size, **options
            )
        )
        loaders.append((ok, loader))
    valid = (
        as_int(batch_size) is not None
        and batch_size >= 1
        and isinstance(shuffle, bool)
        and isinstance(drop_last, bool)
        and valid_seed(seed)
        and as_int(world_size) is not None
        and world_size >= 1
        and 0 <= rank < world_size
    )
    assert [ok for ok, _ in loaders] == [valid, valid], repr(loaders)
    if valid:
        orders = []
        for _, loader in loaders:
            loader.set_epoch(epoch)
            batches = list(loader)
            assert len(batches) == len(loader)
            assert all(len(b[0]) <= batch_size for b in batches)
            if drop_last:
                assert all(len(b[0]) == batch_size for b in batches)
            orders.append(torch.cat([b[1] for b in batches]) if batches else torch.zeros(0))
        assert torch.equal(orders[0].long(), orders[1].long()), "both paths, the same order"
        sampler = SeededSampler(
            len(data), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size
        )
        sampler.set_epoch(epoch)
        mine = list(sampler)
        if not drop_last:  # the ranks together see every sample exactly once
            everyone = []
            for other in range(world_size):
                shard = SeededSampler(
                    len(data), shuffle=shuffle, seed=seed, rank=other, world_size=world_size
                )
                shard.set_epoch(epoch)
                everyone += list(shard)
            assert sorted(everyone) == list(range(len(data)))
            assert data.targets[mine].tolist() == orders[0].tolist()
    checked(count, "loaders")
