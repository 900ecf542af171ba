"""Multi-process training on ``torch.distributed``: DDP under ``torchrun``, with exact metrics.

The [`Trainer`][visionkit.Trainer] asks a *strategy* for everything that differs between one process
and many: the device, the model wrapper, the loaders' shards, metric reduction and the agreement on
when to stop. [`Strategy`][visionkit.training.Strategy] is the single-process one (every method is a
no-op); [`DDPStrategy`][visionkit.training.DDPStrategy] runs PyTorch's ``DistributedDataParallel``
on a process group (NCCL on CUDA, gloo on CPU) that it creates from the environment ``torchrun``
sets.

Examples:
    >>> resolve_strategy("auto").world_size  # not launched by torchrun: one process
    1
"""

from __future__ import annotations

import atexit
import itertools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.distributed_c10d import PrefixStore
from torch.distributed.rendezvous import rendezvous
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

from visionkit.data._loaders import EpochLoader, SeededSampler
from visionkit.exceptions import ConfigurationError
from visionkit.models.transfer import freeze, is_frozen
from visionkit.training.metrics import ClassificationMetrics

__all__ = [
    "DDPStrategy",
    "Strategy",
    "StrategyName",
    "TorchrunEnv",
    "resolve_strategy",
    "torchrun_env",
]

StrategyName = Literal["auto", "ddp", "single_device"]
"""The strategies the ``Trainer`` accepts by name."""

T = TypeVar("T")
_LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class TorchrunEnv:
    """Where this process sits in a job, as ``torchrun`` (or a cluster launcher) describes it.

    Attributes:
        rank: Global index of this process, ``0 .. world_size - 1``.
        world_size: Number of processes in the job.
        local_rank: Index of this process on its node (its GPU index).
        local_world_size: Number of processes on this node.
        master_addr: Host of the rendezvous store (rank 0).
        master_port: Port of the rendezvous store.
    """

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int


def torchrun_env(environ: Mapping[str, str] | None = None) -> TorchrunEnv | None:
    """Read the launch variables ``torchrun`` sets, or ``None`` when they are absent.

    ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` are required;
    ``LOCAL_RANK`` defaults to ``RANK`` and ``LOCAL_WORLD_SIZE`` to ``WORLD_SIZE``.

    Args:
        environ: The variables to read; default ``os.environ``.

    Examples:
        >>> env = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
        >>> torchrun_env(env).rank, torchrun_env(env).local_rank, torchrun_env({})
        (1, 1, None)
    """
    env = os.environ if environ is None else environ
    missing = [name for name in _LAUNCH_VARIABLES if name not in env]
    if len(missing) == len(_LAUNCH_VARIABLES):
        return None
    if missing:
        raise ConfigurationError(
            f"found some of the torchrun launch variables but not {missing}: launch with "
            "torchrun, or set all of RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT"
        )
    try:
        rank, world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK", rank))
        local_world_size = int(env.get("LOCAL_WORLD_SIZE", world_size))
        port = int(env["MASTER_PORT"])
    except ValueError as error:
        raise ConfigurationError(
            f"a torchrun launch variable is not an integer: {error}"
        ) from error
    if not 0 <= rank < world_size:
        raise ConfigurationError(
            f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world_size})"
        )
    return TorchrunEnv(rank, world_size, local_rank, local_world_size, env["MASTER_ADDR"], port)


class Strategy:
    """One process on one device: the default, and the base of `DDPStrategy`.

    Every method is what the trainer calls at a fixed point; here they do nothing, so a
    single-process run pays nothing for distributed support.

    Attributes:
        rank: Global index of this process (0 here).
        world_size: Number of processes (1 here).
        local_rank: Index of this process on its node (0 here).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        """Whether several processes take part (``world_size > 1``)."""
        return self.world_size > 1

    def setup(self, device: torch.device) -> torch.device:
        """Prepare the processes; return the device this process trains on."""
        return device

    def wrap(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        """Return ``(model, module_to_train_through)``; here both are ``model``."""
        return model, model

    def train_loader(self, loader: EpochLoader, data: Any) -> EpochLoader:
        """The training loader, with the same number of batches on every process."""
        return loader

    def eval_loader(self, loader: EpochLoader, data: Any) -> EpochLoader:
        """The evaluation loader (checked to be sharded across processes)."""
        return loader

    def reduce_metrics(self, metrics: ClassificationMetrics | None) -> ClassificationMetrics | None:
        """The metrics summed over processes (here ``metrics`` itself)."""
        return metrics

    def any(self, flag: bool) -> bool:
        """``True`` on every process if ``flag`` is ``True`` on any of them."""
        return flag

    def broadcast_object(self, value: T) -> T:
        """Rank 0's ``value`` (a picklable object) on every process."""
        return value

    def barrier(self) -> None:
        """Wait until every process gets here."""

    def teardown(self) -> None:
        """Release what `setup` created (the process group, if it created one)."""

    def abort(self) -> None:
        """After an exception: tear down at once so the other processes fail, not hang."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class DDPStrategy(Strategy):
    """``DistributedDataParallel`` over a ``torch.distributed`` process group.

    Launch the unchanged script with ``torchrun --nproc-per-node=N train.py``: the trainer
    finds the launch variables, creates the process group (NCCL on CUDA, gloo on CPU), puts
    process ``LOCAL_RANK`` on ``cuda:LOCAL_RANK``, wraps the model, shards the data, reduces
    metrics and lets only rank 0 write files. ``batch_size`` is per process, so the global
    batch is ``batch_size * world_size``. A process group you created yourself is used as
    it is and left for you to destroy.

    Args:
        backend: ``"nccl"``, ``"gloo"`` or another ``torch.distributed`` backend; default
            NCCL on CUDA and gloo otherwise.
        sync_batchnorm: Convert every ``BatchNorm`` layer to ``SyncBatchNorm`` so batch
            statistics are computed over the global batch (CUDA only).
        find_unused_parameters: Passed to DDP; needed when some parameters get no gradient
            in a step (slower).
        timeout: How long a collective waits for the other processes before failing.

    Examples:
        >>> DDPStrategy(sync_batchnorm=True)
        DDPStrategy(backend=None, sync_batchnorm=True)
    """

    def __init__(
        self,
        *,
        backend: str | None = None,
        sync_batchnorm: bool = False,
        find_unused_parameters: bool = False,
        timeout: timedelta = timedelta(minutes=30),
    ) -> None:
        self.backend = backend
        self.sync_batchnorm = sync_batchnorm
        self.find_unused_parameters = find_unused_parameters
        self.timeout = timeout
        self.device = torch.device("cpu")
        self._owns_group = False
        self._control: Any = None  # a gloo group for CPU-side flags and objects

    def setup(self, device: torch.device) -> torch.device:
        """Create (or join) the process group; return ``cuda:LOCAL_RANK`` on CUDA."""
        if not dist.is_available():
            raise ConfigurationError(
                "strategy='ddp' needs torch.distributed, missing from this torch build"
            )
        if self.sync_batchnorm and device.type != "cuda":
            raise ConfigurationError(
                f"sync_batchnorm=True needs CUDA devices (torch's SyncBatchNorm runs on GPUs), but "
                f"this run uses {device.type}: drop sync_batchnorm on {device.type}"
            )
        env = torchrun_env()
        if not dist.is_initialized():
            if env is None:
                raise ConfigurationError(
                    "strategy='ddp' but this process was not launched by torchrun (RANK, "
                    "WORLD_SIZE, MASTER_ADDR and MASTER_PORT are not set): run "
                    "`torchrun --nproc-per-node=N your_script.py`, or use strategy='auto'"
                )
            self._init_group(env, device)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.local_rank = env.local_rank if env is not None else self.rank
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
        self.device = device
        gloo = dist.get_backend() == dist.Backend.GLOO
        self._control = None if gloo else dist.new_group(backend="gloo")
        return device

    def _init_group(self, env: TorchrunEnv, device: torch.device) -> None:
        backend = self.backend or ("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if restart is None:
            dist.init_process_group(backend, timeout=self.timeout)
        else:
            # After a torchrun restart the rendezvous store may still hold the previous
            # attempt's addresses; a prefix per attempt keeps the new group from using them.
            store, rank, world_size = next(rendezvous("env://", timeout=self.timeout))
            attempt = PrefixStore(f"visionkit/attempt_{restart}/", store)
            dist.init_process_group(
                backend, store=attempt, rank=rank, world_size=world_size, timeout=self.timeout
            )
        self._owns_group = True
        atexit.register(self.teardown)

    def wrap(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        """Convert batch-norm layers if asked; return ``(model, DDP(model))``.

        The optimizer keeps working: ``SyncBatchNorm`` conversion reuses the parameter
        objects, and DDP does not copy them.
        """
        if self.sync_batchnorm:
            model = sync_batchnorm(model).to(self.device)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=self.find_unused_parameters
        )
        return model, ddp

    def train_loader(self, loader: EpochLoader, data: Any) -> EpochLoader:
        """Cap every process at the smallest shard's number of batches.

        Shards differ by at most one sample, so this skips at most one one-sample batch on
        some processes; without it, the process with an extra batch would wait forever for
        the others in DDP's gradient all-reduce.
        """
        _check_sharded(data, self.world_size)
        steps = self._reduce_int(len(loader), dist.ReduceOp.MIN)
        return loader if steps == len(loader) else _CappedLoader(loader, steps)

    def eval_loader(self, loader: EpochLoader, data: Any) -> EpochLoader:
        """Check that ``data`` is sharded; evaluation needs no equal batch counts."""
        _check_sharded(data, self.world_size)
        return loader

    def reduce_metrics(self, metrics: ClassificationMetrics | None) -> ClassificationMetrics | None:
        """A copy of ``metrics`` whose sums are all-reduced: the global values, exactly.

        Each process counts only its own shard and shards never overlap, so the sums
        (loss, hits, confusion matrix) add up to those of one process seeing all the data.
        """
        if metrics is None:
            return None
        state = metrics.state_tensor().to(self.device, copy=True)
        dist.all_reduce(state, op=dist.ReduceOp.SUM)
        total = ClassificationMetrics(
            metrics.num_classes, top_k=metrics.top_k, confusion=metrics.confusion
        )
        total.load_state_tensor(state)
        return total

    def any(self, flag: bool) -> bool:
        """``True`` everywhere if ``flag`` is ``True`` on any process (a CPU all-reduce)."""
        return bool(self._reduce_int(int(flag), dist.ReduceOp.MAX))

    def broadcast_object(self, value: T) -> T:
        """Rank 0's ``value`` on every process."""
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self._control)
        return box[0]

    def barrier(self) -> None:
        """Wait until every process gets here."""
        dist.barrier(group=self._control)

    def teardown(self) -> None:
        """Destroy the process group if this strategy created it."""
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False

    def abort(self) -> None:
        """Destroy the process group now, so the other processes' collectives fail at once."""
        self.teardown()

    def _reduce_int(self, value: int, op: Any) -> int:
        tensor = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(tensor, op=op, group=self._control)
        return int(tensor.item())

    def __repr__(self) -> str:
        return f"DDPStrategy(backend={self.backend!r}, sync_batchnorm={self.sync_batchnorm})"


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with every ``BatchNorm`` converted to ``SyncBatchNorm``; frozen stays frozen.

    A layer frozen by [`freeze`][visionkit.models.freeze] (no trainable parameter) is frozen
    again after the conversion, so its running statistics still never move.
    """
    frozen = {
        name
        for name, layer in model.named_modules()
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and is_frozen(layer)
    }
    convert = nn.SyncBatchNorm.convert_sync_batchnorm
    converted: nn.Module = convert(model)  # type: ignore[no-untyped-call]
    for name, layer in converted.named_modules():
        if name in frozen:
            freeze(layer)
    return converted


def resolve_strategy(strategy: StrategyName | Strategy = "auto") -> Strategy:
    """Turn a strategy name into a [`Strategy`][visionkit.training.Strategy].

    ``"auto"`` picks [`DDPStrategy`][visionkit.training.DDPStrategy] when the process was launched
    by ``torchrun`` with more than one process (or joined a process group of several), else the
    single-process [`Strategy`][visionkit.training.Strategy]. ``"ddp"`` always means DDP (also with
    one process); ``"single_device"`` never does.

    Args:
        strategy: ``"auto"``, ``"ddp"``, ``"single_device"`` or a strategy instance.
    """
    if isinstance(strategy, Strategy):
        return strategy
    if strategy == "auto":
        return DDPStrategy() if _launched_with_several_processes() else Strategy()
    if strategy == "ddp":
        return DDPStrategy()
    if strategy == "single_device":
        return Strategy()
    raise ConfigurationError(
        f"unknown strategy {strategy!r}: use 'auto', 'ddp', 'single_device' or a DDPStrategy(...)"
    )


def _launched_with_several_processes() -> bool:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    env = torchrun_env()
    return env is not None and env.world_size > 1


def _check_sharded(data: Any, world_size: int) -> None:
    """Refuse a ``DataLoader`` that would give every process the whole data set."""
    if not isinstance(data, DataLoader) or isinstance(data.dataset, IterableDataset):
        return  # visionkit shards data sets itself; iterable ones shard themselves
    batch_sampler = getattr(data, "batch_sampler", None)
    sampler = getattr(batch_sampler, "sampler", data.sampler)
    replicas = getattr(sampler, "num_replicas", getattr(sampler, "world_size", None))
    if isinstance(sampler, (DistributedSampler, SeededSampler)) and replicas == world_size:
        return
    raise ConfigurationError(
        f"under DDP each of the {world_size} processes must load its own part of the data, but "
        f"this DataLoader's sampler is {type(sampler).__name__}"
        f"{f' for {replicas} processes' if replicas is not None else ''}: pass the Dataset "
        "itself (the Trainer shards it) or build the DataLoader with "
        "sampler=DistributedSampler(dataset)"
    )


class _CappedLoader:
    """An `EpochLoader` that stops after ``steps`` batches of the wrapped one."""

    def __init__(self, loader: EpochLoader, steps: int) -> None:
        self.loader = loader
        self.steps = steps
        self._start = 0

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def skip_batches(self, count: int) -> None:
        self._start = count
        self.loader.skip_batches(count)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Any]:
        start, self._start = self._start, 0
        return itertools.islice(iter(self.loader), max(self.steps - start, 0))
