"""MixUp, CutMix and their soft targets: the mixing, the losses and the refusals (CPU).

Losses are checked against sums written out by hand over Python floats; the mixing against
``torchvision.transforms.v2``, which the callbacks follow draw for draw.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn
from torchvision.transforms import v2

from visionkit import Trainer
from visionkit.callbacks import Callback, CutMix, MixUp, MixUpCutMix
from visionkit.data import TensorImageDataset
from visionkit.exceptions import ConfigurationError
from visionkit.models import create_model
from visionkit.training._batches import compute_loss
from visionkit.training._hooks import Hooks
from visionkit.training.metrics import ClassificationMetrics

LABELS = torch.tensor([0, 2, 1, 2])
VALUES = [1.0, 2.0, 4.0, 8.0]  # image i is filled with VALUES[i]
LOGITS = torch.tensor(
    [[2.0, -1.0, 0.5], [0.0, 1.5, -0.5], [-1.0, 0.25, 3.0], [1.0, 1.0, -2.0]]
)  # fixed model outputs for the loss checks


def _constant_images() -> torch.Tensor:
    return torch.tensor(VALUES).view(4, 1, 1, 1).expand(4, 3, 6, 8).contiguous()


def _trainer(num_classes: int = 3) -> Any:
    """What the callbacks read from a Trainer: its class names."""
    return SimpleNamespace(classes=[str(i) for i in range(num_classes)])


def _mix(callback: Callback, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    return callback.on_train_batch_transform(_trainer(), _constant_images(), LABELS)


def _own_share(images: torch.Tensor) -> list[float]:
    """For each mixed image, the share of its own image in it, read from the pixels only."""
    shares = []
    for i in range(4):
        own, before = VALUES[i], VALUES[i - 1]
        pixels = images[i].flatten().tolist()
        if all(p == pixels[0] for p in pixels):  # MixUp, or CutMix with an empty box
            shares.append((pixels[0] - before) / (own - before))
        else:  # CutMix: the pixels are `own` outside the box and `before` inside it
            assert set(pixels) == {own, before}
            shares.append(pixels.count(own) / len(pixels))
    return shares


def _log_softmax(row: list[float]) -> list[float]:
    top = max(row)
    total = math.log(sum(math.exp(v - top) for v in row)) + top
    return [v - total for v in row]


def _hand_loss(
    targets: list[list[float]], *, smoothing: float = 0.0, weight: list[float] | None = None
) -> float:
    """Mean over samples of ``-sum_c weight_c * target_c * log_softmax(logits)_c``."""
    total = 0.0
    for logits, row in zip(LOGITS.tolist(), targets, strict=True):
        classes = len(row)
        smoothed = [(1 - smoothing) * t + smoothing / classes for t in row]
        w = weight or [1.0] * classes
        logp = _log_softmax(logits)
        total -= sum(w[c] * smoothed[c] * logp[c] for c in range(classes))
    return total / len(targets)


def _hand_targets(shares: list[float]) -> list[list[float]]:
    """``share * one_hot(label_i) + (1 - share) * one_hot(label_{i-1})``, by hand."""
    rows = []
    for i, share in enumerate(shares):
        row = [0.0, 0.0, 0.0]
        row[int(LABELS[i])] += share
        row[int(LABELS[i - 1])] += 1 - share
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- mixing


@pytest.mark.parametrize("callback", [MixUp(alpha=0.4), CutMix(alpha=1.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_targets_are_mixed_in_the_proportions_of_the_pixels(callback: Callback, seed: int) -> None:
    images, targets = _mix(callback, seed)
    shares = _own_share(images)
    assert shares == pytest.approx([shares[0]] * 4, abs=1e-6)  # one lam per batch
    assert 0.0 <= shares[0] <= 1.0
    assert targets.dtype == torch.float32
    expected = [value for row in _hand_targets(shares) for value in row]
    assert targets.flatten().tolist() == pytest.approx(expected, abs=1e-6)


def test_cutmix_pastes_one_box_of_the_previous_image_and_keeps_the_rest() -> None:
    images, _ = _mix(CutMix(alpha=1.0), seed=3)
    pasted = images[0, 0] == VALUES[-1]  # image 0 takes its box from the last image (rolled)
    rows, cols = pasted.any(1).nonzero().flatten(), pasted.any(0).nonzero().flatten()
    assert 0 < int(pasted.sum()) < pasted.numel()
    box = pasted[int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]
    assert bool(box.all())  # one solid rectangle
    assert int(box.sum()) == int(pasted.sum())
    for i in range(4):  # the same box in every image and channel
        assert torch.equal(images[i] == VALUES[i - 1], pasted.expand(3, 6, 8))


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (MixUp(alpha=0.2), v2.MixUp(alpha=0.2, num_classes=3)),
        (MixUp(alpha=1.5), v2.MixUp(alpha=1.5, num_classes=3)),
        (CutMix(alpha=1.0), v2.CutMix(alpha=1.0, num_classes=3)),
        (CutMix(alpha=0.3), v2.CutMix(alpha=0.3, num_classes=3)),
    ],
)
def test_batches_are_those_of_torchvision_for_the_same_seed(ours: Callback, theirs: Any) -> None:
    images = torch.randn(4, 3, 9, 7)
    for seed in range(5):
        torch.manual_seed(seed)
        mixed, targets = ours.on_train_batch_transform(_trainer(), images, LABELS)
        torch.manual_seed(seed)
        expected_images, expected_targets = theirs(images, LABELS)
        assert torch.equal(mixed, expected_images)
        assert torch.equal(targets, expected_targets)


@pytest.mark.parametrize(("switch_p", "alone"), [(0.0, MixUp(alpha=0.3)), (1.0, CutMix(alpha=0.7))])
def test_mixup_cutmix_with_a_certain_switch_is_the_one_it_picks(
    switch_p: float, alone: Callback
) -> None:
    both = MixUpCutMix(mixup_alpha=0.3, cutmix_alpha=0.7, switch_p=switch_p)
    for seed in range(3):
        ours, theirs = _mix(both, seed), _mix(alone, seed)
        assert torch.equal(ours[0], theirs[0])
        assert torch.equal(ours[1], theirs[1])


def test_mixup_cutmix_uses_both_over_many_batches() -> None:
    both = MixUpCutMix(mixup_alpha=1.0, cutmix_alpha=1.0, switch_p=0.5)
    kinds = set()
    for seed in range(20):
        images, _ = _mix(both, seed)
        pixels = set(images[0].flatten().tolist())
        kinds.add("cutmix" if pixels <= {VALUES[0], VALUES[-1]} and len(pixels) == 2 else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_p_zero_never_mixes_but_still_gives_one_hot_targets() -> None:
    images = _constant_images()
    for seed in range(3):
        torch.manual_seed(seed)
        out, targets = MixUp(p=0.0).on_train_batch_transform(_trainer(), images, LABELS)
        assert out is images
        assert targets.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]]


def test_p_mixes_that_share_of_batches_with_torchs_generator() -> None:
    torch.manual_seed(0)
    expected = [float(torch.rand(())) < 0.3 for _ in range(50)]  # the coin the callback tosses
    torch.manual_seed(0)
    mixup, mixed = MixUp(alpha=1.0, p=0.3), []
    for _ in range(50):
        state = torch.random.get_rng_state()
        images, _ = mixup.on_train_batch_transform(_trainer(), _constant_images(), LABELS)
        mixed.append(not torch.equal(images, _constant_images()))
        torch.random.set_rng_state(state)
        torch.rand(())  # advance past this batch's coin only
    assert mixed == expected
    assert 5 < sum(mixed) < 25


def test_soft_targets_pass_through_a_second_mixing_callback() -> None:
    torch.manual_seed(0)
    images, targets = MixUp(alpha=1.0).on_train_batch_transform(
        _trainer(), _constant_images(), LABELS
    )
    again, twice = CutMix(alpha=1.0).on_train_batch_transform(_trainer(), images, targets)
    assert twice.shape == (4, 3)
    assert twice.sum(1).tolist() == pytest.approx([1.0] * 4, abs=1e-6)
    assert not torch.equal(again, images)


def test_channels_last_batches_stay_channels_last() -> None:
    images = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    for callback in (MixUp(), CutMix()):
        mixed, _ = callback.on_train_batch_transform(_trainer(), images, LABELS)
        assert mixed.is_contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------- losses


@pytest.mark.parametrize("callback", [MixUp(alpha=0.4), CutMix(alpha=1.0)])
@pytest.mark.parametrize(
    ("loss_fn", "smoothing", "log_probs"),
    [
        (nn.CrossEntropyLoss(), 0.0, False),
        (nn.CrossEntropyLoss(label_smoothing=0.1), 0.1, False),
        (nn.CrossEntropyLoss(label_smoothing=0.1), 0.1, True),
        (nn.NLLLoss(), 0.0, True),
    ],
    ids=["cross-entropy", "label-smoothing", "smoothing-on-log-probs", "nll"],
)
def test_soft_target_loss_equals_the_hand_computation(
    callback: Callback, loss_fn: nn.Module, smoothing: float, log_probs: bool
) -> None:
    images, targets = _mix(callback, seed=1)
    outputs = LOGITS.log_softmax(1) if log_probs else LOGITS
    loss = compute_loss(loss_fn, outputs, targets)
    by_hand = _hand_loss(_hand_targets(_own_share(images)), smoothing=smoothing)
    assert float(loss) == pytest.approx(by_hand, rel=1e-6)


def test_nll_loss_weight_and_sum_reduction_are_honoured() -> None:
    images, targets = _mix(MixUp(alpha=0.4), seed=0)
    weight = [0.5, 2.0, 1.0]
    hand = _hand_loss(_hand_targets(_own_share(images)), weight=weight)
    log_probs = LOGITS.log_softmax(1)
    mean = compute_loss(nn.NLLLoss(weight=torch.tensor(weight)), log_probs, targets)
    total = compute_loss(
        nn.NLLLoss(weight=torch.tensor(weight), reduction="sum"), log_probs, targets
    )
    assert float(mean) == pytest.approx(hand, rel=1e-6)
    assert float(total) == pytest.approx(4 * hand, rel=1e-6)


def test_any_other_loss_gets_the_soft_targets_as_they_are() -> None:
    seen = []

    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        seen.append(targets)
        return (outputs.softmax(1) - targets).pow(2).sum()

    targets = torch.tensor([[0.25, 0.75, 0.0]] * 4)
    loss = compute_loss(loss_fn, LOGITS, targets)
    assert seen[0] is targets
    p = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in LOGITS.tolist()]
    by_hand = sum((pi[c] - t) ** 2 for pi in p for c, t in enumerate([0.25, 0.75, 0.0]))
    assert float(loss) == pytest.approx(by_hand, rel=1e-6)


def test_label_smoothing_on_log_probabilities_by_hand() -> None:
    log_probs = LOGITS.log_softmax(1)
    assert float(nn.CrossEntropyLoss()(log_probs, LABELS)) == pytest.approx(
        float(nn.NLLLoss()(log_probs, LABELS)), abs=1e-6
    )
    rows = [_log_softmax(r) for r in LOGITS.tolist()]
    eps = 0.1
    by_hand = sum(
        (1 - eps) * -row[int(y)] + eps * sum(-v for v in row) / 3
        for row, y in zip(rows, LABELS, strict=True)
    ) / len(rows)
    smoothed = nn.CrossEntropyLoss(label_smoothing=eps)
    assert float(smoothed(log_probs, LABELS)) == pytest.approx(by_hand, rel=1e-6)
    assert float(smoothed(LOGITS, LABELS)) == pytest.approx(by_hand, rel=1e-6)


def test_soft_targets_of_the_wrong_width_are_refused() -> None:
    with pytest.raises(ConfigurationError) as error:
        compute_loss(nn.NLLLoss(), LOGITS, torch.full((4, 5), 0.2))
    assert str(error.value) == (
        "the soft targets have shape (4, 5) but the model outputs (4, 3) scores: give the "
        "mixing callback num_classes=3, the number of the model's outputs"
    )


@pytest.mark.parametrize(
    "loss_fn", [nn.NLLLoss(ignore_index=2), nn.CrossEntropyLoss(ignore_index=2)]
)
def test_an_ignore_index_is_refused_for_soft_targets(loss_fn: nn.Module) -> None:
    with pytest.raises(ConfigurationError, match=r"\(ignore_index=2\) cannot apply to soft"):
        compute_loss(loss_fn, LOGITS, torch.full((4, 3), 1 / 3))


def test_a_loss_that_refuses_soft_targets_is_named() -> None:
    with pytest.raises(ConfigurationError) as error:
        compute_loss(nn.MultiMarginLoss(), LOGITS, torch.full((4, 3), 1 / 3))
    assert "failed on model outputs of shape (4, 3) and labels of shape (4, 3)" in str(error.value)
    assert "use a loss that takes them, such as CrossEntropyLoss" in str(error.value)


# ----------------------------------------------------------------------------- metrics


def test_training_accuracy_of_soft_targets_is_nan_and_the_loss_counts() -> None:
    metrics = ClassificationMetrics(3, top_k=(2,), confusion=False)
    metrics.update(LOGITS, LABELS, loss=torch.tensor(0.5))
    # argmax 0, 1, 2, 0 (a tie goes to the lower index) for labels 0, 2, 1, 2: one right;
    # the label ranks 0, 2, 1, 2, so two are in the top 2
    assert metrics.compute() == {"loss": 0.5, "accuracy": 0.25, "top2_accuracy": 0.5}
    metrics.update(LOGITS, torch.full((4, 3), 1 / 3), loss=torch.tensor(1.5))
    values = metrics.compute()
    assert values["loss"] == 1.0  # (0.5 * 4 + 1.5 * 4) / 8
    assert math.isnan(values["accuracy"])
    assert math.isnan(values["top2_accuracy"])
    assert metrics.count == 8


def test_a_confusion_matrix_of_soft_targets_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="a confusion matrix needs"):
        ClassificationMetrics(3).update(LOGITS, torch.full((4, 3), 1 / 3))


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: MixUp(alpha=0), "alpha must be a finite number > 0, got 0.0"),
        (lambda: MixUp(alpha=-0.2), "alpha must be a finite number > 0, got -0.2"),
        (lambda: CutMix(alpha=math.nan), "alpha must be a finite number > 0, got nan"),
        (lambda: CutMix(alpha=math.inf), "alpha must be a finite number > 0, got inf"),
        (lambda: MixUp(alpha=True), "alpha must be a finite number > 0, got True (bool)"),
        (lambda: MixUp(alpha="0.2"), "alpha must be a finite number > 0, got '0.2' (str)"),
        (lambda: MixUp(p=1.5), "p must be a probability in [0, 1], got 1.5 (float)"),
        (lambda: CutMix(p=-0.1), "p must be a probability in [0, 1], got -0.1 (float)"),
        (lambda: CutMix(p=math.nan), "p must be a probability in [0, 1], got nan (float)"),
        (lambda: MixUp(p=True), "p must be a probability in [0, 1], got True (bool)"),
        (lambda: MixUp(num_classes=0), "num_classes must be an integer >= 1 or None, got 0"),
        (lambda: MixUp(num_classes=2.0), "num_classes must be an integer >= 1 or None, got 2.0"),
        (lambda: MixUpCutMix(switch_p=2), "switch_p must be a probability in [0, 1], got 2 (int)"),
        (lambda: MixUpCutMix(mixup_alpha=0), "mixup_alpha must be a finite number > 0, got 0.0"),
        (lambda: MixUpCutMix(cutmix_alpha=-1), "cutmix_alpha must be a finite number > 0, got -1"),
    ],
)
def test_bad_arguments_are_refused(build: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        build()
    assert str(error.value).startswith(message)


def test_arguments_are_kept_as_plain_numbers() -> None:
    mixup = MixUp(alpha=torch.tensor(0.5).item(), p=1, num_classes=10)
    assert (mixup.alpha, mixup.p, mixup.num_classes) == (0.5, 1.0, 10)
    assert type(mixup.p) is float
    assert repr(mixup) == "MixUp(alpha=0.5, p=1.0, num_classes=10)"
    assert repr(CutMix(p=0.5)) == "CutMix(alpha=1.0, p=0.5, num_classes=None)"


def test_labels_that_are_not_class_indices_are_refused() -> None:
    with pytest.raises(ConfigurationError) as error:
        MixUp().on_train_batch_transform(_trainer(), _constant_images(), LABELS.float())
    assert str(error.value) == (
        "MixUp mixes integer class indices (batch,) or soft targets (batch, 3), got labels of "
        "dtype torch.float32 and shape (4,): yield (images, class indices) batches"
    )


def test_integer_images_are_refused_by_mixup_and_3d_batches_by_cutmix() -> None:
    with pytest.raises(
        ConfigurationError, match=r"the images must be floating point, got torch\.uint8"
    ):
        MixUp().on_train_batch_transform(
            _trainer(), torch.zeros(4, 1, 2, 2, dtype=torch.uint8), LABELS
        )
    with pytest.raises(ConfigurationError, match=r"got shape \(4, 6, 8\)"):
        CutMix().on_train_batch_transform(_trainer(), torch.zeros(4, 6, 8), LABELS)


def test_mismatched_batch_sizes_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="got 3 images but 4 labels in one batch"):
        MixUp().on_train_batch_transform(_trainer(), torch.zeros(3, 1, 2, 2), LABELS)


# ----------------------------------------------------------------------------- the hook


def test_the_hook_costs_nothing_unless_a_callback_overrides_it() -> None:
    hooks = Hooks([Callback()])
    hooks.activate()
    assert not hooks.wants("on_train_batch_transform")
    hooks = Hooks([Callback(), MixUp()])
    hooks.activate()
    assert hooks.wants("on_train_batch_transform")
    images = torch.zeros(2, 1, 2, 2)
    same_images, same_targets = Callback().on_train_batch_transform(_trainer(), images, LABELS)
    assert same_images is images
    assert same_targets is LABELS


def _tiny_data(labels: torch.Tensor | None = None, classes: int = 3) -> TensorImageDataset:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (12, 1, 4, 4), dtype=torch.uint8)
    targets = torch.arange(12) % classes if labels is None else labels
    return TensorImageDataset(images, targets, [str(c) for c in range(classes)])


def _fit(callbacks: list[Callback], data: Any, *, validate: bool = True) -> Trainer:
    model = create_model("mlp", in_features=16, hidden=[], num_classes=3)
    trainer = Trainer(
        model,
        max_epochs=1,
        callbacks=callbacks,
        device="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(data, data if validate else None, batch_size=4)
    return trainer


class _Spy(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def on_train_batch_transform(
        self, trainer: Trainer, images: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append(tuple(targets.shape))
        return images, targets


def test_the_hook_sees_each_training_batch_once_and_no_validation_batch() -> None:
    spy = _Spy()
    _fit([MixUp(), spy], _tiny_data())
    assert spy.calls == [(4, 3)] * 3  # after MixUp: soft targets; 3 training batches of 4


def test_a_hook_that_returns_something_else_is_named() -> None:
    class Broken(Callback):
        def on_train_batch_transform(self, trainer: Any, images: Any, targets: Any) -> Any:
            return None

    with pytest.raises(ConfigurationError) as error:
        _fit([Broken()], _tiny_data())
    assert str(error.value) == (
        "Broken.on_train_batch_transform must return a tuple (images, targets) of two "
        "tensors, got None (NoneType): return the batch, changed or not"
    )


def test_labels_are_checked_as_loaded_before_mixing_reaches_the_loss() -> None:
    labels = torch.tensor([0, 1, 2, 3] * 3)  # label 3 for a 3-class model
    data = TensorImageDataset(torch.zeros(12, 1, 4, 4, dtype=torch.uint8), labels, list("abcd"))
    with pytest.raises(ConfigurationError, match="found label 3 but the model outputs 3 classes"):
        _fit([MixUp(num_classes=4)], data)


def test_without_class_names_num_classes_must_be_given() -> None:
    images = torch.rand(8, 1, 4, 4)
    data = torch.utils.data.TensorDataset(images, torch.arange(8) % 3)
    with pytest.raises(ConfigurationError) as error:
        _fit([CutMix()], data, validate=False)
    assert str(error.value) == (
        "CutMix needs the number of classes to build soft targets, but the training data has "
        "no class names: pass CutMix(num_classes=N) with N the number of the model's outputs"
    )
    trainer = _fit([CutMix(num_classes=3)], data, validate=False)
    assert trainer.global_step == 2
