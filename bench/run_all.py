"""Run every visionkit benchmark and write ``bench/results/benchmarks.{md,json}``.

One command, one report: each benchmark runs in its own subprocess (so its peak resident
memory is its own) and reuses the functions of ``bench_data.py``, ``bench_trainer.py``,
``bench_predict.py`` and ``bench_lightning.py``:

* ``data``: the in-memory data path against the W1 tutorial's torchvision pipeline and a
  preloaded ``float32`` loop (one MLP epoch, each run in a fresh process, the pipelines
  interleaved round by round; CPU and wall time);
* ``trainer``: ``Trainer.fit`` against the hand-written loop and, if ``lightning`` is
  installed, ``lightning.Trainer.fit`` configured two ways (tuned: loss logged per epoch;
  typical: per-step logging and default settings), on the W1 tutorial's MLP and the W2
  tutorial's ConvNet; then the Trainer with its defaults against a hand loop on short
  epochs (``_short_epochs.py``);
* ``predict``: ``Predictor.predict`` against a hand-written batched loop and one image
  per call;
* ``accuracy``: the W2 tutorial's ConvNet on the real MNIST sample (train on the first 8,000
  digits, test on the last 2,000): training time to reach 98% test accuracy, the Trainer
  and a hand loop with the same initial weights and batch order (``_accuracy.py``), on the
  CPU and on CUDA when there is one;
* ``compile``: ``Trainer(compile=True)`` against ``compile=False`` on the CPU, per epoch
  after the first, and the compile time (``_compile_cpu.py``);
* ``gpu``: CIFAR-10-shaped random ``uint8`` data, ``NetResDeep`` and a ResNet-18:
  images/s of plain fp32 eager training against each fast-path flag, and Lightning with
  its equivalent settings. Skipped, with the reason, when there is no CUDA device.
* ``features``: W5's frozen VGG16 features with a trainable head, ``cache_features`` on
  and off (``bench_features.py``): per-epoch time after the first epoch, and the same head.

Every row records the peak resident memory of its process while it ran (Linux
``VmHWM``, reset before the row) and, on CUDA, the peak allocated GPU memory. Ratios are
measured within one run, never against numbers from elsewhere.

The code: ``_common.py`` (problem sizes, the memory meter), ``_benchmarks.py``,
``_short_epochs.py``, ``_accuracy.py``, ``_compile_cpu.py`` and ``_gpu.py`` (the benchmarks),
``_targets.py`` (every target and its check), ``_runner.py`` (one subprocess per benchmark)
and ``_tables.py`` (the Markdown report); this file is the command line.

Usage::

    python bench/run_all.py --quick            # a few minutes on 2 CPU cores
    python bench/run_all.py                    # full sizes (about 20 minutes on a CPU)
    python bench/run_all.py --only gpu accuracy
    python bench/run_all.py --only gpu accuracy --devices cuda --out bench/results/gpu
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path

from _common import Result
from _runner import (
    BENCHMARKS,
    LOGS,
    RESULTS,
    command_line,
    machine,
    run_child,
    sizes_of,
    spawn,
)
from _tables import markdown, section


def main() -> None:
    """Parse the command line; run each benchmark in a child process; write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small CPU workloads (minutes)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument(
        "--devices",
        nargs="+",
        choices=["cpu", "cuda"],
        help="devices of the accuracy benchmark (default: the CPU, and CUDA where there is one)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the report")
    parser.add_argument("--logs", type=Path, default=LOGS, help="folder for each run's output")
    parser.add_argument("--gpu-smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=list(BENCHMARKS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    args.logs.mkdir(parents=True, exist_ok=True)
    report: Result = {
        "command": command_line(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "machine": machine(args.threads),
        "sizes": asdict(sizes_of(args)),
        "benchmarks": {},
    }
    for name in args.only or list(BENCHMARKS):
        print(f"==> {name}", flush=True)
        result = spawn(name, args, args.logs / f"{name}.log")
        report["benchmarks"][name] = result
        print(section(name, result), flush=True)
    (args.out / "benchmarks.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "benchmarks.md").write_text(markdown(report), encoding="utf-8")
    print(f"wrote {args.out / 'benchmarks.md'} and {args.out / 'benchmarks.json'}")


if __name__ == "__main__":
    main()
