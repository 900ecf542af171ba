"""W4, ResNet with a plateau schedule: a ConvNet and a deep ResNet on CIFAR-10, side by side.

SGD with weight decay (L2 penalty) and a ``ReduceLROnPlateau`` schedule stepped on the
validation loss; loss and accuracy curves go to TensorBoard, a CSV file and a plot; the
best checkpoint is reloaded for the test report.

    python examples/w4_cifar_resnet.py --data-root data/         # full CIFAR-10 batches
    python examples/w4_cifar_resnet.py --smoke                   # the 200-image sample
    tensorboard --logdir outputs/w4_cifar_resnet                 # the curves of every run
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from _args import parse_example_args
from _samples import cifar10_sample, shared_sample

from visionkit import Predictor, Trainer, seed_everything
from visionkit.callbacks import CSVLogger, ModelCheckpoint, TensorBoardLogger
from visionkit.data import cifar10
from visionkit.models import create_model

MODELS = {"convnet_cifar": {}, "resnet_deep": {"n_channels": 32, "n_blocks": 3}}


_CIFAR = "the CIFAR-10 sample batch of the shared sample data"


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_example_args(__doc__, epochs=10, script=__file__, argv=argv, data=_CIFAR)
    out = Path(args.output_dir)
    root = Path(args.data_root or shared_sample("cifar10_batches/sample_batch"))
    data = cifar10_sample(root) if root.is_file() else cifar10(root)
    data = data.with_normalization((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    results = {}
    for name, options in MODELS.items():
        seed_everything(0)
        model = create_model(name, num_classes=10, **options)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, weight_decay=1e-3)
        trainer = Trainer(
            model,
            optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer),
            monitor="val_loss",
            max_epochs=2 if args.smoke else args.epochs,
            max_steps=6 if args.smoke else None,
            device=args.device,
            callbacks=[
                TensorBoardLogger(out / "runs" / name),
                CSVLogger(out / "logs" / name),
                ModelCheckpoint(out / "checkpoints" / name, monitor="val_loss"),
            ],
        )
        history = trainer.fit(data.train, data.val, batch_size=64)
        history.plot(path=str(out / f"{name}_curves.png"))
        predictor = Predictor.from_checkpoint(trainer.best_checkpoint or "", device=args.device)
        report = predictor.evaluate(data.test)  # the reloaded best weights
        print(f"{name}: test loss {report.loss:.4f}, test accuracy {report.accuracy:.4f}")
        results[name] = report.accuracy
    print(f"outputs in {out}")
    return results


if __name__ == "__main__":
    main()
