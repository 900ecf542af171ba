"""Predicting many image files: in batches, bad files reported and skipped, rows written.

What ``python -m visionkit predict`` runs; the command line itself lives in
``visionkit.__main__``.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import torch

from visionkit._images import image_files
from visionkit.exceptions import DataError
from visionkit.predict.predictor import Prediction, Predictor

__all__ = ["Progress", "RowWriter", "Skipped", "expand_inputs", "predict_files"]

_DECIMALS = 6  # probabilities in the output: enough to rank, short enough to read
_CLEAR_LINE = "\r\033[K"  # back to the start of the terminal line, and erase it


@dataclass(frozen=True)
class Skipped:
    """An input that has no prediction, and why."""

    path: str
    reason: str


def expand_inputs(paths: Sequence[str]) -> tuple[list[Path], list[Skipped]]:
    """Every image file named or found (recursively, sorted) in ``paths``; and the misses.

    A file named directly is read whatever its suffix; in a folder, only files with an
    image suffix count. A missing path, or a folder without images, is a miss.
    """
    files: list[Path] = []
    skipped: list[Skipped] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            try:
                files += image_files(path)
            except DataError as error:
                skipped.append(Skipped(name, str(error)))
        elif path.exists():
            files.append(path)
        else:
            skipped.append(Skipped(name, "no such file or folder"))
    return files, skipped


def predict_files(
    predictor: Predictor,
    files: Sequence[Path],
    *,
    top_k: int,
    batch_size: int,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    tta: bool = False,
) -> Iterator[Prediction | Skipped]:
    """The prediction of each file, in order; a `Skipped` for a file that cannot be read.

    Files are decoded and preprocessed one by one (so one bad file costs only itself), by
    ``workers`` threads (Pillow decodes without holding the GIL), then predicted
    ``batch_size`` at a time. ``progress`` is called with the number of files done after
    each batch. ``tta`` averages each image's probabilities with its mirror image's (see
    [`Predictor.predict`][visionkit.Predictor.predict]).
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            read = list(pool.map(lambda path: _read(predictor, path), chunk))
            yield from (item for item in read if isinstance(item, Skipped))
            ready = [(item, str(path)) for item, path in zip(read, chunk, strict=True)]
            inputs = [(item, source) for item, source in ready if isinstance(item, torch.Tensor)]
            if inputs:
                images = [item for item, _ in inputs]
                predictions = predictor.predict(images, top_k=top_k, batch_size=batch_size, tta=tta)
                for prediction, (_, source) in zip(predictions, inputs, strict=True):
                    yield replace(prediction, source=source)
            if progress is not None:
                progress(start + len(chunk))


def _read(predictor: Predictor, path: Path) -> torch.Tensor | Skipped:
    try:
        return predictor.to_input(path)
    except (DataError, OSError) as error:
        return Skipped(str(path), str(error))


class RowWriter:
    """Predictions as CSV rows (``path,name_1,prob_1,...``, with a header) or JSON lines.

    Args:
        stream: Where the rows go.
        format: ``"csv"`` or ``"jsonl"``.
        top_k: Classes per row (the CSV header names that many).
    """

    def __init__(self, stream: TextIO, format: str, top_k: int) -> None:
        self.stream = stream
        self.format = format
        self.rows = 0
        self._csv = csv.writer(stream, lineterminator="\n") if format == "csv" else None
        if self._csv is not None:
            columns = [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("name", "prob")]
            self._csv.writerow(["path", *columns])

    def write(self, prediction: Prediction) -> None:
        """Write the row of one prediction."""
        probabilities = [round(p, _DECIMALS) for p in prediction.probabilities]
        if self._csv is not None:
            cells = [
                c
                for n, p in zip(prediction.names, probabilities, strict=True)
                for c in (n, f"{p:.{_DECIMALS}f}")
            ]
            self._csv.writerow([prediction.source, *cells])
        else:
            row = {
                "path": prediction.source,
                "indices": list(prediction.indices),
                "names": list(prediction.names),
                "probabilities": probabilities,
            }
            self.stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += 1


class Progress:
    """A progress line on a terminal (``stderr`` by default), redrawn at most 5 times a second.

    When the stream is not a terminal nothing is drawn until `finish`, which writes
    one summary line. `note` writes a message between progress lines.
    """

    def __init__(self, total: int, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self._tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self._start = self._last = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if not self._tty or (now - self._last < 0.2 and done < self.total):
            return
        self._last = now
        rate = done / max(now - self._start, 1e-9)
        left = (self.total - done) / max(rate, 1e-9)
        self.stream.write(
            f"\rpredicting {done}/{self.total} images ({done / max(self.total, 1):.0%})  "
            f"{rate:,.1f} images/s  ETA {_clock(left)}\033[K"
        )
        self.stream.flush()

    def note(self, message: str) -> None:
        """Write ``message`` on a line of its own (also when not ``enabled``)."""
        self.stream.write(f"{_CLEAR_LINE if self._tty else ''}{message}\n")
        self.stream.flush()

    def finish(self, predicted: int, skipped: int) -> None:
        """End the line and write how many images were predicted and skipped."""
        if not self.enabled:
            return
        elapsed = time.monotonic() - self._start
        end = _CLEAR_LINE if self._tty else ""
        note = f", skipped {skipped} (listed above)" if skipped else ""
        self.stream.write(f"{end}predicted {predicted} images in {elapsed:.1f}s{note}\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
