"""``ModelCheckpoint`` keeps the files of the k best finite scores; NaN and inf have no rank."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visionkit import Trainer
from visionkit.callbacks import Callback, ModelCheckpoint
from visionkit.data import TensorImageDataset, mnist_sample
from visionkit.models import create_model
from visionkit.predict import load_checkpoint


def _data(n: int = 8) -> TensorImageDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 2, 2), dtype=torch.uint8, generator=generator)
    return TensorImageDataset(images, torch.arange(n) % 2, ["a", "b"])


class _ValLoss(Callback):
    """Replaces the measured ``val_loss`` of each epoch by a scripted value."""

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def on_validation_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        metrics["val_loss"] = self.values[trainer.epoch]


def test_a_nan_validation_loss_never_enters_the_top_k(tmp_path: Path) -> None:
    losses = [1.0, math.nan, 0.9, 0.8, 0.95, 0.85]
    checkpoint = ModelCheckpoint(tmp_path, monitor="val_loss", save_top_k=2)
    torch.manual_seed(0)
    model = create_model("mlp", in_features=4, hidden=[], num_classes=2)
    trainer = Trainer(
        model,
        device="cpu",
        max_epochs=len(losses),
        enable_progress_bar=False,
        callbacks=[_ValLoss(losses), checkpoint],
    )
    trainer.fit(_data(), _data(), batch_size=4)
    assert [row["val_loss"] for row in trainer.history.epochs][2:] == losses[2:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch003-val_loss0.8000.ckpt",
        "epoch005-val_loss0.8500.ckpt",
        "last.ckpt",
    ]
    assert trainer.best_checkpoint == checkpoint.best_model_path
    assert checkpoint.best_model_path == tmp_path / "epoch003-val_loss0.8000.ckpt"
    assert checkpoint.best == 0.8
    assert checkpoint.best_k_models == {
        str(tmp_path / "epoch003-val_loss0.8000.ckpt"): 0.8,
        str(tmp_path / "epoch005-val_loss0.8500.ckpt"): 0.85,
    }


class _Writer:
    """The part of a ``Trainer`` that ``ModelCheckpoint.on_epoch_end`` uses when it writes
    on the training thread (``async_write=False``; test_async_checkpoints.py checks that the
    background writer keeps the same files)."""

    is_global_zero = True

    def save_checkpoint(self, path: Path, *, metrics: dict[str, float]) -> None:
        Path(path).write_text(repr(metrics["score"]))


def _reference(scores: list[float], k: int, mode: str) -> list[int]:
    """Epochs of the k best finite scores, best first; the earlier epoch wins a tie."""
    sign = 1.0 if mode == "min" else -1.0
    ranked = sorted((sign * s, epoch) for epoch, s in enumerate(scores) if math.isfinite(s))
    return [epoch for _, epoch in (ranked if k == -1 else ranked[:k])]


_SCORES = st.lists(
    st.one_of(
        st.sampled_from([0.0, 1.0, 2.0, 3.0, math.nan, math.inf, -math.inf]),
        st.floats(-10, 10),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    scores=_SCORES,
    save_top_k=st.integers(-1, 3),
    mode=st.sampled_from(["min", "max"]),
    resume_at=st.integers(0, 12),
)
def test_kept_files_are_always_the_k_best_finite_scores(
    scores: list[float], save_top_k: int, mode: Literal["min", "max"], resume_at: int
) -> None:
    trainer: Any = _Writer()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)

        def build() -> ModelCheckpoint:
            return ModelCheckpoint(
                root,
                monitor="score",
                mode=mode,
                save_top_k=save_top_k,
                filename="e{epoch}",
                async_write=False,
            )

        checkpoint = build()
        for epoch, score in enumerate(scores):
            if epoch == resume_at:  # a resumed run continues exactly
                state = checkpoint.state_dict()
                checkpoint = build()
                checkpoint.load_state_dict(state)
            checkpoint.on_epoch_end(trainer, epoch, {"epoch": float(epoch), "score": score})
            expected = _reference(scores[: epoch + 1], save_top_k, mode)
            kept = {f"e{e}.ckpt" for e in expected}
            assert {p.name for p in root.iterdir()} == kept | {"last.ckpt"}
            assert set(checkpoint.best_k_models) == {str(root / name) for name in kept}
            if expected:
                assert checkpoint.best_model_path == root / f"e{expected[0]}.ckpt"
                assert checkpoint.best == scores[expected[0]]
            else:
                assert checkpoint.best_model_path is None
                assert checkpoint.best == (math.inf if mode == "min" else -math.inf)


def test_a_resumed_state_with_a_nan_score_ranks_only_the_finite_ones(tmp_path: Path) -> None:
    checkpoint = ModelCheckpoint(tmp_path, monitor="val_loss", save_top_k=2)
    nan_file, finite_file = str(tmp_path / "a.ckpt"), str(tmp_path / "b.ckpt")
    checkpoint.load_state_dict(
        {
            "best": 0.9,
            "best_model_path": nan_file,
            "last_model_path": None,
            "best_k_models": {nan_file: math.nan, finite_file: 0.9},
        }
    )
    assert checkpoint.best_k_models == {finite_file: 0.9}
    assert (checkpoint.best_model_path, checkpoint.best) == (Path(finite_file), 0.9)


def test_last_ckpt_with_every_n_epochs_holds_the_latest_considered_epoch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=784, hidden=[8], num_classes=10)
    trainer = Trainer(
        model,
        max_epochs=5,
        device="cpu",
        enable_progress_bar=False,
        callbacks=[ModelCheckpoint(tmp_path, monitor="train_loss", every_n_epochs=2)],
    )
    trainer.fit(mnist_sample().train.select(range(32)), batch_size=16)
    # epochs 1 and 3 are considered (counting from 0); epoch 4, the last, is not
    state = load_checkpoint(tmp_path / "last.ckpt")["trainer_state"]
    assert state["epoch"] == 4  # resumes at epoch 4: it was written at the end of epoch 3
