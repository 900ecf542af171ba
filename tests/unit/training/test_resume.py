"""Exact resume: an interrupted run continues bitwise as if it had not stopped (CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from visionkit import Trainer, seed_everything
from visionkit.callbacks import Batch, Callback, EarlyStopping, ModelCheckpoint, StepOutput
from visionkit.data import TensorImageDataset, mnist_sample
from visionkit.models import create_model

EPOCHS, BATCH = 3, 32


def _data(n: int = 320) -> tuple[TensorImageDataset, TensorImageDataset]:
    splits = mnist_sample(normalize=(0.1302, 0.3069))
    return splits.train.select(range(n)), splits.val.select(range(96))


def _trainer(root: str, max_epochs: int = EPOCHS, **options: Any) -> Trainer:
    seed_everything(0)
    model = create_model("mlp", in_features=784, hidden=[32], num_classes=10, dropout=0.3)
    callbacks = options.pop("callbacks", [])
    return Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        max_epochs=max_epochs,
        device="cpu",
        default_root_dir=root,
        enable_progress_bar=False,
        callbacks=[*callbacks, EarlyStopping("val_loss", patience=5)],
        **options,
    )


def _assert_same_weights(a: Trainer, b: Trainer) -> None:
    for (name, left), right in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(left, right), name


def _timeless(trainer: Trainer) -> list[dict[str, float]]:
    return [{k: v for k, v in e.items() if k != "epoch_time"} for e in trainer.history]


class _Crash(Callback):
    """Raise after ``at_step`` optimizer steps, like a process dying mid-epoch."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        if trainer.global_step == self.at_step:
            raise KeyboardInterrupt


def test_resume_after_epoch_is_bitwise_equal() -> None:
    train, val = _data()
    full = _trainer("full")
    full.fit(train, val, batch_size=BATCH)
    first = _trainer("part", max_epochs=1)
    first.fit(train, val, batch_size=BATCH)
    resumed = _trainer("resumed")
    resumed.fit(train, val, batch_size=BATCH, resume_from=first.last_checkpoint)
    _assert_same_weights(full, resumed)
    assert _timeless(resumed) == _timeless(full)


def test_resume_mid_epoch_restores_position_rng_and_running_metrics() -> None:
    train, val = _data()
    full = _trainer("full", callbacks=[ModelCheckpoint(every_n_train_steps=4)])
    full.fit(train, val, batch_size=BATCH)
    crashed = _trainer("crash", callbacks=[ModelCheckpoint(every_n_train_steps=4), _Crash(14)])
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(train, val, batch_size=BATCH)
    checkpoint = crashed.last_checkpoint
    assert checkpoint is not None
    state = torch.load(checkpoint, weights_only=True)["trainer_state"]
    assert (state["epoch"], state["batch_in_epoch"], state["global_step"]) == (1, 2, 12)
    resumed = _trainer("resumed", callbacks=[ModelCheckpoint(every_n_train_steps=4)])
    resumed.fit(train, val, batch_size=BATCH, resume_from=checkpoint)
    _assert_same_weights(full, resumed)
    assert _timeless(resumed) == _timeless(full)


class _NoisyDataset(Dataset[tuple[torch.Tensor, int]]):
    """A file-style data set whose transform draws from torch's global RNG."""

    def __init__(self, base: TensorImageDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[index]
        return image + 0.1 * torch.randn_like(image), int(label)


@pytest.mark.parametrize("kind", ["dataset", "user_loader", "user_loader_global_rng"])
def test_dataloader_paths_resume_mid_epoch_exactly(kind: str) -> None:
    base, val = _data(192)
    data = _NoisyDataset(base)

    def train_data() -> Any:
        if kind == "dataset":
            return data
        generator = torch.Generator().manual_seed(7) if kind == "user_loader" else None
        return DataLoader(data, batch_size=BATCH, shuffle=True, generator=generator)

    full = _trainer("full", callbacks=[ModelCheckpoint(every_n_train_steps=4)])
    full.fit(train_data(), val, batch_size=BATCH)
    crashed = _trainer("crash", callbacks=[ModelCheckpoint(every_n_train_steps=4), _Crash(10)])
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(train_data(), val, batch_size=BATCH)
    resumed = _trainer("resumed", callbacks=[ModelCheckpoint(every_n_train_steps=4)])
    resumed.fit(train_data(), val, batch_size=BATCH, resume_from=crashed.last_checkpoint)
    assert resumed.global_step == full.global_step == EPOCHS * 6
    _assert_same_weights(full, resumed)


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    sys.path.insert(0, {tests!r})
    from test_resume import _Crash, _data, _trainer, BATCH
    from visionkit.callbacks import ModelCheckpoint

    class Kill(_Crash):
        def on_train_batch_end(self, trainer, batch, outputs):
            if trainer.global_step == self.at_step:
                os.kill(os.getpid(), signal.SIGKILL)

    torch.set_num_threads({threads})
    train, val = _data()
    trainer = _trainer("killed", callbacks=[ModelCheckpoint(every_n_train_steps=4), Kill(27)])
    trainer.fit(train, val, batch_size=BATCH)
    """
)


def test_sigkill_mid_epoch_then_resume_from_last_checkpoint_is_exact(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    here = str(Path(__file__).parent)
    script.write_text(_CHILD.format(tests=here, threads=torch.get_num_threads()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, *sys.path])}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, timeout=120
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    last = tmp_path / "killed" / "version_0" / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)["trainer_state"]
    # Checkpoints are written in the background: a SIGKILL at step 27 may catch step 24's
    # write in flight, which then never lands; step 20's is complete (a new write waits for
    # the one before), and the file is one of the two, never half of one.
    position = (state["epoch"], state["batch_in_epoch"], state["global_step"])
    assert position in {(2, 4, 24), (2, 0, 20)}
    train, val = _data()
    full = _trainer("full")
    full.fit(train, val, batch_size=BATCH)
    resumed = _trainer("resumed")
    resumed.fit(train, val, batch_size=BATCH, resume_from=last)
    _assert_same_weights(full, resumed)
