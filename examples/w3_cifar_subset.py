"""W3, CIFAR-10 birds vs airplanes: CIFAR-10 airplanes vs birds with a 3072-512-2 Tanh network.

Keeps two classes and renumbers their labels (airplane 0 -> 0, bird 2 -> 1), normalizes
with the per-channel mean and std of the training images, trains with SGD and reports the
accuracy on the training and the validation set.

    python examples/w3_cifar_subset.py --data-root data/         # full CIFAR-10 batches
    python examples/w3_cifar_subset.py --smoke                   # the 200-image sample
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from _args import parse_example_args
from _samples import cifar10_sample, shared_sample

from visionkit import Predictor, Trainer, seed_everything
from visionkit.callbacks import ModelCheckpoint
from visionkit.data import cifar10, compute_mean_std
from visionkit.models import create_model

_CIFAR = "the CIFAR-10 sample batch of the shared sample data"


def main(argv: Sequence[str] | None = None) -> float:
    args = parse_example_args(__doc__, epochs=100, script=__file__, argv=argv, data=_CIFAR)
    out = Path(args.output_dir)
    seed_everything(0)
    root = Path(args.data_root or shared_sample("cifar10_batches/sample_batch"))
    full = cifar10_sample(root) if root.is_file() else cifar10(root)
    data = full.subset(["airplane", "bird"])
    mean, std = compute_mean_std(data.train)
    data = data.with_normalization(mean, std)
    print(f"classes {data.classes}, label map {data.label_map}")
    print(f"mean {[round(m, 4) for m in mean]}, std {[round(s, 4) for s in std]}")

    model = create_model("mlp", in_features=3072, hidden=[512], num_classes=2, activation="tanh")
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=1e-2),
        max_epochs=3 if args.smoke else args.epochs,
        max_steps=10 if args.smoke else None,
        device=args.device,
        callbacks=[ModelCheckpoint(out / "checkpoints", monitor="val_accuracy")],
    )
    trainer.fit(data.train, data.val, batch_size=64)
    train_accuracy = trainer.test(data.train).accuracy
    val_accuracy = trainer.test(data.val).accuracy
    print(f"Accuracy on Training Set: {train_accuracy:.4f}")
    print(f"Accuracy on Validation Set: {val_accuracy:.4f}")

    predictor = Predictor.from_checkpoint(trainer.last_checkpoint or "", device=args.device)
    predictor.plot_predictions(data.val, n=10, columns=5, path=out / "predictions.png")
    print(f"outputs in {out}")
    return val_accuracy


if __name__ == "__main__":
    main()
