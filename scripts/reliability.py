"""Run the whole reliability suite and print what it tried, counted by the tests themselves.

Usage::

    python scripts/reliability.py           # the long suite (tests/reliability --long)
    python scripts/reliability.py --fast    # only the part the normal test command runs

The tests record each fault survived, hostile file refused and fuzz case checked through
the ``count`` fixture (``tests/reliability/conftest.py``), only after its assertions
passed. This script runs pytest with ``VISIONKIT_RELIABILITY_COUNTS`` pointing at a fresh
JSON file, and, if every test passed, prints the counts as a Markdown table and writes
``reports/reliability.json`` and ``reports/reliability.md``, which
``docs/reliability.md`` includes. If a test fails, nothing is written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REPORTS = REPO / "reports"

# (key, what one count means); a bare key is the total of its area, "key.part" a share.
LABELS = {
    "process_kills": "SIGKILLs at random points, each resumed to bitwise-equal weights",
    "process_kills.forward": "killed in a training step's forward pass",
    "process_kills.before-step": "killed between backward and the optimizer step",
    "process_kills.validation": "killed inside validation",
    "process_kills.mid-write": "killed part-way through writing a checkpoint",
    "process_kills.replace": "killed just before or after publishing a checkpoint",
    "checkpoint_files_checked": "checkpoint files found on disk after a kill, all loadable",
    "io_faults": "failed checkpoint writes, previous checkpoint intact every time",
    "io_faults.writer_raises": "the writer raises EIO at a random byte",
    "io_faults.disk_full": "the disk fills up (ENOSPC) at a random byte",
    "io_faults.file_size_limit": "a real kernel file-size limit (RLIMIT_FSIZE) at a random byte",
    "io_faults.file_system_call": "mkstemp, fsync, chmod, os.replace or mkdir fails",
    "io_faults.read_only_folder": "a real read-only folder",
    "io_faults.during_fit": "a write fails inside Trainer.fit, which then resumes exactly",
    "io_faults.export": "writing an exported model (TorchScript, torch.export) fails",
    "numerics": "NaN/inf cases stopped with a clear error, no non-finite checkpoint",
    "preemption": "real signals during fit, each saved at its step, resumed bitwise",
    "preemption.sigterm": "SIGTERM at a step, then the same command with resume_from='auto'",
    "preemption.sigint": "Ctrl-C (SIGINT): saved, then KeyboardInterrupt",
    "preemption.accumulation": "SIGTERM inside an accumulation group: saved after its step",
    "preemption.second_signal": "a second SIGTERM: stopped at once",
    "elastic_restarts": "torchrun restarts after a worker was SIGKILLed mid-epoch, weights bitwise",
    "elastic_restarts.rank0": "rank 0 (the one that writes checkpoints) killed",
    "elastic_restarts.rank1": "rank 1 killed",
    "run_collisions": "runs started together in one folder, each in a folder of its own",
    "hostile_checkpoints": "malicious checkpoint payloads refused, none executed",
    "hostile_archives": "hostile archives refused, nothing written outside the target",
    "hostile_images": "decompression bombs and damaged images refused",
    "fuzz_cases": "generated inputs to public functions, all clean results or clear errors",
}
AREAS = [
    "process_kills",
    "checkpoint_files_checked",
    "io_faults",
    "numerics",
    "preemption",
    "elastic_restarts",
    "run_collisions",
    "hostile_checkpoints",
    "hostile_archives",
    "hostile_images",
    "fuzz_cases",
]


def run_suite(long: bool) -> tuple[dict[str, int], float, str]:
    """Run the suite; return its counts, its wall time and the command run."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "counts.json"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        command += ["tests/reliability", *(["--long"] if long else []), "-m", "not slow"]
        # the test of the committed report checks this script's output, not the library
        command += ["--deselect", "tests/reliability/test_report.py"]
        env = {**os.environ, "VISIONKIT_RELIABILITY_COUNTS": str(target)}
        start = time.monotonic()
        result = subprocess.run(command, cwd=REPO, env=env, check=False)
        seconds = time.monotonic() - start
        if result.returncode != 0:
            sys.exit(f"the reliability suite failed (exit {result.returncode}): no report written")
        counts: dict[str, int] = json.loads(target.read_text())
    return (
        counts,
        seconds,
        "pytest tests/reliability" + (" --long" if long else "") + " -m 'not slow'",
    )


def render(report: dict[str, Any]) -> str:
    """The Markdown table of a report (the same text on the page and on stdout)."""
    counts: dict[str, int] = report["counts"]
    lines = [
        f"Measured by `python scripts/reliability.py` ({report['command']}, "
        f"{report['seconds']:.0f} s) on {report['machine']}, Python {report['python']}, "
        f"torch {report['torch']}, {report['date']}.",
        "",
        "| area | case | count |",
        "| --- | --- | ---: |",
    ]
    areas = AREAS + sorted({k.split(".")[0] for k in counts} - set(AREAS))
    for area in areas:
        parts = sorted(k for k in counts if k.startswith(f"{area}."))
        if area not in counts and not parts:
            continue
        total = counts.get(area, sum(counts[k] for k in parts))
        lines.append(f"| **{area}** | {LABELS.get(area, '')} | **{total:,}** |")
        for key in parts:
            label = LABELS.get(key, f"`{key.split('.', 1)[1]}`")
            lines.append(f"| | {label} | {counts[key]:,} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="skip the long part")
    args = parser.parse_args()
    import torch

    counts, seconds, command = run_suite(long=not args.fast)
    report = {
        "command": command,
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()} {os.cpu_count()}-core {platform.system()}",
        "python": platform.python_version(),
        "torch": torch.__version__.split("+")[0],
        "date": time.strftime("%Y-%m-%d"),
        "counts": counts,
    }
    text = render(report)
    print()
    print(text)
    if not args.fast:  # the committed report is always the full suite's
        REPORTS.mkdir(exist_ok=True)
        (REPORTS / "reliability.json").write_text(json.dumps(report, indent=2) + "\n")
        (REPORTS / "reliability.md").write_text(text)
        print(f"wrote {REPORTS / 'reliability.json'} and {REPORTS / 'reliability.md'}")


if __name__ == "__main__":
    main()
