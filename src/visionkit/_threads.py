"""How many CPU threads torch should use: the cores this process may really run on.

PyTorch starts one intra-op thread per core it sees. Two common set-ups make that wrong:

- a container limited by a CPU quota (``docker --cpus=2``, Kubernetes CPU limits) still
  *sees* every core of the host, so torch starts dozens of threads that fight over two
  cores' worth of time;
- several training processes on one machine (``torchrun --nproc-per-node=N`` on the CPU)
  each start one thread per core: N times too many.

[`default_num_threads`][visionkit.training.default_num_threads] returns the count that fits, or
``None`` when torch's own choice already fits or the user chose one (``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

__all__ = ["available_cpus", "default_num_threads", "num_threads"]

_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = Path("/sys/fs/cgroup/cpu")


def available_cpus(cgroup_root: Path | None = None) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.

    Args:
        cgroup_root: Folder holding ``cpu.max`` (cgroup v2) or ``cpu.cfs_quota_us`` and
            ``cpu.cfs_period_us`` (v1); default the system's.

    Examples:
        >>> available_cpus() >= 1
        True
    """
    if sys.platform == "linux":
        cpus = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS and Windows have no CPU affinity call
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_quota(root: Path | None) -> float | None:
    """The CPU quota in CPUs (``2.5`` for 250 ms per 100 ms), or ``None`` if unlimited."""
    v2 = root / "cpu.max" if root else _CGROUP_V2
    v1 = root if root else _CGROUP_V1
    try:
        if v2.is_file():
            quota, _, period = v2.read_text().strip().partition(" ")
            return None if quota == "max" else int(quota) / int(period or 100_000)
        quota_file, period_file = v1 / "cpu.cfs_quota_us", v1 / "cpu.cfs_period_us"
        if quota_file.is_file() and period_file.is_file():
            quota_us = int(quota_file.read_text())
            return None if quota_us <= 0 else quota_us / int(period_file.read_text())
    except (OSError, ValueError):  # unreadable or odd: no limit is known
        return None
    return None


def default_num_threads(
    *,
    processes_per_node: int = 1,
    environ: Mapping[str, str] | None = None,
    cpus: int | None = None,
    current: int | None = None,
) -> int | None:
    """The intra-op thread count for training on the CPU, or ``None`` to keep torch's.

    ``available_cpus() // processes_per_node`` threads, at least 1, when torch uses more.
    ``None`` when torch already uses that many or fewer, or when ``OMP_NUM_THREADS`` was
    set by the user. With several processes per node, ``OMP_NUM_THREADS=1`` is what
    ``torchrun`` sets on its own (with a warning asking to tune it), not a user's choice,
    so there the share of the cores is used instead; pass ``num_threads=1`` to the trainer
    to keep 1.

    Args:
        processes_per_node: Training processes sharing this machine.
        environ: Environment to read; default ``os.environ``.
        cpus: Usable CPUs; default [`available_cpus`][visionkit.training.available_cpus].
        current: Threads torch uses now; default ``torch.get_num_threads()``.

    Examples:
        >>> default_num_threads(processes_per_node=4, environ={}, cpus=16, current=16)
        4
        >>> env = {"OMP_NUM_THREADS": "1"}  # set by torchrun --nproc-per-node=4
        >>> default_num_threads(processes_per_node=4, environ=env, cpus=16, current=1)
        4
        >>> default_num_threads(environ={}, cpus=16, current=16) is None
        True
        >>> default_num_threads(environ={}, cpus=2, current=64)  # a 2-CPU container quota
        2
    """
    env = os.environ if environ is None else environ
    chosen = env.get("OMP_NUM_THREADS")
    torchrun_default = processes_per_node > 1 and chosen is not None and chosen.strip() == "1"
    if chosen is not None and not torchrun_default:
        return None
    usable = available_cpus() if cpus is None else cpus
    wanted = max(1, usable // max(1, processes_per_node))
    now = torch.get_num_threads() if current is None else current
    if torchrun_default:
        return None if wanted == now else wanted
    return wanted if wanted < now else None  # only ever fewer threads than torch chose


@contextlib.contextmanager
def num_threads(count: int | None) -> Iterator[None]:
    """Use ``count`` intra-op threads inside the block, then restore the previous count."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
