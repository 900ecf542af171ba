"""Command-line options shared by the workflow examples."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence


def parse_example_args(
    description: str | None,
    *,
    epochs: int,
    argv: Sequence[str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> argparse.Namespace:
    """Parse ``--data-root --epochs --device --output-dir --smoke`` for an example script.

    ``extra`` adds options of the script's own, ``{"--weights": "help text"}``: strings
    that default to ``None``.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", default=None, help="folder with the data set files")
    parser.add_argument("--epochs", type=int, default=epochs, help="training epochs")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--output-dir", default="outputs", help="checkpoints, reports, plots")
    parser.add_argument("--smoke", action="store_true", help="a few batches, for a quick check")
    for flag, text in (extra or {}).items():
        parser.add_argument(flag, default=None, help=text)
    return parser.parse_args(argv)
