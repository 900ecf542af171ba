"""``ModelCheckpoint``: keep the best and the last checkpoints of a run, written atomically."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionkit._checks import (
    check_bool,
    check_int,
    check_name_template,
    check_optional_int,
    check_path,
)
from visionkit.callbacks._writer import BackgroundWriter
from visionkit.callbacks.base import Batch, Mode, MonitorCallback, StepOutput
from visionkit.exceptions import ConfigurationError
from visionkit.predict import checkpoint as checkpoint_files
from visionkit.predict.checkpoint import check_checkpoint, remove_stale_temporaries, snapshot

if TYPE_CHECKING:
    from visionkit.training.trainer import Trainer

__all__ = ["ModelCheckpoint"]

_COUNTS = frozenset({"epoch", "step", "global_step"})


class ModelCheckpoint(MonitorCallback):
    """Save a checkpoint whenever the monitored metric improves, and the last one.

    The W1 tutorial saves "whenever validation loss decreases": that is
    ``ModelCheckpoint("checkpoints/", monitor="val_loss")``. Files are written atomically
    (temporary file, fsync, ``os.replace``), so an interrupted run never leaves a broken
    checkpoint behind, and each holds what [`Predictor`][visionkit.Predictor] needs to rebuild
    the model.

    By default the files are written on a background thread while training goes on: the
    training thread checks the weights (a NaN or infinite weight is refused before anything
    is written), copies the checkpoint's tensors and continues; the thread serialises,
    fsyncs and renames, one checkpoint after the other, and removes a file that fell out of
    the top k only once the file that replaced it is written. At most one checkpoint is
    being written at a time (the next one waits for it), so memory holds at most one extra
    copy of the weights and optimizer state. When an epoch saves both a best file and
    ``last.ckpt``, the checkpoint is serialised once and ``last.ckpt`` is a hard link to
    the best file (a copy where the file system has no hard links). A failed write (disk
    full, read-only folder) raises its [`CheckpointError`][visionkit.CheckpointError] at
    the next checkpoint or at the end of ``fit``, with the previous files intact and
    ``best_model_path`` and ``last_model_path`` pointing at them. ``fit`` returns, and a
    preempted run exits, only once every file is written. ``async_write=False`` writes on
    the training thread.

    Args:
        dirpath: Folder for the files; ``None`` uses the trainer's run folder
            (``<default_root_dir>/version_N/checkpoints``).
        monitor: Metric to rank checkpoints by; ``None`` uses the trainer's ``monitor``
            (``val_loss`` with validation data, else ``train_loss``).
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the metric name).
        min_delta: Smallest change that counts as an improvement.
        save_top_k: How many best checkpoints to keep: the files of the ``k`` best scores
            seen, ranked by the monitored value (on equal values the earlier epoch ranks
            first, as in Lightning); ``0`` keeps none (only ``last.ckpt`` with
            ``save_last``), ``-1`` keeps the file of every epoch with a finite score. A NaN
            or infinite score has no rank: it is never saved as a best checkpoint, never
            takes the place of a kept one and never becomes ``best`` or
            ``best_model_path`` (``last.ckpt`` is still written).
        save_last: Also write ``last.ckpt`` (for resuming) at the end of every epoch this
            callback considers (every ``every_n_epochs``-th), and mid-epoch with
            ``every_n_train_steps``; it always holds the latest of those points. Without
            it, ``last_model_path`` is the best checkpoint.
        filename: Name template of the best files, formatted with the epoch's metrics,
            e.g. ``"epoch{epoch:03.0f}-{val_loss:.4f}"`` (``epoch`` and ``step`` are
            integers, so ``"{epoch:02d}"`` works as in Lightning); default ``"best"`` when
            ``save_top_k == 1``, else ``"epoch{epoch:03.0f}-{<monitor>:.4f}"``. A plain
            name: folders go in ``dirpath``.
        every_n_epochs: Consider saving (best and ``last.ckpt``) only at the end of epochs
            ``N - 1``, ``2N - 1``, ... (counting from 0); the other epochs write nothing.
        every_n_train_steps: Also write ``last.ckpt`` every N optimizer steps, in the middle
            of an epoch, so a run killed mid-epoch resumes from at most N steps back, exactly
            where it was (data order, RNG states and running metrics included). With
            ``async_write``, a process killed outright while that checkpoint is still being
            written resumes from the one before.
        verbose: Print a line when a best checkpoint is saved.
        async_write: Write the files on a background thread (see above); ``False`` writes
            each one before training goes on.

    Raises:
        ConfigurationError: if a count is not an integer in its range (``1.5``, ``True``
            and NaN included), ``dirpath`` is not a path, or ``filename`` is not a format
            template of a plain file name (``""``, ``"a/{epoch}"``, ``"/abs"``, ``"{epoch"``).

    Examples:
        >>> ModelCheckpoint("checkpoints/", monitor="val_accuracy", save_top_k=3).mode
        'max'
    """

    def __init__(
        self,
        dirpath: str | os.PathLike[str] | None = None,
        *,
        monitor: str | None = None,
        mode: Mode = "auto",
        min_delta: float = 0.0,
        save_top_k: int = 1,
        save_last: bool = True,
        filename: str | None = None,
        every_n_epochs: int = 1,
        every_n_train_steps: int | None = None,
        verbose: bool = False,
        async_write: bool = True,
    ) -> None:
        super().__init__(monitor or "val_loss", mode=mode, min_delta=min_delta)
        save_top_k = check_int(
            "save_top_k",
            save_top_k,
            least=-1,
            hint="pass how many best checkpoints to keep (0 keeps none, -1 all)",
        )
        every_n_epochs = check_int(
            "every_n_epochs", every_n_epochs, least=1, hint="pass 1 to consider every epoch"
        )
        every_n_train_steps = check_optional_int(
            "every_n_train_steps",
            every_n_train_steps,
            least=1,
            hint="pass a whole number of steps, or None to save at epoch ends only",
        )
        if filename is not None:
            filename = check_name_template(
                "filename", filename, example="epoch{epoch:03.0f}-{val_loss:.4f}", folder="dirpath"
            )
        save_last = check_bool("save_last", save_last)
        verbose = check_bool("verbose", verbose)
        self._monitor_given = monitor is not None
        self._mode_given = mode
        self.dirpath = check_path("dirpath", dirpath) if dirpath is not None else None
        self._dirpath_given = dirpath is not None
        self.save_top_k = save_top_k
        self.save_last = save_last
        self.filename = filename
        self.every_n_epochs = every_n_epochs
        self.every_n_train_steps = every_n_train_steps
        self.verbose = verbose
        self.async_write = check_bool("async_write", async_write)
        self._writer = BackgroundWriter()
        self._on_disk: dict[str, Any] = {}  # the bookkeeping of the files written so far
        self._saved_at_step = -1
        self.best_model_path: Path | None = None
        self.last_model_path: Path | None = None
        self.best_k_models: dict[str, float] = {}

    def setup(self, trainer: Trainer, *, default_monitor: str | None, root: Path) -> None:
        """Fill in the folder and the monitor from the trainer (called by ``fit``)."""
        if not self._monitor_given and default_monitor is not None:
            super().__init__(default_monitor, mode=self._mode_given, min_delta=self.min_delta)
            self.best_model_path, self.best_k_models = None, {}
        if self.dirpath is None:
            self.dirpath = root / "checkpoints"
        if trainer.is_global_zero:
            remove_stale_temporaries(self.dirpath)  # left by a killed run

    def on_train_batch_end(self, trainer: Trainer, batch: Batch, outputs: StepOutput) -> None:
        """Write ``last.ckpt`` mid-epoch every ``every_n_train_steps`` optimizer steps."""
        every = self.every_n_train_steps
        step = trainer.global_step
        if every is None or not step or step % every or step == self._saved_at_step:
            return
        if trainer.batch_in_epoch >= trainer.num_train_batches:
            return  # the epoch is over: on_epoch_end writes the checkpoint after validation
        self._saved_at_step = step
        if trainer.is_global_zero:
            self._start_save()
            self.last_model_path = self._folder() / "last.ckpt"
            self._save(trainer, [self.last_model_path], None)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Save the last checkpoint and, if the monitored value ranks in the top k, a best one."""
        if not trainer.is_global_zero or (epoch + 1) % self.every_n_epochs:
            return
        self._start_save()
        value = self.current(metrics)
        paths: list[Path] = []
        removed: list[str] = []
        best_saved = False
        if self.save_top_k != 0 and math.isfinite(value) and self._qualifies(value):
            path = self._best_path(metrics)
            self.best_k_models.pop(str(path), None)  # same name again: now the latest save
            self.best_k_models[str(path)] = value
            removed = self._prune()  # removed once the new file is written
            self._update_best()
            paths.append(path)
            best_saved = True
        if self.save_last:
            self.last_model_path = self._folder() / "last.ckpt"
            paths.append(self.last_model_path)
        elif self.best_model_path is not None:
            self.last_model_path = self.best_model_path
        # one checkpoint, written once: the best file and last.ckpt hold the same bytes
        self._save(trainer, list(dict.fromkeys(paths)), metrics, removed)
        if self.verbose and best_saved:
            ranks = "improved to" if self.best_model_path == paths[0] else "ranks in the top k at"
            print(f"{self.monitor} {ranks} {value:.6f}: saved {paths[0]}")

    def on_fit_end(self, trainer: Trainer) -> None:
        """Wait until every file is written; raise the error of a write that failed."""
        self._finish(close=True)

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        """Wait until every file is written; a failed write is noted on ``exception``."""
        try:
            self._finish(close=True)
        except Exception as error:  # the run already fails with ``exception``
            if error is not exception:
                note = f"visionkit: a checkpoint write also failed: {error}"
                if hasattr(exception, "add_note"):  # Python 3.11+
                    exception.add_note(note)
                else:
                    print(note, file=sys.stderr)

    def wait_for_writes(self) -> None:
        """Return once every checkpoint file this callback started writing is on disk.

        ``fit`` calls it before it returns; call it to read the files during training.

        Raises:
            CheckpointError: if a background write failed (disk full, folder not
                writable, ...); the files written before it are intact, and
                ``best_model_path`` and ``last_model_path`` point at them again.
        """
        self._finish(close=False)

    def _finish(self, *, close: bool) -> None:
        try:
            self._writer.close() if close else self._writer.wait()
        except Exception:
            self._restore_bookkeeping(self._on_disk)  # point at the files really written
            raise

    def _start_save(self) -> None:
        """Let the previous save finish (or raise its error); note what is on disk."""
        self.wait_for_writes()
        self._on_disk = self._bookkeeping()

    def _save(
        self,
        trainer: Trainer,
        paths: list[Path],
        metrics: dict[str, float] | None,
        removed: Sequence[str] = (),
    ) -> None:
        """Save the trainer's checkpoint as it is now under each of ``paths``, then remove
        the ``removed`` files that fell out of the top k.

        The checkpoint is built and serialised once, into the first path; the others are
        hard links to it (copies where the file system has none). It holds the bookkeeping
        of this save, so resuming from any of the files knows about all of them. Without
        ``async_write`` it is written now; else its tensors are copied and the background
        thread writes it. If it is refused (a NaN weight), the bookkeeping points at the
        files on disk again.
        """
        if not paths:
            return
        try:
            if not self.async_write:
                trainer.save_checkpoint(paths[0], metrics=metrics)
                self._publish(paths, removed)
                return
            from visionkit.training._saving import build_checkpoint

            trainer._flush_finite_checks()
            checkpoint = build_checkpoint(trainer, paths[0], metrics)
            check_checkpoint(checkpoint, paths[0])  # refused here, before anything is written
        except BaseException:
            self._restore_bookkeeping(self._on_disk)
            raise
        copy, bookkeeping = snapshot(checkpoint), self._bookkeeping()

        def write() -> None:  # on the writer's thread
            checkpoint_files.atomic_save(copy, paths[0])
            self._publish(paths, removed)
            self._on_disk = bookkeeping  # where things stand now that it is on disk

        self._writer.submit(write)

    def _publish(self, paths: Sequence[Path], removed: Sequence[str]) -> None:
        """Give the written file ``paths[0]`` its other names, then remove the files it
        replaced in the top k."""
        for name in paths[1:]:
            checkpoint_files.atomic_link(paths[0], name)
        for old in removed:
            Path(old).unlink(missing_ok=True)

    def _bookkeeping(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_model_path": self.best_model_path,
            "last_model_path": self.last_model_path,
            "best_k_models": dict(self.best_k_models),
        }

    def _restore_bookkeeping(self, state: dict[str, Any]) -> None:
        if state:
            self.best, self.best_k_models = state["best"], dict(state["best_k_models"])
            self.best_model_path = state["best_model_path"]
            self.last_model_path = state["last_model_path"]

    def _qualifies(self, value: float) -> bool:
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        worst = self._ranked()[-1]
        return self._better(value, self.best_k_models[worst])

    def _better(self, a: float, b: float) -> bool:
        return a < b - self.min_delta if self.mode == "min" else a > b + self.min_delta

    def _ranked(self) -> list[str]:
        """The kept paths, best first; among equal scores the earlier save ranks first."""
        sign = 1.0 if self.mode == "min" else -1.0
        # a stable sort keeps the save order (oldest first) among equal scores
        return sorted(self.best_k_models, key=lambda path: sign * self.best_k_models[path])

    def _prune(self) -> list[str]:
        """Drop the files beyond the top k from the ranking; return them for deletion."""
        limit, removed = self.save_top_k, []
        while limit > 0 and len(self.best_k_models) > limit:
            worst = self._ranked()[-1]
            del self.best_k_models[worst]
            removed.append(worst)
        return removed

    def _update_best(self) -> None:
        if self.best_k_models:
            best = self._ranked()[0]
            self.best_model_path, self.best = Path(best), self.best_k_models[best]

    def _folder(self) -> Path:
        if self.dirpath is None:
            raise ConfigurationError("ModelCheckpoint has no folder yet: it is set up by fit()")
        return self.dirpath

    def _best_path(self, metrics: dict[str, float]) -> Path:
        template = self.filename
        if template is None:
            safe = self.monitor.replace("/", "_")
            template = (
                "best"
                if self.save_top_k == 1
                else f"epoch{{epoch:03.0f}}-{safe}{{{self.monitor}:.4f}}"
            )
        # the epoch and step are counts: "{epoch:02d}" (Lightning's style) must work
        values = {
            k: int(v) if k in _COUNTS and float(v).is_integer() else v for k, v in metrics.items()
        }
        try:
            name = template.format(**values)
        except (KeyError, ValueError, IndexError) as error:
            raise ConfigurationError(
                f"cannot format checkpoint filename {template!r} with this epoch's metrics "
                f"{sorted(metrics)}: {error}"
            ) from error
        return self._folder() / f"{name}.ckpt"

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_model_path": str(self.best_model_path) if self.best_model_path else None,
            "last_model_path": str(self.last_model_path) if self.last_model_path else None,
            "best_k_models": dict(self.best_k_models),
            "dirpath": str(self.dirpath) if self.dirpath else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_model_path = Path(state["best_model_path"]) if state["best_model_path"] else None
        self.last_model_path = Path(state["last_model_path"]) if state["last_model_path"] else None
        # a score that is not finite has no rank (files saved before it was refused stay)
        self.best_k_models = {
            path: float(score)
            for path, score in state["best_k_models"].items()
            if math.isfinite(float(score))
        }
        self._update_best()
        if state.get("dirpath") and not self._dirpath_given:
            self.dirpath = Path(state["dirpath"])  # a resumed run keeps writing to its folder
