"""Running the benchmarks: each in its own subprocess, its result read back from its output."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_data
import torch
import torchvision
from _accuracy import bench_accuracy
from _benchmarks import bench_data_path, bench_prediction, bench_training_loop
from _common import HAS_LIGHTNING, QUICK, SMOKE, Peak, Result, Sizes, device_name
from _compile_cpu import bench_compile
from _gpu import bench_gpu
from bench_features import bench_feature_cache

HERE = Path(__file__).resolve().parent
ENTRY_POINT = HERE / "run_all.py"
RESULTS = HERE / "results"
LOGS = Path(tempfile.gettempdir()) / "visionkit-bench-logs"
MARK = "RUN_ALL_RESULT "

BENCHMARKS: dict[str, Callable[[Sizes, int], Result]] = {
    "data": bench_data_path,
    "trainer": bench_training_loop,
    "predict": bench_prediction,
    "accuracy": bench_accuracy,
    "compile": bench_compile,
    "gpu": bench_gpu,
    "features": bench_feature_cache,
}


def machine(threads: int) -> dict[str, Any]:
    """The machine and software the benchmarks ran on."""
    cuda = torch.cuda.is_available()
    lightning = "not installed"
    if HAS_LIGHTNING:
        import lightning as L

        lightning = L.__version__
    return {
        "cpu": bench_data._cpu_name(),
        "cores": os.cpu_count(),
        "torch threads": threads,
        "load average (1 min) at start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning,
        "device": device_name(torch.device("cuda" if cuda else "cpu")),
    }


def run_child(name: str, args: argparse.Namespace) -> None:
    """In the child process: run benchmark ``name``, print its result after :data:`MARK`."""
    torch.set_num_threads(args.threads)
    sizes = sizes_of(args)
    with Peak() as peak:
        if name == "gpu":
            result = bench_gpu(sizes, args.threads, smoke=args.gpu_smoke)
        else:
            result = BENCHMARKS[name](sizes, args.threads)
    result["peak_rss_mb"] = peak.rss_mb
    result["peak_cuda_mb"] = peak.cuda_mb
    print(MARK + json.dumps(result), flush=True)


def sizes_of(args: argparse.Namespace) -> Sizes:
    """The problem sizes the command line asks for."""
    if args.gpu_smoke:
        return SMOKE
    sizes = QUICK if args.quick else Sizes()
    if args.devices:
        sizes = dataclasses.replace(sizes, accuracy_devices=tuple(args.devices))
    return sizes


def spawn(name: str, args: argparse.Namespace, log: Path) -> Result:
    """Run benchmark ``name`` in a child process, its output in ``log``; its result."""
    command = [sys.executable, str(ENTRY_POINT), "--child", name]
    command += ["--threads", str(args.threads)]
    command += ["--quick"] * args.quick + ["--gpu-smoke"] * args.gpu_smoke
    command += ["--devices", *args.devices] if args.devices else []
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.run(command, stdout=subprocess.PIPE, stderr=output, text=True)
        output.write(process.stdout)
    lines = [line for line in process.stdout.splitlines() if line.startswith(MARK)]
    if process.returncode != 0 or not lines:
        tail = log.read_text(encoding="utf-8").strip().splitlines()[-3:]
        error = f"failed (exit code {process.returncode}, log {log}): {' | '.join(tail)}"
        return {"title": name, "error": error, "rows": [], "checks": []}
    result: Result = json.loads(lines[-1][len(MARK) :])
    result["seconds"] = time.perf_counter() - start
    return result


def command_line() -> str:
    """The command that made the report, as the user would type it.

    ``--out`` and ``--logs`` only choose where files go, so they are left out: the report
    names no folder of the machine it ran on.
    """
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(Path.cwd())
    arguments, skip = [], False
    for argument in sys.argv[1:]:
        if skip:
            skip = False
        elif argument in ("--out", "--logs"):
            skip = True
        elif not argument.startswith(("--out=", "--logs=")):
            arguments.append(argument)
    return shlex.join(["python", str(script), *arguments])
