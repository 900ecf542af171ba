"""``Trainer(compile=True)``: the compiled forward, and the eager fallback when compile fails.

No test runs a real ``torch.compile`` (minutes on a CPU); ``torch.compile`` is replaced.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

from visionkit import Trainer
from visionkit.data import TensorImageDataset
from visionkit.exceptions import VisionKitError
from visionkit.predict import load_checkpoint
from visionkit.training._compile import CompiledForward


def _data() -> TensorImageDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8, generator=generator)
    return TensorImageDataset(images, torch.arange(40) % 3, ["a", "b", "c"])


def _trainer(**options: Any) -> Trainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    return Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        max_epochs=1,
        device="cpu",
        enable_progress_bar=False,
        default_root_dir="runs",
        **options,
    )


class _Recorder:
    """Stands in for ``torch.compile``: returns a wrapper that counts (or fails) calls."""

    def __init__(self, fail_on_call: bool = False) -> None:
        self.calls = 0
        self.fail_on_call = fail_on_call

    def __call__(self, module: nn.Module, **_: Any) -> Any:
        def compiled(x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.fail_on_call:
                raise RuntimeError("InductorError: no working C++ compiler found\ndetails")
            return module(x)  # type: ignore[no-any-return]

        return compiled


def test_compile_trains_through_the_compiled_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(torch, "compile", recorder)
    trainer = _trainer(compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(_data(), batch_size=8)
    assert recorder.calls == 5  # 40 samples / batch 8, training only (evaluation is eager)
    assert trainer.global_step == 5


def test_compile_off_by_default_never_calls_torch_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(torch, "compile", recorder)
    _trainer().fit(_data(), batch_size=8)
    assert recorder.calls == 0


def test_compile_unavailable_warns_once_and_trains_eagerly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unavailable(module: nn.Module, **_: Any) -> Any:
        raise RuntimeError("torch.compile is not supported on this platform")

    monkeypatch.setattr(torch, "compile", unavailable)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer = _trainer(compile=True)
        history = trainer.fit(_data(), batch_size=8)
    messages = [str(w.message) for w in record if w.category is RuntimeWarning]
    assert len(messages) == 1
    assert messages[0].startswith(
        "torch.compile failed (RuntimeError: torch.compile is not supported on this platform); "
        "training continues without compiling (eager mode)."
    )
    assert trainer.global_step == 5
    assert len(history) == 1


def test_compile_failing_on_first_batch_falls_back_and_matches_eager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eager = _trainer()
    eager.fit(_data(), batch_size=8)
    recorder = _Recorder(fail_on_call=True)
    monkeypatch.setattr(torch, "compile", recorder)
    trainer = _trainer(compile=True)
    with pytest.warns(RuntimeWarning, match=r"^torch\.compile failed \(RuntimeError: Inductor"):
        trainer.fit(_data(), batch_size=8)
    assert recorder.calls == 1  # tried once, then eager for good
    for ours, theirs in zip(trainer.model.parameters(), eager.model.parameters(), strict=True):
        assert torch.equal(ours, theirs)


def test_checkpoint_of_compiled_run_holds_the_plain_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", _Recorder())
    trainer = _trainer(compile=True)
    trainer.fit(_data(), batch_size=8)
    path = trainer.save_checkpoint("model.ckpt")
    keys = sorted(load_checkpoint(path)["state_dict"])
    assert keys == ["1.bias", "1.weight"]


def test_compiled_forward_reraises_a_model_error_from_the_eager_retry() -> None:
    forward = CompiledForward(nn.Linear(4, 2), compile_fn=_Recorder(fail_on_call=True))
    x = torch.zeros(1, 3)
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="shapes cannot"):
        forward.trial_step(x, lambda: forward(x))
    assert not forward.active


class _FailingBackward(torch.autograd.Function):
    """Identity forward; a backward that fails as inductor's generated code can."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        raise AssertionError("expected size 512==512, stride 9==1 at dim=1\nError in op: conv")


class _BackwardFails:
    """Stands in for ``torch.compile``: the forward runs, its backward fails."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, module: nn.Module, **_: Any) -> Any:
        def compiled(x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return _FailingBackward.apply(module(x))  # type: ignore[no-any-return]

        return compiled


def _batch_norm_trainer(**options: Any) -> Trainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.BatchNorm1d(3))
    return Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        max_epochs=2,
        device="cpu",
        enable_progress_bar=False,
        enable_checkpointing=False,
        **options,
    )


def test_compiled_backward_failing_on_first_step_falls_back_and_matches_eager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eager = _batch_norm_trainer()
    eager.fit(_data(), batch_size=8)
    compiler = _BackwardFails()
    monkeypatch.setattr(torch, "compile", compiler)
    trainer = _batch_norm_trainer(compile=True)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(_data(), batch_size=8)
    messages = [str(w.message) for w in record if w.category is RuntimeWarning]
    assert len(messages) == 1
    assert messages[0].startswith(
        "torch.compile failed (AssertionError: expected size 512==512, stride 9==1 at dim=1); "
        "training continues without compiling (eager mode)."
    )
    assert compiler.calls == 1  # the first step's forward, then eager for good
    assert trainer.global_step == eager.global_step == 10
    ours, theirs = trainer.model.state_dict(), eager.model.state_dict()
    assert list(ours) == list(theirs)
    for name in ours:  # weights and batch-norm statistics: the failed step left no trace
        assert torch.equal(ours[name], theirs[name]), name


def test_each_batch_shape_is_on_trial_until_its_first_whole_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch, "compile", _Recorder())
    trainer = _batch_norm_trainer(compile=True)
    forward = trainer._train_forward
    assert isinstance(forward, CompiledForward)
    full, last = torch.zeros(16, 1, 4, 4), torch.zeros(8, 1, 4, 4)
    assert forward.on_trial(full)
    assert forward.on_trial(last)
    trainer.fit(_data(), batch_size=16)  # 40 samples: batches of 16, 16 and 8
    assert forward.active
    assert not forward.on_trial(full)
    assert not forward.on_trial(last)
    assert forward.on_trial(torch.zeros(4, 1, 4, 4))


def test_compiled_backward_failing_on_a_later_batch_shape_falls_back_and_matches_eager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eager = _batch_norm_trainer(accumulate_grad_batches=3)
    eager.fit(_data(), batch_size=16)

    class _PartlyAccumulates(_FailingBackward):
        """Adds to the gradients so far, then fails: a backward that broke half-way."""

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            for parameter in trainer.model.parameters():
                assert parameter.grad is not None  # two batches' gradients so far
                parameter.grad.add_(1.0)
            raise AssertionError("expected size 8==8, stride 3==1 at dim=1")

    def fails_on_the_last_batch(module: nn.Module, **_: Any) -> Any:
        def compiled(x: torch.Tensor) -> torch.Tensor:
            outputs = module(x)
            return _PartlyAccumulates.apply(outputs) if len(x) == 8 else outputs  # type: ignore[no-any-return]

        return compiled

    monkeypatch.setattr(torch, "compile", fails_on_the_last_batch)
    trainer = _batch_norm_trainer(compile=True, accumulate_grad_batches=3)
    with pytest.warns(RuntimeWarning, match=r"^torch\.compile failed \(AssertionError"):
        trainer.fit(_data(), batch_size=16)  # the last batch adds to two batches' gradients
    assert not trainer._train_forward.active  # type: ignore[attr-defined]
    ours, theirs = trainer.model.state_dict(), eager.model.state_dict()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


def test_a_data_error_in_the_trial_step_is_raised_without_a_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch, "compile", _BackwardFails())
    trainer = _batch_norm_trainer(compile=True)
    images = torch.zeros(8, 1, 4, 4, dtype=torch.uint8)
    data = TensorImageDataset(images, torch.arange(8) % 4, ["a", "b", "c", "d"])  # 3 outputs
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(VisionKitError, match=r"^found label 3 but the model outputs 3 classes"):
            trainer.fit(data, batch_size=8)
    assert trainer._train_forward.active  # type: ignore[attr-defined]
