"""Run folders never collide; resume_from="auto" picks the checkpoint that got furthest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from visionkit import ConfigurationError, Trainer
from visionkit.callbacks import ModelCheckpoint
from visionkit.data import mnist_sample
from visionkit.models import create_model
from visionkit.training._runs import newest_checkpoint


def _trainer(root: Path, **options: object) -> Trainer:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=784, hidden=[8], num_classes=10)
    return Trainer(model, device="cpu", enable_progress_bar=False, default_root_dir=root, **options)  # type: ignore[arg-type]


def _data() -> object:
    return mnist_sample().train.select(range(64))


def test_auto_picks_the_checkpoint_with_most_progress_not_the_newest_file(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    ahead = _trainer(tmp_path / "a", max_steps=6, callbacks=[ModelCheckpoint(folder / "a")])
    ahead.fit(_data(), batch_size=16)
    behind = _trainer(tmp_path / "b", max_steps=2, callbacks=[ModelCheckpoint(folder / "b")])
    behind.fit(_data(), batch_size=16)
    (folder / "a" / "last.ckpt").rename(folder / "run-a.ckpt")
    (folder / "b" / "last.ckpt").rename(folder / "run-b.ckpt")
    os.utime(folder / "run-a.ckpt", (1, 1))  # the furthest run's file is the oldest
    (folder / ".last.ckpt.x1y2.tmp").write_bytes(b"half a write")
    (folder / "broken.ckpt").write_bytes(b"not a checkpoint")
    assert newest_checkpoint(folder) == folder / "run-a.ckpt"


def test_auto_on_a_fresh_folder_starts_from_scratch_in_version_0(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(_data(), batch_size=16, resume_from="auto")
    assert trainer.global_step == 2
    assert trainer.last_checkpoint == tmp_path / "version_0" / "checkpoints" / "last.ckpt"


def test_auto_continues_the_latest_run_folder_instead_of_a_new_version(tmp_path: Path) -> None:
    first = _trainer(tmp_path, max_steps=3, max_epochs=3)
    first.fit(_data(), batch_size=16, resume_from="auto")
    second = _trainer(tmp_path, max_epochs=3)  # the same script, run again
    second.fit(_data(), batch_size=16, resume_from="auto")
    assert second.global_step == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["version_0"]
    again = _trainer(tmp_path, max_epochs=3)  # nothing left to do: resumes at the end
    again.fit(_data(), batch_size=16, resume_from=True)
    assert again.global_step == 12


def test_a_fresh_run_claims_a_new_folder(tmp_path: Path) -> None:
    _trainer(tmp_path, max_steps=1).fit(_data(), batch_size=16)
    _trainer(tmp_path, max_steps=1).fit(_data(), batch_size=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["version_0", "version_1"]


def test_resume_from_of_the_wrong_type_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"resume_from must be a checkpoint path, 'auto'"):
        _trainer(tmp_path).fit(_data(), batch_size=16, resume_from=3)  # type: ignore[arg-type]


def test_a_folder_another_run_claimed_first_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visionkit.training import _runs

    # two runs that both looked before either created a folder: both think 0 is free
    monkeypatch.setattr(_runs, "_next_version", lambda root, prefix: 0)
    first, second = _runs.claim_run_dir(tmp_path), _runs.claim_run_dir(tmp_path)
    assert (first.name, second.name) == ("version_0", "version_1")
