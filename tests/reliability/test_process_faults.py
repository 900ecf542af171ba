"""SIGKILL at random points of a run; resuming gives bitwise the weights of an unbroken run.

A child process trains a small dropout MLP on shuffled data with validation every epoch,
``ModelCheckpoint(save_top_k=2, every_n_train_steps=4)`` and a ``last.ckpt``; it kills
itself with SIGKILL (nothing runs after it: no ``finally``, no ``atexit``) at a point
drawn from a seeded random generator, in one of five phases:

- ``forward``: inside a training step, during the model's forward pass;
- ``before-step``: after the backward pass, before the optimizer step;
- ``validation``: inside the validation loop;
- ``mid-write``: while a checkpoint file is being written, after a random byte count;
- ``replace``: with a checkpoint fully written to its temporary file, just before or just
  after the ``os.replace`` that publishes it.

After each kill, every checkpoint file on disk must load, and resuming from the newest
one (``last.ckpt``; a fresh start if the kill came before the first save) must end with
weights bitwise equal to those of the uninterrupted run. The fast part runs one kill for
each of three phases; ``--long`` runs 20 (four per phase).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import visionkit.predict.checkpoint as checkpoint_module
from visionkit import Trainer
from visionkit.callbacks import Callback, ModelCheckpoint
from visionkit.data import TensorImageDataset
from visionkit.models import create_model
from visionkit.predict import load_checkpoint
from visionkit.predict.checkpoint import TEMP_SUFFIX

Count = Callable[..., None]
Unbroken = tuple[dict[str, torch.Tensor], Counter[str], int]
PHASES = ["forward", "before-step", "validation", "mid-write", "replace"]
HERE = Path(__file__).parent


def _datasets() -> tuple[TensorImageDataset, TensorImageDataset]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (608, 1, 8, 8), dtype=torch.uint8, generator=generator)
    # a learnable rule: the class is the quadrant with the brightest mean
    quadrants = images.float().view(-1, 2, 4, 2, 4).mean(dim=(2, 4)).flatten(1)
    targets = quadrants.argmax(dim=1)
    classes = ["top-left", "top-right", "bottom-left", "bottom-right"]
    train = TensorImageDataset(images[:480], targets[:480], classes)
    val = TensorImageDataset(images[480:], targets[480:], classes)
    return train, val


class _Events(Callback):
    """Counts training forwards, optimizer steps, validation forwards and checkpoint
    writes, and kills the process at the chosen one."""

    def __init__(
        self, phase: str | None = None, index: int = -1, fraction: float = 0.0, size: int = 0
    ) -> None:
        self.phase, self.index, self.fraction, self.size = phase, index, fraction, size
        self.seen: Counter[str] = Counter()

    def event(self, phase: str) -> bool:
        """Record one event of ``phase``; True if it is the one to kill at."""
        hit = phase == self.phase and self.seen[phase] == self.index
        self.seen[phase] += 1
        return hit

    def on_before_optimizer_step(self, trainer: Trainer, optimizer: Any) -> None:
        if self.event("before-step"):
            _die()

    def install(self, model: nn.Module, patch: pytest.MonkeyPatch) -> None:
        """Hook the model's forward pass and the checkpoint writer."""

        def forward_hook(module: nn.Module, args: Any) -> None:
            if self.event("forward" if module.training else "validation"):
                _die()

        model.register_forward_pre_hook(forward_hook)
        real_fdopen, real_replace = os.fdopen, os.replace
        events = self

        class KillingFile:
            def __init__(self, real: Any, limit: int) -> None:
                self.real, self.limit, self.written = real, limit, 0

            def write(self, data: Any) -> int:
                chunk = bytes(data)
                if self.written + len(chunk) >= self.limit:
                    self.real.write(chunk[: self.limit - self.written])
                    self.real.flush()  # the partial file really is on disk
                    _die()
                self.written += len(chunk)
                return int(self.real.write(chunk))

            def __getattr__(self, name: str) -> Any:
                return getattr(self.real, name)

            def __enter__(self) -> KillingFile:
                return self

            def __exit__(self, *exc: object) -> None:
                self.real.close()

        def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            real = real_fdopen(fd, mode, *args, **kwargs)
            if mode == "wb" and events.event("mid-write"):
                return KillingFile(real, limit=max(1, int(events.fraction * events.size)))
            return real

        def replace(source: Any, target: Any) -> None:
            hit = events.event("replace")
            if hit and events.fraction < 0.5:
                _die()  # the new file is complete, but still under its temporary name
            real_replace(source, target)
            if hit:
                _die()  # published, before the folder's fsync

        patch.setattr(checkpoint_module.os, "fdopen", fdopen)
        patch.setattr(checkpoint_module.os, "replace", replace)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _fit(folder: Path, events: _Events, resume_from: Path | None = None) -> Trainer:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=64, hidden=[32], num_classes=4, dropout=0.25)
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        max_epochs=4,
        seed=0,
        enable_progress_bar=False,
        default_root_dir=folder / "runs",
        callbacks=[
            ModelCheckpoint(folder, save_top_k=2, every_n_train_steps=4),
            events,
        ],
    )
    with pytest.MonkeyPatch.context() as patch:
        events.install(trainer.model, patch)
        train, val = _datasets()
        trainer.fit(train, val, batch_size=32, resume_from=resume_from)
    return trainer


def run_child(config: dict[str, Any]) -> None:
    """Entry point of the child process: train until the chosen event kills it."""
    torch.set_num_threads(1)
    events = _Events(config["phase"], config["index"], config["fraction"], config["size"])
    _fit(Path(config["folder"]), events)
    raise SystemExit(3)  # the kill point was never reached


_CHILD = "import json, sys; sys.path.insert(0, {here!r}); import test_process_faults as t; " + (
    "t.run_child(json.loads(sys.argv[1]))"
)


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory) -> Unbroken:
    """Final weights of the run with no kill, how many events of each phase it has, and
    the size of its last checkpoint file."""
    events = _Events()
    folder = tmp_path_factory.mktemp("unbroken")
    trainer = _fit(folder, events)
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    return weights, events.seen, (folder / "last.ckpt").stat().st_size


def _kill_points(n: int, seen: Counter[str]) -> list[tuple[str, int, float]]:
    random = np.random.default_rng(2026)
    phases = (PHASES * n)[:n] if n >= len(PHASES) else ["forward", "validation", "mid-write"]
    points = []
    for phase in phases:
        total = seen[phase]
        points.append((phase, int(random.integers(0, total)), float(random.random())))
    return points


def test_sigkill_at_random_points_then_resume_is_bitwise_exact(
    tmp_path: Path,
    unbroken: Unbroken,
    long: bool,
    count: Count,
) -> None:
    expected, seen, size = unbroken
    # 4 epochs of 15 steps, 4 validation batches an epoch; mid-epoch saves at every 4th
    # step plus one save at each epoch end: each save writes one file and renames it into
    # place; on improvement that file is a top-2 one and last.ckpt a link to it, put in place
    # with a rename of its own
    assert (seen["forward"], seen["before-step"], seen["validation"]) == (60, 60, 16)
    assert seen["mid-write"] >= 14 + 4
    assert seen["mid-write"] < seen["replace"] <= seen["mid-write"] + 4
    points = _kill_points(20 if long else 3, seen)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    checked_files = 0
    for case, (phase, index, fraction) in enumerate(points):
        folder = tmp_path / f"kill{case}-{phase}-{index}"
        config = {
            "folder": str(folder),
            "phase": phase,
            "index": index,
            "fraction": fraction,
            "size": size,
        }
        child = subprocess.run(
            [sys.executable, "-c", _CHILD.format(here=str(HERE)), json.dumps(config)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=180,
        )
        assert child.returncode == -signal.SIGKILL, (config, child.stderr.decode()[-3000:])
        files = sorted(folder.glob("*.ckpt")) if folder.exists() else []
        for file in files:  # no checkpoint on disk is ever unreadable
            load_checkpoint(file)
        checked_files += len(files)
        last = folder / "last.ckpt"
        resumed = _fit(folder, _Events(), resume_from=last if last.exists() else None)
        for name, value in expected.items():
            assert torch.equal(resumed.model.state_dict()[name], value), (config, name)
        assert not list(folder.glob(f".*{TEMP_SUFFIX}")), "a stale temporary file is left"
        count("process_kills")
        count(f"process_kills.{phase}")
    count("checkpoint_files_checked", checked_files)
