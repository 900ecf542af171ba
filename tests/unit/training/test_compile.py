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
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="shapes cannot"):
        forward(torch.zeros(1, 3))
    assert not forward.active
