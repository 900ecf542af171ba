"""``CSVLogger``: one row of metrics per epoch in a CSV file."""

from __future__ import annotations

import csv
import os
from typing import TYPE_CHECKING

from visionkit._checks import check_file_name, check_path
from visionkit.callbacks.base import Callback

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["CSVLogger"]


class CSVLogger(Callback):
    """Write every epoch's metrics to ``<save_dir>/<filename>``, one row per epoch.

    The columns are every metric logged so far, in first-seen order; when a new metric
    appears the file is rewritten with the wider header (earlier rows get empty cells). The
    file always mirrors the trainer's [`History`][visionkit.History]: a run resumed
    from a checkpoint rewrites it from the restored history first, so epochs that ran after
    the checkpoint and before a crash are not duplicated.

    Args:
        save_dir: Folder of the file (created if needed).
        filename: Name of the file, without a folder part.

    Raises:
        ConfigurationError: if ``save_dir`` is not a path or ``filename`` is not a plain
            file name (``"a/b.csv"`` and absolute paths would write outside ``save_dir``).

    Examples:
        >>> logger = CSVLogger("logs/")
        >>> logger.path.name
        'metrics.csv'
    """

    def __init__(self, save_dir: str | os.PathLike[str], *, filename: str = "metrics.csv") -> None:
        folder = check_path("save_dir", save_dir)
        filename = check_file_name("filename", filename, example="metrics.csv", folder="save_dir")
        self.path = folder / filename
        self._columns: list[str] = []

    def on_fit_start(self, trainer: Trainer) -> None:
        """Write the header and the rows of the epochs already in the history (resume)."""
        if trainer.is_global_zero:
            self._rewrite(trainer.history.epochs)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Append this epoch's row."""
        if not trainer.is_global_zero:
            return
        if any(name not in self._columns for name in metrics):
            self._rewrite(trainer.history.epochs)
            return
        with self.path.open("a", newline="", encoding="utf-8") as stream:
            csv.DictWriter(stream, self._columns).writerow(metrics)

    def _rewrite(self, rows: list[dict[str, float]]) -> None:
        columns: dict[str, None] = dict.fromkeys(self._columns)
        for row in rows:
            columns.update(dict.fromkeys(row))
        self._columns = list(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, self._columns)
            writer.writeheader()
            writer.writerows(rows)
