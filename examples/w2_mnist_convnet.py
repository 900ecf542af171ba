"""W2, MNIST ConvNet: a ConvNet on MNIST normalized with (0.1302, 0.3069), trained with Adadelta.

Seed 0, two epochs of batch 32, running loss logged every 10 batches, a test report, and
the prediction of one test digit by the saved checkpoint (plotted with its top classes).

    python examples/w2_mnist_convnet.py --data-root data/        # the full MNIST
    python examples/w2_mnist_convnet.py --smoke                  # bundled sample, seconds
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
    args = parse_example_args(__doc__, epochs=2, script=__file__, argv=argv, data=_MNIST)
    out = Path(args.output_dir)
    seed_everything(0)
    stats = (0.1302, 0.3069)  # the tutorial's mean and std of the training pixels
    data = (
        mnist(args.data_root, normalize=stats) if args.data_root else mnist_sample(normalize=stats)
    )

    model = create_model("convnet", in_channels=1, num_classes=10)  # log-softmax outputs
    trainer = Trainer(
        model,
        optimizer=torch.optim.Adadelta(model.parameters(), lr=0.5),
        loss=torch.nn.NLLLoss(),
        max_epochs=1 if args.smoke else args.epochs,
        max_steps=30 if args.smoke else None,
        log_every_n_steps=10,
        device=args.device,
        callbacks=[ModelCheckpoint(out / "checkpoints", monitor="val_loss")],
    )
    trainer.fit(data.train, data.val, batch_size=32)
    report = trainer.test(data.test, batch_size=500)
    print(report)

    predictor = Predictor.from_checkpoint(trainer.last_checkpoint or "", device=args.device)
    image, label = data.test[0]
    prediction = predictor.predict(image, top_k=3)
    print(f"Model prediction is: {prediction.name}; ground truth is: {data.classes[label]}")
    predictor.plot_topk(image, top_k=3, path=out / "prediction.png")
    print(f"test accuracy {report.accuracy:.4f}; outputs in {out}")
    return report.accuracy


if __name__ == "__main__":
    main()
