"""I/O faults while writing checkpoints: the previous good checkpoint always survives.

Each case first writes a good checkpoint, then makes the next write to the same path fail
and checks that the error says what happened, that the old file is byte-for-byte intact
and loads, and that no temporary file is left behind. The faults:

- a writer that raises ``EIO`` after a random number of bytes (torch's zip writer sees
  an ``OSError`` at every possible stage of the file);
- a disk that fills up (``ENOSPC``) after a random number of bytes;
- a real file-size limit enforced by the kernel (``RLIMIT_FSIZE``, ``EFBIG``);
- failures of ``mkstemp``, ``fsync``, ``chmod`` and ``os.replace``;
- a real read-only folder (as another user when the tests run as root);
- the same faults hitting ``ModelCheckpoint`` in the middle of ``Trainer.fit``, after
  which the run resumes from its last good checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import resource
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import visionkit.predict.checkpoint as checkpoint_module
from visionkit import Trainer
from visionkit.callbacks import ModelCheckpoint
from visionkit.data import TensorImageDataset
from visionkit.exceptions import CheckpointError
from visionkit.models import create_model
from visionkit.predict import load_checkpoint, make_checkpoint
from visionkit.predict.checkpoint import save_checkpoint

Count = Callable[..., None]


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("mlp", in_features=64, hidden=[32], num_classes=4)


def _checkpoint(seed: int) -> dict[str, Any]:
    return make_checkpoint(_model(seed), classes=["a", "b", "c", "d"])


def _checkpoint_size() -> int:
    buffer = io.BytesIO()
    torch.save(_checkpoint(1), buffer)
    return len(buffer.getvalue())


class _FailingFile(io.RawIOBase):
    """A file that writes ``limit`` bytes, then fails every write with ``error``."""

    def __init__(self, real: io.BufferedWriter, limit: int, error: int) -> None:
        self.real, self.limit, self.error, self.written = real, limit, error, 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        room = self.limit - self.written
        if room <= 0:
            raise OSError(self.error, os.strerror(self.error))
        chunk = bytes(data)
        self.real.write(chunk[:room])  # the part that fits reaches the disk, then it is full
        self.written += min(room, len(chunk))
        if len(chunk) > room:  # a buffered file writes everything or raises, as this does
            raise OSError(self.error, os.strerror(self.error))
        return len(chunk)

    def flush(self) -> None:
        self.real.flush()

    def fileno(self) -> int:
        return self.real.fileno()

    def close(self) -> None:
        super().close()  # flushes through self.flush while the real file is still open
        self.real.close()


@contextlib.contextmanager
def _failing_writes(limit: int, error: int) -> Iterator[None]:
    """Make checkpoint writes fail with ``error`` after ``limit`` bytes."""
    real_fdopen = os.fdopen

    def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        real = real_fdopen(fd, mode, *args, **kwargs)
        return _FailingFile(real, limit, error) if mode == "wb" else real

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint_module.os, "fdopen", fdopen)
        yield


@contextlib.contextmanager
def _file_size_limit(limit: int) -> Iterator[None]:
    """A real kernel-enforced limit on the size of files this process writes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _assert_survived(path: Path, good: bytes, error: CheckpointError, reason: str) -> None:
    message = str(error)
    assert f"could not write checkpoint {path}" in message, message  # the kind and file
    assert reason in message, message
    assert "previous contents are unchanged" in message, message
    assert path.read_bytes() == good  # byte for byte the checkpoint written before
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["state_dict"]["layers.0.weight"], _state(0)["layers.0.weight"])
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "temporary left"


def _state(seed: int) -> dict[str, torch.Tensor]:
    return dict(_model(seed).state_dict())


def _good_file(folder: Path) -> tuple[Path, bytes]:
    path = save_checkpoint(_checkpoint(0), folder / "model.ckpt")
    return path, path.read_bytes()


def _offsets(n: int, size: int, seed: int) -> list[int]:
    """``n`` byte offsets over the whole file: both ends, then seeded random ones."""
    random = np.random.default_rng(seed).integers(1, size, max(n - 2, 0)).tolist()
    return [0, size - 1, *random][:n]


@pytest.mark.parametrize(
    ("error", "reason", "kind"),
    [
        (errno.EIO, "Input/output error (errno EIO)", "io_faults.writer_raises"),
        (errno.ENOSPC, "the disk is full", "io_faults.disk_full"),
    ],
    ids=["writer-raises-EIO", "disk-full-ENOSPC"],
)
def test_a_write_failing_at_any_byte_keeps_the_previous_checkpoint(
    tmp_path: Path, error: int, reason: str, kind: str, long: bool, count: Count
) -> None:
    path, good = _good_file(tmp_path)
    offsets = _offsets(400 if long else 80, _checkpoint_size(), seed=error)
    for offset in offsets:
        with _failing_writes(offset, error), pytest.raises(CheckpointError) as caught:
            save_checkpoint(_checkpoint(1), path)
        _assert_survived(path, good, caught.value, reason)
    count("io_faults", len(offsets))
    count(kind, len(offsets))


def test_a_real_file_size_limit_keeps_the_previous_checkpoint(
    tmp_path: Path, long: bool, count: Count
) -> None:
    path, good = _good_file(tmp_path)
    limits = _offsets(160 if long else 40, _checkpoint_size(), seed=7)
    for limit in limits:
        with _file_size_limit(limit), pytest.raises(CheckpointError) as caught:
            save_checkpoint(_checkpoint(1), path)
        _assert_survived(path, good, caught.value, "file-size limit")
    count("io_faults", len(limits))
    count("io_faults.file_size_limit", len(limits))


_STAGES = {
    "mkstemp-ENOSPC": ("tempfile.mkstemp", errno.ENOSPC, "the disk is full"),
    "mkstemp-EACCES": ("tempfile.mkstemp", errno.EACCES, "not writable"),
    "fsync-EIO": ("os.fsync", errno.EIO, "errno EIO"),
    "chmod-EPERM": ("os.chmod", errno.EPERM, "not writable"),
    "replace-EXDEV": ("os.replace", errno.EXDEV, "errno EXDEV"),
    "replace-EROFS": ("os.replace", errno.EROFS, "read-only"),
    "replace-EACCES": ("os.replace", errno.EACCES, "not writable"),
    "mkdir-EROFS": ("pathlib.Path.mkdir", errno.EROFS, "read-only"),
}


@pytest.mark.parametrize("stage", sorted(_STAGES))
def test_a_failing_file_system_call_keeps_the_previous_checkpoint(
    tmp_path: Path, stage: str, count: Count
) -> None:
    path, good = _good_file(tmp_path)
    target, code, reason = _STAGES[stage]

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(target, fail)
        with pytest.raises(CheckpointError) as caught:
            save_checkpoint(_checkpoint(1), path)
    _assert_survived(path, good, caught.value, reason)
    count("io_faults")
    count("io_faults.file_system_call")


@contextlib.contextmanager
def _read_only_folder() -> Iterator[Path]:
    """A real folder this process cannot write to (as an unprivileged user when root)."""
    base = Path(tempfile.mkdtemp(prefix="visionkit-ro-"))
    base.chmod(0o755)  # traversable by the unprivileged user
    folder = base / "checkpoints"
    folder.mkdir()
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        folder.chmod(0o755)
        shutil.rmtree(base)


@contextlib.contextmanager
def _without_write_permission(folder: Path) -> Iterator[None]:
    folder.chmod(0o555)
    if os.geteuid() != 0:
        yield
        return
    try:  # root ignores permission bits: drop to "nobody" for the write
        os.seteuid(65534)
    except PermissionError:  # pragma: no cover - a container without CAP_SETUID
        pytest.skip("running as root without the right to become another user")
    try:
        yield
    finally:
        os.seteuid(0)


def test_a_read_only_folder_keeps_the_previous_checkpoint(long: bool, count: Count) -> None:
    cases = 20 if long else 5
    with _read_only_folder() as folder:
        path, good = _good_file(folder)
        path.chmod(0o644)
        for seed in range(1, cases + 1):
            with _without_write_permission(folder), pytest.raises(CheckpointError) as caught:
                save_checkpoint(_checkpoint(seed), path)
            _assert_survived(path, good, caught.value, "not writable")
    count("io_faults", cases)
    count("io_faults.read_only_folder", cases)


# --------------------------------------------------------------------- during Trainer.fit
def _data() -> TensorImageDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 1, 8, 8), dtype=torch.uint8, generator=generator)
    return TensorImageDataset(images, torch.arange(96) % 4, ["a", "b", "c", "d"])


def _fit(folder: Path, *, resume_from: Path | None = None) -> Trainer:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=64, hidden=[32], num_classes=4)
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        max_epochs=3,
        seed=0,
        enable_progress_bar=False,
        default_root_dir=folder / "runs",
        callbacks=[ModelCheckpoint(folder, save_top_k=2, every_n_train_steps=2)],
    )
    data = _data()
    trainer.fit(data, data, batch_size=16, resume_from=resume_from)
    return trainer


def test_fit_stops_with_a_clear_error_and_resumes_from_the_last_good_checkpoint(
    tmp_path: Path, long: bool, count: Count
) -> None:
    real_save = checkpoint_module.atomic_save
    saves = 0

    def counted_save(obj: Any, path: Any) -> Path:
        nonlocal saves
        saves += 1
        return real_save(obj, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint_module, "atomic_save", counted_save)
        full = _fit(tmp_path / "full")
    assert saves >= 9  # mid-epoch last.ckpt twice an epoch, best and last at epoch ends
    random = np.random.default_rng(3)
    cases = 16 if long else 6
    for case in range(cases):
        folder = tmp_path / f"case{case}"
        fail_at = int(random.integers(2, saves + 1))  # which save fails: never the first
        offset = int(random.integers(0, _checkpoint_size()))
        calls = 0

        def flaky_save(obj: Any, path: Any, fail_at: int = fail_at, offset: int = offset) -> Path:
            nonlocal calls
            calls += 1
            if calls != fail_at:
                return real_save(obj, path)
            with _failing_writes(offset, errno.ENOSPC):
                return real_save(obj, path)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(checkpoint_module, "atomic_save", flaky_save)
            with pytest.raises(CheckpointError, match="the disk is full"):
                _fit(folder)
        files = sorted(folder.glob("*"))
        assert files
        assert all(f.suffix == ".ckpt" for f in files), files  # no temporaries left
        for file in files:
            load_checkpoint(file)  # every file on disk is readable
        resumed = _fit(folder, resume_from=folder / "last.ckpt")
        for name, value in full.model.state_dict().items():
            assert torch.equal(value, resumed.model.state_dict()[name]), name
    count("io_faults", cases)
    count("io_faults.during_fit", cases)


@pytest.mark.parametrize("fmt", ["torchscript", "torch.export"])
def test_a_failing_export_keeps_the_previous_exported_model(
    tmp_path: Path, fmt: str, long: bool, count: Count
) -> None:
    from visionkit.predict import export, load_exported

    model = _model(0).eval()
    example = torch.zeros(2, 64)  # a batch of 1 cannot be exported as dynamic
    path = export(
        model,
        tmp_path / f"model.{'pt2' if fmt == 'torch.export' else 'pt'}",
        format=fmt,
        example_input=example,
    )  # type: ignore[arg-type]
    good = path.read_bytes()
    size = len(good)
    offsets = _offsets(12 if long else 4, size, seed=11)
    for offset in offsets:
        with _failing_writes(offset, errno.ENOSPC), pytest.raises(CheckpointError) as caught:
            export(_model(1).eval(), path, format=fmt, example_input=example)  # type: ignore[arg-type]
        message = str(caught.value)
        assert f"could not write exported model {path}" in message, message
        assert "the disk is full" in message
        assert path.read_bytes() == good
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    loaded, _ = load_exported(path)
    assert torch.equal(loaded(example), model(example))
    count("io_faults", len(offsets))
    count("io_faults.export", len(offsets))
