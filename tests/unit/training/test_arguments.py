"""``Trainer`` and ``ModelCheckpoint`` arguments: refused before anything happens, clearly."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from visionkit import ConfigurationError, Trainer, resolve_device
from visionkit.callbacks import Callback, EarlyStopping, ModelCheckpoint
from visionkit.models import create_model


def _model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("mlp", in_features=4, hidden=[3], num_classes=2)


def _refused(message: str, **options: Any) -> None:
    options.setdefault("device", "cpu")
    with pytest.raises(ConfigurationError, match=f"^{re.escape(message)}$"):
        Trainer(_model(), enable_progress_bar=False, **options)


@pytest.mark.parametrize("device", ["meta", torch.device("meta")], ids=repr)
def test_meta_device_is_refused_before_the_weights_are_erased(device: Any) -> None:
    model = _model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with pytest.raises(
        ConfigurationError,
        match=re.escape(
            "device 'meta' is not supported: visionkit runs on the CPU, CUDA or MPS, "
            "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ),
    ):
        Trainer(model, device=device, enable_progress_bar=False)
    for name, p in model.named_parameters():
        assert p.device.type == "cpu"
        assert torch.equal(p, before[name]), f"{name} changed"


def test_devices_that_do_not_exist_are_refused() -> None:
    _refused(
        "device must be 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device, got None "
        "(NoneType): pass device='auto' to use the best one available",
        device=None,
    )
    _refused(
        "device 'cpu:1' does not exist: there is one CPU device, use device='cpu'",
        device="cpu:1",
    )
    trainer = Trainer(_model(), device="cpu:0", enable_progress_bar=False)
    assert trainer.device == torch.device("cpu")  # batches on "cpu" are not moved again


def test_negative_or_nan_gradient_clip_is_refused() -> None:
    hint = ": pass the largest gradient norm allowed, e.g. 1.0, or None to not clip"
    expected = "gradient_clip_val must be a finite number > 0 or None, got "
    _refused(expected + "-1.0" + hint, gradient_clip_val=-1.0)
    _refused(expected + "0.0" + hint, gradient_clip_val=0)
    _refused(expected + "nan" + hint, gradient_clip_val=math.nan)
    _refused(expected + "'1' (str)" + hint, gradient_clip_val="1")


def test_callbacks_must_be_callback_instances() -> None:
    _refused(
        "callbacks[1] must be a visionkit.callbacks.Callback, got 3 (int): subclass "
        "visionkit.callbacks.Callback and override the hooks you need",
        callbacks=[EarlyStopping(), 3],
    )
    _refused(
        "callbacks[0] must be a visionkit.callbacks.Callback, got <class "
        "'visionkit.callbacks.early_stopping.EarlyStopping'> (type): pass an instance, "
        "e.g. EarlyStopping()",
        callbacks=[EarlyStopping],
    )
    _refused(
        "callbacks must be a list of visionkit.callbacks.Callback objects, got 3 (int): "
        "pass e.g. callbacks=[EarlyStopping(patience=3)], or None",
        callbacks=3,
    )

    class Mine(Callback):  # downstream subclasses are accepted
        pass

    mine = Mine()
    trainer = Trainer(_model(), device="cpu", callbacks=(mine,), enable_progress_bar=False)
    assert trainer.callbacks[0] is mine


def test_counts_must_be_whole_numbers() -> None:
    _refused(
        "max_epochs must be an integer >= 1, got 1.5 (float): pass a whole number, "
        "e.g. max_epochs=10",
        max_epochs=1.5,
    )
    _refused(
        "max_epochs must be an integer >= 1, got True (bool): pass a whole number, "
        "e.g. max_epochs=10",
        max_epochs=True,
    )
    _refused(
        "max_time must be a number > 0 or None, got -1.0: pass the seconds training may "
        "take, e.g. max_time=600, or None for no limit",
        max_time=-1,
    )
    _refused(
        "seed must be an integer, got 'x' (str)",
        seed="x",
    )


def test_valid_arguments_are_kept_as_plain_python_values() -> None:
    trainer = Trainer(
        _model(),
        device="cpu",
        enable_progress_bar=False,
        max_epochs=np.int64(3),
        max_time=np.float32(0.5),
        max_steps=np.int32(7),
        gradient_clip_val=1,
        top_k=5,
        seed=2**64 - 1,
    )
    assert (trainer.max_epochs, trainer.max_steps, trainer.max_time) == (3, 7, 0.5)
    assert type(trainer.max_epochs) is int
    assert type(trainer.max_time) is float
    assert trainer.gradient_clip_val == 1.0
    assert trainer.top_k == (5,)  # a single k means (k,)
    assert Trainer(_model(), device="cpu", top_k=[], enable_progress_bar=False).top_k == ()
    assert Trainer(_model(), device="cpu", max_time=math.inf).max_time == math.inf


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"save_top_k": 1.5},
            "save_top_k must be an integer >= -1, got 1.5 (float): pass how many best "
            "checkpoints to keep (0 keeps none, -1 all)",
        ),
        (
            {"every_n_train_steps": math.nan},
            "every_n_train_steps must be an integer >= 1 or None, got nan (float): pass a "
            "whole number of steps, or None to save at epoch ends only",
        ),
        (
            {"filename": "../best"},
            "filename must be a plain file name template such as "
            "'epoch{epoch:03.0f}-{val_loss:.4f}' (no folder part: put folders in dirpath), "
            "got '../best' (str)",
        ),
        ({"dirpath": 3}, "dirpath must be a path (a str or pathlib.Path), got 3 (int)"),
    ],
    ids=lambda value: ",".join(value) if isinstance(value, dict) else "",
)
def test_model_checkpoint_arguments(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{re.escape(message)}$"):
        ModelCheckpoint(**options)


def test_model_checkpoint_template_may_name_metrics_with_a_slash() -> None:
    template = "e{epoch:03.0f}-{train/loss:.4f}"
    assert ModelCheckpoint(filename=template).filename == template


def test_cuda_index_beyond_the_visible_gpus_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(
        ConfigurationError,
        match=re.escape(
            "device 'cuda:2' was requested but only 2 CUDA device(s) are visible "
            "(cuda:0 to cuda:1): use device='cuda' or one of those"
        ),
    ):
        resolve_device("cuda:2")
