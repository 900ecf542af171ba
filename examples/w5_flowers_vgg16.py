"""W5, Flowers with VGG16 transfer: Oxford flowers with VGG16 transfer learning.

Reads the ``train/ valid/ test/`` class folders and ``cat_to_name.json``, augments the
training images, freezes VGG16's features and trains a new classifier head with Adam and
NLLLoss, reports the test accuracy, and plots the top-5 flower names of one test image.

    python examples/w5_flowers_vgg16.py --data-root flowers/ --weights DEFAULT   # downloads
    python examples/w5_flowers_vgg16.py --weights vgg16-397923af.pth             # offline
    python examples/w5_flowers_vgg16.py --smoke       # ../shared/data/flowers, 64x64, seconds

Without ``--weights`` the features are randomly initialised (no download): the script says
so, and only the head learns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from _args import parse_example_args
from _samples import shared_sample

from visionkit import Predictor, Trainer, seed_everything
from visionkit.callbacks import ModelCheckpoint
from visionkit.data import image_folder, presets
from visionkit.models import create_model, trainable_parameters

_FLOWERS = "the flower photos of the shared sample data"


def main(argv: Sequence[str] | None = None) -> float:
    weights_help = (
        "VGG16 weights: DEFAULT (download) or a local state-dict file (default: none, random "
        "features)"
    )
    args = parse_example_args(
        __doc__,
        epochs=15,
        script=__file__,
        argv=argv,
        data=_FLOWERS,
        extra={"--weights": weights_help},
    )
    out = Path(args.output_dir)
    root = Path(args.data_root or shared_sample("flowers"))
    size = 64 if args.smoke else 224  # VGG16 at 224x224 takes seconds per image on a CPU
    seed_everything(0)
    data = image_folder(
        root,
        names=root / "cat_to_name.json",
        train_transform=presets.imagenet_train(size),
        eval_transform=presets.imagenet_eval(size, resize=size * 8 // 7),
    )
    if args.weights is None:
        print("no --weights given: training the new head on randomly initialised VGG16 features")
    model = create_model(
        "vgg16_transfer",
        num_classes=len(data.classes),
        hidden=256 if args.smoke else 4096,
        dropout=0.2,
        weights=args.weights,
    )
    trainer = Trainer(
        model,
        optimizer=torch.optim.Adam(trainable_parameters(model), lr=1e-3),
        loss=torch.nn.NLLLoss(),
        max_epochs=1 if args.smoke else args.epochs,
        max_steps=2 if args.smoke else None,
        log_every_n_steps=40,
        device=args.device,
        callbacks=[ModelCheckpoint(out / "checkpoints", monitor="val_accuracy", save_last=False)],
    )
    trainer.fit(data.train, data.val, batch_size=4 if args.smoke else 64)
    report = trainer.test(data.test, ckpt="best")
    print(report)

    predictor = Predictor.from_checkpoint(trainer.best_checkpoint or "", device=args.device)
    image = sorted((root / "test").glob("*/*.jpg"))[0]
    print(predictor.predict(image, top_k=5))
    predictor.plot_topk(image, top_k=5, path=out / "topk.png")
    print(f"test accuracy {report.accuracy:.4f}; outputs in {out}")
    return report.accuracy


if __name__ == "__main__":
    main()
