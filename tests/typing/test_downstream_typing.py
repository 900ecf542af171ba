"""A downstream package subclassing ``Callback`` passes ``mypy --strict`` and keeps state."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from visionkit import Trainer
from visionkit.data import mnist_sample
from visionkit.models import create_model

sys.path.insert(0, str(Path(__file__).parent))
from downstream_callbacks import LossTracker

PACKAGE = Path(__file__).parent / "downstream_callbacks"
CACHE = Path(__file__).resolve().parents[2] / ".mypy_cache"


def _mypy(*paths: Path) -> tuple[str, int]:
    api = pytest.importorskip("mypy.api")
    stdout, stderr, status = api.run(
        ["--strict", "--no-error-summary", f"--cache-dir={CACHE}", *map(str, paths)]
    )
    return stdout + stderr, status


def test_downstream_callback_package_passes_mypy_strict() -> None:
    output, status = _mypy(PACKAGE)
    assert status == 0, output


def test_wrong_hook_signature_is_caught_by_mypy(tmp_path: Path) -> None:
    bad = tmp_path / "bad_callback.py"
    bad.write_text(
        textwrap.dedent(
            """
            from visionkit import Trainer
            from visionkit.callbacks import Callback

            class Bad(Callback):
                def on_epoch_end(self, trainer: Trainer, epoch: str) -> None:
                    pass
            """
        )
    )
    output, status = _mypy(bad)
    assert status == 1
    assert 'Signature of "on_epoch_end" incompatible with supertype' in output


def _trainer(tracker: LossTracker, max_epochs: int) -> Trainer:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=784, hidden=[8], num_classes=10)
    return Trainer(
        model,
        max_epochs=max_epochs,
        device="cpu",
        callbacks=[tracker],
        enable_progress_bar=False,
        default_root_dir="runs",
    )


def test_downstream_callback_keeps_its_state_through_a_resume() -> None:
    train = mnist_sample().train.select(range(64))
    first = _trainer(LossTracker(), max_epochs=1)
    first.fit(train, batch_size=32)
    tracker = LossTracker()
    resumed = _trainer(tracker, max_epochs=3)
    resumed.fit(train, batch_size=32, resume_from=first.last_checkpoint)
    assert tracker.samples_seen == 3 * 64
    assert len(tracker.epoch_losses) == 3
    assert tracker.epoch_losses == resumed.history["train_loss"]
    assert tracker.fit_starts == 1
