"""Your own photos: one folder of class folders, a pretrained backbone, fine_tune, a Predictor.

Splits the folder into stratified training, validation and test sets, builds the
backbone with the preprocessing of its weights, finds a learning rate, fine-tunes (the
head first with the backbone frozen, then everything with smaller rates for earlier
layers), tests the best checkpoint and predicts one photo with it.

    python examples/own_data_finetune.py --data-root my_photos/ --weights DEFAULT  # downloads
    python examples/own_data_finetune.py --data-root my_photos/ --weights resnet18.pth
    python examples/own_data_finetune.py --smoke     # the flowers sample, random weights, seconds

``my_photos/`` holds one folder per class (``my_photos/cat/1.jpg``, ``my_photos/dog/...``).
Without ``--weights`` the backbone starts from random weights (no download).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from _args import parse_example_args
from _samples import shared_sample

from visionkit import Predictor, Trainer, seed_everything
from visionkit.callbacks import ModelCheckpoint
from visionkit.data import image_folder, presets
from visionkit.models import create_model
from visionkit.training import fine_tune

_FLOWERS = "the flower photos of the shared sample data"


def main(argv: Sequence[str] | None = None) -> float:
    extra = {
        "--model": "a torchvision or timm classifier name (default resnet18)",
        "--weights": "DEFAULT (download), a weights name, or a local state-dict file "
        "(default: none, random weights)",
    }
    args = parse_example_args(
        __doc__, epochs=3, script=__file__, argv=argv, data=_FLOWERS, extra=extra
    )
    out = Path(args.output_dir)
    root = Path(args.data_root or shared_sample("flowers") / "train")
    names = root.parent / "cat_to_name.json" if args.data_root is None else None
    seed_everything(0)

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    model = create_model(
        args.model or "resnet18",
        num_classes=len(classes),
        weights=args.weights,
        freeze_backbone=True,  # as fine_tune starts: the learning-rate sweep sees the head
    )
    data = image_folder(
        root,
        names=names,
        val_fraction=0.2,
        test_fraction=0.2,
        train_transform=presets.model_train(model),
        eval_transform=presets.model_eval(model),
    )
    print(f"{len(data.train)} training, {len(data.val)} validation, {len(data.test)} test images")

    sweep = Trainer(model, device=args.device, enable_checkpointing=False).lr_find(
        data.train, batch_size=8, num_steps=24 if args.smoke else 100
    )
    base_lr = sweep.suggestion or 2e-3  # too short a sweep to tell: fastai's default
    how = "suggested by the sweep" if sweep.suggestion else "the sweep was too short to tell"
    print(f"learning rate {base_lr:.2e} ({how})")

    trainer = fine_tune(
        model,
        data.train,
        data.val,
        epochs=1 if args.smoke else args.epochs,
        freeze_epochs=1,
        base_lr=base_lr,
        batch_size=8 if args.smoke else 32,
        device=args.device,
        callbacks=[ModelCheckpoint(out / "checkpoints", monitor="val_accuracy", save_last=False)],
    )
    report = trainer.test(data.test, ckpt="best")
    print(report)
    predictor = Predictor.from_checkpoint(trainer.best_checkpoint or "", device=args.device)
    photo = sorted(root.glob(f"{classes[0]}/*"))[0]
    print(predictor.predict(photo, top_k=3))
    print(f"test accuracy {report.accuracy:.4f}; outputs in {out}")
    return report.accuracy


if __name__ == "__main__":
    main()
