"""``ModelCheckpoint`` writes in the background: same files, taken at the right moment, in order.

The writer thread is slowed down or made to fail through ``atomic_save`` (the function
every checkpoint file goes through), so each test fixes the order of events between the
training thread and the writer instead of hoping for a race.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import visionkit.predict.checkpoint as checkpoint_module
from visionkit import Trainer
from visionkit.callbacks import Callback, ModelCheckpoint
from visionkit.data import TensorImageDataset
from visionkit.exceptions import CheckpointError, ConfigurationError
from visionkit.models import create_model
from visionkit.predict import load_checkpoint

_REAL_SAVE = checkpoint_module.atomic_save
_REAL_LINK = checkpoint_module.atomic_link


def _slow_save(obj: Any, path: Any) -> Path:
    """``atomic_save``, after a pause: long enough for training to run ahead of the write."""
    time.sleep(0.4)
    return _REAL_SAVE(obj, path)


def _data() -> TensorImageDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 1, 8, 8), dtype=torch.uint8, generator=generator)
    return TensorImageDataset(images, torch.arange(96) % 4, ["a", "b", "c", "d"])


class _ValLoss(Callback):
    """Replaces each epoch's ``val_loss`` by a scripted value (here: always improving)."""

    def on_validation_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        metrics["val_loss"] = 1.0 / (trainer.epoch + 1)


def _fit(
    checkpoint: ModelCheckpoint, *callbacks: Callback, max_epochs: int = 2, momentum: float = 0.9
) -> Trainer:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=64, hidden=[32], num_classes=4)
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum),
        max_epochs=max_epochs,
        device="cpu",
        seed=0,
        enable_progress_bar=False,
        callbacks=[_ValLoss(), *callbacks, checkpoint],
    )
    data = _data()
    trainer.fit(data, data, batch_size=16)
    return trainer


def _leaves(value: Any, folder: Path, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a checkpoint by its path, ``folder`` written as ``<dir>``; the time
    stamps (``created``, ``epoch_time``) left out."""
    if isinstance(value, dict):
        leaves: dict[str, Any] = {}
        for key, item in value.items():
            if key not in ("created", "epoch_time"):
                leaves.update(
                    _leaves(item, folder, f"{prefix}/{key}".replace(str(folder), "<dir>"))
                )
        return leaves
    if isinstance(value, (list, tuple)):
        return {
            k: v
            for i, item in enumerate(value)
            for k, v in _leaves(item, folder, f"{prefix}[{i}]").items()
        }
    return {prefix: value.replace(str(folder), "<dir>") if isinstance(value, str) else value}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return bool(a == b) or (a != a and b != b)  # NaN equals NaN here


def test_background_writes_give_the_files_of_foreground_writes(tmp_path: Path) -> None:
    runs = {}
    for mode in (True, False):
        folder = tmp_path / f"async-{mode}"
        checkpoint = ModelCheckpoint(
            folder, save_top_k=2, filename="e{epoch}", every_n_train_steps=4, async_write=mode
        )
        trainer = _fit(checkpoint, max_epochs=3)
        assert trainer.best_checkpoint == folder / "e2.ckpt"
        runs[mode] = {p.name: _leaves(load_checkpoint(p), folder) for p in sorted(folder.iterdir())}
    assert sorted(runs[True]) == ["e1.ckpt", "e2.ckpt", "last.ckpt"] == sorted(runs[False])
    for name, leaves in runs[True].items():
        expected = runs[False][name]
        assert sorted(leaves) == sorted(expected), name
        assert len(leaves) > 50  # weights, optimizer state, RNG states, history, callbacks...
        different = [key for key in leaves if not _same(leaves[key], expected[key])]
        assert not different, (name, different)


class _MutateAfterSave(Callback):
    """At the start of epoch 1, records the weights and momentum, then changes them in place.

    The writer holds back the files of epoch 0 until this has happened.
    """

    def __init__(self, mutated: threading.Event) -> None:
        self.mutated = mutated
        self.before: dict[str, torch.Tensor] = {}
        self.momentum_before: list[torch.Tensor] = []

    def on_train_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch != 1:
            return
        with torch.no_grad():
            self.before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
            state = trainer.optimizer.state
            self.momentum_before = [state[p]["momentum_buffer"].clone() for p in state]
            for parameter in trainer.model.parameters():
                parameter.add_(1000.0)
            for p in state:
                state[p]["momentum_buffer"].add_(1000.0)
        self.mutated.set()


def test_a_background_write_holds_the_state_of_the_moment_it_was_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mutated = threading.Event()

    def held_back(obj: Any, path: Any) -> Path:
        if obj["trainer_state"]["epoch"] == 1:  # the files of epoch 0 (resuming at 1)
            assert mutated.wait(timeout=60), "the training thread never reached epoch 1"
        return _REAL_SAVE(obj, path)

    monkeypatch.setattr(checkpoint_module, "atomic_save", held_back)
    mutate = _MutateAfterSave(mutated)
    _fit(ModelCheckpoint(tmp_path, save_top_k=-1, filename="e{epoch}"), mutate)
    written = load_checkpoint(tmp_path / "e0.ckpt")
    assert mutate.before  # the mutation ran, after the checkpoint was taken
    for name, value in mutate.before.items():
        assert torch.equal(written["state_dict"][name], value), name
    momentum = [
        s["momentum_buffer"] for s in written["trainer_state"]["optimizer"]["state"].values()
    ]
    assert len(momentum) == len(mutate.momentum_before) == 4
    for saved, before in zip(momentum, mutate.momentum_before, strict=True):
        assert torch.equal(saved, before)


def test_fit_returns_only_once_the_last_file_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[str] = []

    def slow(obj: Any, path: Any) -> Path:
        written = _slow_save(obj, path)
        writes.append(Path(path).name)
        return written

    def slow_link(source: Any, path: Any) -> Path:
        time.sleep(0.2)
        linked = _REAL_LINK(source, path)
        writes.append(f"{Path(path).name} = {Path(source).name}")
        return linked

    monkeypatch.setattr(checkpoint_module, "atomic_save", slow)
    monkeypatch.setattr(checkpoint_module, "atomic_link", slow_link)
    trainer = _fit(ModelCheckpoint(tmp_path, filename="e{epoch}"))
    # each epoch's checkpoint is serialised once; last.ckpt is the same file under a 2nd name
    assert writes == ["e0.ckpt", "last.ckpt = e0.ckpt", "e1.ckpt", "last.ckpt = e1.ckpt"]
    assert (tmp_path / "last.ckpt").read_bytes() == (tmp_path / "e1.ckpt").read_bytes()
    assert trainer.best_checkpoint == tmp_path / "e1.ckpt"
    assert load_checkpoint(trainer.best_checkpoint)["trainer_state"]["global_step"] == 12
    assert load_checkpoint(tmp_path / "last.ckpt")["trainer_state"]["global_step"] == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e1.ckpt", "last.ckpt"]


class _ReadBestAtFitEnd(Callback):
    """Reads the best checkpoint when ``fit`` ends, as ``MLflowLogger`` does to log it."""

    def on_fit_end(self, trainer: Trainer) -> None:
        assert trainer.best_checkpoint is not None
        self.step = load_checkpoint(trainer.best_checkpoint)["trainer_state"]["global_step"]


def test_the_best_checkpoint_is_written_before_other_callbacks_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint_module, "atomic_save", _slow_save)
    reader = _ReadBestAtFitEnd()  # its on_fit_end runs before the checkpoint callback's
    _fit(ModelCheckpoint(tmp_path), reader)
    assert reader.step == 12  # best.ckpt of the last epoch, not the one before


class _FailOn:
    """``atomic_save`` whose n-th call fails as a full disk would, through the real writer."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0
        self.bytes: dict[str, bytes] = {}

    def __call__(self, obj: Any, path: Any) -> Path:
        self.calls += 1
        if self.calls != self.n:
            written = _REAL_SAVE(obj, path)
            self.bytes[Path(path).name] = written.read_bytes()
            return written

        def full_disk(stream: Any) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return checkpoint_module.atomic_write(path, full_disk, kind="checkpoint")


@pytest.mark.parametrize(("fail_at", "epochs_run"), [(2, 3), (3, 3)], ids=["next-save", "fit-end"])
def test_a_failed_background_write_raises_with_the_previous_files_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int, epochs_run: int
) -> None:
    """Call 2 is epoch 1's file, reported at epoch 2's save; call 3 is the final save."""
    fail = _FailOn(fail_at)
    monkeypatch.setattr(checkpoint_module, "atomic_save", fail)
    checkpoint = ModelCheckpoint(tmp_path, filename="e{epoch}")
    trainer: Trainer | None = None

    class _Keep(Callback):
        def on_fit_start(self, fit_trainer: Trainer) -> None:
            nonlocal trainer
            trainer = fit_trainer

    with pytest.raises(CheckpointError) as caught:
        _fit(checkpoint, _Keep(), max_epochs=3)
    assert trainer is not None
    failed = tmp_path / f"e{fail_at - 1}.ckpt"
    message = str(caught.value)
    assert f"could not write checkpoint {failed}: No space left on device (errno ENOSPC)" in message
    assert "the disk is full" in message
    assert len(trainer.history) == epochs_run  # raised at the next save, or at the end of fit
    best = tmp_path / f"e{fail_at - 2}.ckpt"
    assert checkpoint.best_model_path == trainer.best_checkpoint == best  # a file on disk
    assert checkpoint.last_model_path == tmp_path / "last.ckpt"
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == [best.name, "last.ckpt"]  # a file is removed only once its successor is written
    assert (tmp_path / "last.ckpt").read_bytes() == fail.bytes[best.name]  # the save before
    steps = 6 * (fail_at - 1)  # last.ckpt of epoch 0, or of epoch 1
    assert load_checkpoint(tmp_path / "last.ckpt")["trainer_state"]["global_step"] == steps
    assert load_checkpoint(best)["trainer_state"]["epoch"] == int(best.stem[1:]) + 1


class _StopWith(Callback):
    def on_train_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch == 1:
            raise RuntimeError("stopped by a callback")


def test_an_interrupted_fit_finishes_the_write_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint_module, "atomic_save", _slow_save)
    with pytest.raises(RuntimeError, match="stopped by a callback"):
        _fit(ModelCheckpoint(tmp_path), _StopWith())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert load_checkpoint(tmp_path / "last.ckpt")["trainer_state"]["global_step"] == 6


def test_a_failed_write_is_noted_on_the_error_that_ends_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint_module, "atomic_save", _FailOn(1))  # epoch 0's file
    with pytest.raises(RuntimeError, match="stopped by a callback") as caught:
        _fit(ModelCheckpoint(tmp_path), _StopWith())
    notes = getattr(caught.value, "__notes__", [])
    assert len(notes) == 1
    assert notes[0].startswith(
        f"visionkit: a checkpoint write also failed: could not write checkpoint "
        f"{tmp_path / 'best.ckpt'}: No space left on device"
    )


@pytest.mark.parametrize("async_write", [True, False])
def test_the_best_file_and_last_ckpt_of_an_epoch_are_one_file_written_once(
    tmp_path: Path, async_write: bool
) -> None:
    checkpoint = ModelCheckpoint(tmp_path, async_write=async_write)
    _fit(checkpoint, max_epochs=1)
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    assert best.stat().st_ino == last.stat().st_ino  # a hard link: the bytes written once
    state = load_checkpoint(last)["trainer_state"]["callbacks"]["ModelCheckpoint"]
    assert state["best_model_path"] == str(best)  # the bookkeeping of the save itself
    assert state["last_model_path"] == str(last)


def _no_hard_links(source: Any, target: Any) -> None:
    raise OSError(errno.EPERM, os.strerror(errno.EPERM))


def test_without_hard_links_last_ckpt_is_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint_module.os, "link", _no_hard_links)
    _fit(ModelCheckpoint(tmp_path), max_epochs=2)
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    assert best.stat().st_ino != last.stat().st_ino
    assert best.read_bytes() == last.read_bytes()
    assert load_checkpoint(last)["trainer_state"]["global_step"] == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]


def test_a_failed_copy_of_last_ckpt_raises_with_the_best_file_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(source: Any, target: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.os, "link", _no_hard_links)
    monkeypatch.setattr(checkpoint_module.shutil, "copyfileobj", full_disk)
    checkpoint = ModelCheckpoint(tmp_path)
    with pytest.raises(CheckpointError) as caught:
        _fit(checkpoint, max_epochs=1)
    assert f"could not write checkpoint {tmp_path / 'last.ckpt'}: No space" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]  # no temporary left
    assert load_checkpoint(tmp_path / "best.ckpt")["trainer_state"]["global_step"] == 6
    assert checkpoint.last_model_path is None  # it points at no file that was not written


def test_async_write_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="async_write"):
        ModelCheckpoint(async_write="yes")  # type: ignore[arg-type]
