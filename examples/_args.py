"""Command-line options shared by the workflow examples, and the folder each run writes to."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

from visionkit._argtypes import device_name, positive_int
from visionkit.training._runs import claim_run_dir as _claim

OUTPUTS = Path("outputs")


def parse_example_args(
    description: str | None,
    *,
    epochs: int,
    script: str,
    argv: Sequence[str] | None = None,
    data: str,
    extra: Mapping[str, str] | None = None,
) -> argparse.Namespace:
    """Parse ``--data-root --epochs --device --output-dir --overwrite --smoke``.

    ``args.output_dir`` is the run's own folder, already created: a new
    ``outputs/<script name>/run_N`` by default, so a second run never replaces the first
    one's checkpoints. An ``--output-dir`` you name is used as it is when it is new or
    empty; one that holds files (an earlier run) is refused unless ``--overwrite`` is given.

    ``data`` says what the script reads without ``--data-root``. ``extra`` adds options of
    the script's own, ``{"--weights": "help text (default ...)"}``: strings that default to
    ``None``. A bad ``--epochs`` or ``--device`` is refused by the parser, naming the flag,
    before any data is read.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-root", default=None, help=f"folder with the data set files (default: {data})"
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=epochs, help=f"training epochs (default {epochs})"
    )
    parser.add_argument(
        "--device",
        type=device_name,
        default="auto",
        help="auto, cpu, cuda, cuda:N or mps (default auto: CUDA, then MPS, then the CPU)",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help=f"where this run writes checkpoints, reports and plots (default: a new "
        f"{OUTPUTS / Path(script).stem / 'run_N'} for every run)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an --output-dir that already holds files, replacing them "
        "(default: refuse)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few batches, for a quick check (default: off)"
    )
    for flag, text in (extra or {}).items():
        parser.add_argument(flag, default=None, help=text)
    args = parser.parse_args(argv)
    if args.output_dir is None:
        args.output_dir = claim_run_dir(OUTPUTS / Path(script).stem)
    else:
        args.output_dir = checked_output_dir(Path(args.output_dir), overwrite=args.overwrite)
    return args


def claim_run_dir(root: Path) -> Path:
    """Create and return the first free ``root/run_N``, as the demo does (one per run)."""
    return _claim(root, prefix="run_")


def checked_output_dir(path: Path, *, overwrite: bool) -> Path:
    """``path``, created; refused if it already holds files and ``overwrite`` is false."""
    if path.exists() and not path.is_dir():
        raise SystemExit(f"error: --output-dir {path} is a file, not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise SystemExit(
            f"error: --output-dir {path} already holds an earlier run's files; pass "
            "--overwrite to replace them, choose another folder, or leave out --output-dir "
            f"to get a new {OUTPUTS}/<example>/run_N"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path
