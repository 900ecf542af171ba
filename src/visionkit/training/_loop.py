"""The training loop's inner parts: one epoch of steps, and one pass of evaluation.

As in Lightning, the loops are objects of their own that read and update the ``Trainer``
they belong to; the ``Trainer`` keeps the public API (``fit``, ``validate``, ``test``).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from visionkit.callbacks.base import StepOutput
from visionkit.data._loaders import EpochLoader
from visionkit.exceptions import ConfigurationError
from visionkit.training._accumulate import BatchGroups
from visionkit.training._arguments import PRECISIONS
from visionkit.training._batches import (
    check_class_names,
    check_labels,
    compute_loss,
    num_outputs,
    unpack,
)
from visionkit.training._compile import CompiledForward
from visionkit.training._features import FeatureLoader
from visionkit.training.metrics import ClassificationMetrics

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["EpochLoop", "autocast", "evaluate", "flip_averaged"]

_NO_CONTEXT = contextlib.nullcontext()


class EpochLoop:
    """One training epoch of ``trainer`` and its validation: steps, hooks, metrics, scheduler."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def run(self, train_loader: EpochLoader, val_loader: EpochLoader | None) -> None:
        """Train one epoch, validate, step an epoch scheduler, log, call ``on_epoch_end``."""
        t = self.trainer
        epoch_start = time.monotonic()
        metrics = self.train_epoch(train_loader)
        if t.batch_in_epoch < t.num_train_batches:  # every process stopped at this batch
            t._preemption.stop_if_signalled()
        if val_loader is not None:
            t._hooks.call("on_validation_epoch_start", t)
            val = {
                f"val_{k}": v for k, v in evaluate(t, val_loader, "validation").compute().items()
            }
            t._hooks.call("on_validation_epoch_end", t, val)
            metrics.update(val)
        metrics["lr"] = t.learning_rate
        metrics["epoch_time"] = time.monotonic() - epoch_start
        # max_steps / max_time can end training mid-epoch: the epoch is validated and
        # logged, but a checkpoint written now resumes inside it, at the next batch.
        cut_short = t.batch_in_epoch < t.num_train_batches and t._strategy.any(
            t._stop.out_of_budget()  # under DDP, clocks may disagree on max_time
        )
        if not cut_short:
            self._step_scheduler(metrics)
        t.last_metrics = {"epoch": float(t.epoch), **metrics}
        rows = t.history.epochs
        if rows and rows[-1].get("epoch") == t.last_metrics["epoch"]:
            rows[-1] = dict(t.last_metrics)  # an epoch cut short, resumed and now finished
        else:
            t.history.append(t.last_metrics)
        finished_epoch = t.epoch
        if not cut_short:
            t.epoch += 1  # a checkpoint written now resumes at the next epoch
            t.batch_in_epoch = 0
        t._hooks.call("on_epoch_end", t, finished_epoch, t.last_metrics)

    def train_epoch(self, loader: EpochLoader) -> dict[str, float]:
        """Run the epoch's training steps (from the resume point) and return its metrics."""
        t = self.trainer
        t.model.train()
        loader.set_epoch(t.epoch)
        start, t._resume_batch = t._resume_batch, 0
        if not start:
            t._train_groups.reset()
            t.train_metrics = None
        t._hooks.call("on_train_epoch_start", t, t.epoch)
        num_batches = len(loader)
        batch_start = t._hooks.wants("on_train_batch_start")
        batch_end = t._hooks.wants("on_train_batch_end")
        transform = t._hooks.wants("on_train_batch_transform")
        log_every = t.log_every_n_steps
        for batch_index, batch in enumerate(t._data_replay.batches(loader, start), start):
            t.batch_in_epoch = batch_index
            if batch_start:
                t._hooks.call("on_train_batch_start", t, batch, batch_index)
            last = batch_index == num_batches - 1
            loss, outputs, y = self._train_step(batch, batch_index, last=last, transform=transform)
            t.batch_in_epoch = batch_index + 1
            if batch_end:
                step = StepOutput(loss, outputs, y, batch_index)
                t._hooks.call("on_train_batch_end", t, batch, step)
            group_done = self._stepped(batch_index)
            if log_every and t.global_step % log_every == 0 and group_done:
                t._flush_finite_checks()
                t._hooks.call("on_train_log", t, t.running_metrics())
            if t._stop.in_epoch(batch_index, stepped=last or group_done):
                break
        t._flush_finite_checks()
        if t.check_finite:  # the last step's gradients are checked through the weights
            t._check_weights_finite("the weights became non-finite in this epoch")
        t.train_metrics = t._strategy.reduce_metrics(t._train_groups.reduce())
        metrics = t.train_metrics.compute() if t.train_metrics else {}
        train = {f"train_{k}": v for k, v in metrics.items()}
        t._hooks.call("on_train_epoch_end", t, t.epoch, train)
        return train

    def _stepped(self, batch_index: int) -> bool:
        t = self.trainer
        return (batch_index + 1) % t.accumulate_grad_batches == 0

    def _train_step(
        self, batch: Any, batch_index: int, *, last: bool, transform: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = self.trainer
        x, y = unpack(batch, t.device, channels_last=t.channels_last)
        labels = y  # checked as loaded, also when a callback mixes them into soft targets
        if transform:  # a callback overrides on_train_batch_transform
            x, y = t._hooks.transform_batch(t, x, y)
        stepping = last or self._stepped(batch_index)
        with self._gradient_sync(stepping):
            forward = t._train_forward
            if isinstance(forward, CompiledForward) and forward.on_trial(x):
                detached, outputs = forward.trial_step(
                    x, lambda: self._forward_backward(x, y, labels, batch_index)
                )
            else:
                detached, outputs = self._forward_backward(x, y, labels, batch_index)
        if stepping:
            self._optimizer_step()
        outputs = outputs.detach()
        t._train_groups.add(outputs, y, detached)
        return detached, outputs, y

    def _forward_backward(
        self, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor, batch_index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, loss and backward of one batch: the detached loss and the outputs."""
        t = self.trainer
        with autocast(t):
            outputs = t._train_forward(x)  # DDP wrapper under DDP; compiled if asked
            if t._train_groups.empty:
                check_labels(labels, outputs, t._label_bounds)
                check_class_names(t.classes, num_outputs(outputs))
            loss = compute_loss(t.loss_fn, outputs, y)
        detached = loss.detach()
        if t.check_finite:
            position = {"epoch": t.epoch, "batch": batch_index, "step": t.global_step}
            t._finite.check_loss(detached, x, outputs, **position)
        scaled = loss / t.accumulate_grad_batches if t.accumulate_grad_batches > 1 else loss
        if t.scaler.is_enabled():
            scaled = t.scaler.scale(scaled)
        torch.autograd.backward(scaled)
        return detached, outputs

    def _optimizer_step(self) -> None:
        t = self.trainer
        scaling = t.scaler.is_enabled()
        unscale = scaling and (
            t.gradient_clip_val is not None or t._hooks.overriding("on_before_optimizer_step")
        )
        if unscale:  # clipping and gradient hooks see true gradient values
            t.scaler.unscale_(t.optimizer)
        t._hooks.call("on_before_optimizer_step", t, t.optimizer)
        if t.gradient_clip_val is not None:
            torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.gradient_clip_val)
        if scaling:
            t.scaler.step(t.optimizer)
            t.scaler.update()
        else:
            t.optimizer.step()
        t.optimizer.zero_grad(set_to_none=True)
        t.global_step += 1
        if t.scheduler is not None and t.scheduler_interval == "step":
            t.scheduler.step()

    def _gradient_sync(self, stepping: bool) -> contextlib.AbstractContextManager[Any]:
        """Under DDP, skip the gradient all-reduce of micro-batches that do not step.

        Gradients accumulate locally and are all-reduced once, with the micro-batch that
        steps: the same average, with one all-reduce per optimizer step instead of one per
        micro-batch (Lightning does the same).
        """
        t = self.trainer
        module = t._train_module
        if stepping or not isinstance(module, nn.parallel.DistributedDataParallel):
            return _NO_CONTEXT
        return module.no_sync()

    def _step_scheduler(self, metrics: dict[str, float]) -> None:
        t = self.trainer
        if t.scheduler is None or t.scheduler_interval != "epoch":
            return
        if isinstance(t.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            assert t.monitor is not None
            if t.monitor not in metrics:
                raise ConfigurationError(
                    f"ReduceLROnPlateau needs the monitored metric {t.monitor!r}, but this "
                    f"epoch logged {sorted(metrics)}: pass monitor= to the Trainer"
                )
            t.scheduler.step(metrics[t.monitor])
        else:
            t.scheduler.step()


def evaluate(
    trainer: Trainer,
    loader: EpochLoader,
    stage: Literal["validation", "test"],
    *,
    tta: bool = False,
) -> ClassificationMetrics:
    """Evaluate ``trainer.model`` on ``loader`` (validation or test): hooks, metrics, modes.

    With ``tta`` the outputs are `flip_averaged` log-probabilities. A `FeatureLoader` gives
    cached backbone features, which its head evaluates.
    """
    model = loader.head if isinstance(loader, FeatureLoader) else trainer.model
    was_training = trainer.model.training
    trainer.model.eval()
    groups = BatchGroups(top_k=trainer.top_k, confusion=True)
    hook = "on_validation_batch_end" if stage == "validation" else "on_test_batch_end"
    start_hook = hook.replace("_end", "_start")
    batch_start, batch_end = trainer._hooks.wants(start_hook), trainer._hooks.wants(hook)
    with torch.inference_mode():
        for batch_index, batch in enumerate(loader):
            if batch_start:
                trainer._hooks.call(start_hook, trainer, batch, batch_index)
            x, y = unpack(batch, trainer.device, channels_last=trainer.channels_last)
            with autocast(trainer):
                outputs = flip_averaged(model, x) if tta else model(x)
                if groups.empty:
                    num_outputs(outputs)
                    check_labels(y, outputs)
                loss = compute_loss(trainer.loss_fn, outputs, y)
            groups.add(outputs, y, loss)
            if batch_end:
                trainer._hooks.call(hook, trainer, batch, StepOutput(loss, outputs, y, batch_index))
        metrics = trainer._strategy.reduce_metrics(groups.reduce())
    trainer.model.train(was_training)
    if metrics is None:
        raise ConfigurationError(f"the {stage} data is empty: it yielded no batch")
    return metrics


def flip_averaged(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Test-time augmentation: log of the mean probabilities of ``x`` and its mirror image.

    Probabilities are the softmax of the outputs, which is right for logits and for
    log-probabilities alike; their log is a valid input to ``CrossEntropyLoss`` and
    ``NLLLoss``, so the loss and every metric are those of the averaged probabilities.
    """
    outputs: torch.Tensor = model(x)
    mirrored: torch.Tensor = model(torch.flip(x, dims=(-1,)))
    probabilities = (outputs.float().softmax(1) + mirrored.float().softmax(1)) / 2
    return probabilities.log()


def autocast(trainer: Trainer) -> contextlib.AbstractContextManager[Any]:
    """Autocast to the trainer's ``precision`` (nothing for 32-bit)."""
    dtype = PRECISIONS[trainer.precision]
    if dtype is None:
        return _NO_CONTEXT
    return torch.autocast(trainer.device.type, dtype=dtype)
