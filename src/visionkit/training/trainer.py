"""The ``Trainer``: the training, validation and test loops of every workflow.

The loop lives here; its parts live beside it: argument checks (``_arguments``), calling
callbacks (``_hooks``), batches and labels (``_batches``), the resumable state
(``_state``), non-finite checks (``_numerics``) and when to stop (``_stopping``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from visionkit._checks import check_bool
from visionkit._device import resolve_device
from visionkit._threads import default_num_threads, num_threads
from visionkit.callbacks.base import Callback
from visionkit.callbacks.checkpoint import ModelCheckpoint
from visionkit.data._loaders import EpochLoader
from visionkit.exceptions import NonFiniteLossError
from visionkit.predict.checkpoint import (
    Preprocess,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from visionkit.training._accumulate import BatchGroups
from visionkit.training._arguments import CacheFeatures, LossFunction, Precision, check_arguments
from visionkit.training._batches import (
    Data,
    class_names,
    describe_data,
    eval_loader,
    fit_loaders,
)
from visionkit.training._compile import CompiledForward
from visionkit.training._features import FeatureCache
from visionkit.training._hooks import Hooks, configure_callbacks
from visionkit.training._loop import EpochLoop, evaluate
from visionkit.training._numerics import FiniteGuard
from visionkit.training._runs import (
    check_resume_from,
    checkpoint_path,
    resume_target,
    trainer_run_dir,
)
from visionkit.training._saving import build_checkpoint
from visionkit.training._signals import Preemption
from visionkit.training._state import DataReplay, resume
from visionkit.training._stopping import StopRule
from visionkit.training.distributed import Strategy, StrategyName, resolve_strategy, torchrun_env
from visionkit.training.history import History
from visionkit.training.lr_finder import LRFinderResult, lr_find
from visionkit.training.metrics import ClassificationMetrics, EvaluationReport

if TYPE_CHECKING:
    from visionkit.predict.interpretation import Interpretation

__all__ = ["NonFiniteLossError", "Trainer"]


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
        callbacks: Callbacks; a [`ModelCheckpoint`][visionkit.callbacks.ModelCheckpoint] and a
            [`ProgressBar`][visionkit.callbacks.ProgressBar] are added unless you pass your own or
            switch them off.
        log_every_n_steps: Report running training metrics every N steps (the W2 tutorial logs
            every 10 batches); ``None`` reports once per epoch.
        precision: ``"32"``, ``"bf16"`` (autocast) or ``"16"`` (autocast with a
            ``GradScaler`` on CUDA).
        gradient_clip_val: Clip the gradient norm to this value (> 0) before each step;
            ``None`` does not clip.
        accumulate_grad_batches: Make one optimizer step every N batches. Each batch's loss
            is divided by N, so the step follows the gradient of the mean loss over the N
            batches (as Lightning does); see the training guide for an uneven last group.
        num_workers: ``DataLoader`` workers for file-based data sets.
        seed: Seed of data shuffling and augmentation order.
        default_root_dir: Where the default checkpoint callback writes
            (``<dir>/version_N/checkpoints``).
        enable_checkpointing: Add a default ``ModelCheckpoint`` if none is given.
        enable_progress_bar: Add a default ``ProgressBar`` if none is given.
        check_finite: Stop with [`NonFiniteLossError`][visionkit.NonFiniteLossError] when the loss
            is NaN or inf (checked every step; the message says whether the inputs, the weights or
            the outputs went first) or the weights are (checked at each epoch end). Checkpoints are
            never written with non-finite weights, whatever this is set to.
        top_k: Extra top-k accuracies to report in evaluation (e.g. ``(5,)``); a single
            integer ``k`` means ``(k,)``, ``()`` reports none.
        channels_last: Use the channels-last memory format (faster convolutions on GPU).
        compile: Train through ``torch.compile(model)`` (evaluation stays eager). If
            compiling is unavailable, or the compiled forward or backward pass fails on
            the first batch of a shape (the first batch, a smaller last one), a
            ``RuntimeWarning`` says why, that step is undone and run again eagerly, and
            training goes on eagerly. Checkpoints hold the uncompiled model.
        strategy: ``"auto"`` (DDP when launched by ``torchrun`` with several processes),
            ``"ddp"``, ``"single_device"`` or a
            [`DDPStrategy`][visionkit.training.DDPStrategy]; see the distributed guide.
        num_threads: CPU threads torch uses while ``fit``, ``validate`` and ``test`` run
            (restored afterwards). ``None`` picks them on the CPU: the cores this process
            may really use (a container's CPU quota counts) shared among the ``torchrun``
            processes of this machine, and never more than torch would use on its own;
            an ``OMP_NUM_THREADS`` you set is kept. See
            [`default_num_threads`][visionkit.training.default_num_threads].

        handle_signals: While ``fit`` runs, the first SIGTERM or Ctrl-C stops training after the
            optimizer step in progress, writes ``last.ckpt`` of that exact point and ends ``fit``
            with [`TrainingPreempted`][visionkit.training.TrainingPreempted] (SIGTERM) or
            ``KeyboardInterrupt``; a second signal stops at once. ``False`` leaves signals alone.
        cache_features: With a frozen backbone, compute its features once and train and
            validate the head on them: ``True`` (or ``"auto"``) caches validation, and training
            when its transform is known to be deterministic; ``"eval"`` validation only;
            ``"all"`` also a training data set visionkit cannot inspect. ``feature_cache.stages``
            tells what a ``fit`` cached; see the training guide.

    Raises:
        ConfigurationError: if an argument has the wrong type or is out of its range (a
            count of ``1.5``, ``True`` or NaN, a negative ``max_time`` or clipping value, a
            callback that is not a [`Callback`][visionkit.callbacks.Callback], ...). Every
            argument is checked before the model is moved to ``device``.

    Examples:
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

    # Checked arguments, set by __init__ from the settings of the same names.
    loss_fn: LossFunction
    scheduler: Any | None
    scheduler_interval: Literal["epoch", "step"]
    monitor: str | None
    max_epochs: int
    max_steps: int | None
    max_time: float | None
    log_every_n_steps: int | None
    precision: Precision
    gradient_clip_val: float | None
    accumulate_grad_batches: int
    num_workers: int
    num_threads: int | None
    seed: int
    default_root_dir: Path
    check_finite: bool
    top_k: tuple[int, ...]
    channels_last: bool
    compile: bool
    handle_signals: bool
    cache_features: CacheFeatures

    def __init__(
        self,
        model: nn.Module,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        loss: LossFunction | None = None,
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
        handle_signals: bool = True,
        cache_features: bool | Literal["auto", "eval", "all"] = False,
    ) -> None:
        # Every argument is checked before anything happens, the model's move included.
        settings, self.callbacks = check_arguments(locals())
        for name, value in vars(settings).items():
            setattr(self, name, value)
        self._strategy = resolve_strategy(strategy)
        self.device = self._strategy.setup(resolve_device(device))
        self.model = model.to(self.device)
        if isinstance(self.loss_fn, nn.Module):  # e.g. CrossEntropyLoss(weight=...)'s buffer
            self.loss_fn.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = optimizer or torch.optim.Adam(
            [p for p in model.parameters() if p.requires_grad], lr=1e-3
        )
        self.model, self._train_module = self._strategy.wrap(self.model)
        self._train_forward: Callable[[torch.Tensor], torch.Tensor] = (
            CompiledForward(self._train_module) if self.compile else self._train_module
        )
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.precision == "16" and self.device.type == "cuda"
        )
        self.rank, self.world_size = self._strategy.rank, self._strategy.world_size
        self.feature_cache = FeatureCache(self)
        self._reset_run_state()

    def _reset_run_state(self) -> None:
        """The state of a run that has not started; `_state` saves and restores it."""
        self.history = History()
        self.epoch = self.global_step = self.batch_in_epoch = self.num_train_batches = 0
        self.should_stop = False
        self.classes: list[str] | None = None
        self.preprocess: Preprocess | None = None
        self.train_metrics: ClassificationMetrics | None = None
        self.last_metrics: dict[str, float] = {}
        self._label_bounds: tuple[int, int] | None = None
        self._hooks = Hooks(self.callbacks)
        self._resume_batch = 0
        self._train_groups = BatchGroups()
        self._stop = StopRule(self)
        self._data_replay = DataReplay()
        self._loop = EpochLoop(self)
        self._preemption = Preemption(self, enabled=self.handle_signals)
        # On an accelerator, reading a value on the host waits for every queued kernel, so
        # per-step checks are recorded on the device and read once per log interval.
        self._finite = FiniteGuard(self.model, defer=self.device.type != "cpu")

    # ------------------------------------------------------------------------ public API
    @property
    def is_global_zero(self) -> bool:
        """Whether this process writes files and prints (rank 0 in distributed runs)."""
        return self.rank == 0

    @property
    def checkpoint_callback(self) -> ModelCheckpoint | None:
        """The first [`ModelCheckpoint`][visionkit.callbacks.ModelCheckpoint], or ``None``."""
        return next((c for c in self.callbacks if isinstance(c, ModelCheckpoint)), None)

    @property
    def best_checkpoint(self) -> Path | None:
        """Path of the best checkpoint saved so far (waiting until a background write is done)."""
        if (callback := self.checkpoint_callback) is not None:
            callback.wait_for_writes()
        return callback.best_model_path if callback is not None else None

    @property
    def last_checkpoint(self) -> Path | None:
        """Path of the most recent checkpoint saved (waiting until it is written)."""
        if (callback := self.checkpoint_callback) is not None:
            callback.wait_for_writes()
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
        resume_from: str | os.PathLike[str] | Literal["auto"] | bool | None = None,
    ) -> History:
        """Train for ``max_epochs`` (or until stopped), validating after every epoch.

        Args:
            train: Training data: a data set or a ``DataLoader``.
            val: Validation data, or ``None``.
            batch_size: Samples per training batch (ignored for a ``DataLoader``).
            val_batch_size: Samples per validation batch; default ``batch_size``.
            shuffle: Shuffle the training data every epoch (seeded by ``seed``).
            resume_from: A checkpoint saved by a ``Trainer`` to continue from exactly:
                weights, optimizer, scheduler, callbacks, counters, RNG states (Python's
                ``random``, NumPy's global generator, torch's CPU and CUDA generators) and
                the position in the data order are restored. ``"auto"`` (or ``True``)
                resumes from the newest complete checkpoint of this run if there is one
                (the furthest by global step, in the checkpoint folder; with the default
                folder, in the latest ``version_N`` that has one, which the run keeps
                using) and starts afresh otherwise, so re-running an interrupted script
                unchanged continues it.

        Returns:
            The [`History`][visionkit.History] of per-epoch metrics: ``train_*``, ``val_*``, ``lr``
            and ``epoch_time``. ``lr`` is the first parameter group's learning rate at the end of
            the epoch, before an epoch scheduler steps: the rate the epoch trained with under
            ``scheduler_interval="epoch"``, and under ``"step"`` the rate after the epoch's last
            scheduler step, which the next step uses
            ([`LearningRateMonitor`][visionkit.callbacks.LearningRateMonitor] logs every step's). An
            epoch cut short by ``max_steps`` or ``max_time`` gets a row; once resumed and finished,
            that row is replaced, so there is one row per epoch.
        """
        loaders = fit_loaders(
            self,
            train,
            val,
            batch_size=batch_size,
            val_batch_size=val_batch_size or batch_size,
            shuffle=shuffle,
        )
        train_loader, val_loader = self.feature_cache.attach(
            train, *loaders, shuffle=shuffle, batch_size=batch_size
        )
        if self.monitor is None:
            self.monitor = "val_loss" if val is not None else "train_loss"
        check_resume_from(resume_from)
        configure_callbacks(
            self, self._strategy.broadcast_object(trainer_run_dir(self, resume_from))
        )
        folder = getattr(self.checkpoint_callback, "dirpath", None)
        target = resume_target(resume_from, folder) if self.is_global_zero else None
        target = self._strategy.broadcast_object(target)  # rank 0's choice, on every rank
        if target is not None:
            resume(self, target)
        self.num_train_batches = len(train_loader)
        self._hooks = Hooks(self.callbacks)
        self._hooks.activate()
        self._stop.start(self._hooks)
        try:
            with self._preemption, num_threads(self._thread_count()):
                self._fit_loop(train_loader, val_loader)
        except BaseException as error:
            self._strategy.abort()  # other processes fail at once instead of waiting
            self._hooks.call("on_exception", self, error)
            raise
        finally:
            self.feature_cache.release()
        return self.history

    def _fit_loop(self, train_loader: EpochLoader, val_loader: EpochLoader | None) -> None:
        # a run stopped inside an accumulation group left partial gradients behind
        self.optimizer.zero_grad(set_to_none=True)
        self._hooks.call("on_fit_start", self)
        while self.epoch < self.max_epochs and not self._strategy.any(self._stop.out_of_budget()):
            self._loop.run(train_loader, val_loader)
            self.should_stop = self._strategy.any(self.should_stop)  # all ranks stop together
            if self.should_stop:
                self._preemption.stop_if_signalled()
                break
        self._hooks.call("on_fit_end", self)

    def _thread_count(self) -> int | None:
        """Threads for this run: the ones asked for, else a CPU default, else torch's."""
        if self.num_threads is not None or self.device.type != "cpu":
            return self.num_threads
        env = torchrun_env() if self.world_size > 1 else None
        return default_num_threads(processes_per_node=env.local_world_size if env else 1)

    def validate(self, data: Data, *, batch_size: int = 256) -> dict[str, float]:
        """Evaluate on ``data`` and return ``val_loss``, ``val_accuracy`` (and top-k)."""
        loader = eval_loader(self, data, batch_size)
        assert loader is not None
        with num_threads(self._thread_count()):
            metrics = evaluate(self, loader, "validation")
        return {f"val_{k}": v for k, v in metrics.compute().items()}

    def test(
        self,
        data: Data,
        *,
        ckpt: Literal["best", "last"] | str | os.PathLike[str] | None = None,
        batch_size: int = 256,
        tta: bool = False,
    ) -> EvaluationReport:
        """Evaluate on ``data``: loss, accuracy, top-k and per-class accuracy.

        Args:
            data: The test set.
            ckpt: Load weights first: ``"best"`` or ``"last"`` checkpoint of this run, or
                a checkpoint path; ``None`` tests the weights as they are.
            batch_size: Samples per batch.
            tta: Test-time augmentation: average each image's probabilities with its
                mirror image's (a horizontal flip); loss and accuracy are those of the
                averaged probabilities.
        """
        if ckpt is not None:
            self.load_weights(checkpoint_path(self, ckpt))
        describe_data(self, data)
        loader = eval_loader(self, data, batch_size)
        assert loader is not None
        self._hooks = Hooks(self.callbacks)
        self._hooks.activate()
        self._hooks.call("on_test_epoch_start", self)
        with num_threads(self._thread_count()):
            metrics = evaluate(self, loader, "test", tta=check_bool("tta", tta))
        report = metrics.report(class_names(self.classes, metrics.num_classes))
        test = {f"test_{k}": v for k, v in metrics.compute().items()}
        self._hooks.call("on_test_epoch_end", self, test)
        return report

    def save_checkpoint(
        self, path: str | os.PathLike[str], *, metrics: dict[str, float] | None = None
    ) -> Path:
        """Write a checkpoint with the weights, metadata and full trainer state (atomic).

        Pending non-finite loss checks are settled first and the weights are checked, so a NaN or
        infinite weight never reaches a file ([`NonFiniteLossError`][visionkit.NonFiniteLossError]
        instead). Under DDP only rank 0 writes; the other processes return ``path`` at once.
        """
        self._flush_finite_checks()
        if not self.is_global_zero:
            return Path(path)
        return save_checkpoint(build_checkpoint(self, path, metrics), path)

    def load_weights(
        self, path: str | os.PathLike[str], *, weights: Literal["averaged", "raw"] = "averaged"
    ) -> None:
        """Load only the model weights of a checkpoint (the caller's RNG is untouched).

        A checkpoint of a run with [`EMA`][visionkit.callbacks.EMA] or
        [`SWA`][visionkit.callbacks.SWA] gives its averaged weights (those it was validated
        with) unless ``weights="raw"``.
        """
        checkpoint = load_checkpoint(path, map_location=self.device)
        load_weights(self.model, checkpoint, source=str(path), weights=weights)

    def interpret(self, data: Data, *, batch_size: int = 256) -> Interpretation:
        """Evaluate the model as it is now on ``data``, once, to see what it gets wrong.

        Returns an [`Interpretation`][visionkit.predict.Interpretation]: per-sample losses,
        ``plot_top_losses``, ``plot_confusion_matrix`` and ``most_confused``.
        """
        from visionkit.predict.interpretation import Interpretation

        return Interpretation.from_trainer(self, data, batch_size=batch_size)

    def lr_find(self, train: Data, **options: Any) -> LRFinderResult:
        """Sweep the learning rate over ``train`` and suggest one (`lr_find`).

        The model, optimizer, random generators and callbacks are left as they were.
        """
        return lr_find(self, train, **options)

    def should_stop_now(self) -> bool:
        """Whether training must end now (a callback asked, or a step/time budget ran out).

        Under DDP the processes agree: if any of them must stop, all stop at this step.
        """
        return self._stop.now()

    def running_metrics(self) -> dict[str, float]:
        """The current epoch's training metrics so far, with the position in the run.

        Keys: ``epoch``, ``step``, ``batch``, ``num_batches``, ``samples``, ``elapsed``
        (seconds since ``fit`` started) and ``train_loss``, ``train_accuracy``. Reading them
        waits for the device, so callbacks call it at intervals, not every step.
        """
        self.train_metrics = self._train_groups.reduce()
        values = self.train_metrics.compute() if self.train_metrics else {}
        elapsed = max(time.monotonic() - self._stop.start_time, 1e-9)
        return {
            "epoch": float(self.epoch),
            "step": float(self.global_step),
            "batch": float(self.batch_in_epoch),
            "num_batches": float(self.num_train_batches),
            "samples": float(self.train_metrics.count if self.train_metrics else 0),
            "elapsed": elapsed,
            **{f"train_{k}": v for k, v in values.items()},
        }

    # ------------------------------------------------------------------------ epoch loop
    # ------------------------------------------------------------------------ helpers
    def _flush_finite_checks(self) -> None:
        self._finite.flush(
            epoch=self.epoch, batch_in_epoch=self.batch_in_epoch, step=self.global_step
        )

    def _check_weights_finite(self, where: str) -> None:
        self._finite.check_weights(where, epoch=self.epoch, step=self.global_step)

    def __repr__(self) -> str:
        return (
            f"Trainer(model={type(self.model).__name__}, device={self.device}, "
            f"max_epochs={self.max_epochs}, precision={self.precision!r})"
        )
