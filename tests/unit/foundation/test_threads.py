"""CPU thread defaults: cgroup quotas, torchrun processes, and the trainer's num_threads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from visionkit import Trainer
from visionkit._threads import _cgroup_quota, num_threads
from visionkit.callbacks import Callback
from visionkit.data import mnist_sample
from visionkit.exceptions import ConfigurationError
from visionkit.models import create_model
from visionkit.training import available_cpus, default_num_threads


@pytest.mark.parametrize(
    ("content", "expected"),
    [("200000 100000\n", 2.0), ("150000 100000", 1.5), ("max 100000", None), ("junk", None)],
)
def test_cgroup_v2_quota(tmp_path: Path, content: str, expected: float | None) -> None:
    (tmp_path / "cpu.max").write_text(content)
    assert _cgroup_quota(tmp_path) == expected


@pytest.mark.parametrize(
    ("quota", "period", "expected"), [("-1", "100000", None), ("250000", "100000", 2.5)]
)
def test_cgroup_v1_quota(tmp_path: Path, quota: str, period: str, expected: float | None) -> None:
    (tmp_path / "cpu.cfs_quota_us").write_text(quota)
    (tmp_path / "cpu.cfs_period_us").write_text(period)
    assert _cgroup_quota(tmp_path) == expected


def test_available_cpus_is_capped_by_the_quota_rounded_up(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("50000 100000")  # half a CPU still needs one thread
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000")
    assert available_cpus(tmp_path) == available_cpus(tmp_path / "missing")


@pytest.mark.parametrize(
    ("per_node", "environ", "cpus", "current", "expected"),
    [
        (1, {}, 16, 16, None),  # torch's default already fits
        (1, {}, 2, 64, 2),  # a 2-CPU container quota on a 64-core host
        (1, {}, 16, 4, None),  # the user lowered it: never raised
        (4, {}, 16, 16, 4),  # four processes share the cores
        (3, {}, 2, 2, 1),  # at least one thread each
        (4, {"OMP_NUM_THREADS": "1"}, 16, 1, 4),  # torchrun's own default is tuned
        (1, {"OMP_NUM_THREADS": "1"}, 16, 1, None),  # one process: the user's choice
        (4, {"OMP_NUM_THREADS": "2"}, 16, 2, None),  # the user's choice is kept
    ],
)
def test_default_num_threads(
    per_node: int, environ: dict[str, str], cpus: int, current: int, expected: int | None
) -> None:
    found = default_num_threads(
        processes_per_node=per_node, environ=environ, cpus=cpus, current=current
    )
    assert found == expected


def test_num_threads_restores_the_previous_count() -> None:
    before = torch.get_num_threads()
    with num_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError), num_threads(2):
        raise KeyError("boom")
    assert torch.get_num_threads() == before


class _RecordThreads(Callback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.seen.append(torch.get_num_threads())


def test_trainer_uses_num_threads_during_fit_and_restores_them() -> None:
    data = mnist_sample(val_fraction=0.1)
    record = _RecordThreads()
    model = create_model("mlp", hidden=[8], num_classes=10)
    trainer = Trainer(
        model,
        max_steps=2,
        num_threads=2,
        callbacks=[record],
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    before = torch.get_num_threads()  # 1 in the test suite
    trainer.fit(data.train, batch_size=64)
    assert record.seen == [2]
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, True])
def test_trainer_refuses_a_bad_num_threads(bad: int) -> None:
    expected = re.escape(f"num_threads must be an integer >= 1 or None, got {bad}")
    with pytest.raises(ConfigurationError, match=expected):
        Trainer(create_model("mlp", hidden=[8], num_classes=10), num_threads=bad)
