"""Contenders timed side by side: started together, one process each, on the same CPU core.

Runs made one after another meet the machine at different moments, and a shared virtual
machine's speed changes by tens of percent from one second to the next, which buries a
difference of a few percent however many rounds are run. Run at the same time on one core,
the contenders are alternated by the kernel's scheduler every few milliseconds, so every
change of speed reaches all of them alike.

Each contender is a fresh process (with a memory layout of its own, as a user's run has): it
builds its data and model, warms up, collects garbage (a fresh process's first full
collection, of everything its imports left, would otherwise land in one timed section),
waits for the others at a barrier, then runs its timed section. Its figure is the CPU time
of that section (``time.process_time``, every thread of the process), which the scheduler's
sharing of the core does not change; wall time means nothing here. Every round starts a new
set of processes, the order of starting rotated. The ``trainer`` and ``predict`` benchmarks
check their targets on these figures, and each reports the hand loop against a second copy
of itself: the noise of the method.

Each contender also fixes glibc's heap thresholds (``mallopt``: blocks under 32 MiB come from
the heap, and freed memory stays with the process up to 1 GiB) unless it asks for the
default heap. By default glibc returns freed memory to the system and maps fresh pages for
large blocks, so a convolutional net's step pays page faults for its activations, and how
many depends on the allocation history of the process: the same loop's CPU time then
differs from process to process by more than the differences measured here. A contender
with ``heap="default"`` shows what that costs.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier
from typing import Any, Literal

import bench_trainer
import torch
from _common import AGAIN, DEFAULT_HEAP, Peak, rotated

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
FIXED_HEAP = {M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 2**30}
BARRIER_TIMEOUT_S = 1800.0  # a contender that never reaches the barrier ends the round
POLL_S = 0.05  # how often the parent looks for results
WARMUP_SIZES = (640, 160)  # training and validation digits of a training loop's warm-up
Timing = tuple[float, float]  # (wall s, CPU s) of the timed section


@dataclass(frozen=True)
class Contender:
    """A module-level function that returns ``(wall, cpu)`` seconds (or a dict of figures
    with the CPU seconds under ``"cpu"``), and its arguments.

    ``run(*args)`` is the timed call; ``run(*warmup)`` warms up first (``args`` when
    ``warmup`` is ``None``). Both must pickle: they travel to a spawned process. ``heap``
    is ``"fixed"`` (`FIXED_HEAP`) or ``"default"`` (glibc's own thresholds).
    """

    run: Callable[..., Timing | dict[str, Any]]
    args: tuple[Any, ...]
    warmup: tuple[Any, ...] | None = None
    heap: Literal["fixed", "default"] = "fixed"


def training_contenders(
    loops: dict[str, Callable[..., Timing]],
    workload: str,
    sizes: tuple[int, int],
    epochs: int,
    *,
    base: str,
    default_heap: tuple[str, ...] = (),
) -> dict[str, Contender]:
    """Each of ``loops`` (``loop(work, train, val, epochs)``) on ``workload``, a second copy
    of ``loops[base]`` named `AGAIN`, and each loop named in ``default_heap`` once more with
    glibc's default heap (named ``"<loop>, default heap"``). Each warms up for one epoch on
    `WARMUP_SIZES`."""
    Heap = Literal["fixed", "default"]
    named: list[tuple[str, Callable[..., Timing], Heap]]
    named = [(name, loop, "fixed") for name, loop in loops.items()]
    named.append((AGAIN, loops[base], "fixed"))
    named += [(f"{name}{DEFAULT_HEAP}", loops[name], "default") for name in default_heap]
    return {
        name: Contender(
            bench_trainer.run_loop,
            (loop, workload, sizes, epochs),
            warmup=(loop, workload, WARMUP_SIZES, 1),
            heap=heap,
        )
        for name, loop, heap in named
    }


def fix_heap() -> bool:
    """Set `FIXED_HEAP` in this process; ``False`` where the C library has no ``mallopt``."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return all(mallopt(option, value) == 1 for option, value in FIXED_HEAP.items())


def cores(threads: int) -> set[int] | None:
    """The ``threads`` highest CPU cores this process may use (``None`` off Linux)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return set(allowed[-threads:])


def side_by_side(
    contenders: dict[str, Contender], rounds: int, threads: int
) -> dict[str, list[dict[str, Any]]]:
    """Each contender's ``{"cpu": s, ...memory columns}`` per round, rounds in order (with
    the other figures of a contender that returns a dict).

    Raises:
        RuntimeError: if a contender fails; its traceback is in the message.
    """
    context = multiprocessing.get_context("spawn")
    pinned = cores(threads)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    for round_index in range(rounds):
        order = rotated(list(contenders), round_index)
        barrier = context.Barrier(len(order), timeout=BARRIER_TIMEOUT_S)
        started = []
        for name in order:
            receive, send = context.Pipe(duplex=False)
            process = context.Process(
                target=_contend,
                args=(contenders[name], pinned, threads, barrier, send),
                name=f"side-by-side {name}",
            )
            process.start()
            send.close()
            started.append((name, process, receive))
        failures = []
        for name, exit_code, status, payload in _outcomes(started, barrier):
            if status == "ok":
                runs[name].append(payload)
            elif status == "error":
                failures.append(f"{name} (exit code {exit_code}): {payload}")
        if failures:
            raise RuntimeError(f"round {round_index} failed: " + "\n".join(failures))
    return runs


def _outcomes(
    started: Sequence[tuple[str, BaseProcess, Connection]], barrier: Barrier
) -> list[tuple[str, int | None, str, Any]]:
    """Each started contender's name, exit code, status and payload, once all have ended.

    A contender that dies without a result (killed, out of memory) aborts the barrier, so
    the others stop waiting for it.
    """
    outcomes: dict[str, tuple[str, Any]] = {}
    while len(outcomes) < len(started):
        for name, process, receive in started:
            if name in outcomes:
                continue
            if receive.poll() or not process.is_alive():
                try:
                    outcomes[name] = receive.recv()
                except EOFError:  # closed with nothing sent: the process died
                    outcomes[name] = ("error", "it exited without a result")
                    barrier.abort()
        time.sleep(POLL_S)
    for _, process, _ in started:
        process.join()
    return [(name, process.exitcode, *outcomes[name]) for name, process, _ in started]


def _contend(
    contender: Contender, pinned: set[int] | None, threads: int, barrier: Barrier, send: Connection
) -> None:
    """In the spawned process: pin, warm up, wait for the others, run timed, report."""
    try:
        if pinned is not None:
            os.sched_setaffinity(0, pinned)
        if contender.heap == "fixed":
            fix_heap()
        torch.set_num_threads(threads)
        warmup = contender.args if contender.warmup is None else contender.warmup
        contender.run(*warmup)
        gc.collect()  # the first full collection of a fresh process is not the contender's
        barrier.wait()
        with Peak() as peak:
            result = contender.run(*contender.args)
        figures = dict(result) if isinstance(result, dict) else {"cpu": result[1]}
        send.send(("ok", {**figures, **peak.columns()}))
    except threading.BrokenBarrierError:  # another contender failed
        send.send(("released", "another contender failed"))
    except BaseException:  # reported to the parent, which raises it
        barrier.abort()  # the others stop waiting
        send.send(("error", traceback.format_exc()))
    finally:
        send.close()
