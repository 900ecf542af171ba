"""Fuzzing callback and ``Trainer`` arguments.

Callbacks built from random arguments either refuse them with a
:class:`~visionkit.VisionKitError` that says what to pass, or behave as documented on a
random run of metrics: ``EarlyStopping`` stops exactly when patience runs out,
``CSVLogger`` writes every epoch in its folder, the progress bar writes one line per epoch.
``Trainer`` constructor arguments that it validates are fuzzed together with a tiny
``fit``. Each checked example is counted as ``fuzz_cases.<target>``.

The tests at the end pin bugs the fuzzing found in ``ModelCheckpoint``, the ``Trainer``
constructor, device parsing and ``image_folder``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from fuzzing import Count, arguments, as_int, as_real, checked, expect_clean, is_bool
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from visionkit import ConfigurationError, DataError, Trainer, VisionKitError
from visionkit.callbacks import (
    CSVLogger,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    TensorBoardLogger,
    TerminateOnNaN,
)
from visionkit.callbacks.progress import format_metrics
from visionkit.data import TensorImageDataset, image_folder
from visionkit.models import create_model
from visionkit.training import History

HOSTILE = [None, "1", b"x", [], {}, object(), 1 + 1j]
BOOLS = (st.booleans() | st.just(np.bool_(True)), st.sampled_from(["no", 1, 0, None, "True"]))


MONITORS = (
    st.sampled_from(["val_loss", "val_accuracy", "train_loss", "val_f1", "custom"]),
    st.sampled_from(["", None, 3, b"val_loss", ["val_loss"]]),
)
MODES = (st.sampled_from(["min", "max", "auto"]), st.sampled_from(["MIN", "", None, 1, ["min"]]))
DELTAS = (
    st.floats(0, 1) | st.sampled_from([0, -0.0, np.float32(0.1)]),
    st.floats(max_value=-1e-9) | st.sampled_from([math.nan, math.inf, "0", None, True]),
)


def _valid_monitor(monitor: Any, mode: Any, min_delta: Any) -> bool:
    delta = as_real(min_delta)
    return (
        isinstance(monitor, str)
        and monitor != ""
        and isinstance(mode, str)
        and mode in ("min", "max", "auto")
        and delta is not None
        and math.isfinite(delta)
        and delta >= 0
    )


# --------------------------------------------------------------------------- EarlyStopping
def _trainer_stub() -> SimpleNamespace:
    return SimpleNamespace(should_stop=False, is_global_zero=True, model=torch.nn.Linear(1, 1))


@given(
    args=arguments(
        monitor=MONITORS,
        mode=MODES,
        min_delta=DELTAS,
        patience=(
            st.integers(0, 4) | st.just(np.int64(2)),
            st.integers(-3, -1) | st.sampled_from([1.5, math.nan, math.inf, True, "3", None]),
        ),
        restore_best_weights=BOOLS,
        check_finite=BOOLS,
        verbose=(st.just(False), st.sampled_from(["yes", 1])),
    ),
    values=st.lists(
        st.floats(-10, 10) | st.sampled_from([math.nan, math.inf, -math.inf]), max_size=12
    ),
)
def test_early_stopping(args: dict[str, Any], values: list[float], count: Count) -> None:
    ok, stopper = expect_clean(lambda: EarlyStopping(**args))
    patience = as_int(args["patience"])
    valid = (
        _valid_monitor(args["monitor"], args["mode"], args["min_delta"])
        and patience is not None
        and patience >= 0
        and is_bool(args["restore_best_weights"])
        and is_bool(args["check_finite"])
        and is_bool(args["verbose"])
    )
    assert ok == valid, f"EarlyStopping({args}): {stopper!r}"
    if ok:
        trainer = _trainer_stub()
        mode, delta = stopper.mode, float(args["min_delta"])
        best, wait, stopped_at = (math.inf if mode == "min" else -math.inf), 0, None
        for epoch, value in enumerate(values):
            stopper.on_epoch_end(trainer, epoch, {stopper.monitor: value})
            if args["check_finite"] and not math.isfinite(value):  # stops at once, as Lightning
                stopped_at = epoch
                assert trainer.should_stop, "a non-finite value stops training"
                assert stopper.stop_reason is not None
                assert f"at epoch {epoch}" in stopper.stop_reason
                break
            better = not math.isnan(value) and (
                value < best - delta if mode == "min" else value > best + delta
            )
            best, wait = (value, 0) if better else (best, wait + 1)
            if not better and wait >= patience:  # Keras: patience 0 stops at the first miss
                stopped_at = epoch
            assert trainer.should_stop == (stopped_at is not None), "stops when patience ends"
            assert stopper.best == best or (math.isnan(stopper.best) and math.isnan(best))
            if trainer.should_stop:
                break
        assert stopper.stopped_epoch == stopped_at
        missing, _ = expect_clean(lambda: stopper.on_epoch_end(trainer, 0, {"other": 1.0}))
        assert not missing, "a metric that is not there is a clear error"
    checked(count, "early_stopping")


@given(
    args=arguments(
        monitor=(MONITORS[0] | st.none(), st.sampled_from(["", 3, b"val_loss"])),
        mode=MODES,
        min_delta=DELTAS,
        save_top_k=(st.integers(-1, 3), st.integers(-5, -2)),
        every_n_epochs=(st.integers(1, 3), st.integers(-2, 0)),
        every_n_train_steps=(st.none() | st.integers(1, 9), st.integers(-2, 0)),
        save_last=(st.booleans(), st.booleans()),
        dirpath=(st.none() | st.sampled_from(["checkpoints", Path("ckpt")]), st.none()),
    )
)
def test_model_checkpoint_constructor(args: dict[str, Any], count: Count) -> None:
    """Out-of-range counts and monitors (wrong types: ``test_model_checkpoint_refuses``)."""
    ok, callback = expect_clean(lambda: ModelCheckpoint(**args))
    monitor = args["monitor"] if args["monitor"] is not None else "val_loss"
    valid = (
        _valid_monitor(monitor or "val_loss", args["mode"], args["min_delta"])
        and args["save_top_k"] >= -1
        and args["every_n_epochs"] >= 1
        and (args["every_n_train_steps"] is None or args["every_n_train_steps"] >= 1)
    )
    assert ok == valid, f"ModelCheckpoint({args}): {callback!r}"
    if ok:
        assert callback.mode in ("min", "max")
        assert callback.monitor == (monitor or "val_loss")
    checked(count, "model_checkpoint")


# --------------------------------------------------------------------------- loggers
names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)


@given(
    args=arguments(
        save_dir=(
            st.sampled_from(["logs", "a/b", "", "."]) | names.map(lambda n: f"logs/{n}"),
            st.sampled_from([None, 3, b"logs", ["logs"], "bad\x00dir"]),
        ),
        filename=(
            st.sampled_from(["metrics.csv", "run 1.csv", "é.csv", ".hidden"]),
            st.sampled_from(["", ".", "..", "a/b.csv", "/abs.csv", None, 3, "x\x00.csv"]),
        ),
    ),
    rows=st.lists(
        st.dictionaries(
            st.sampled_from(["train_loss", "val_loss", "lr", "epoch"]),
            st.floats(allow_nan=True),
            min_size=1,
        ),
        max_size=4,
    ),
)
def test_csv_logger(
    args: dict[str, Any], rows: list[dict[str, float]], tmp_path: Path, count: Count
) -> None:
    ok, logger = expect_clean(lambda: CSVLogger(**args))
    save_dir, filename = args["save_dir"], args["filename"]
    valid = (
        isinstance(save_dir, (str, Path))
        and "\x00" not in str(save_dir)
        and isinstance(filename, str)
        and filename not in ("", ".", "..")
        and "/" not in filename
        and "\x00" not in filename
    )
    assert ok == valid, f"CSVLogger({args}): {logger!r}"
    if ok:
        assert logger.path.parent == Path(save_dir)
        assert logger.path.name == filename
        logger.path = tmp_path / "out" / logger.path  # write inside the test folder
        history = History()
        trainer = SimpleNamespace(is_global_zero=True, history=history)
        logger.on_fit_start(trainer)
        for epoch, row in enumerate(rows):
            history.append(dict(row))
            logger.on_epoch_end(trainer, epoch, row)
        with logger.path.open(newline="", encoding="utf-8") as stream:
            written = list(csv.DictReader(stream))
        assert len(written) == len(rows), "one row per epoch"
        for got, row in zip(written, rows, strict=True):
            for key, value in row.items():
                assert got[key] == str(value) or (math.isnan(value) and got[key] == "nan")
    checked(count, "csv_logger")


@given(
    args=arguments(
        logging_interval=(
            st.sampled_from(["epoch", "step"]),
            st.sampled_from(["batch", "", None, ["epoch"]]),
        ),
        log_momentum=BOOLS,
    ),
    groups=st.lists(st.floats(0, 10), min_size=1, max_size=3),
    optimizer=st.sampled_from(["SGD", "Adam", "AdamW", "RMSprop"]),
)
def test_learning_rate_monitor(
    args: dict[str, Any], groups: list[float], optimizer: str, count: Count
) -> None:
    ok, monitor = expect_clean(lambda: LearningRateMonitor(**args))
    valid = args["logging_interval"] in ("epoch", "step") and is_bool(args["log_momentum"])
    assert ok == valid, f"LearningRateMonitor({args}): {monitor!r}"
    if ok:
        params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in groups]
        optim = getattr(torch.optim, optimizer)(params)
        values = monitor.values(optim, momentum=monitor.log_momentum)
        lrs = {k: v for k, v in values.items() if k.startswith("lr-")}
        assert list(lrs.values()) == groups, "one learning rate per parameter group, in order"
        if len(groups) > 1:
            assert all(f"/pg{i}" in k for i, k in enumerate(lrs))
    checked(count, "lr_monitor")


@given(
    args=arguments(
        stream=(st.sampled_from(["stringio", None]), st.sampled_from([3, "out.txt", b"x"])),
        refresh_seconds=(
            st.floats(0, 5) | st.just(0),
            st.sampled_from([-1, math.nan, math.inf, "1", None]),
        ),
        force_tty=(st.sampled_from([None, True, False]), st.sampled_from(["yes", 1])),
    ),
    epochs=st.lists(
        st.dictionaries(
            st.sampled_from(["train_loss", "val_accuracy", "lr", "lr-SGD", "epoch"]),
            st.floats() | st.integers(-5, 5),
            min_size=1,
        ),
        max_size=3,
    ),
)
def test_progress_bar(args: dict[str, Any], epochs: list[dict[str, float]], count: Count) -> None:
    stream = io.StringIO() if args["stream"] == "stringio" else args["stream"]
    ok, bar = expect_clean(lambda: ProgressBar(**{**args, "stream": stream}))
    refresh = as_real(args["refresh_seconds"])
    valid = (
        (stream is None or isinstance(stream, io.StringIO))
        and refresh is not None
        and math.isfinite(refresh)
        and refresh >= 0
        and (args["force_tty"] is None or is_bool(args["force_tty"]))
    )
    assert ok == valid, f"ProgressBar({args}): {bar!r}"
    if ok and stream is not None:
        trainer = SimpleNamespace(
            is_global_zero=True, max_epochs=len(epochs), epoch=0, batch_in_epoch=0
        )
        bar.on_fit_start(trainer)
        for epoch, metrics in enumerate(epochs):
            bar.on_train_epoch_start(trainer, epoch)
            bar.on_epoch_end(trainer, epoch, metrics)
        lines = stream.getvalue().replace("\r", "\n").strip("\n").split("\n")
        assert len([line for line in lines if line.startswith("epoch")]) == len(epochs)
        for metrics in epochs:
            format_metrics(metrics)  # any float prints: nan, inf, huge
    checked(count, "progress_bar")


@given(
    args=arguments(
        log_dir=(
            st.sampled_from(["runs", "tb/run 1", Path("tb")]),
            st.sampled_from([None, 3, b"runs", "a\x00b"]),
        ),
        log_steps=BOOLS,
    )
)
def test_tensorboard_logger_constructor(args: dict[str, Any], count: Count) -> None:
    pytest.importorskip("torch.utils.tensorboard")
    ok, logger = expect_clean(lambda: TensorBoardLogger(**args))
    log_dir = args["log_dir"]
    valid = (
        isinstance(log_dir, (str, Path))
        and "\x00" not in str(log_dir)
        and is_bool(args["log_steps"])
    )
    assert ok == valid, f"TensorBoardLogger({args}): {logger!r}"
    if ok:
        assert logger.log_dir == Path(log_dir)
        assert logger.writer is None, "nothing is written before fit"
    checked(count, "tensorboard_logger")


def test_terminate_on_nan_takes_no_arguments(count: Count) -> None:
    assert TerminateOnNaN().error is None
    with pytest.raises(TypeError, match="argument"):
        TerminateOnNaN(3)  # type: ignore[call-arg]
    checked(count, "terminate_on_nan")


# --------------------------------------------------------------------------- Trainer
@pytest.fixture(scope="module")
def tiny_data() -> TensorImageDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 1, 2, 2), dtype=torch.uint8, generator=generator)
    return TensorImageDataset(images, torch.arange(10) % 2, ["a", "b"])


@given(
    args=arguments(
        max_epochs=(st.integers(1, 2), st.integers(-2, 0)),
        max_steps=(st.none() | st.integers(1, 4), st.integers(-1, 0)),
        precision=(
            st.sampled_from(["32", "bf16", "16"]),
            st.sampled_from(["64", 32, "fp16", None, ""]),
        ),
        accumulate_grad_batches=(st.integers(1, 3), st.integers(-1, 0)),
        scheduler_interval=(st.sampled_from(["epoch", "step"]), st.sampled_from(["batch", None])),
        log_every_n_steps=(st.none() | st.integers(1, 3), st.integers(-1, 0)),
        gradient_clip_val=(
            st.none() | st.floats(0.1, 5),
            st.sampled_from([0.0, -1.0, math.nan, math.inf, "1"]),
        ),
        seed=(st.integers(0, 2**32) | st.just(-1), st.sampled_from(["x", 1.5, None, 2**65])),
        device=(
            st.sampled_from(["cpu", torch.device("cpu")]),
            st.sampled_from(["gpu", "", "cuda:99", "tpu"]),
        ),
        batch_size=(st.integers(1, 6), st.sampled_from([0, -1, 2.5, None])),
    )
)
def test_trainer_arguments(
    args: dict[str, Any], tiny_data: TensorImageDataset, tmp_path: Path, count: Count
) -> None:
    batch_size = args.pop("batch_size")
    torch.manual_seed(0)
    model = create_model("mlp", in_features=4, hidden=[3], num_classes=2)
    ok, trainer = expect_clean(
        lambda: Trainer(model, enable_progress_bar=False, default_root_dir=tmp_path, **args)
    )
    valid = (
        args["max_epochs"] >= 1
        and (args["max_steps"] is None or args["max_steps"] >= 1)
        and args["precision"] in ("32", "bf16", "16")
        and args["accumulate_grad_batches"] >= 1
        and args["scheduler_interval"] in ("epoch", "step")
        and (args["log_every_n_steps"] is None or args["log_every_n_steps"] >= 1)
        and isinstance(args["gradient_clip_val"], (float, type(None)))
        and (args["gradient_clip_val"] is None or 0 < args["gradient_clip_val"] < math.inf)
        and as_int(args["seed"]) is not None
        and -(2**63) <= args["seed"] < 2**64
        and args["device"] in ("cpu", torch.device("cpu"))
    )
    assert ok == valid, f"Trainer({args}): {trainer!r}"
    if ok:  # the batch size is checked when training starts
        done, history = expect_clean(
            lambda: trainer.fit(tiny_data, tiny_data, batch_size=batch_size)
        )
        fit_valid = as_int(batch_size) is not None and batch_size >= 1
        assert done == fit_valid, f"fit(batch_size={batch_size!r}) with {args}: {history!r}"
        if done:
            steps_per_epoch = math.ceil(
                math.ceil(10 / batch_size) / args["accumulate_grad_batches"]
            )
            expected = steps_per_epoch * args["max_epochs"]
            if args["max_steps"] is not None:
                expected = min(expected, args["max_steps"])
            assert trainer.global_step == expected, "max_epochs, max_steps and accumulation"
            assert 1 <= len(history) <= args["max_epochs"]
            assert all(math.isfinite(v) for v in history.epochs[-1].values())
            assert trainer.best_checkpoint is not None
            assert trainer.best_checkpoint.is_file()
    checked(count, "trainer")


# --------------------------------------------------------------------------- found by fuzzing
def _model() -> torch.nn.Module:
    return create_model("mlp", in_features=4, hidden=[], num_classes=2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_epochs": math.nan},
        {"max_epochs": 1.5},
        {"max_epochs": math.inf},
        {"max_epochs": True},
        {"max_epochs": "3"},
        {"max_steps": math.nan},
        {"max_time": -1},
        {"max_time": math.nan},
        {"max_time": "1"},
        {"accumulate_grad_batches": 1.5},
        {"accumulate_grad_batches": math.nan},
        {"gradient_clip_val": -1.0},
        {"gradient_clip_val": math.nan},
        {"gradient_clip_val": "1"},
        {"seed": "x"},
        {"seed": 2**70},
        {"num_workers": -1},
        {"num_workers": 1.5},
        {"log_every_n_steps": 1.5},
        {"log_every_n_steps": math.nan},
        {"top_k": (0,)},
        {"top_k": ("a",)},
        {"top_k": 0},  # a single k >= 1 is accepted as (k,)
        {"monitor": 3},
        {"default_root_dir": None},
        {"callbacks": [3]},
        {"callbacks": 3},
        {"loss": 3},
        {"optimizer": 3},
    ],
    ids=lambda kwargs: ",".join(f"{k}={v!r}" for k, v in kwargs.items()),
)
def test_trainer_constructor_refuses(kwargs: dict[str, Any]) -> None:
    with pytest.raises(VisionKitError):
        Trainer(_model(), device="cpu", enable_progress_bar=False, **kwargs)


@pytest.mark.parametrize("device", [None, "meta", "cpu:1"], ids=repr)
def test_trainer_refuses_devices_it_cannot_train_on(device: Any) -> None:
    with pytest.raises(ConfigurationError):
        Trainer(_model(), device=device, enable_progress_bar=False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"save_top_k": 1.5},
        {"save_top_k": True},
        {"save_top_k": math.nan},
        {"save_top_k": "1"},
        {"every_n_epochs": math.nan},
        {"every_n_epochs": 1.5},
        {"every_n_epochs": "1"},
        {"every_n_train_steps": math.nan},
        {"filename": 3},
        {"filename": ""},
        {"dirpath": 3},
    ],
    ids=lambda kwargs: ",".join(f"{k}={v!r}" for k, v in kwargs.items()),
)
def test_model_checkpoint_refuses(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ModelCheckpoint(**kwargs)


@pytest.fixture
def small_folder(tmp_path: Path) -> Path:
    for name in ("cat", "dog"):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "train" / name / "0.png")
    return tmp_path


@pytest.mark.parametrize(
    "kwargs",
    [
        {"splits": ("train",)},
        {"splits": None},
        {"splits": (None, None, None)},
        {"names": 3},
        {"preprocess": 3},
        {"root": None},
    ],
    ids=lambda kwargs: ",".join(f"{k}={v!r}" for k, v in kwargs.items()),
)
def test_image_folder_refuses(kwargs: dict[str, Any], small_folder: Path) -> None:
    arguments = {"root": small_folder, "splits": ("train", None, None), **kwargs}
    with pytest.raises((ConfigurationError, DataError)):
        image_folder(**arguments)
