"""A downstream project: its own callback and its own registered model, used with visionkit.

``WorstClassMonitor`` adds the metric ``val_worst_class_accuracy`` to every epoch (so the
history, the loggers and ``ModelCheckpoint`` can use it) and keeps the worst class of each
epoch in its state, which checkpoints carry across a resume. ``tiny_cnn`` joins the model
registry, so ``Predictor.from_checkpoint`` rebuilds it from the checkpoint alone.

    python examples/custom_callback.py --smoke
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from _args import parse_example_args
from torch import nn

from visionkit import Predictor, Trainer, seed_everything
from visionkit.callbacks import Batch, Callback, ModelCheckpoint, StepOutput
from visionkit.data import mnist, mnist_sample
from visionkit.models import create_model, register_model


class WorstClassMonitor(Callback):
    """Track per-class validation accuracy and report the worst class of every epoch."""

    def __init__(self) -> None:
        self.worst: list[str] = []  # the worst class of each epoch so far
        self._correct = self._total = torch.zeros(0)

    def on_validation_epoch_start(self, trainer: Trainer) -> None:
        self._correct = self._total = torch.zeros(0)

    def on_validation_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        n = outputs.outputs.shape[1]
        hits = (outputs.outputs.argmax(1) == outputs.targets).float()
        correct = torch.bincount(outputs.targets, weights=hits, minlength=n).cpu()
        total = torch.bincount(outputs.targets, minlength=n).cpu()
        self._correct = correct if not self._correct.numel() else self._correct + correct
        self._total = total if not self._total.numel() else self._total + total

    def on_validation_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        accuracy = self._correct / self._total.clamp(min=1)
        accuracy[self._total == 0] = float("inf")  # classes absent from validation
        worst = int(accuracy.argmin())
        name = trainer.classes[worst] if trainer.classes else str(worst)
        metrics["val_worst_class_accuracy"] = float(accuracy[worst])
        self.worst.append(name)
        print(f"worst class this epoch: {name} ({float(accuracy[worst]):.1%})")

    def state_dict(self) -> dict[str, Any]:
        return {"worst": list(self.worst)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.worst = list(state["worst"])


@register_model
def tiny_cnn(*, in_channels: int = 1, num_classes: int = 10, width: int = 8) -> nn.Module:
    """Two 3x3 convolutions with max pooling, then a linear classifier (28x28 inputs)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 7 * 7, num_classes),
    )


_MNIST = "the MNIST sample bundled with visionkit"


def main(argv: Sequence[str] | None = None) -> float:
    args = parse_example_args(__doc__, epochs=5, script=__file__, argv=argv, data=_MNIST)
    out = Path(args.output_dir)
    seed_everything(0)
    data = mnist(args.data_root) if args.data_root else mnist_sample()
    model = create_model("tiny_cnn", num_classes=10, width=16)
    monitor = WorstClassMonitor()
    trainer = Trainer(
        model,
        optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
        max_epochs=2 if args.smoke else args.epochs,
        max_steps=80 if args.smoke else None,
        device=args.device,
        callbacks=[
            monitor,
            ModelCheckpoint(out / "checkpoints", monitor="val_worst_class_accuracy", mode="max"),
        ],
    )
    history = trainer.fit(data.train, data.val, batch_size=64)
    worst = ", ".join(f"{v:.3f}" for v in history["val_worst_class_accuracy"])
    print(f"val_worst_class_accuracy per epoch: {worst}")
    predictor = Predictor.from_checkpoint(trainer.best_checkpoint or "", device=args.device)
    report = predictor.evaluate(data.test)
    print(f"tiny_cnn rebuilt from {trainer.best_checkpoint}: test accuracy {report.accuracy:.4f}")
    print(f"outputs in {out}")
    return report.accuracy


if __name__ == "__main__":
    main()
