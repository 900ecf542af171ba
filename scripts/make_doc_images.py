"""Draw the pictures of docs/guides/prediction.md from real data.

Run ``python scripts/make_doc_images.py``.

Trains seed 001's MLP briefly on the MNIST sample bundled with visionkit (training curves,
prediction grid, confusion matrix) and a small MLP on the real flower photos in
``../shared/data/flowers`` (top-k plot; skipped when that folder is absent). Writes small
PNG files into ``docs/images/``. Takes about a minute on a laptop CPU.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from visionkit import Predictor, Trainer, seed_everything
from visionkit.data import TensorImageDataset, mnist_sample
from visionkit.models import create_model
from visionkit.predict import Preprocess, make_checkpoint, plot_confusion_matrix, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "images"
FLOWERS = Path(os.environ.get("VISIONKIT_SHARED_DATA", REPO.parent / "shared" / "data")) / "flowers"


def digits(workdir: Path) -> None:
    seed_everything(0)
    data = mnist_sample(val_fraction=0.2, seed=0, normalize=(0.1307, 0.3081))
    model = create_model("mlp", in_features=784, hidden=[512, 512], num_classes=10, dropout=0.2)
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        max_epochs=6,
        device="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    history = trainer.fit(data.train, data.val, batch_size=32)
    history.plot(path=OUT / "prediction-history.png")
    checkpoint = trainer.save_checkpoint(workdir / "mnist.ckpt")

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    predictor.plot_predictions(data.test, n=20, path=OUT / "prediction-grid.png")
    report = predictor.evaluate(data.test)
    print(report)
    plot_confusion_matrix(report, path=OUT / "prediction-confusion.png")


def flowers(workdir: Path) -> None:
    names = json.loads((FLOWERS / "cat_to_name.json").read_text(encoding="utf-8"))
    ids = sorted(p.name for p in (FLOWERS / "train").iterdir())
    spec = Preprocess(
        resize=36, center_crop=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )
    files = [
        (f, label) for label, i in enumerate(ids) for f in sorted((FLOWERS / "train" / i).iterdir())
    ]
    images = torch.stack([spec.to_uint8(f) for f, _ in files])
    train = TensorImageDataset(
        images,
        torch.tensor([label for _, label in files]),
        [names[i] for i in ids],
        mean=spec.mean,
        std=spec.std,
    )
    seed_everything(0)
    model = create_model("mlp", in_features=3 * 32 * 32, hidden=[64], num_classes=len(ids))
    trainer = Trainer(
        model, max_epochs=40, device="cpu", enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(train, batch_size=10)
    # the images were resized before training, so store the eval transform that did it
    checkpoint = save_checkpoint(
        make_checkpoint(model, classes=train.classes, preprocess=spec), workdir / "flowers.ckpt"
    )
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    predictor.plot_topk(
        FLOWERS / "test" / "1" / "image_06743.jpg", top_k=5, path=OUT / "prediction-topk.png"
    )


def main() -> None:
    import tempfile

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        digits(Path(workdir))
        if FLOWERS.is_dir():
            flowers(Path(workdir))
        else:
            print(f"skipped the top-k picture: no flowers at {FLOWERS}", file=sys.stderr)
    for png in sorted(OUT.glob("prediction-*.png")):
        print(f"{png.relative_to(REPO)}: {png.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
