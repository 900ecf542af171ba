"""The GPU fast path's parts, checked on the CPU.

``channels_last`` and ``precision`` run the same code on the CPU as on a GPU, so they are
tested here directly. The promise of no per-step host synchronisation is tested through
what the step calls, from the second to the last batch of an epoch: on an accelerator,
any read of a tensor's value on the host or a blocking copy would make the host wait for
the GPU. Two recorders watch the calls:

* a ``TorchDispatchMode`` sees every ATen operation, including those inside torch's own
  Python functions: ``_local_scalar_dense`` (``item``, ``float``, ``bool``), ``nonzero``
  (``torch.where(cond)``), boolean-mask indexing, ``equal``, ``unique``, ``bincount``,
  ``repeat_interleave`` without ``output_size``, and ``lift_fresh`` (a tensor built from
  Python data, copied from the host on a GPU);
* a ``TorchFunctionMode`` sees the Python-level calls that leave no ATen trace on the
  CPU: ``tolist``, ``numpy``, ``cpu`` and a ``.to(device)`` made by visionkit without
  ``non_blocking=True``.

The trainer defers its reads on every device but the CPU; the tests switch that on for
the CPU. ``tests/gpu/`` repeats the check with CUDA's own sync detector where a GPU is
present.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from visionkit import NonFiniteLossError, Trainer
from visionkit.callbacks import Callback
from visionkit.callbacks.base import Batch, StepOutput
from visionkit.data import BatchAugment, TensorImageDataset, mnist_sample
from visionkit.training.metrics import ClassificationMetrics

aten = torch.ops.aten

# ATen operations that read a tensor's values on the host (on a GPU: wait for it).
SYNCING_OPS = frozenset(
    {
        aten._local_scalar_dense,
        aten.nonzero,
        aten.equal,
        aten.masked_select,
        aten.unique_consecutive,
        aten.unique_dim,
        aten._unique,
        aten._unique2,
        aten.bincount,
        aten.lift_fresh,
    }
)
# Python-level calls that read on the host without an ATen operation on the CPU.
HOST_CALLS = frozenset({"tolist", "numpy", "cpu"})
TORCH_DIR = os.path.dirname(torch.__file__) + os.sep


def _syncing_op(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    packet = func.overloadpacket
    if packet in SYNCING_OPS:
        return True
    if packet is aten.repeat_interleave:  # the output size is read unless it is given
        return kwargs.get("output_size") is None
    if packet in (aten.index, aten.index_put, aten.index_put_):  # boolean masks: nonzero
        indices = args[1] if len(args) > 1 else ()
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())
    return False


def _blocking_copy(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """A ``.to(device)`` or ``.cuda()`` without ``non_blocking=True`` made outside torch.

    On a GPU such a copy from the host waits for the stream. Copies made inside torch are
    left out: ``clip_grad_norm_`` moves norms to the gradients' own device, a no-op there.
    """
    caller = sys._getframe(2).f_code.co_filename  # 0: here, 1: __torch_function__
    if caller.startswith(TORCH_DIR):
        return False
    if name == "cuda":
        return not kwargs.get("non_blocking", False)
    if name != "to":
        return False
    moves = "device" in kwargs or any(
        isinstance(a, (str, torch.device, torch.Tensor)) for a in args[1:]
    )
    return moves and not kwargs.get("non_blocking", False)


class _Recorder:
    """Shared by both modes: note each call's name, and the flagged ones in order."""

    def __init__(self, found: list[str], seen: set[str]) -> None:
        super().__init__()
        self.found, self.seen = found, seen

    def _record(self, name: str, flagged: bool, func: Any, args: Any, kwargs: Any) -> Any:
        self.seen.add(name)
        if flagged:
            self.found.append(name)
        return func(*args, **kwargs)


class _Calls(_Recorder, TorchFunctionMode):
    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", repr(func))
        flagged = name in HOST_CALLS or _blocking_copy(name, args, kwargs)
        return self._record(name, flagged, func, args, kwargs)


class _Ops(_Recorder, TorchDispatchMode):
    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        name = f"aten.{func.overloadpacket.__name__}"
        return self._record(name, _syncing_op(func, args, kwargs), func, args, kwargs)


class HostReads:
    """Both recorders as one context manager: ``found`` lists the host reads, in order;
    ``seen`` names every call (Python names) and operation (``aten.*``) that ran."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.seen: set[str] = set()
        self._modes = (_Calls(self.found, self.seen), _Ops(self.found, self.seen))

    def __enter__(self) -> HostReads:
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(None, None, None)


class RecordSteps(Callback):
    """Turns ``mode`` on from batch ``first`` to the end of batch ``last`` of epoch 0."""

    def __init__(self, mode: HostReads, first: int, last: int) -> None:
        self.mode, self.first, self.last = mode, first, last

    def on_train_batch_start(self, trainer: Trainer, batch: Batch, batch_index: int) -> None:
        if trainer.epoch == 0 and batch_index == self.first:
            self.mode.__enter__()

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        if trainer.epoch == 0 and outputs.batch_index == self.last:
            self.mode.__exit__(None, None, None)


class SmallCNN(nn.Module):
    """Convolution, batch norm, dropout and a linear head: the layers of the seeds."""

    def __init__(self, channels: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(4),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(8 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def _data(n: int = 160) -> TensorImageDataset:
    return mnist_sample().train.select(range(n))


def _rgb(n: int = 160) -> TensorImageDataset:
    """Three-channel images, where channels-last and the default layout differ."""
    digits = _data(n)
    images = digits.images.expand(-1, 3, -1, -1).contiguous()
    return TensorImageDataset(images, digits.targets, digits.classes)


def _trainer(model: nn.Module, **options: Any) -> Trainer:
    options.setdefault("enable_progress_bar", False)
    options.setdefault("enable_checkpointing", False)
    options.setdefault("max_epochs", 1)
    options.setdefault(
        "optimizer", torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    )
    return Trainer(model, device="cpu", **options)


def _recorded_steps(defer: bool, **options: Any) -> HostReads:
    torch.manual_seed(0)
    mode = HostReads()
    model = SmallCNN(channels=3)
    trainer = _trainer(model, callbacks=[RecordSteps(mode, first=1, last=8)], **options)
    trainer._finite.defer = defer
    train = _rgb().with_augment(BatchAugment(crop_padding=2, flip=True))
    trainer.fit(train, _rgb(32), batch_size=16)  # 10 batches per epoch
    return mode


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"channels_last": True, "precision": "bf16", "gradient_clip_val": 1.0, "top_k": (2, 3)},
        {"accumulate_grad_batches": 2, "log_every_n_steps": 100},
    ],
    ids=["defaults", "fast-path-flags", "accumulation"],
)
def test_deferred_steps_read_nothing_on_the_host(options: dict[str, Any]) -> None:
    mode = _recorded_steps(defer=True, **options)
    assert mode.found == []
    # the recorder saw the whole step: data, augmentation, forward, backward, optimizer
    assert {"__getitem__", "pad", "conv2d", "backward", "cross_entropy"} <= mode.seen


class RecordValidation(Callback):
    """Turns ``mode`` on from validation batch ``first`` to the end of batch ``last``."""

    def __init__(self, mode: HostReads, first: int, last: int) -> None:
        self.mode, self.first, self.last = mode, first, last

    def on_validation_batch_start(self, trainer: Trainer, batch: Batch, batch_index: int) -> None:
        if batch_index == self.first:
            self.mode.__enter__()

    def on_validation_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        if outputs.batch_index == self.last:
            self.mode.__exit__(None, None, None)


def test_deferred_validation_reads_nothing_per_batch() -> None:
    torch.manual_seed(0)
    mode = HostReads()
    model = SmallCNN(channels=3)
    trainer = _trainer(model, callbacks=[RecordValidation(mode, first=1, last=18)], top_k=(2,))
    trainer._finite.defer = True
    trainer.validate(_rgb(), batch_size=8)  # 20 batches; metrics are reduced after 16
    assert mode.found == []
    assert {"conv2d", "argmax", "gather", "index_add_"} <= mode.seen  # gather: top-k ranks


def test_the_recorder_catches_the_cpu_loss_check() -> None:
    # On the CPU the loss is checked at once (no GPU to wait for): one float() per step.
    mode = _recorded_steps(defer=False)
    assert mode.found == ["aten._local_scalar_dense"] * 8


def test_the_recorders_flag_every_kind_of_host_read() -> None:
    x = torch.arange(6.0)
    reads = {
        "x[0].item()": lambda: x[0].item(),
        "float(x[0])": lambda: float(x[0]),
        "bool(x[0] > 0)": lambda: bool(x[0] > 0),
        "if x[1]:": lambda: 1 if x[1] else 0,
        "x[x > 2]": lambda: x[x > 2],
        "torch.where(x > 2)": lambda: torch.where(x > 2),
        "torch.equal(x, x)": lambda: torch.equal(x, x),
        "x.unique()": lambda: x.unique(),
        "torch.bincount": lambda: torch.bincount(x.long()),
        "torch.tensor([1.0])": lambda: torch.tensor([1.0]),
        "repeat_interleave": lambda: torch.repeat_interleave(x, x.long()),
        "x.tolist()": lambda: x.tolist(),
        "x.numpy()": lambda: x.numpy(),
        "x.cpu()": lambda: x.cpu(),
        "x.to('cpu')": lambda: x.to("cpu"),
        "x.to(device=...)": lambda: x.to(device=torch.device("cpu")),
    }
    for code, read in reads.items():
        with HostReads() as mode:
            read()
        assert mode.found, f"{code} was not flagged"
    fine = {
        "x.to('cpu', non_blocking=True)": lambda: x.to("cpu", non_blocking=True),
        "x.to(torch.float64)": lambda: x.to(torch.float64),
        "x[x.long()]": lambda: x[x.long()],
        "repeat_interleave with output_size": lambda: torch.repeat_interleave(
            x, x.long(), output_size=15
        ),
        "arithmetic": lambda: (x * 2).sum().sqrt(),
    }
    for code, work in fine.items():
        with HostReads() as mode:
            work()
        assert mode.found == [], f"{code} was flagged: {mode.found}"


class NaNAt(nn.Module):
    """A linear model whose output is NaN on call ``bad`` (counting from 0)."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)
        self.calls, self.bad = 0, bad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(torch.flatten(x, 1))
        self.calls += 1
        return out * math.nan if self.calls - 1 == self.bad else out


@pytest.mark.parametrize(("log_every", "raised_after"), [(None, 10), (3, 6)])
def test_deferred_nonfinite_check_names_the_batch(log_every: int | None, raised_after: int) -> None:
    torch.manual_seed(0)
    model = NaNAt(bad=4)
    trainer = _trainer(model, log_every_n_steps=log_every)
    trainer._finite.defer = True
    with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 0, batch 4 "):
        trainer.fit(_data(), batch_size=16)
    # read once per log interval (after step 6) or at the epoch end (after step 10)
    assert model.calls == raised_after


def test_channels_last_reaches_weights_and_every_batch() -> None:
    formats: list[tuple[bool, bool, bool]] = []
    torch.manual_seed(0)
    model = SmallCNN(channels=3)
    model.features[0].register_forward_pre_hook(
        lambda module, inputs: formats.append(
            (
                module.training,
                inputs[0].is_contiguous(memory_format=torch.channels_last),
                inputs[0].is_contiguous(),
            )
        )
    )
    trainer = _trainer(model, channels_last=True)
    conv = model.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
    trainer.fit(_rgb(), _rgb(32), batch_size=16)
    assert formats == [(True, True, False)] * 10 + [(False, True, False)] * 2


def test_channels_last_trains_like_the_default_layout() -> None:
    # Without dropout: its masks are drawn in memory order, so channels-last draws the
    # same numbers for other pixels (a different, equally random run).
    results = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = SmallCNN(channels=3, dropout=0.0)
        trainer = _trainer(model, channels_last=channels_last)
        trainer.fit(_rgb(), _rgb(32), batch_size=16)
        results.append((trainer.last_metrics, model.head.weight.detach().clone()))
    (plain, weight), (last, weight_cl) = results
    assert last["val_loss"] == pytest.approx(plain["val_loss"], rel=2e-3)
    torch.testing.assert_close(weight_cl, weight, rtol=0, atol=1e-3)


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("16", torch.float16)])
def test_precision_autocasts_training_and_evaluation(precision: str, dtype: torch.dtype) -> None:
    seen: list[tuple[bool, torch.dtype]] = []
    torch.manual_seed(0)
    model = SmallCNN()
    model.head.register_forward_hook(
        lambda module, inputs, output: seen.append((module.training, output.dtype))
    )
    trainer = _trainer(model, precision=precision)
    assert not trainer.scaler.is_enabled()  # loss scaling is for CUDA fp16 only
    trainer.fit(_data(), _data(32), batch_size=16)
    assert seen == [(True, dtype)] * 10 + [(False, dtype)] * 2
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # master weights stay fp32
    assert all(math.isfinite(v) for v in trainer.last_metrics.values())


def test_bf16_trains_close_to_fp32() -> None:
    losses = {}
    for precision in ("32", "bf16"):
        torch.manual_seed(0)
        trainer = _trainer(SmallCNN(), precision=precision, max_epochs=3)
        trainer.fit(_data(), _data(64), batch_size=16)
        losses[precision] = trainer.history["train_loss"]
    assert losses["bf16"][-1] < losses["bf16"][0]  # it learns
    assert losses["bf16"] == pytest.approx(losses["32"], rel=0.05)


def test_confusion_counts_match_bincount_for_every_label_dtype() -> None:
    # 20 classes: cells reach 399, past what uint8 labels times 20 can hold
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(600, 20, generator=generator)
    labels = torch.randint(0, 20, (600,), generator=generator)
    expected = torch.bincount(labels * 20 + logits.argmax(1), minlength=400).view(20, 20)
    for dtype in (torch.int64, torch.int32, torch.uint8):
        metrics = ClassificationMetrics(20)
        metrics.update(logits[:250], labels[:250].to(dtype))
        metrics.update(logits[250:], labels[250:].to(dtype))
        assert torch.equal(metrics.confusion_matrix().long(), expected), dtype
