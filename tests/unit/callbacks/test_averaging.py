"""EMA and SWA: the averages match hand computations, validation sees them, checkpoints hold
both weights, and a killed run resumes to the same averages bit for bit (CPU)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn, update_bn
from torch.utils.data import DataLoader

from visionkit import Trainer, seed_everything
from visionkit.callbacks import (
    EMA,
    SWA,
    Batch,
    Callback,
    ModelCheckpoint,
    StepOutput,
    WeightAveraging,
)
from visionkit.data import TensorImageDataset, mnist_sample
from visionkit.exceptions import ConfigurationError
from visionkit.models import create_model
from visionkit.predict import load_checkpoint

BATCH = 32
Weights = dict[str, torch.Tensor]


def _data(n: int = 192) -> tuple[TensorImageDataset, TensorImageDataset]:
    splits = mnist_sample(normalize=(0.1302, 0.3069))
    return splits.train.select(range(n)), splits.val.select(range(64))


def _bn_model() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Dropout(0.2),  # draws from torch's global RNG while training
        nn.Linear(16, 10),
    )


def _trainer(root: str, callbacks: list[Callback], **options: Any) -> Trainer:
    seed_everything(0)
    bn = options.pop("bn", False)
    model = _bn_model() if bn else create_model("mlp", in_features=784, hidden=[16])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = options.pop("scheduler", None)
    return Trainer(
        model,
        optimizer=optimizer,
        scheduler=scheduler(optimizer) if scheduler else None,
        max_epochs=options.pop("max_epochs", 2),
        device="cpu",
        default_root_dir=root,
        enable_progress_bar=False,
        enable_checkpointing=options.pop("enable_checkpointing", False),
        callbacks=callbacks,
        **options,
    )


def _state(module: nn.Module) -> Weights:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class _Snapshots(Callback):
    """The raw weights after every optimizer step and at the end of every epoch."""

    def __init__(self) -> None:
        self.steps: list[Weights] = []
        self.epochs: list[Weights] = []
        self._seen = 0

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        if trainer.global_step != self._seen:
            self._seen = trainer.global_step
            self.steps.append(_state(trainer.model))

    def on_train_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append(_state(trainer.model))


class _Crash(Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        if trainer.global_step == self.at_step:
            raise KeyboardInterrupt


def _ema_by_hand(snapshots: list[Weights], decays: list[float]) -> Weights:
    """``avg = decay * avg + (1 - decay) * w``, starting from the first snapshot."""
    average = {k: v.double() for k, v in snapshots[0].items()}
    for weights, decay in zip(snapshots[1:], decays, strict=True):
        average = {k: decay * average[k] + (1 - decay) * weights[k].double() for k in average}
    return average


def _assert_close(actual: Weights, expected: Weights, atol: float = 1e-6) -> None:
    assert actual.keys() == expected.keys()
    for name, value in actual.items():
        torch.testing.assert_close(value.double(), expected[name].double(), atol=atol, rtol=0)


def _assert_equal(actual: Weights, expected: Weights) -> None:
    assert actual.keys() == expected.keys()
    for name, value in actual.items():
        assert torch.equal(value, expected[name]), name


@pytest.mark.parametrize(("every", "accumulate"), [(1, 1), (3, 1), (2, 2)])
def test_ema_is_the_exponential_average_of_the_weights_after_each_step(
    every: int, accumulate: int
) -> None:
    train, val = _data()
    snapshots, ema = _Snapshots(), EMA(decay=0.9, every_n_steps=every)
    trainer = _trainer("run", [snapshots, ema], accumulate_grad_batches=accumulate)
    trainer.fit(train, val, batch_size=BATCH)
    used = [w for step, w in enumerate(snapshots.steps, 1) if step % every == 0]
    assert ema.num_averaged == len(used) == trainer.global_step // every
    assert ema.averaged_model is not None
    averaged = _state(ema.averaged_model)
    _assert_close(averaged, _ema_by_hand(used, [0.9] * (len(used) - 1)))
    # and exactly what torch's AveragedModel computes from the same weights
    model = copy.deepcopy(trainer.model)
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    for weights in used:
        model.load_state_dict(weights)
        reference.update_parameters(model)
    _assert_equal(averaged, _state(reference.module))


def test_ema_averages_batch_norm_statistics_and_copies_the_batch_counter() -> None:
    train, val = _data()
    snapshots, ema = _Snapshots(), EMA(decay=0.8)
    _trainer("run", [snapshots, ema], bn=True).fit(train, val, batch_size=BATCH)
    assert ema.averaged_model is not None
    averaged = _state(ema.averaged_model)
    expected = _ema_by_hand(snapshots.steps, [0.8] * (len(snapshots.steps) - 1))
    statistics = ("2.running_mean", "2.running_var")
    _assert_close({k: averaged[k] for k in statistics}, {k: expected[k] for k in statistics})
    assert int(averaged["2.num_batches_tracked"]) == len(snapshots.steps)


def test_ema_warmup_follows_timm_and_no_warmup_is_the_default() -> None:
    ema = EMA(decay=0.999, warmup=True)
    weights = [ema.averaging_weight(n) for n in (1, 2, 10, 10**6)]
    timm = [1 - min(0.999, 1 - (1 + n) ** (-2 / 3)) for n in (1, 2, 10, 10**6)]
    assert weights == timm
    assert weights[-1] == pytest.approx(0.001)
    assert EMA(decay=0.999).averaging_weight(1) == pytest.approx(0.001)
    train, val = _data()
    snapshots, warm = _Snapshots(), EMA(decay=0.99, warmup=True)
    _trainer("run", [snapshots, warm]).fit(train, val, batch_size=BATCH)
    decays = [1 - warm.averaging_weight(n) for n in range(1, len(snapshots.steps))]
    assert warm.averaged_model is not None
    _assert_close(_state(warm.averaged_model), _ema_by_hand(snapshots.steps, decays))


class _ValidationWeights(Callback):
    def __init__(self) -> None:
        self.seen: list[Weights] = []

    def on_validation_batch_start(self, trainer: Trainer, batch: Batch, batch_index: int) -> None:
        if batch_index == 0:
            self.seen.append(_state(trainer.model))


def test_validation_sees_the_average_and_training_the_raw_weights() -> None:
    train, val = _data()
    snapshots, ema, watcher = _Snapshots(), EMA(decay=0.9), _ValidationWeights()
    trainer = _trainer("run", [snapshots, ema, watcher], max_epochs=1)
    history = trainer.fit(train, val, batch_size=BATCH)
    assert ema.averaged_model is not None
    _assert_equal(watcher.seen[0], _state(ema.averaged_model))
    _assert_equal(_state(trainer.model), snapshots.steps[-1])  # swapped back
    ema.averaged_model.eval()
    with torch.no_grad():
        images = torch.stack([val[i][0] for i in range(len(val))])
        loss = nn.functional.cross_entropy(ema.averaged_model(images), val.targets)
    assert history.epochs[-1]["val_loss"] == pytest.approx(float(loss), rel=1e-5)


def test_validate_with_average_false_validates_the_raw_weights() -> None:
    train, val = _data()
    snapshots, watcher = _Snapshots(), _ValidationWeights()
    _trainer(
        "run", [snapshots, EMA(decay=0.9, validate_with_average=False), watcher], max_epochs=1
    ).fit(train, val, batch_size=BATCH)
    _assert_equal(watcher.seen[0], snapshots.steps[-1])


def test_checkpoint_holds_raw_weights_and_the_average_once_with_a_description(
    tmp_path: Path,
) -> None:
    train, val = _data()
    ema = EMA(decay=0.9)
    trainer = _trainer("run", [ema, ModelCheckpoint(tmp_path / "ckpt")], max_epochs=1)
    trainer.fit(train, val, batch_size=BATCH)
    assert trainer.last_checkpoint is not None
    assert ema.averaged_model is not None
    checkpoint = load_checkpoint(trainer.last_checkpoint)  # the format's checks accept it
    _assert_equal(checkpoint["state_dict"], _state(trainer.model))
    _assert_equal(checkpoint["averaged_weights"], _state(ema.averaged_model))
    assert checkpoint["averaging"] == {
        "kind": "ema",
        "steps": trainer.global_step,
        "decay": 0.9,
        "every_n_steps": 1,
        "warmup": False,
    }
    state = checkpoint["trainer_state"]["callbacks"]["EMA"]
    for name, tensor in checkpoint["averaged_weights"].items():  # one copy in the file
        assert tensor.untyped_storage().data_ptr() == state["weights"][name].data_ptr()


class _SaveDuringValidation(Callback):
    def __init__(self, path: Path) -> None:
        self.path = path

    def on_validation_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        trainer.save_checkpoint(self.path)


def test_a_checkpoint_written_during_validation_still_holds_the_raw_weights(
    tmp_path: Path,
) -> None:
    train, val = _data()
    snapshots, ema = _Snapshots(), EMA(decay=0.9)
    trainer = _trainer(
        "run", [snapshots, _SaveDuringValidation(tmp_path / "v.ckpt"), ema], max_epochs=1
    )
    trainer.fit(train, val, batch_size=BATCH)
    checkpoint = load_checkpoint(tmp_path / "v.ckpt")
    _assert_equal(checkpoint["state_dict"], snapshots.steps[-1])
    assert ema.averaged_model is not None
    _assert_equal(checkpoint["averaged_weights"], _state(ema.averaged_model))


class _FailInValidation(Callback):
    def on_validation_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        raise RuntimeError("boom")


def test_an_error_during_validation_puts_the_raw_weights_back() -> None:
    train, val = _data()
    snapshots = _Snapshots()
    trainer = _trainer("run", [snapshots, EMA(decay=0.9), _FailInValidation()], max_epochs=1)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(train, val, batch_size=BATCH)
    _assert_equal(_state(trainer.model), snapshots.steps[-1])


Run = tuple[Trainer, WeightAveraging]


def _resumed_run(
    make: Any, crash_at: int, n: int = 192, **options: Any
) -> tuple[Run, Run, dict[str, Any]]:
    """An uninterrupted run, one killed after ``crash_at`` steps and resumed, its checkpoint."""
    train, val = _data(n)
    full_avg = make()
    full = _trainer("full", [full_avg, ModelCheckpoint(every_n_train_steps=4)], **options)
    full.fit(train, val, batch_size=BATCH)
    crashed = _trainer(
        "crash", [make(), ModelCheckpoint(every_n_train_steps=4), _Crash(crash_at)], **options
    )
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(train, val, batch_size=BATCH)
    resumed_avg = make()
    resumed = _trainer("resumed", [resumed_avg, ModelCheckpoint(every_n_train_steps=4)], **options)
    assert crashed.last_checkpoint is not None
    checkpoint = load_checkpoint(crashed.last_checkpoint)
    resumed.fit(train, val, batch_size=BATCH, resume_from=crashed.last_checkpoint)
    return (full, full_avg), (resumed, resumed_avg), checkpoint


def _position(checkpoint: dict[str, Any]) -> tuple[int, int, int, int]:
    state = checkpoint["trainer_state"]
    steps = checkpoint["averaging"]["steps"]
    return state["epoch"], state["batch_in_epoch"], state["global_step"], steps


def _history(trainer: Trainer) -> list[dict[str, float]]:
    return [{k: v for k, v in e.items() if k != "epoch_time"} for e in trainer.history]


def test_ema_resumes_bitwise_after_a_kill_mid_epoch() -> None:
    (full, full_ema), (resumed, resumed_ema), checkpoint = _resumed_run(
        lambda: EMA(decay=0.9), crash_at=9, enable_checkpointing=True
    )
    assert _position(checkpoint) == (1, 2, 8, 8)  # inside the second epoch
    assert full_ema.averaged_model is not None
    assert resumed_ema.averaged_model is not None
    assert resumed_ema.num_averaged == full_ema.num_averaged == 12
    _assert_equal(_state(resumed_ema.averaged_model), _state(full_ema.averaged_model))
    _assert_equal(_state(resumed.model), _state(full.model))
    assert _history(resumed) == _history(full)


def _swalr_rates(epochs: int, start: int, swa_lr: float, annealing: int) -> list[float]:
    """The rate of each epoch under StepLR(gamma=0.5), then SWALR from ``start`` on."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    step_lr = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    swalr: SWALR | None = None
    rates = []
    for epoch in range(epochs):
        if epoch >= start and swalr is None:
            swalr = SWALR(optimizer, swa_lr=swa_lr, anneal_epochs=annealing)
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        (swalr or step_lr).step()
    return rates


def test_swa_is_the_mean_of_the_epoch_end_weights_and_swalr_sets_the_rate() -> None:
    train, val = _data(96)
    snapshots, swa = _Snapshots(), SWA(1, swa_lr=0.01, annealing_epochs=2)

    def step_lr(optimizer: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)

    trainer = _trainer("run", [snapshots, swa], max_epochs=5, scheduler=step_lr)
    history = trainer.fit(train, val, batch_size=BATCH)
    assert swa.num_averaged == 4
    assert swa.averaged_model is not None
    expected = {
        k: torch.stack([w[k].double() for w in snapshots.epochs[1:]]).mean(0)
        for k in snapshots.epochs[0]
    }
    _assert_close(_state(swa.averaged_model), expected)
    assert [e["lr"] for e in history] == _swalr_rates(5, 1, 0.01, 2)
    assert isinstance(trainer.scheduler, torch.optim.lr_scheduler.StepLR)  # given back


def test_swa_recomputes_batch_norm_statistics_on_bn_data_without_touching_training() -> None:
    train, val = _data(96)
    plain, swa = _Snapshots(), SWA(0, bn_data=train, bn_batch_size=40)
    _trainer("plain", [plain, SWA(0)], max_epochs=3, bn=True).fit(train, val, batch_size=BATCH)
    snapshots = _Snapshots()
    trainer = _trainer("bn", [snapshots, swa], max_epochs=3, bn=True)
    trainer.fit(train, val, batch_size=BATCH)
    _assert_equal(snapshots.epochs[-1], plain.epochs[-1])  # the training's RNG is untouched
    assert swa.averaged_model is not None
    by_hand = _bn_model()
    mean = {
        k: torch.stack([w[k].double() for w in snapshots.epochs]).mean(0) for k in plain.epochs[0]
    }
    by_hand.load_state_dict({k: v.to(snapshots.epochs[0][k].dtype) for k, v in mean.items()})
    update_bn(DataLoader(train, batch_size=40), by_hand)
    averaged = _state(swa.averaged_model)
    for name in ("2.running_mean", "2.running_var"):
        torch.testing.assert_close(averaged[name], by_hand.state_dict()[name], atol=1e-5, rtol=0)
    assert not torch.allclose(averaged["2.running_var"], mean["2.running_var"].float())


def test_swa_with_batch_norm_resumes_bitwise_after_a_kill_mid_epoch() -> None:
    train, _ = _data(96)

    def make() -> SWA:
        return SWA(1, swa_lr=0.02, annealing_epochs=2, bn_data=train)

    (full, full_swa), (resumed, resumed_swa), checkpoint = _resumed_run(
        make, crash_at=9, n=96, max_epochs=4, bn=True, enable_checkpointing=True
    )
    assert _position(checkpoint) == (2, 2, 8, 1)  # inside the third epoch, one average in
    assert checkpoint["trainer_state"]["callbacks"]["SWA"]["schedule"]["_step_count"] == 2
    assert full_swa.averaged_model is not None
    assert resumed_swa.averaged_model is not None
    assert resumed_swa.num_averaged == full_swa.num_averaged == 3
    _assert_equal(_state(resumed_swa.averaged_model), _state(full_swa.averaged_model))
    _assert_equal(_state(resumed.model), _state(full.model))
    assert _history(resumed) == _history(full)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: EMA(decay=1.0), "decay must be in"),
        (lambda: EMA(decay=0.99, every_n_steps=0), "every_n_steps"),
        (lambda: SWA(-1), "swa_start_epoch"),
        (lambda: SWA(1, swa_lr=0.0), "swa_lr"),
        (lambda: SWA(1, annealing_strategy="exp"), "'cos' or 'linear'"),
        (lambda: SWA(1, bn_data=5), "bn_data must be"),
    ],
)
def test_wrong_arguments_are_refused_with_the_fix(build: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build()


def test_state_of_another_kind_and_an_empty_average_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="'swa' average"):
        EMA().load_state_dict(SWA(1).state_dict())
    with pytest.raises(ConfigurationError, match="no averaged weights yet"):
        EMA().copy_to(nn.Linear(2, 2))
