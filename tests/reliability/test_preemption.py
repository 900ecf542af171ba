"""Preemption: real SIGTERM / SIGINT in a child process, resume_from="auto", run folders.

The child script trains a small MLP with ``fit(resume_from="auto")`` and sends itself the
signal at a chosen point (a real signal, handled by the handler visionkit installs). Run
again unchanged, it must continue the same run and end bitwise where an uninterrupted run
ends.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import torch

from visionkit.predict import load_checkpoint
from visionkit.training._runs import claim_run_dir

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from visionkit import Trainer, seed_everything
    from visionkit.callbacks import Callback
    from visionkit.data import mnist_sample

    root, kill_at, signame, times, accumulate = sys.argv[1:6]
    kill_at, times, accumulate = int(kill_at), int(times), int(accumulate)
    torch.set_num_threads(1)

    class Kill(Callback):
        def on_train_batch_end(self, trainer, batch, outputs):
            if trainer.batch_in_epoch + trainer.epoch * trainer.num_train_batches == kill_at:
                for _ in range(times):
                    os.kill(os.getpid(), getattr(signal, signame))

    seed_everything(0)
    data = mnist_sample(normalize=(0.1302, 0.3069))
    train, val = data.train.select(range(192)), data.val.select(range(64))
    from visionkit.models import create_model
    model = create_model("mlp", in_features=784, hidden=[32], num_classes=10, dropout=0.2)
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        max_epochs=3,
        device="cpu",
        default_root_dir=root,
        enable_progress_bar=False,
        accumulate_grad_batches=accumulate,
        callbacks=[Kill()] if kill_at >= 0 else [],
    )
    trainer.fit(train, val, batch_size=32, resume_from="auto")
    torch.save(trainer.model.state_dict(), os.path.join(root, "final.pt"))
    print("finished at step", trainer.global_step)
    """
)

BATCHES = 6  # 192 samples in batches of 32, per epoch


def _child(
    tmp_path: Path, root: Path, kill_at: int, signame: str = "SIGTERM", times: int = 1, acc: int = 1
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    command = [sys.executable, str(script), str(root), str(kill_at), signame, str(times), str(acc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)


def _final(root: Path) -> dict[str, torch.Tensor]:
    weights: dict[str, torch.Tensor] = torch.load(root / "final.pt", weights_only=True)
    return weights


def _state(path: Path) -> tuple[int, int, int]:
    state = load_checkpoint(path)["trainer_state"]
    return state["epoch"], state["batch_in_epoch"], state["global_step"]


# seeded "random" steps, plus the last batch of an epoch; the long suite tries more
FAST_POINTS = [*sorted(random.Random(20).sample(range(1, 3 * BATCHES - 1), 2)), BATCHES]
LONG_POINTS = sorted(set(range(1, 3 * BATCHES - 1)) - set(FAST_POINTS))


def test_sigterm_writes_the_exact_step_and_the_rerun_ends_bitwise(
    tmp_path: Path, long: bool, count: Callable[..., None]
) -> None:
    whole = _child(tmp_path, tmp_path / "whole", -1)
    assert whole.returncode == 0, whole.stderr[-2000:]
    reference = _final(tmp_path / "whole")
    for kill_at in FAST_POINTS + (LONG_POINTS if long else []):
        _sigterm_then_rerun(tmp_path / f"run{kill_at}", tmp_path, kill_at, reference)
        count("preemption")
        count("preemption.sigterm")


def _sigterm_then_rerun(
    root: Path, tmp_path: Path, kill_at: int, reference: dict[str, torch.Tensor]
) -> None:
    killed = _child(tmp_path, root, kill_at)
    assert killed.returncode == 128 + signal.SIGTERM, killed.stderr[-2000:]
    last = root / "version_0" / "checkpoints" / "last.ckpt"
    assert f"training stopped by SIGTERM: wrote {last}" in killed.stderr
    assert "resume_from='auto'" in killed.stderr
    epoch, batch, step = _state(last)
    assert step == kill_at  # the step in progress was finished and saved: none lost
    assert (epoch * BATCHES + batch) == kill_at

    rerun = _child(tmp_path, root, -1)  # the same command, unchanged
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"finished at step {3 * BATCHES}" in rerun.stdout
    assert sorted(p.name for p in root.iterdir()) == ["final.pt", "version_0"]  # same run
    for name, value in _final(root).items():
        assert torch.equal(value, reference[name]), (kill_at, name)


def test_sigint_saves_then_raises_keyboard_interrupt(
    tmp_path: Path, count: Callable[..., None]
) -> None:
    root = tmp_path / "run"
    result = _child(tmp_path, root, 4, "SIGINT")
    assert "KeyboardInterrupt" in result.stderr
    assert result.returncode != 0
    assert "training stopped by SIGINT" in result.stderr
    assert _state(root / "version_0" / "checkpoints" / "last.ckpt") == (0, 4, 4)
    count("preemption")
    count("preemption.sigint")


def test_signal_inside_an_accumulation_group_waits_for_its_step(
    tmp_path: Path, count: Callable[..., None]
) -> None:
    whole = _child(tmp_path, tmp_path / "whole", -1, acc=2)
    assert whole.returncode == 0, whole.stderr[-2000:]
    root = tmp_path / "run"
    killed = _child(tmp_path, root, 3, acc=2)  # batch 3 of 6: the second group's first half
    assert killed.returncode == 128 + signal.SIGTERM
    assert _state(root / "version_0" / "checkpoints" / "last.ckpt") == (0, 4, 2)
    assert _child(tmp_path, root, -1, acc=2).returncode == 0
    reference = _final(tmp_path / "whole")
    for name, value in _final(root).items():
        assert torch.equal(value, reference[name]), name
    count("preemption")
    count("preemption.accumulation")


def test_a_second_sigterm_stops_at_once(tmp_path: Path, count: Callable[..., None]) -> None:
    root = tmp_path / "run"
    result = _child(tmp_path, root, 4, times=2)
    assert result.returncode == 128 + signal.SIGTERM
    assert "training stopped at once by a second SIGTERM" in result.stderr
    assert not (root / "version_0" / "checkpoints" / "last.ckpt").exists()
    count("preemption")
    count("preemption.second_signal")


def test_handlers_are_restored_after_fit(tmp_path: Path) -> None:
    from visionkit import Trainer
    from visionkit.data import mnist_sample
    from visionkit.models import create_model

    def mine(signum: int, frame: object) -> None:
        """A user's own handler."""

    def also_mine(signum: int, frame: object) -> None:
        """Another one, for Ctrl-C."""

    previous = signal.signal(signal.SIGTERM, mine)
    previous_int = signal.signal(signal.SIGINT, also_mine)  # whatever the shell left there
    try:
        trainer = Trainer(
            create_model("mlp", in_features=784, hidden=[8], num_classes=10),
            max_steps=2,
            device="cpu",
            enable_progress_bar=False,
            default_root_dir=tmp_path,
        )
        trainer.fit(mnist_sample().train.select(range(64)), batch_size=32)
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is also_mine
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _claim(root: str, start: float, queue: multiprocessing.Queue[str]) -> None:
    while time.monotonic() < start:
        pass
    queue.put(claim_run_dir(Path(root)).name)


def test_runs_started_together_get_different_folders(
    tmp_path: Path, long: bool, count: Callable[..., None]
) -> None:
    context = multiprocessing.get_context("fork")
    for attempt in range(20 if long else 2):
        root = tmp_path / str(attempt)
        queue: multiprocessing.Queue[str] = context.Queue()
        start = time.monotonic() + 0.3
        args = (str(root), start, queue)
        workers = [context.Process(target=_claim, args=args) for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        names = sorted(queue.get(timeout=5) for _ in workers)
        assert names == [f"version_{i}" for i in range(6)]
        count("run_collisions", 6)
