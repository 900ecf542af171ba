"""Command-line options shared by the workflow examples."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def parse_example_args(
    description: str | None, *, epochs: int, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """Parse ``--data-root --epochs --device --output-dir --smoke`` for an example script."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-root", default=None, help="folder with the data set files")
    parser.add_argument("--epochs", type=int, default=epochs, help="training epochs")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--output-dir", default="outputs", help="checkpoints, reports, plots")
    parser.add_argument("--smoke", action="store_true", help="a few batches, for a quick check")
    return parser.parse_args(argv)
