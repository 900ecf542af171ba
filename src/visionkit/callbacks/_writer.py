"""One background thread that writes checkpoint files in order, for ``ModelCheckpoint``."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["BackgroundWriter"]


class BackgroundWriter:
    """Runs jobs one at a time on a background thread, in the order they were given.

    At most one job is in progress: `submit` first waits for the one before, so a slow
    disk slows training down instead of piling up copies of the weights in memory. A
    job's exception is raised on the calling thread by the next `wait`, `submit` or
    `close`. The thread starts with the first job and ends at `close`.
    """

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._job: Future[None] | None = None

    def submit(self, job: Callable[[], None]) -> None:
        """Wait for the job in progress (raising its error), then start ``job``."""
        self.wait()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="visionkit-checkpoint")
        self._job = self._executor.submit(job)

    def wait(self) -> None:
        """Return once the job in progress has finished; raise its exception if it failed.

        An interruption while waiting (a second Ctrl-C) leaves the job to be waited for
        again; a failed job is reported once.
        """
        job = self._job
        if job is None:
            return
        try:
            job.result()
        finally:
            if job.done():
                self._job = None

    def close(self) -> None:
        """`wait`, then end the thread (a later `submit` starts a new one)."""
        try:
            self.wait()
        finally:
            if self._executor is not None and self._job is None:
                self._executor.shutdown(wait=True)
                self._executor = None
