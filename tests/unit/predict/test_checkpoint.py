"""The checkpoint format: safe loading, clear errors, RNG left alone."""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from visionkit import CheckpointError, Predictor, Trainer
from visionkit.data import mnist_sample
from visionkit.models import create_model
from visionkit.predict import FORMAT_VERSION, load_checkpoint, make_checkpoint, save_checkpoint
from visionkit.predict.checkpoint import atomic_save, load_weights

DIGITS = [str(i) for i in range(10)]
MlpFactory = Callable[..., torch.nn.Module]


class _WritesFile:
    """Unpickling this creates ``path``: the payload of a malicious checkpoint."""

    def __init__(self, path: Path, how: str) -> None:
        self.path, self.how = path, how

    def __reduce__(self) -> tuple[Any, ...]:
        if self.how == "system":
            return (os.system, (f"touch {self.path}",))
        return (open, (str(self.path), "w"))


def _malicious(tmp_path: Path, marker: Path, how: str, container: str) -> Path:
    payload = {"format": "visionkit-checkpoint", "format_version": 1, "x": _WritesFile(marker, how)}
    path = tmp_path / f"evil-{how}-{container}.ckpt"
    if container == "torch.save":
        torch.save(payload, path)
    else:  # the legacy format: a bare protocol-2 pickle
        path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


@pytest.mark.parametrize("how", ["system", "open"])
@pytest.mark.parametrize("container", ["torch.save", "legacy-pickle"])
def test_checkpoint_that_runs_code_is_refused_and_runs_nothing(
    tmp_path: Path, how: str, container: str
) -> None:
    marker = tmp_path / "pwned.txt"
    path = _malicious(tmp_path, marker, how, container)

    with pytest.raises(CheckpointError, match=r"refused to load .*evil.*could run code") as info:
        Predictor.from_checkpoint(path, device="cpu")

    assert not marker.exists()
    assert f"it references {'posix.system' if how == 'system' else 'io.open'}" in str(info.value)
    # control: the payload is real, plain unpickling would have created the file
    control = tmp_path / "control.txt"
    unsafe = _malicious(tmp_path, control, how, container)
    if container == "torch.save":
        torch.load(unsafe, weights_only=False)
    else:
        pickle.loads(unsafe.read_bytes())
    assert control.exists()


def test_truncated_checkpoint(mlp_checkpoint: Path) -> None:
    data = mlp_checkpoint.read_bytes()
    mlp_checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"mlp\.ckpt is truncated or corrupt"):
        load_checkpoint(mlp_checkpoint)


def test_zero_byte_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "empty.ckpt"
    path.touch()
    with pytest.raises(CheckpointError, match=r"empty\.ckpt is empty \(0 bytes\)"):
        Predictor.from_checkpoint(path, device="cpu")


def test_random_bytes_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "noise.ckpt"
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(CheckpointError, match=r"noise\.ckpt is not a PyTorch checkpoint file"):
        load_checkpoint(path)


def test_corrupt_pickle_inside_a_pickle_header(tmp_path: Path) -> None:
    path = tmp_path / "garbage.ckpt"
    path.write_bytes(b"\x80\x02" + bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match=r"garbage\.ckpt"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nothing\.ckpt"):
        load_checkpoint(tmp_path / "nothing.ckpt")


def test_newer_format_version(tmp_path: Path, small_mlp: MlpFactory) -> None:
    checkpoint = make_checkpoint(small_mlp())
    checkpoint["format_version"] = FORMAT_VERSION + 1
    path = save_checkpoint(checkpoint, tmp_path / "future.ckpt")
    with pytest.raises(CheckpointError, match=rf"format version {FORMAT_VERSION + 1}.*upgrade"):
        load_checkpoint(path)


def test_plain_state_dict_is_not_a_visionkit_checkpoint(
    tmp_path: Path, small_mlp: MlpFactory
) -> None:
    path = tmp_path / "weights.pth"
    torch.save(small_mlp().state_dict(), path)
    with pytest.raises(CheckpointError, match=r"weights\.pth is not a visionkit checkpoint"):
        Predictor.from_checkpoint(path, device="cpu")


def test_damaged_layout(tmp_path: Path, small_mlp: MlpFactory) -> None:
    checkpoint = make_checkpoint(small_mlp())
    checkpoint["state_dict"] = [1, 2]
    path = tmp_path / "damaged.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"'state_dict' is not a dict of tensors"):
        load_checkpoint(path)


def test_checkpoint_of_another_model(mlp_checkpoint: Path) -> None:
    other = create_model("mlp", in_features=784, hidden=[32], num_classes=10)
    with pytest.raises(CheckpointError, match=r"holds weights of another model") as info:
        Predictor.from_checkpoint(mlp_checkpoint, device="cpu", model=other)
    assert "layers.0.weight: checkpoint (16, 784) vs model (32, 784)" in str(info.value)


def test_checkpoint_of_an_unregistered_model(tmp_path: Path, small_mlp: MlpFactory) -> None:
    checkpoint = make_checkpoint(small_mlp())
    checkpoint["model"]["name"] = "my_private_net"
    path = save_checkpoint(checkpoint, tmp_path / "private.ckpt")
    with pytest.raises(CheckpointError, match=r"cannot rebuild .*'my_private_net'.*import"):
        Predictor.from_checkpoint(path, device="cpu")


def test_model_not_built_by_the_registry_needs_model_argument(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 2)
    path = save_checkpoint(make_checkpoint(model), tmp_path / "linear.ckpt")
    with pytest.raises(CheckpointError, match=r"torch\.nn\.modules\.linear\.Linear not built"):
        Predictor.from_checkpoint(path, device="cpu")
    predictor = Predictor.from_checkpoint(path, device="cpu", model=torch.nn.Linear(4, 2))
    assert torch.equal(predictor.model.weight, model.weight)


def test_unsafe_values_are_refused_when_saving(tmp_path: Path, small_mlp: MlpFactory) -> None:
    checkpoint = make_checkpoint(small_mlp(), metrics={"ok": 1.0})
    checkpoint["metrics"]["path"] = tmp_path
    with pytest.raises(CheckpointError, match=r"checkpoint\['metrics'\]\['path'\] of type"):
        save_checkpoint(checkpoint, tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt").exists()


def test_save_writes_the_complete_file_and_leaves_no_temporary_file(
    tmp_path: Path, small_mlp: MlpFactory
) -> None:
    path = save_checkpoint(make_checkpoint(small_mlp(), classes=DIGITS), tmp_path / "a.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt"]
    checkpoint = load_checkpoint(path)
    assert checkpoint["classes"] == DIGITS
    assert checkpoint["model"]["kwargs"] == {"in_features": 784, "hidden": [16], "num_classes": 10}
    assert checkpoint["versions"]["torch"] == str(torch.__version__)


def test_save_is_atomic_a_write_failing_midway_leaves_the_previous_file(
    tmp_path: Path, small_mlp: MlpFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(make_checkpoint(small_mlp(0), classes=DIGITS), tmp_path / "a.ckpt")
    previous = path.read_bytes()
    real_save = torch.save
    during: dict[str, Any] = {}

    def torn_save(obj: Any, stream: Any, *args: Any, **kwargs: Any) -> None:
        whole = io.BytesIO()
        real_save(obj, whole, *args, **kwargs)
        stream.write(whole.getvalue()[:1024])  # half a file, then the disk is full
        stream.flush()
        during["files"] = sorted(p.name for p in tmp_path.iterdir())
        during["published"] = path.read_bytes()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(CheckpointError, match="the disk is full"):
        save_checkpoint(make_checkpoint(small_mlp(1), classes=DIGITS), path)
    # mid-write, the new bytes went to another file of the same folder, not to a.ckpt
    assert during["published"] == previous
    assert len(during["files"]) == 2
    assert "a.ckpt" in during["files"]
    # afterwards the previous file is whole and the partial one is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt"]
    assert path.read_bytes() == previous
    monkeypatch.undo()
    assert load_checkpoint(path)["classes"] == DIGITS


def _rng_states() -> tuple[torch.Tensor, Any, Any]:
    return torch.get_rng_state(), random.getstate(), np.random.get_state(legacy=True)


def _assert_same(before: tuple[torch.Tensor, Any, Any]) -> None:
    after = _rng_states()
    assert torch.equal(before[0], after[0])
    assert before[1] == after[1]
    assert before[2][0] == after[2][0]
    assert np.array_equal(before[2][1], after[2][1])
    assert before[2][2:] == after[2][2:]


@pytest.fixture
def trainer_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    data = mnist_sample().train.select(range(64))
    model = create_model("mlp", in_features=784, hidden=[16], num_classes=10)
    trainer = Trainer(
        model, max_steps=2, device="cpu", enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(data, batch_size=32)
    return trainer.save_checkpoint(tmp_path / "resume.ckpt")


def test_loading_for_prediction_leaves_rng_unchanged(trainer_checkpoint: Path) -> None:
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    before = _rng_states()
    predictor = Predictor.from_checkpoint(trainer_checkpoint, device="cpu")
    _assert_same(before)
    assert predictor.classes == DIGITS


def test_loading_for_resume_leaves_rng_unchanged(trainer_checkpoint: Path) -> None:
    torch.manual_seed(7)
    before = _rng_states()
    checkpoint = load_checkpoint(trainer_checkpoint)
    _assert_same(before)
    assert checkpoint["trainer_state"]["global_step"] == 2

    model = create_model("mlp", in_features=784, hidden=[16], num_classes=10)
    before = _rng_states()
    load_weights(model, checkpoint, source=str(trainer_checkpoint))
    trainer = Trainer(model, device="cpu", enable_checkpointing=False, enable_progress_bar=False)
    trainer.load_weights(trainer_checkpoint)
    _assert_same(before)


def test_a_folder_at_the_checkpoint_path_is_refused_before_writing(tmp_path: Path) -> None:
    (tmp_path / "a.ckpt").mkdir()
    with pytest.raises(CheckpointError, match=r"a\.ckpt: it is a folder, expected a file path"):
        atomic_save({"x": 1}, tmp_path / "a.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt"]  # no temporary left


def test_a_link_at_the_checkpoint_path_is_replaced_and_its_target_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(b"keep me")
    (tmp_path / "last.ckpt").symlink_to(target)
    atomic_save({"x": 1}, tmp_path / "last.ckpt")
    assert not (tmp_path / "last.ckpt").is_symlink()
    assert target.read_bytes() == b"keep me"
