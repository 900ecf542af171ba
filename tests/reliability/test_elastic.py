"""torchrun --max-restarts: a worker killed mid-epoch, the group restarted, the same end.

Each launch is the real ``torchrun`` with 2 CPU processes (gloo). The script writes
``last.ckpt`` every step and calls ``fit(resume_from="auto")``; in the first attempt
(``TORCHELASTIC_RESTART_COUNT=0``) one rank kills itself with SIGKILL in the middle of an
epoch. torchrun restarts both processes, which agree on the newest checkpoint and end
with the weights of an uninterrupted run, bit for bit. The normal test command kills
rank 1 once; ``--long`` adds rank 0 and other epochs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

WORKER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from visionkit import Trainer, seed_everything
    from visionkit.callbacks import Callback, ModelCheckpoint
    from visionkit.data import mnist_sample
    from visionkit.models import create_model

    out, kill_rank, kill_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)

    class Kill(Callback):
        def on_train_batch_end(self, trainer, batch, outputs):
            first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
            if first_attempt and trainer.rank == kill_rank and trainer.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    seed_everything(0)
    data = mnist_sample(normalize=(0.1302, 0.3069))
    model = create_model("mlp", in_features=784, hidden=[32], num_classes=10)
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        max_epochs=3,
        device="cpu",
        enable_progress_bar=False,
        callbacks=[Kill(), ModelCheckpoint(os.path.join(out, "ckpt"), every_n_train_steps=1)],
    )
    trainer.fit(data.train.select(range(256)), data.val.select(range(64)), batch_size=16,
                resume_from="auto")
    torch.save(trainer.model.state_dict(), os.path.join(out, f"final{trainer.rank}.pt"))
    print("restart", os.environ.get("TORCHELASTIC_RESTART_COUNT"), "step", trainer.global_step)
    """
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(
    tmp_path: Path, out: Path, kill_rank: int, kill_at: int
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out.mkdir(parents=True)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--max-restarts=1",
        f"--master-port={_port()}", "--monitor-interval=0.2", str(script), str(out),
        str(kill_rank), str(kill_at),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


# (rank killed, global step after which it dies); 8 steps an epoch, 3 epochs
FAST_KILLS = [(1, 12)]
LONG_KILLS = [(0, 5), (1, 3), (0, 13), (1, 20), (0, 23)]


@pytest.mark.timeout(1800)  # one torchrun launch per kill point, each up to 2 minutes
def test_killed_worker_restarted_by_torchrun_ends_bitwise_as_uninterrupted(
    tmp_path: Path, long: bool, count: Callable[..., None]
) -> None:
    whole = _torchrun(tmp_path, tmp_path / "whole", kill_rank=-1, kill_at=-1)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert "restart 0 step 24" in whole.stdout
    reference = [
        torch.load(tmp_path / "whole" / f"final{rank}.pt", weights_only=True) for rank in (0, 1)
    ]
    for kill_rank, kill_at in FAST_KILLS + (LONG_KILLS if long else []):
        out = tmp_path / f"killed_rank{kill_rank}_step{kill_at}"
        killed = _torchrun(tmp_path, out, kill_rank=kill_rank, kill_at=kill_at)
        assert killed.returncode == 0, killed.stderr[-3000:]
        assert "exitcode: -9" in killed.stderr  # the rank was killed, and torchrun restarted
        assert "restart 1 step 24" in killed.stdout  # the second attempt finished the run
        assert "restart 0" not in killed.stdout  # the first attempt never got to the end
        for rank in (0, 1):
            restarted = torch.load(out / f"final{rank}.pt", weights_only=True)
            for name, value in reference[rank].items():
                assert torch.equal(restarted[name], value), (kill_rank, kill_at, rank, name)
        count("elastic_restarts")
        count(f"elastic_restarts.rank{kill_rank}")
