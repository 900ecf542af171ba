"""Distributed training: 2 CPU processes with gloo against one-process reference runs.

The processes are launched exactly as ``torchrun`` launches them (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT`` in the environment), bounded by a timeout, so a hang fails
the test instead of blocking the suite. One launch runs every scenario of the acceptance
list (see ``_ddp_worker.py``) and ends with rank 1 raising; the tests below each check one
of its results. A slow test runs the same job under the real ``torchrun``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from visionkit import ConfigurationError, Trainer
from visionkit.callbacks import Callback, ModelCheckpoint
from visionkit.data import InMemoryLoader
from visionkit.training.distributed import (
    DDPStrategy,
    Strategy,
    _CappedLoader,
    _check_sharded,
    resolve_strategy,
    torchrun_env,
)

WORKER_PATH = Path(__file__).with_name("_ddp_worker.py")
LAUNCH_TIMEOUT = 150.0  # seconds; a deadlock fails the test instead of hanging the suite


def _load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_ddp_worker", WORKER_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


@dataclass
class Rank:
    returncode: int
    log: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(args: list[str], logs: Path, *, nproc: int = 2, timeout: float) -> list[Rank]:
    """Start ``nproc`` worker processes with torchrun's variables; wait at most ``timeout``."""
    port, procs, files = _free_port(), [], []
    for rank in range(nproc):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        files.append((logs / f"rank{rank}.log").open("w"))
        cmd = [sys.executable, str(WORKER_PATH), *args]
        procs.append(subprocess.Popen(cmd, env=env, stdout=files[-1], stderr=subprocess.STDOUT))
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {nproc}-process job did not finish within {timeout} s: it hangs")
    finally:
        for proc, file in zip(procs, files, strict=True):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            file.close()
    return [Rank(p.returncode, (logs / f"rank{r}.log").read_text()) for r, p in enumerate(procs)]


@dataclass
class Job:
    out: Path
    ranks: list[Rank]
    records: list[dict[str, Any]]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Job:
    """One 2-process run of every scenario, plus the 1-process checkpoint it resumes from."""
    root = tmp_path_factory.mktemp("ddp")
    train, val = worker.make_data()
    source = worker.make_trainer(
        root / "single", max_epochs=1, callbacks=[ModelCheckpoint(root / "source")]
    )
    source.fit(train, val, batch_size=worker.GLOBAL_BATCH)
    out = root / "out"
    out.mkdir()
    ranks = launch([str(out), str(root / "source" / "last.ckpt")], out, timeout=LAUNCH_TIMEOUT)
    for rank, result in enumerate(ranks):
        assert (out / f"rank{rank}.json").exists(), f"rank {rank} failed:\n{result.log[-3000:]}"
    records = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return Job(out, ranks, records)


class _Snapshots(Callback):
    """Keeps a copy of the weights after every epoch."""

    def __init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})


def _single_fit(root: Path, *, max_epochs: int, resume_from: Path | None = None) -> _Snapshots:
    train, val = worker.make_data()
    snapshots = _Snapshots()
    trainer = worker.make_trainer(
        root, max_epochs=max_epochs, callbacks=[ModelCheckpoint(root / "ckpt"), snapshots]
    )
    trainer.fit(train, val, batch_size=worker.GLOBAL_BATCH, resume_from=resume_from)
    return snapshots


def _assert_weights_close(expected: dict[str, torch.Tensor], path: Path) -> None:
    actual = torch.load(path, weights_only=True)
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=2e-5, msg=name)


# --------------------------------------------------------------------- 2-process results
def test_global_metrics_equal_single_process_evaluation(job: Job) -> None:
    _, val = worker.make_data()
    single = worker.make_trainer(Path("single"), max_epochs=1, callbacks=[])
    expected = single.validate(val, batch_size=64)
    expected_report = single.test(val, batch_size=100).to_dict()
    for record in job.records:
        assert record["world_size"] == 2
        assert record["validate"]["val_accuracy"] == expected["val_accuracy"]
        assert record["validate"]["val_top2_accuracy"] == expected["val_top2_accuracy"]
        assert record["validate"]["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-6)
        report = record["test"]
        assert report["confusion_matrix"] == expected_report["confusion_matrix"]
        assert report["per_class_accuracy"] == expected_report["per_class_accuracy"]
        assert report["accuracy"] == expected_report["accuracy"]


def test_validation_counts_1001_samples_once_over_two_ranks(job: Job) -> None:
    for record in job.records:
        assert record["test"]["num_samples"] == 1001
        assert sum(record["test"]["support"]) == 1001
        assert record["test_best"]["num_samples"] == 1001


def test_two_processes_reach_the_weights_of_one_with_the_same_global_batch(
    job: Job, tmp_path: Path
) -> None:
    train, val = worker.make_data()
    stopper = worker.early_stopping()
    single = worker.make_trainer(tmp_path, max_epochs=6, callbacks=[stopper])
    history = single.fit(train, val, batch_size=worker.GLOBAL_BATCH)
    expected = single.model.state_dict()
    _assert_weights_close(expected, job.out / "fit_rank0.pt")
    _assert_weights_close(expected, job.out / "fit_rank1.pt")
    for record in job.records:
        assert record["val_loss"] == pytest.approx([r["val_loss"] for r in history], rel=1e-5)
        assert record["train_loss"] == pytest.approx([r["train_loss"] for r in history], rel=1e-5)


def test_early_stopping_stops_both_ranks_in_the_same_epoch(job: Job) -> None:
    assert [r["stopped_epoch"] for r in job.records] == [1, 1]
    assert [r["epochs_run"] for r in job.records] == [2, 2]  # of max_epochs=6


def test_accumulation_all_reduces_gradients_once_per_optimizer_step(
    job: Job, tmp_path: Path
) -> None:
    train, val = worker.make_data()
    single = worker.make_trainer(tmp_path, max_epochs=1, callbacks=[], accumulate_grad_batches=2)
    single.fit(train, val, batch_size=worker.GLOBAL_BATCH)
    assert single.global_step == 10
    _assert_weights_close(single.model.state_dict(), job.out / "accumulate_rank0.pt")
    _assert_weights_close(single.model.state_dict(), job.out / "accumulate_rank1.pt")
    # 20 micro-batches per process, 10 optimizer steps: one all-reduce per step, not 20
    assert [r["accumulate_steps"] for r in job.records] == [10, 10]
    assert [r["gradient_syncs"] for r in job.records] == [10, 10]


def test_no_collective_per_step_when_only_visionkit_callbacks_run(job: Job) -> None:
    # 20 batches per epoch and max_steps=30: the processes agree every 16 batches and at
    # epoch boundaries, and max_steps stops both at step 30 without a collective.
    # Agreements: before epoch 0, batch 15, after epoch 0; before epoch 1, whether epoch 1
    # was cut short, whether a process got a signal (once, as the epoch ends early), after
    # epoch 1; before leaving the loop.
    assert [r["quiet_steps"] for r in job.records] == [30, 30]
    assert [r["quiet_agreements"] for r in job.records] == [8, 8]


def test_a_callback_stopping_one_rank_mid_epoch_stops_both_at_the_same_step(job: Job) -> None:
    # A user callback may stop one process inside an epoch, so every step is agreed on:
    # before the epoch, after steps 0-3, whether it was cut short, whether a process got a
    # signal (once), after the epoch.
    assert [r["stopped_at_step"] for r in job.records] == [4, 4]
    assert [r["stopped_epochs"] for r in job.records] == [1, 1]
    assert [r["stop_agreements"] for r in job.records] == [8, 8]


def test_a_stop_from_outside_the_callbacks_stops_both_at_the_next_agreement(job: Job) -> None:
    # rank 1 sets should_stop during step 3 (from its loss, as a signal handler would);
    # both processes stop together after batch 15, the next agreement: no hang. One more
    # agreement asks whether that stop came from a signal (it did not: no checkpoint).
    assert [r["signal_stopped_at_step"] for r in job.records] == [16, 16]
    assert [r["signal_agreements"] for r in job.records] == [5, 5]


def test_only_rank_zero_writes_and_a_single_checkpoint_file_exists(job: Job) -> None:
    assert sorted(p.name for p in (job.out / "checkpoints").iterdir()) == ["best.ckpt"]
    assert job.records[0]["saves"] >= 1
    assert job.records[1]["saves"] == 0
    assert not (job.out / "runs").exists()  # no stray run folder from rank 1
    # ckpt="best" works on rank 1 too, which saved nothing: rank 0 broadcasts the path
    assert job.records[1]["test_best"] == job.records[0]["test_best"]


def test_resume_from_one_process_on_two_and_from_two_on_one(job: Job, tmp_path: Path) -> None:
    straight = _single_fit(tmp_path / "straight", max_epochs=4).weights
    # 2 processes resumed the 1-process checkpoint of epoch 0 and trained epochs 1 and 2
    _assert_weights_close(straight[2], job.out / "resumed_rank0.pt")
    _assert_weights_close(straight[2], job.out / "resumed_rank1.pt")
    # 1 process resumes their checkpoint (written by rank 0 only) and trains epoch 3
    resumed = _single_fit(tmp_path / "resumed", max_epochs=4, resume_from=job.out / "resumed.ckpt")
    assert len(resumed.weights) == 1
    for name, value in straight[3].items():
        torch.testing.assert_close(resumed.weights[0][name], value, rtol=0, atol=2e-5, msg=name)


def test_a_rank_that_raises_ends_the_whole_job_with_an_error(job: Job) -> None:
    ranks = job.ranks  # the job's last phase raises on rank 1 in its first epoch
    assert ranks[1].returncode != 0
    assert "RuntimeError: boom on rank 1" in ranks[1].log
    assert ranks[0].returncode != 0, ranks[0].log[-2000:]
    assert "Traceback" in ranks[0].log


# --------------------------------------------------------------------- single process
def test_auto_strategy_without_torchrun_is_single_process() -> None:
    strategy = resolve_strategy("auto")
    assert type(strategy) is Strategy
    assert (strategy.rank, strategy.world_size, strategy.is_distributed) == (0, 1, False)


def test_ddp_without_a_torchrun_launch_says_how_to_launch() -> None:
    model = torch.nn.Linear(4, 2)
    with pytest.raises(ConfigurationError, match=r"not launched by torchrun.*torchrun --nproc"):
        Trainer(model, strategy="ddp", device="cpu")


def test_unknown_strategy_is_named() -> None:
    with pytest.raises(ConfigurationError, match="unknown strategy 'fsdp'"):
        resolve_strategy("fsdp")  # type: ignore[arg-type]


def test_torchrun_env_reads_the_launch_variables() -> None:
    env = {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "node0",
        "MASTER_PORT": "29500",
    }
    found = torchrun_env(env)
    assert found is not None
    assert (found.rank, found.world_size, found.local_rank, found.master_port) == (3, 4, 1, 29500)
    assert torchrun_env({}) is None
    with pytest.raises(ConfigurationError, match=r"not \['MASTER_ADDR', 'MASTER_PORT'\]"):
        torchrun_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigurationError, match="RANK=4 is outside"):
        torchrun_env({**env, "RANK": "4"})


def test_sync_batchnorm_on_cpu_is_refused_before_any_process_group() -> None:
    with pytest.raises(ConfigurationError, match=r"sync_batchnorm=True needs CUDA.*uses cpu"):
        DDPStrategy(sync_batchnorm=True).setup(torch.device("cpu"))


def test_a_dataloader_without_distributed_sampler_is_refused_under_ddp() -> None:
    data = TensorDataset(torch.zeros(10, 2), torch.zeros(10, dtype=torch.long))
    with pytest.raises(
        ConfigurationError, match=r"sampler is SequentialSampler.*DistributedSampler"
    ):
        _check_sharded(DataLoader(data, batch_size=2), world_size=2)
    sampler = DistributedSampler(data, num_replicas=2, rank=0)
    _check_sharded(DataLoader(data, batch_size=2, sampler=sampler), world_size=2)
    with pytest.raises(ConfigurationError, match="for 2 processes"):
        _check_sharded(DataLoader(data, batch_size=2, sampler=sampler), world_size=4)


def test_per_rank_batches_interleave_into_the_single_process_batches() -> None:
    """Why 2 x batch 25 equals 1 x batch 50: rank r takes positions r, r+2, ... of the order."""
    train, _ = worker.make_data()
    single = InMemoryLoader(train, 50, shuffle=True, seed=7)
    shards = [InMemoryLoader(train, 25, shuffle=True, seed=7, rank=r, world_size=2) for r in (0, 1)]
    for loader in (single, *shards):
        loader.set_epoch(3)
    order = single.indices()
    for i in range(len(single)):
        union = torch.cat([s.indices()[i * 25 : (i + 1) * 25] for s in shards])
        assert sorted(union.tolist()) == sorted(order[i * 50 : (i + 1) * 50].tolist())


def test_capped_loader_gives_every_rank_the_same_number_of_batches() -> None:
    train, _ = worker.make_data()
    loader = InMemoryLoader(train.select(range(101)), 10, rank=0, world_size=2)  # 51 samples
    assert len(loader) == 6
    capped = _CappedLoader(loader, 5)  # rank 1 has 50 samples: 5 batches
    assert len(capped) == 5
    assert len(list(capped)) == 5
    capped.skip_batches(3)
    assert [len(y) for _, y in capped] == [10, 10]


@pytest.mark.slow
def test_the_same_job_under_the_real_torchrun(tmp_path: Path) -> None:
    train, val = worker.make_data()
    source = worker.make_trainer(tmp_path, max_epochs=1, callbacks=[ModelCheckpoint(tmp_path)])
    source.fit(train, val, batch_size=worker.GLOBAL_BATCH)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    result = subprocess.run(
        [*cmd, str(WORKER_PATH), str(tmp_path), str(tmp_path / "last.ckpt")],
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT,
        check=False,
    )
    assert result.returncode != 0  # the job's last phase raises on rank 1
    assert "boom on rank 1" in result.stdout + result.stderr
    for rank in (0, 1):
        record = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert (record["rank"], record["world_size"]) == (rank, 2)
        assert record["test"]["num_samples"] == 1001
        assert record["stopped_epoch"] == 1
