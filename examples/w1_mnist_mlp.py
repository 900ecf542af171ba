"""W1, MNIST MLP: an MLP on MNIST with a seeded 20% validation split.

Saves the model whenever the validation loss decreases, reloads the best checkpoint for a
per-class test report, and plots test predictions titled "pred (true)" in green or red.

    python examples/w1_mnist_mlp.py --data-root data/            # the full MNIST
    python examples/w1_mnist_mlp.py --smoke                      # bundled sample, seconds
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from _args import parse_example_args

from visionkit import Predictor, Trainer, seed_everything
from visionkit.callbacks import ModelCheckpoint
from visionkit.data import mnist, mnist_sample
from visionkit.models import create_model

_MNIST = "the MNIST sample bundled with visionkit"


def main(argv: Sequence[str] | None = None) -> float:
    args = parse_example_args(__doc__, epochs=50, script=__file__, argv=argv, data=_MNIST)
    out = Path(args.output_dir)
    seed_everything(0)
    data = mnist(args.data_root, val_fraction=0.2, seed=0) if args.data_root else mnist_sample()

    model = create_model("mlp", in_features=784, hidden=[512, 512], num_classes=10, dropout=0.2)
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        max_epochs=1 if args.smoke else args.epochs,
        max_steps=20 if args.smoke else None,
        device=args.device,
        callbacks=[ModelCheckpoint(out / "checkpoints", monitor="val_loss")],
    )
    trainer.fit(data.train, data.val, batch_size=20)

    report = trainer.test(data.test, ckpt="best")
    print(report)
    report.to_json(out / "test_report.json")
    predictor = Predictor.from_checkpoint(trainer.best_checkpoint or "", device=args.device)
    predictor.plot_predictions(data.test, n=20, path=str(out / "predictions.png"))
    print(f"test accuracy {report.accuracy:.4f}; outputs in {out}")
    return report.accuracy


if __name__ == "__main__":
    main()
