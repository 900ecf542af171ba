"""The ``Trainer``: the training, validation and test loops of every workflow."""

from __future__ import annotations

import contextlib
import math
import operator
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from visionkit._checks import (
    check_bool,
    check_int,
    check_optional_int,
    check_optional_number,
    check_path,
    check_seed,
    describe,
)
from visionkit._device import move_to_device, resolve_device
from visionkit._seed import get_rng_state, set_rng_state
from visionkit._threads import default_num_threads, num_threads
from visionkit.callbacks.base import Callback, StepOutput
from visionkit.data._datasets import TensorImageDataset
from visionkit.data._loaders import EpochLoader, _DataLoaderAdapter, make_loader
from visionkit.exceptions import ConfigurationError, VisionKitError
from visionkit.predict.checkpoint import (
    Preprocess,
    load_checkpoint,
    load_weights,
    make_checkpoint,
    non_finite_tensors,
    save_checkpoint,
    unwrap_model,
)
from visionkit.training._accumulate import BatchGroups
from visionkit.training._compile import CompiledForward
from visionkit.training.distributed import (
    Strategy,
    StrategyName,
    resolve_strategy,
    torchrun_env,
)
from visionkit.training.history import History
from visionkit.training.metrics import ClassificationMetrics, EvaluationReport

__all__ = ["NonFiniteLossError", "Trainer"]

Data = Dataset[Any] | DataLoader[Any]
Precision = Literal["32", "bf16", "16"]
_NO_CONTEXT = contextlib.nullcontext()
_PRECISIONS: dict[str, torch.dtype | None] = {
    "32": None,
    "bf16": torch.bfloat16,
    "16": torch.float16,
}


class NonFiniteLossError(VisionKitError, FloatingPointError):
    """The loss or the weights became NaN or infinite; training stopped, nothing was saved.

    The message says which came first: the input batch, the weights (after a step whose
    gradients were not finite), the model's outputs, or the loss itself.
    """


class Trainer:
    """Trains, validates and tests a classifier; owns devices, modes, metrics and checkpoints.

    The loop handles ``model.train()`` / ``model.eval()``, ``inference_mode`` for
    evaluation, device moves, mixed precision, gradient accumulation and clipping,
    learning-rate schedulers (including ``ReduceLROnPlateau`` on a monitored metric),
    exact metrics with uneven last batches, non-finite loss detection, and checkpoints
    that resume exactly.

    Args:
        model: The network. Outputs are logits (for ``CrossEntropyLoss``) or
            log-probabilities (for ``NLLLoss``).
        optimizer: Any ``torch.optim`` optimizer over the model's parameters; default
            ``Adam(lr=1e-3)`` over the trainable ones.
        loss: The loss function; default ``nn.CrossEntropyLoss()``.
        scheduler: A learning-rate scheduler; ``ReduceLROnPlateau`` is stepped with the
            ``monitor`` metric.
        scheduler_interval: Step the scheduler every ``"epoch"`` or every ``"step"``.
        monitor: Metric that the plateau scheduler and the default checkpoint watch;
            default ``"val_loss"`` when there is validation data, else ``"train_loss"``.
        max_epochs: Number of epochs to train (an integer >= 1).
        max_steps: Stop after this many optimizer steps (``None``: no limit).
        max_time: Stop after this many seconds of training (checked every step; a number
            > 0, or ``None``: no limit).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a device of
            those types (not ``"meta"``), resolved before the model is moved.
        callbacks: Callbacks; a :class:`~visionkit.callbacks.ModelCheckpoint` and a
            :class:`~visionkit.callbacks.ProgressBar` are added unless you pass your own or
            switch them off.
        log_every_n_steps: Report running training metrics every N steps (seed 004 logs
            every 10 batches); ``None`` reports once per epoch.
        precision: ``"32"``, ``"bf16"`` (autocast) or ``"16"`` (autocast with a
            ``GradScaler`` on CUDA).
        gradient_clip_val: Clip the gradient norm to this value (> 0) before each step;
            ``None`` does not clip.
        accumulate_grad_batches: Sum gradients over N batches per optimizer step.
        num_workers: ``DataLoader`` workers for file-based data sets.
        seed: Seed of data shuffling and augmentation order.
        default_root_dir: Where the default checkpoint callback writes
            (``<dir>/version_N/checkpoints``).
        enable_checkpointing: Add a default ``ModelCheckpoint`` if none is given.
        enable_progress_bar: Add a default ``ProgressBar`` if none is given.
        check_finite: Stop with :class:`NonFiniteLossError` when the loss is NaN or inf
            (checked every step; the message says whether the inputs, the weights or the
            outputs went first) or the weights are (checked at each epoch end). Checkpoints
            are never written with non-finite weights, whatever this is set to.
        top_k: Extra top-k accuracies to report in evaluation (e.g. ``(5,)``); a single
            integer ``k`` means ``(k,)``, ``()`` reports none.
        channels_last: Use the channels-last memory format (faster convolutions on GPU).
        compile: Train through ``torch.compile(model)`` (evaluation stays eager). If
            compiling is unavailable or fails on the first batch, a ``RuntimeWarning``
            says why and training goes on eagerly. Checkpoints hold the uncompiled model.
        strategy: ``"auto"`` (DDP when launched by ``torchrun`` with several processes),
            ``"ddp"``, ``"single_device"`` or a
            :class:`~visionkit.training.distributed.DDPStrategy`; see the distributed guide.
        num_threads: CPU threads torch uses while ``fit``, ``validate`` and ``test`` run
            (restored afterwards). ``None`` picks them on the CPU: the cores this process
            may really use (a container's CPU quota counts) shared among the ``torchrun``
            processes of this machine, and never more than torch would use on its own;
            an ``OMP_NUM_THREADS`` you set is kept. See
            :func:`~visionkit.training.default_num_threads`.

    Raises:
        ConfigurationError: if an argument has the wrong type or is out of its range (a
            count of ``1.5``, ``True`` or NaN, a negative ``max_time`` or clipping value, a
            callback that is not a :class:`~visionkit.callbacks.Callback`, ...). Every
            argument is checked before the model is moved to ``device``.

    Example:
        >>> import torch
        >>> from visionkit.data import mnist_sample
        >>> from visionkit.models import create_model
        >>> data = mnist_sample()
        >>> model = create_model("mlp", hidden=[32], num_classes=10)
        >>> trainer = Trainer(model, max_steps=5, enable_checkpointing=False,
        ...                   enable_progress_bar=False, device="cpu")
        >>> history = trainer.fit(data.train, data.val, batch_size=64)
        >>> trainer.global_step, len(history)
        (5, 1)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        scheduler: Any | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        monitor: str | None = None,
        max_epochs: int = 10,
        max_steps: int | None = None,
        max_time: float | None = None,
        device: str | torch.device = "auto",
        callbacks: Sequence[Callback] | None = None,
        log_every_n_steps: int | None = None,
        precision: Precision = "32",
        gradient_clip_val: float | None = None,
        accumulate_grad_batches: int = 1,
        num_workers: int = 0,
        seed: int = 0,
        default_root_dir: str | os.PathLike[str] = "visionkit_runs",
        enable_checkpointing: bool = True,
        enable_progress_bar: bool = True,
        check_finite: bool = True,
        top_k: Sequence[int] = (5,),
        channels_last: bool = False,
        compile: bool = False,
        strategy: StrategyName | Strategy = "auto",
        num_threads: int | None = None,
    ) -> None:
        # Every argument is checked before anything happens, the model's move included.
        if not isinstance(model, nn.Module):
            raise ConfigurationError(
                f"model must be a torch.nn.Module, got {describe(model)}: pass the network, "
                "e.g. create_model('mlp', num_classes=10)"
            )
        _check_choices(precision, scheduler_interval)
        max_epochs = check_int(
            "max_epochs", max_epochs, least=1, hint="pass a whole number, e.g. max_epochs=10"
        )
        max_steps = check_optional_int(
            "max_steps", max_steps, least=1, hint="pass a whole number of steps, or None"
        )
        max_time = check_optional_number(
            "max_time",
            max_time,
            above=0.0,
            finite=False,
            hint="pass the seconds training may take, e.g. max_time=600, or None for no limit",
        )
        accumulate_grad_batches = check_int(
            "accumulate_grad_batches",
            accumulate_grad_batches,
            least=1,
            hint="pass the whole number of batches per optimizer step, e.g. 4",
        )
        gradient_clip_val = check_optional_number(
            "gradient_clip_val",
            gradient_clip_val,
            above=0.0,
            hint="pass the largest gradient norm allowed, e.g. 1.0, or None to not clip",
        )
        log_every_n_steps = check_optional_int(
            "log_every_n_steps",
            log_every_n_steps,
            least=1,
            hint="pass a whole number of steps, or None to report once per epoch",
        )
        num_workers = check_int(
            "num_workers", num_workers, least=0, hint="pass 0 to load data in this process"
        )
        num_threads = check_optional_int(
            "num_threads",
            num_threads,
            least=1,
            hint="pass a whole number of threads, or None to pick them from the usable cores",
        )
        seed = check_seed("seed", seed)
        root_dir = check_path("default_root_dir", default_root_dir)
        top = _check_top_k(top_k)
        callback_list = _check_callbacks(callbacks)
        _check_monitor(monitor)
        _check_loss(loss)
        if optimizer is not None:
            _check_optimizer(model, optimizer)
        flags = {
            "enable_checkpointing": enable_checkpointing,
            "enable_progress_bar": enable_progress_bar,
            "check_finite": check_finite,
            "channels_last": channels_last,
            "compile": compile,
        }
        enable_checkpointing, enable_progress_bar, check_finite, channels_last, compile = (
            check_bool(name, flag) for name, flag in flags.items()
        )
        if scheduler_interval == "step" and isinstance(
            scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
        ):
            raise ConfigurationError(
                "ReduceLROnPlateau needs a metric, which exists once per epoch: use "
                "scheduler_interval='epoch' (the default) with it"
            )
        self._strategy = resolve_strategy(strategy)
        self.device = self._strategy.setup(resolve_device(device))
        self.channels_last = channels_last
        self.model = model.to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = optimizer or torch.optim.Adam(
            [p for p in model.parameters() if p.requires_grad], lr=1e-3
        )
        self.model, self._train_module = self._strategy.wrap(self.model)
        self.compile = compile
        self._train_forward: Callable[[torch.Tensor], torch.Tensor] = (
            CompiledForward(self._train_module) if compile else self._train_module
        )
        self.loss_fn = loss if loss is not None else nn.CrossEntropyLoss()
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.monitor = monitor
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.max_time = max_time
        self.log_every_n_steps = log_every_n_steps
        self.precision = precision
        self.gradient_clip_val = gradient_clip_val
        self.accumulate_grad_batches = accumulate_grad_batches
        self.num_workers = num_workers
        self.num_threads = num_threads
        self.seed = seed
        self.default_root_dir = root_dir
        self.check_finite = check_finite
        self.top_k = top
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=precision == "16" and self.device.type == "cuda"
        )
        self.callbacks: list[Callback] = callback_list
        self._add_default_callbacks(enable_checkpointing, enable_progress_bar)

        self.history = History()
        self.epoch = 0
        self.global_step = 0
        self.batch_in_epoch = 0
        self.should_stop = False
        self.classes: list[str] | None = None
        self._label_bounds: tuple[int, int] | None = None
        self.preprocess: Preprocess | None = None
        self.num_train_batches = 0
        self.train_metrics: ClassificationMetrics | None = None
        self.last_metrics: dict[str, float] = {}
        self.rank, self.world_size = self._strategy.rank, self._strategy.world_size
        self._start_time = 0.0
        self._hooks: dict[str, list[Callable[..., None]]] = {}
        self._resume_batch = 0
        self._train_groups = BatchGroups()
        self._nonfinite: list[torch.Tensor] = []
        self._agree_every_step = True
        # On an accelerator, reading a value on the host waits for every queued kernel, so
        # per-step checks are recorded on the device and read once per log interval.
        self._defer_host_reads = self.device.type != "cpu"
        self._train_loader: EpochLoader | None = None
        self._epoch_start_data: dict[str, Any] | None = None

    # ------------------------------------------------------------------------ public API
    @property
    def is_global_zero(self) -> bool:
        """Whether this process writes files and prints (rank 0 in distributed runs)."""
        return self.rank == 0

    @property
    def checkpoint_callback(self) -> Any:
        """The first :class:`~visionkit.callbacks.ModelCheckpoint`, or ``None``."""
        from visionkit.callbacks.checkpoint import ModelCheckpoint

        return next((c for c in self.callbacks if isinstance(c, ModelCheckpoint)), None)

    @property
    def best_checkpoint(self) -> Path | None:
        """Path of the best checkpoint saved so far (by the checkpoint callback's monitor)."""
        callback = self.checkpoint_callback
        return callback.best_model_path if callback is not None else None

    @property
    def last_checkpoint(self) -> Path | None:
        """Path of the most recent checkpoint saved."""
        callback = self.checkpoint_callback
        return callback.last_model_path if callback is not None else None

    @property
    def learning_rate(self) -> float:
        """Learning rate of the optimizer's first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def fit(
        self,
        train: Data,
        val: Data | None = None,
        *,
        batch_size: int = 32,
        val_batch_size: int | None = None,
        shuffle: bool = True,
        resume_from: str | os.PathLike[str] | None = None,
    ) -> History:
        """Train for ``max_epochs`` (or until stopped), validating after every epoch.

        Args:
            train: Training data: a data set or a ``DataLoader``.
            val: Validation data, or ``None``.
            batch_size: Samples per training batch (ignored for a ``DataLoader``).
            val_batch_size: Samples per validation batch; default ``batch_size``.
            shuffle: Shuffle the training data every epoch (seeded by ``seed``).
            resume_from: A checkpoint saved by a ``Trainer`` to continue from exactly:
                weights, optimizer, scheduler, callbacks, counters, RNG states and the
                position in the data order are restored.

        Returns:
            The :class:`~visionkit.training.History` of per-epoch metrics.
        """
        self._describe_data(train)
        train_loader = make_loader(
            train,
            batch_size,
            shuffle=shuffle,
            seed=self.seed,
            device=self.device,
            augment=True,
            num_workers=self.num_workers,
            rank=self.rank,
            world_size=self.world_size,
        )
        self._train_loader = train_loader
        train_loader = self._strategy.train_loader(train_loader, train)
        val_loader = self._eval_loader(val, val_batch_size or batch_size)
        if self.monitor is None:
            self.monitor = "val_loss" if val is not None else "train_loss"
        self._configure_callbacks(has_val=val is not None)
        if resume_from is not None:
            self._resume(resume_from)
        self.num_train_batches = len(train_loader)
        self._start_time = time.monotonic()
        self._hooks = _active_hooks(self.callbacks)
        self._agree_every_step = self._needs_agreement_every_step()
        try:
            with num_threads(self._thread_count()):
                self._fit_loop(train_loader, val_loader)
        except BaseException as error:
            self._strategy.abort()  # other processes fail at once instead of waiting
            self._call("on_exception", self, error)
            raise
        return self.history

    def _fit_loop(self, train_loader: EpochLoader, val_loader: EpochLoader | None) -> None:
        # a run stopped inside an accumulation group left partial gradients behind
        self.optimizer.zero_grad(set_to_none=True)
        self._call("on_fit_start", self)
        while self.epoch < self.max_epochs and not self._strategy.any(self._out_of_budget()):
            self._run_epoch(train_loader, val_loader)
            self.should_stop = self._strategy.any(self.should_stop)  # all ranks stop together
            if self.should_stop:
                break
        self._call("on_fit_end", self)

    def _thread_count(self) -> int | None:
        """Threads for this run: the ones asked for, else a CPU default, else torch's."""
        if self.num_threads is not None or self.device.type != "cpu":
            return self.num_threads
        env = torchrun_env() if self.world_size > 1 else None
        return default_num_threads(processes_per_node=env.local_world_size if env else 1)

    def validate(self, data: Data, *, batch_size: int = 256) -> dict[str, float]:
        """Evaluate on ``data`` and return ``val_loss``, ``val_accuracy`` (and top-k)."""
        loader = self._eval_loader(data, batch_size)
        assert loader is not None
        with num_threads(self._thread_count()):
            metrics = self._evaluate(loader, "validation")
        return {f"val_{k}": v for k, v in metrics.compute().items()}

    def test(
        self,
        data: Data,
        *,
        ckpt: Literal["best", "last"] | str | os.PathLike[str] | None = None,
        batch_size: int = 256,
    ) -> EvaluationReport:
        """Evaluate on ``data``: loss, accuracy, top-k and per-class accuracy.

        Args:
            data: The test set.
            ckpt: Load weights first: ``"best"`` or ``"last"`` checkpoint of this run, or
                a checkpoint path; ``None`` tests the weights as they are.
            batch_size: Samples per batch.
        """
        if ckpt is not None:
            self.load_weights(self._checkpoint_path(ckpt))
        self._describe_data(data)
        loader = self._eval_loader(data, batch_size)
        assert loader is not None
        self._hooks = _active_hooks(self.callbacks)
        self._call("on_test_epoch_start", self)
        with num_threads(self._thread_count()):
            metrics = self._evaluate(loader, "test")
        report = metrics.report(self._class_names(metrics.num_classes))
        self._call(
            "on_test_epoch_end", self, {f"test_{k}": v for k, v in metrics.compute().items()}
        )
        return report

    def save_checkpoint(
        self, path: str | os.PathLike[str], *, metrics: dict[str, float] | None = None
    ) -> Path:
        """Write a checkpoint with the weights, metadata and full trainer state (atomic).

        Pending non-finite loss checks are settled first and the weights are checked, so a
        NaN or infinite weight never reaches a file (:class:`NonFiniteLossError` instead).
        Under DDP only rank 0 writes; the other processes return ``path`` at once.
        """
        self._flush_finite_checks()
        if not self.is_global_zero:
            return Path(path)
        self._check_weights_finite(f"refused to write checkpoint {path}")
        checkpoint = make_checkpoint(
            self.model,
            classes=self.classes,
            preprocess=self.preprocess,
            metrics=metrics if metrics is not None else self.last_metrics,
            trainer_state=self._trainer_state(),
        )
        self._call("on_save_checkpoint", self, checkpoint)
        return save_checkpoint(checkpoint, path)

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load only the model weights of a checkpoint (the caller's RNG is untouched)."""
        checkpoint = load_checkpoint(path, map_location=self.device)
        load_weights(self.model, checkpoint, source=str(path))

    # ------------------------------------------------------------------------ epoch loop
    def _run_epoch(self, train_loader: EpochLoader, val_loader: EpochLoader | None) -> None:
        epoch_start = time.monotonic()
        metrics = self._train_epoch(train_loader)
        if val_loader is not None:
            self._call("on_validation_epoch_start", self)
            val = {
                f"val_{k}": v for k, v in self._evaluate(val_loader, "validation").compute().items()
            }
            self._call("on_validation_epoch_end", self, val)
            metrics.update(val)
        metrics["lr"] = self.learning_rate
        metrics["epoch_time"] = time.monotonic() - epoch_start
        # max_steps / max_time can end training mid-epoch: the epoch is validated and
        # logged, but a checkpoint written now resumes inside it, at the next batch.
        cut_short = self.batch_in_epoch < self.num_train_batches and self._strategy.any(
            self._out_of_budget()  # under DDP, clocks may disagree on max_time
        )
        if not cut_short:
            self._step_scheduler_on_epoch(metrics)
        self.last_metrics = {"epoch": float(self.epoch), **metrics}
        self.history.append(self.last_metrics)
        finished_epoch = self.epoch
        if not cut_short:
            self.epoch += 1  # a checkpoint written now resumes at the next epoch
            self.batch_in_epoch = 0
        self._call("on_epoch_end", self, finished_epoch, self.last_metrics)

    def _train_epoch(self, loader: EpochLoader) -> dict[str, float]:
        self.model.train()
        loader.set_epoch(self.epoch)
        start, self._resume_batch = self._resume_batch, 0
        if not start:
            self._train_groups.reset()
            self.train_metrics = None
        self._call("on_train_epoch_start", self, self.epoch)
        num_batches = len(loader)
        batch_start = self._wants("on_train_batch_start")
        batch_end = self._wants("on_train_batch_end")
        log_every = self.log_every_n_steps
        for batch_index, batch in enumerate(self._epoch_batches(loader, start), start=start):
            self.batch_in_epoch = batch_index
            if batch_start:
                self._call("on_train_batch_start", self, batch, batch_index)
            loss, outputs, y = self._train_step(
                batch, batch_index, last=batch_index == num_batches - 1
            )
            self.batch_in_epoch = batch_index + 1
            if batch_end:
                self._call(
                    "on_train_batch_end", self, batch, StepOutput(loss, outputs, y, batch_index)
                )
            if log_every and self.global_step % log_every == 0 and self._stepped(batch_index):
                self._flush_finite_checks()
                self._call("on_train_log", self, self.running_metrics())
            if self._stop_in_epoch(batch_index):
                break
        self._flush_finite_checks()
        if self.check_finite:  # the last step's gradients are checked through the weights
            self._check_weights_finite("the weights became non-finite in this epoch")
        self.train_metrics = self._strategy.reduce_metrics(self._train_groups.reduce())
        metrics = self.train_metrics.compute() if self.train_metrics else {}
        train = {f"train_{k}": v for k, v in metrics.items()}
        self._call("on_train_epoch_end", self, self.epoch, train)
        return train

    def _epoch_batches(self, loader: EpochLoader, start: int) -> Iterator[Any]:
        """Iterate ``loader`` from batch ``start``, consuming random numbers as if from 0.

        visionkit's loaders skip batches without drawing random numbers. A ``DataLoader``
        you built is replayed instead: the RNG and generator states of the epoch's start
        are restored, the first ``start`` batches drawn and dropped, then the states of the
        checkpoint are put back, so batch ``start`` sees exactly what it saw the first time.
        """
        generators = _loader_generators(loader)
        replay = isinstance(loader, _DataLoaderAdapter) and loader.sampler is None
        if not start:
            if generators or replay:
                self._epoch_start_data = {
                    "rng": get_rng_state() if replay else None,
                    "generators": [g.get_state() for g in generators],
                }
            return iter(loader)
        saved = self._epoch_start_data or {"rng": None, "generators": []}
        for generator, state in zip(generators, saved["generators"], strict=False):
            generator.set_state(state)
        if not replay or saved["rng"] is None:
            loader.skip_batches(start)
            return iter(loader)
        checkpoint_rng = get_rng_state()
        set_rng_state(saved["rng"])
        iterator = iter(loader)
        for _ in range(start):
            next(iterator)
        set_rng_state(checkpoint_rng)
        return iterator

    def _stepped(self, batch_index: int) -> bool:
        return (batch_index + 1) % self.accumulate_grad_batches == 0

    def _train_step(
        self, batch: Any, batch_index: int, *, last: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = self._unpack(batch)
        stepping = last or self._stepped(batch_index)
        with self._gradient_sync(stepping):
            with self._autocast():
                outputs = self._train_forward(x)  # DDP wrapper under DDP; compiled if asked
                if self._train_groups.empty:
                    _num_outputs(outputs)
                    _check_labels(y, outputs, self._label_bounds)
                loss = self._loss(outputs, y)
            detached = loss.detach()
            if self.check_finite:
                self._check_finite(detached, batch_index, x, outputs)
            scaled = (
                loss / self.accumulate_grad_batches if self.accumulate_grad_batches > 1 else loss
            )
            if self.scaler.is_enabled():
                scaled = self.scaler.scale(scaled)
            torch.autograd.backward(scaled)
        if stepping:
            self._optimizer_step()
        outputs = outputs.detach()
        self._train_groups.add(outputs, y, detached)
        return detached, outputs, y

    def _optimizer_step(self) -> None:
        scaling = self.scaler.is_enabled()
        unscale = scaling and (
            self.gradient_clip_val is not None or self._hooks.get("on_before_optimizer_step")
        )
        if unscale:  # clipping and gradient hooks see true gradient values
            self.scaler.unscale_(self.optimizer)
        self._call("on_before_optimizer_step", self, self.optimizer)
        if self.gradient_clip_val is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.gradient_clip_val)
        if scaling:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        if self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()

    def _evaluate(
        self, loader: EpochLoader, stage: Literal["validation", "test"]
    ) -> ClassificationMetrics:
        was_training = self.model.training
        self.model.eval()
        groups = BatchGroups(top_k=self.top_k, confusion=True)
        hook = "on_validation_batch_end" if stage == "validation" else "on_test_batch_end"
        start_hook = hook.replace("_end", "_start")
        batch_start, batch_end = self._wants(start_hook), self._wants(hook)
        with torch.inference_mode():
            for batch_index, batch in enumerate(loader):
                if batch_start:
                    self._call(start_hook, self, batch, batch_index)
                x, y = self._unpack(batch)
                with self._autocast():
                    outputs = self.model(x)
                    if groups.empty:
                        _num_outputs(outputs)
                        _check_labels(y, outputs)
                    loss = self._loss(outputs, y)
                groups.add(outputs, y, loss)
                if batch_end:
                    self._call(hook, self, batch, StepOutput(loss, outputs, y, batch_index))
            metrics = self._strategy.reduce_metrics(groups.reduce())
        self.model.train(was_training)
        if metrics is None:
            raise ConfigurationError(f"the {stage} data is empty: it yielded no batch")
        return metrics

    # ------------------------------------------------------------------------ helpers
    def should_stop_now(self) -> bool:
        """Whether training must end now (a callback asked, or a step/time budget ran out).

        Under DDP the processes agree: if any of them must stop, all stop at this step.
        """
        return self._strategy.any(self.should_stop or self._out_of_budget())

    def _stop_in_epoch(self, batch_index: int) -> bool:
        """Whether to end the epoch after this batch; every process gets the same answer.

        Agreeing costs a collective under DDP (a few hundred microseconds on a small
        machine), so when no process can decide differently at a given step it is done
        every ``_AGREE_EVERY`` batches only: ``max_steps`` ends every process at the same
        step, and a ``should_stop`` set outside a callback hook (a signal handler, the
        model or the loss) then stops all processes together within that many batches.
        """
        if self._agree_every_step or (batch_index + 1) % _AGREE_EVERY == 0:
            return self.should_stop_now()
        return self._out_of_steps()

    def _needs_agreement_every_step(self) -> bool:
        """Whether processes may decide to stop at different steps of an epoch.

        True with one process (agreeing is free), with ``max_time`` (clocks differ) and
        with a callback of yours that overrides a hook running inside the epoch (it may
        set ``should_stop`` on one process and expects the stop at that step).
        visionkit's own callbacks set it only at an epoch end.
        """
        if self.world_size == 1 or self.max_time is not None:
            return True
        return any(
            not getattr(method, "__module__", "").startswith("visionkit.")
            for hook in _MID_EPOCH_HOOKS
            for method in self._hooks.get(hook, ())
        )

    def _out_of_steps(self) -> bool:
        return self.max_steps is not None and self.global_step >= self.max_steps

    def _out_of_budget(self) -> bool:
        if self._out_of_steps():
            return True
        return self.max_time is not None and time.monotonic() - self._start_time >= self.max_time

    def _unpack(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ConfigurationError(
                f"expected each batch to be (images, labels), got {type(batch).__name__}"
                f"{f' of length {len(batch)}' if isinstance(batch, (tuple, list)) else ''}"
            )
        x, y = batch
        if x.device != self.device or y.device != self.device:
            x, y = move_to_device((x, y), self.device)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        try:
            return self.loss_fn(outputs, targets)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError, IndexError) as error:
            if "CUDA" in str(error) or "device-side" in str(error):
                raise
            raise ConfigurationError(
                f"the loss {type(self.loss_fn).__name__} failed on model outputs of shape "
                f"{tuple(outputs.shape)} and labels of shape {tuple(targets.shape)} "
                f"({str(error).splitlines()[0]}): the model must output (batch, num_classes) "
                "scores and the labels must be (batch,) class indices"
            ) from error

    def _gradient_sync(self, stepping: bool) -> contextlib.AbstractContextManager[Any]:
        """Under DDP, skip the gradient all-reduce of micro-batches that do not step.

        Gradients accumulate locally and are all-reduced once, with the micro-batch that
        steps: the same average, with one all-reduce per optimizer step instead of one per
        micro-batch (Lightning does the same).
        """
        module = self._train_module
        if stepping or not isinstance(module, nn.parallel.DistributedDataParallel):
            return _NO_CONTEXT
        return module.no_sync()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = _PRECISIONS[self.precision]
        if dtype is None:
            return _NO_CONTEXT
        return torch.autocast(self.device.type, dtype=dtype)

    def _check_finite(
        self, loss: torch.Tensor, batch_index: int, x: torch.Tensor, outputs: torch.Tensor
    ) -> None:
        if not self._defer_host_reads:
            if not math.isfinite(float(loss)):
                self._raise_nonfinite(float(loss), batch_index, x, outputs)
        else:  # record on the device; read at the next log interval, checkpoint or epoch end
            self._nonfinite.append(torch.isfinite(loss))

    def _flush_finite_checks(self) -> None:
        pending = self._nonfinite
        if not pending:
            return
        flags = torch.stack(pending).cpu()
        first_step_in_list = self.batch_in_epoch - len(pending)
        pending.clear()
        if not bool(flags.all()):
            bad = int((~flags).nonzero()[0])
            self._raise_nonfinite(math.nan, first_step_in_list + bad)

    def _raise_nonfinite(
        self,
        value: float,
        batch_index: int,
        x: torch.Tensor | None = None,
        outputs: torch.Tensor | None = None,
    ) -> None:
        cause = self._nonfinite_cause(x, outputs)
        raise NonFiniteLossError(
            f"the training loss became {value} at epoch {self.epoch}, batch {batch_index} "
            f"(global step {self.global_step}): {cause}. Training stopped and no checkpoint "
            "was written from this point."
        )

    def _nonfinite_cause(self, x: torch.Tensor | None, outputs: torch.Tensor | None) -> str:
        """Which came first: non-finite inputs, weights, outputs, or only the loss."""
        if x is not None and x.is_floating_point() and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            return (
                f"the input batch holds {bad} NaN or infinite values; check the data and its "
                "normalization (a zero std divides by zero)"
            )
        weights = self._nonfinite_weights()
        if weights:
            return self._weights_cause(weights)
        if outputs is not None and not bool(torch.isfinite(outputs.detach()).all()):
            return (
                "the model's outputs are NaN or infinite although its inputs and weights are "
                "finite: a value overflowed inside the model (16-bit precision overflows above "
                "65504 with fp16; try precision='bf16-mixed' or '32')"
            )
        return (
            "the model's outputs are finite, so the loss itself overflowed: lower the "
            "learning rate, clip gradients (gradient_clip_val=1.0) or check the loss function"
        )

    def _nonfinite_weights(self) -> list[str]:
        return non_finite_tensors(dict(unwrap_model(self.model).named_parameters()))

    def _weights_cause(self, names: list[str]) -> str:
        return (
            f"the weights {names[:3]} hold NaN or infinite values, so an optimizer step up to "
            f"global step {self.global_step} had non-finite gradients; lower the learning "
            "rate or clip gradients (gradient_clip_val=1.0)"
        )

    def _check_weights_finite(self, where: str) -> None:
        """Stop with :class:`NonFiniteLossError` if any weight is NaN or infinite."""
        weights = self._nonfinite_weights()
        if weights:
            raise NonFiniteLossError(
                f"{where} (epoch {self.epoch}, global step {self.global_step}): "
                f"{self._weights_cause(weights)}. Training stopped; no checkpoint holds "
                "these weights."
            )

    def running_metrics(self) -> dict[str, float]:
        """The current epoch's training metrics so far, with the position in the run.

        Keys: ``epoch``, ``step``, ``batch``, ``num_batches``, ``samples``, ``elapsed``
        (seconds since ``fit`` started) and ``train_loss``, ``train_accuracy``. Reading them
        waits for the device, so callbacks call it at intervals, not every step.
        """
        self.train_metrics = self._train_groups.reduce()
        values = self.train_metrics.compute() if self.train_metrics else {}
        elapsed = max(time.monotonic() - self._start_time, 1e-9)
        return {
            "epoch": float(self.epoch),
            "step": float(self.global_step),
            "batch": float(self.batch_in_epoch),
            "num_batches": float(self.num_train_batches),
            "samples": float(self.train_metrics.count if self.train_metrics else 0),
            "elapsed": elapsed,
            **{f"train_{k}": v for k, v in values.items()},
        }

    def _step_scheduler_on_epoch(self, metrics: dict[str, float]) -> None:
        if self.scheduler is None or self.scheduler_interval != "epoch":
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            assert self.monitor is not None
            if self.monitor not in metrics:
                raise ConfigurationError(
                    f"ReduceLROnPlateau needs the monitored metric {self.monitor!r}, but this "
                    f"epoch logged {sorted(metrics)}: pass monitor= to the Trainer"
                )
            self.scheduler.step(metrics[self.monitor])
        else:
            self.scheduler.step()

    def _eval_loader(self, data: Data | None, batch_size: int) -> EpochLoader | None:
        if data is None:
            return None
        loader = make_loader(
            data,
            batch_size,
            shuffle=False,
            device=self.device,
            num_workers=self.num_workers,
            rank=self.rank,
            world_size=self.world_size,
        )
        return self._strategy.eval_loader(loader, data)

    def _describe_data(self, data: Data) -> None:
        dataset = data.dataset if isinstance(data, DataLoader) else data
        classes = getattr(dataset, "classes", None)
        if self.classes is None and classes is not None:
            self.classes = [str(c) for c in classes]
        if self.preprocess is None:
            self.preprocess = _preprocess_of(dataset)
        targets = getattr(dataset, "targets", None)  # check every label, not one batch
        self._label_bounds = (
            (int(targets.min()), int(targets.max()))
            if isinstance(targets, torch.Tensor) and targets.numel()
            else None
        )

    def _class_names(self, num_classes: int) -> list[str]:
        if self.classes is not None and len(self.classes) == num_classes:
            return self.classes
        return [str(i) for i in range(num_classes)]

    def _checkpoint_path(self, ckpt: str | os.PathLike[str]) -> Path:
        if ckpt in ("best", "last"):
            path = self.best_checkpoint if ckpt == "best" else self.last_checkpoint
            path = self._strategy.broadcast_object(path)  # only rank 0 saved it
            if path is None:
                raise ConfigurationError(
                    f"ckpt={ckpt!r} but no checkpoint was saved in this run: train with a "
                    "ModelCheckpoint callback first, or pass a checkpoint path"
                )
            return Path(path)
        return Path(ckpt)

    def _wants(self, hook: str) -> bool:
        """Whether any callback overrides ``hook`` (so its arguments are worth building)."""
        return bool(self._hooks.get(hook)) if self._hooks else bool(self.callbacks)

    def _call(self, hook: str, *args: Any) -> None:
        for method in self._hooks.get(hook, ()) if self._hooks else _bound(self.callbacks, hook):
            method(*args)

    # ------------------------------------------------------------------------ callbacks
    def _add_default_callbacks(self, checkpointing: bool, progress: bool) -> None:
        from visionkit.callbacks.checkpoint import ModelCheckpoint
        from visionkit.callbacks.progress import ProgressBar

        if checkpointing and not any(isinstance(c, ModelCheckpoint) for c in self.callbacks):
            self.callbacks.append(ModelCheckpoint(None, monitor=None))
        if progress and not any(isinstance(c, ProgressBar) for c in self.callbacks):
            self.callbacks.append(ProgressBar())

    def _configure_callbacks(self, *, has_val: bool) -> None:
        from visionkit.callbacks.checkpoint import ModelCheckpoint

        run_dir = self._strategy.broadcast_object(self._run_dir())  # rank 0's, on every rank
        for callback in self.callbacks:
            if isinstance(callback, ModelCheckpoint):
                callback.setup(self, default_monitor=self.monitor, root=run_dir)
        # Checkpoint callbacks decide last, so the state they save includes every other
        # callback's decision for the epoch (e.g. EarlyStopping's counter).
        self.callbacks.sort(key=lambda c: isinstance(c, ModelCheckpoint))
        keys = [c.state_key for c in self.callbacks]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ConfigurationError(
                f"several callbacks share the state key(s) {duplicates}: give each a distinct "
                "state_key so a resumed run restores the right state"
            )

    def _run_dir(self) -> Path:
        version = 0
        while (self.default_root_dir / f"version_{version}").exists():
            version += 1
        return self.default_root_dir / f"version_{version}"

    # ------------------------------------------------------------------------ resume
    def _trainer_state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "batch_in_epoch": self.batch_in_epoch,
            "seed": self.seed,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "callbacks": {c.state_key: c.state_dict() for c in self.callbacks},
            "history": self.history.state_dict(),
            "rng": get_rng_state(),
            "train_metrics": self._train_groups.state_dict() if self.batch_in_epoch else None,
            "data": {
                "generators": [g.get_state() for g in _loader_generators(self._train_loader)],
                "epoch_start": self._epoch_start_data if self.batch_in_epoch else None,
            },
            "monitor": self.monitor,
        }

    def _resume(self, path: str | os.PathLike[str]) -> None:
        checkpoint = load_checkpoint(path, map_location="cpu")
        state = checkpoint.get("trainer_state")
        if state is None:
            raise ConfigurationError(
                f"{path} holds weights only, no trainer state to resume from: load it with "
                "trainer.load_weights() or Predictor.from_checkpoint() instead"
            )
        load_weights(self.model, checkpoint, source=str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        for callback in self.callbacks:
            if callback.state_key in state["callbacks"]:
                callback.load_state_dict(state["callbacks"][callback.state_key])
        self.history.load_state_dict(state["history"])
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.batch_in_epoch = self._resume_batch = int(state["batch_in_epoch"])
        self.seed = int(state["seed"])
        if state.get("train_metrics") is not None:
            self._train_groups.load_state_dict(state["train_metrics"], self.device)
            self.train_metrics = self._train_groups.metrics
        data = state.get("data") or {"generators": [], "epoch_start": None}
        generators = _loader_generators(self._train_loader)
        for generator, generator_state in zip(generators, data["generators"], strict=False):
            generator.set_state(generator_state)
        self._epoch_start_data = data["epoch_start"]
        set_rng_state(state["rng"])
        self._hooks = {}
        self._call("on_load_checkpoint", self, checkpoint)

    def __repr__(self) -> str:
        return (
            f"Trainer(model={type(self.model).__name__}, device={self.device}, "
            f"max_epochs={self.max_epochs}, precision={self.precision!r})"
        )


# Under DDP, how often (in batches) a stop asked for outside a callback hook is agreed on.
_AGREE_EVERY = 16
# Hooks that can run before the stop check at the end of a training step.
_MID_EPOCH_HOOKS = (
    "on_fit_start",
    "on_load_checkpoint",
    "on_train_epoch_start",
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_optimizer_step",
    "on_train_log",
    "on_save_checkpoint",
)


def _bound(callbacks: Sequence[Callback], hook: str) -> Iterator[Callable[..., None]]:
    for callback in callbacks:
        yield getattr(callback, hook)


def _active_hooks(callbacks: Sequence[Callback]) -> dict[str, list[Callable[..., None]]]:
    """The hooks each callback really overrides, so no-op hooks cost nothing per step."""
    hooks: dict[str, list[Callable[..., None]]] = {}
    for name in dir(Callback):
        if not name.startswith("on_"):
            continue
        base = getattr(Callback, name)
        hooks[name] = [
            getattr(c, name) for c in callbacks if getattr(type(c), name, base) is not base
        ]
    return hooks


def _loader_generators(loader: EpochLoader | None) -> list[torch.Generator]:
    """The ``torch.Generator`` objects of a ``DataLoader`` (its own and its sampler's)."""
    if not isinstance(loader, _DataLoaderAdapter):
        return []
    found: list[torch.Generator] = []
    for owner in (loader.loader, loader.loader.sampler, loader.loader.batch_sampler):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def _num_outputs(outputs: torch.Tensor) -> int:
    if outputs.dim() != 2:
        raise ConfigurationError(
            f"the model returned outputs of shape {tuple(outputs.shape)}; a classifier must "
            "return (batch, num_classes) scores"
        )
    return int(outputs.shape[1])


def _check_labels(
    targets: torch.Tensor, outputs: torch.Tensor, bounds: tuple[int, int] | None = None
) -> None:
    """Check the label range on the first batch, before CUDA can hit a device assert.

    ``bounds`` are the smallest and largest label of the whole data set when it knows them
    (visionkit's data sets do), so a bad label in a later batch is caught here too.
    """
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise ConfigurationError(f"labels must be integer class indices, got dtype {targets.dtype}")
    if targets.numel() == 0:
        return
    cpu = targets.detach().cpu()
    low, high = int(cpu.min()), int(cpu.max())
    if bounds is not None:
        low, high = min(low, bounds[0]), max(high, bounds[1])
    classes = outputs.shape[1]
    if low < 0 or high >= classes:
        raise ConfigurationError(
            f"found label {high if high >= classes else low} but the model outputs {classes} "
            f"classes (labels must be 0..{classes - 1}): build the model with "
            f"num_classes={max(high + 1, classes)} or fix the labels"
        )


def _check_optimizer(model: nn.Module, optimizer: Any) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        made = isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)
        found = f"the class {optimizer.__name__}" if made else describe(optimizer)
        raise ConfigurationError(
            f"optimizer must be a torch.optim.Optimizer over the model's parameters, got "
            f"{found}: create one, e.g. torch.optim.SGD(model.parameters(), lr=0.01), "
            "or pass None for Adam(lr=1e-3)"
        )
    own = {id(p) for p in model.parameters()}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    if not any(id(p) in own for p in held):
        raise ConfigurationError(
            f"the optimizer holds {len(held)} tensors but none is a parameter of the model: "
            "create it from this model, e.g. torch.optim.SGD(model.parameters(), lr=0.01)"
        )


def _check_choices(precision: str, interval: str) -> None:
    if not isinstance(precision, str) or precision not in _PRECISIONS:
        raise ConfigurationError(
            f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}"
        )
    if interval not in ("epoch", "step"):
        raise ConfigurationError(f"scheduler_interval must be 'epoch' or 'step', got {interval!r}")


def _check_top_k(value: Any) -> tuple[int, ...]:
    """``top_k`` as a tuple of integers >= 1; a single integer ``k`` means ``(k,)``."""
    expected = "top_k must be an integer >= 1 or a sequence of them such as (1, 5)"
    if not isinstance(value, bool) and hasattr(value, "__index__"):
        with contextlib.suppress(TypeError):  # a float tensor has __index__ but refuses it
            return (check_int("top_k", operator.index(value), least=1),)
    if isinstance(value, (str, bytes, Mapping, AbstractSet)) or not isinstance(value, Iterable):
        raise ConfigurationError(f"{expected}, got {describe(value)}")
    return tuple(
        check_int(f"top_k[{i}]", k, least=1, hint="pass e.g. top_k=(5,) for top-5 accuracy")
        for i, k in enumerate(value)
    )


def _check_monitor(monitor: Any) -> None:
    if monitor is not None and (not isinstance(monitor, str) or not monitor):
        raise ConfigurationError(
            f"monitor must be the name of a logged metric such as 'val_loss' or "
            f"'val_accuracy', or None for the default, got {describe(monitor)}"
        )


def _check_callbacks(callbacks: Any) -> list[Callback]:
    """``callbacks`` as a new list, each checked to be a :class:`Callback` instance."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        raise ConfigurationError(
            f"callbacks must be a list of callbacks, got a single {type(callbacks).__name__}: "
            f"pass callbacks=[{type(callbacks).__name__}(...)]"
        )
    if isinstance(callbacks, (str, bytes, Mapping)) or not isinstance(callbacks, Iterable):
        raise ConfigurationError(
            "callbacks must be a list of visionkit.callbacks.Callback objects, got "
            f"{describe(callbacks)}: pass e.g. callbacks=[EarlyStopping(patience=3)], or None"
        )
    checked: list[Callback] = []
    for i, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            fix = (
                f"pass an instance, e.g. {callback.__name__}()"
                if isinstance(callback, type) and issubclass(callback, Callback)
                else "subclass visionkit.callbacks.Callback and override the hooks you need"
            )
            raise ConfigurationError(
                f"callbacks[{i}] must be a visionkit.callbacks.Callback, got "
                f"{describe(callback)}: {fix}"
            )
        checked.append(callback)
    return checked


def _check_loss(loss: Any) -> None:
    if loss is None:
        return
    if isinstance(loss, type):
        raise ConfigurationError(
            f"loss must be a loss function, got the class {loss.__name__}: pass an instance, "
            f"e.g. loss={loss.__name__}()"
        )
    if not callable(loss):
        raise ConfigurationError(
            "loss must be a callable (outputs, targets) -> loss tensor such as "
            f"nn.CrossEntropyLoss(), got {describe(loss)}: pass one, or None for the default"
        )


def _preprocess_of(dataset: Any) -> Preprocess | None:
    if isinstance(dataset, TensorImageDataset):
        c, h, w = dataset.image_shape
        return Preprocess(
            mode="L" if c == 1 else "RGB",
            size=(h, w),
            mean=tuple(dataset.mean) if dataset.mean else None,
            std=tuple(dataset.std) if dataset.std else None,
        )
    described = getattr(dataset, "preprocess", None)
    return described if isinstance(described, Preprocess) else None
