"""Command line: ``python -m visionkit demo`` and ``python -m visionkit predict``.

``demo`` runs workflow W1 (an MNIST MLP) end to end on the real MNIST sample that ships
inside visionkit, so it needs no download. ``predict`` classifies image files and folders
with a checkpoint (or an exported model) and writes one CSV or JSON row per image.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from visionkit._argtypes import device_name, positive_int
from visionkit._seed import seed_everything
from visionkit._threads import available_cpus
from visionkit._version import __version__
from visionkit.exceptions import ConfigurationError, VisionKitError
from visionkit.predict import Prediction, Predictor, load_checkpoint
from visionkit.predict._batch import Progress, RowWriter, expand_inputs, predict_files
from visionkit.predict.checkpoint import atomic_write

__all__ = ["main", "run_demo"]


def run_demo(
    output_dir: str | Path = "visionkit-demo",
    *,
    epochs: int = 20,
    device: str = "auto",
    seed: int = 0,
) -> float:
    """Train W1's MLP on the bundled MNIST sample, test it, and predict with it.

    Writes the best and last checkpoints, the test report as JSON, and (when matplotlib is
    installed) a grid of test predictions into ``output_dir``.

    Returns:
        The test accuracy of the best checkpoint.
    """
    from visionkit.callbacks import EarlyStopping, ModelCheckpoint
    from visionkit.data import mnist_sample
    from visionkit.models import create_model
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
        print(f"  {_shown(Path(str(path)))}")
    return report.accuracy


def _shown(path: Path) -> Path:
    """``path`` relative to the working folder when it is inside it, else absolute."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path.resolve()


def _demo_dir(output_dir: str | None, *, overwrite: bool) -> Path:
    """The demo's output folder: a new ``visionkit-demo/run_N``, or the one asked for.

    A folder given with ``--output-dir`` that already holds files is refused unless
    ``--overwrite``, so a run never replaces an earlier run's checkpoints unasked.
    """
    if output_dir is not None:
        folder = Path(output_dir)
        if folder.is_dir() and any(folder.iterdir()) and not overwrite:
            raise ConfigurationError(
                f"--output-dir {folder} already holds files of an earlier run: pass "
                "--overwrite to write into it anyway, or leave --output-dir out to get a "
                "new visionkit-demo/run_N"
            )
        return folder
    from visionkit.training._runs import claim_run_dir

    return claim_run_dir(Path("visionkit-demo"), prefix="run_")


def _try_plot(predictor: object, dataset: object, path: Path) -> Path | None:
    try:
        predictor.plot_predictions(dataset, n=20, path=str(path))  # type: ignore[attr-defined]
    except VisionKitError as error:  # matplotlib is an optional extra
        print(f"(no prediction plot: {error})")
        return None
    return path


EXIT_OK, EXIT_ERROR, EXIT_SKIPPED = 0, 2, 3
"""Exit statuses: all done; an error (nothing written); some inputs skipped (the rest written)."""

_PREDICT_HELP = """\
Predict the class of every image file given, and of every image file found (recursively)
in the folders given. Writes one row per image: CSV "path,name_1,prob_1,...,name_k,prob_k"
with a header, or JSON lines ({"path", "indices", "names", "probabilities"}), most probable
class first. Files that cannot be read are listed on stderr with the reason and skipped.

exit status: 0 when every image was predicted, 3 when some inputs were skipped (the rows
of the others are written), 2 on an error (nothing is written)."""

_PREDICT_USAGE = """\
visionkit predict [options] CHECKPOINT PATH [PATH ...]
       visionkit predict [options] --model EXPORTED [CHECKPOINT] PATH [PATH ...]"""


def _predict(args: argparse.Namespace) -> int:
    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not args.overwrite:
        raise ConfigurationError(
            f"{output} already exists: pass --overwrite to replace it, or choose another --output"
        )
    predictor, paths = _load_predictor(args)
    if predictor.classes is not None and args.top_k > len(predictor.classes):
        raise ConfigurationError(
            f"--top-k {args.top_k} is more than the {len(predictor.classes)} classes of the "
            f"model: pass --top-k {len(predictor.classes)} or less"
        )
    files, skipped = expand_inputs(paths)
    progress = Progress(len(files), enabled=not args.quiet)
    for miss in skipped:
        progress.note(f"skipped {miss.path}: {miss.reason}")
    buffer = io.StringIO()
    writer = RowWriter(
        buffer if output is not None else sys.stdout, args.format or _format_of(output), args.top_k
    )
    for result in predict_files(
        predictor,
        files,
        top_k=args.top_k,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=progress,
        tta=args.tta,
    ):
        if isinstance(result, Prediction):
            writer.write(result)
        else:
            skipped.append(result)
            progress.note(f"skipped {result.path}: {result.reason}")
    progress.finish(writer.rows, len(skipped))
    if output is not None:
        _publish(output, buffer.getvalue(), overwrite=args.overwrite)
    return EXIT_SKIPPED if skipped else EXIT_OK


def _load_predictor(args: argparse.Namespace) -> tuple[Predictor, list[str]]:
    inputs = list(args.inputs)
    if args.model is None:
        if len(inputs) < 2:
            raise ConfigurationError(
                "expected a checkpoint and at least one image file or folder, e.g. "
                "visionkit predict best.ckpt photos/ (or --model model.onnx photos/)"
            )
        checkpoint = inputs.pop(0)
        return Predictor.from_checkpoint(checkpoint, device=args.device), inputs
    device = "cpu" if args.device == "auto" else args.device
    predictor = Predictor.from_exported(args.model, device=device)
    if Path(inputs[0]).suffix == ".ckpt":
        _check_same_classes(predictor, args.model, inputs.pop(0))
    if not inputs:
        raise ConfigurationError("expected at least one image file or folder after the model")
    return predictor, inputs


def _check_same_classes(predictor: Predictor, model: str, checkpoint: str) -> None:
    classes = load_checkpoint(checkpoint).get("classes")
    if classes != predictor.classes:
        raise ConfigurationError(
            f"the exported model {model} names its classes {_short(predictor.classes)} but "
            f"the checkpoint {checkpoint} names them {_short(classes)}: export that "
            "checkpoint again, or leave the checkpoint out"
        )


def _short(names: list[str] | None) -> str:
    if names is None:
        return "by index"
    return repr(names) if len(names) <= 5 else f"{names[:5]!r} (+{len(names) - 5} more)"


def _format_of(output: Path | None) -> str:
    suffix = output.suffix.lower() if output is not None else ""
    return "jsonl" if suffix in (".jsonl", ".json", ".ndjson") else "csv"


def _publish(output: Path, text: str, *, overwrite: bool) -> None:
    if output.exists() and not overwrite:  # made while the images were being predicted
        raise ConfigurationError(
            f"{output} appeared while predicting: pass --overwrite to replace it, or choose "
            "another --output"
        )
    atomic_write(output, lambda stream: stream.write(text.encode("utf-8")), kind="predictions")


def _default_workers() -> int:
    return min(8, available_cpus())  # the CPUs this process may use (quotas count)


_DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps (default auto: CUDA, then MPS, then the CPU)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"visionkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train and test an MLP on the bundled MNIST sample")
    demo.add_argument(
        "--output-dir",
        default=None,
        help="where outputs go (default: a new visionkit-demo/run_N for every run)",
    )
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an --output-dir that holds files (default: refuse)",
    )
    demo.add_argument(
        "--epochs", type=positive_int, default=20, help="training epochs (default 20)"
    )
    demo.add_argument("--device", type=device_name, default="auto", help=_DEVICE_HELP)
    demo.add_argument(
        "--seed", type=int, default=0, help="seed of the split and the weights (default 0)"
    )
    predict = commands.add_parser(
        "predict",
        help="predict image files and folders with a checkpoint or an exported model",
        description=_PREDICT_HELP,
        usage=_PREDICT_USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument(
        "inputs", nargs="+", metavar="PATH", help="the checkpoint, then image files or folders"
    )
    predict.add_argument(
        "--model",
        metavar="EXPORTED",
        help="run this exported model (.onnx with ONNX Runtime, .pt2, .pt) instead of the "
        "checkpoint's; class names and preprocessing come from its metadata. A checkpoint "
        "given too (a .ckpt file before the paths) must name the same classes (default: the "
        "checkpoint's own model)",
    )
    predict.add_argument(
        "--top-k", type=positive_int, default=1, help="classes per image (default 1)"
    )
    predict.add_argument(
        "--batch-size", type=positive_int, default=64, help="images per batch (default 64)"
    )
    predict.add_argument(
        "--workers",
        type=positive_int,
        default=_default_workers(),
        help=f"threads that decode images (default {_default_workers()}: the CPUs, at most 8)",
    )
    predict.add_argument(
        "--output",
        "-o",
        help="file to write (default: standard output); never replaced unless --overwrite is given",
    )
    predict.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        help="output format (default: jsonl for an --output ending in .jsonl, .json or .ndjson, "
        "else csv)",
    )
    predict.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output (default: refuse)"
    )
    predict.add_argument("--device", type=device_name, default="auto", help=_DEVICE_HELP)
    predict.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average each image's probabilities with those of its "
        "mirror image (default: off)",
    )
    predict.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress line and no summary on stderr (default: both shown)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visionkit`` command; returns the exit status."""
    parser = _parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()
        return EXIT_OK
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            output = _demo_dir(args.output_dir, overwrite=args.overwrite)
            run_demo(output, epochs=args.epochs, device=args.device, seed=args.seed)
            return EXIT_OK
        return _predict(args)
    except VisionKitError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
