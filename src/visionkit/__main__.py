"""Command line: ``python -m visionkit demo`` and ``python -m visionkit predict``.

``demo`` runs workflow W1 (seed 001's MNIST MLP) end to end on the real MNIST sample that
ships inside visionkit, so it needs no download.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from visionkit._seed import seed_everything
from visionkit._version import __version__
from visionkit.exceptions import VisionKitError

__all__ = ["main", "run_demo"]


def run_demo(
    output_dir: str | Path = "visionkit-demo",
    *,
    epochs: int = 20,
    device: str = "auto",
    seed: int = 0,
) -> float:
    """Train seed 001's MLP on the bundled MNIST sample, test it, and predict with it.

    Writes the best and last checkpoints, the test report as JSON, and (when matplotlib is
    installed) a grid of test predictions into ``output_dir``.

    Returns:
        The test accuracy of the best checkpoint.
    """
    from visionkit.callbacks import EarlyStopping, ModelCheckpoint
    from visionkit.data import mnist_sample
    from visionkit.models import create_model
    from visionkit.predict import Predictor
    from visionkit.training import Trainer

    started = time.monotonic()
    output = Path(output_dir)
    seed_everything(seed)
    data = mnist_sample(val_fraction=0.2, seed=seed)
    print(f"visionkit {__version__} demo: workflow W1, an MLP on real MNIST digits")
    print(f"data: {data} (bundled sample of the MNIST test set)")

    model = create_model("mlp", in_features=784, hidden=[512, 512], num_classes=10, dropout=0.2)
    checkpoints = ModelCheckpoint(output / "checkpoints", monitor="val_loss", verbose=True)
    trainer = Trainer(
        model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        max_epochs=epochs,
        device=device,
        seed=seed,
        callbacks=[checkpoints, EarlyStopping(patience=5)],
    )
    print(f"training on {trainer.device} for up to {epochs} epochs")
    trainer.fit(data.train, data.val, batch_size=32)

    assert data.test is not None
    report = trainer.test(data.test, ckpt="best")
    print(f"\ntest set, best checkpoint ({trainer.best_checkpoint}):\n{report}")
    report_path = report.to_json(output / "test_report.json")

    predictor = Predictor.from_checkpoint(checkpoints.best_model_path or "", device=device)
    samples = [data.test[i] for i in range(8)]
    images = [image for image, _ in samples]
    truths = [data.classes[label] for _, label in samples]
    predictions = predictor.predict(images, top_k=3)
    assert isinstance(predictions, list)
    print("\npredictions of the saved checkpoint on the first 8 test digits:")
    for prediction, truth in zip(predictions, truths, strict=True):
        mark = "ok   " if prediction.name == truth else "WRONG"
        print(f"  {mark} true {truth}  predicted {prediction}")

    outputs = [checkpoints.best_model_path, checkpoints.last_model_path, report_path]
    grid = _try_plot(predictor, data.test, output / "predictions.png")
    if grid is not None:
        outputs.append(grid)
    print(f"\ntest accuracy {report.accuracy:.2%} in {time.monotonic() - started:.1f}s")
    print("outputs:")
    for path in outputs:
        print(f"  {Path(str(path)).resolve()}")
    return report.accuracy


def _try_plot(predictor: object, dataset: object, path: Path) -> Path | None:
    try:
        predictor.plot_predictions(dataset, n=20, path=str(path))  # type: ignore[attr-defined]
    except VisionKitError as error:  # matplotlib is an optional extra
        print(f"(no prediction plot: {error})")
        return None
    return path


def _predict(checkpoint: str, images: Sequence[str], top_k: int, device: str) -> None:
    from visionkit.predict import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    results = predictor.predict(list(images), top_k=top_k)
    for result in results if isinstance(results, list) else [results]:
        print(result)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"visionkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train and test an MLP on the bundled MNIST sample")
    demo.add_argument("--output-dir", default="visionkit-demo", help="where outputs go")
    demo.add_argument("--epochs", type=int, default=20)
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    demo.add_argument("--seed", type=int, default=0)
    predict = commands.add_parser("predict", help="predict images with a checkpoint")
    predict.add_argument("checkpoint")
    predict.add_argument("images", nargs="+", help="image files or folders")
    predict.add_argument("--top-k", type=int, default=1)
    predict.add_argument("--device", default="auto")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visionkit`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            run_demo(args.output_dir, epochs=args.epochs, device=args.device, seed=args.seed)
        else:
            _predict(args.checkpoint, args.images, args.top_k, args.device)
    except VisionKitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
