"""The side-by-side timing of the benchmarks: spawned contenders, one core, failures named.

``bench/`` is a folder of scripts, not a package: its modules are imported from it the way
``bench/run_all.py`` imports them. The contenders here are functions of a module the test
writes, which the spawned processes import from the same ``sys.path``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
CONTENDERS = """
import json, os, time

def work(path, tag):
    start = time.process_time()
    total = sum(i * i for i in range(20000))
    with open(path, "a") as f:
        f.write(json.dumps({"tag": tag, "cores": sorted(os.sched_getaffinity(0))}) + "\\n")
    return 0.0, time.process_time() - start + 1e-9 * (total % 7)

def fail(path, tag):
    raise ValueError(f"planted failure in {tag}")

def die(path, tag):
    os._exit(3)

def figures(path, tag):
    return {"cpu": 0.25, "accuracies": [0.5, 0.75], "tag": tag}
"""

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="CPU affinity is Linux-only")


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    (tmp_path / "vk_contenders.py").write_text(CONTENDERS)
    sys.path[:0] = [str(BENCH), str(tmp_path)]
    try:
        import _side_by_side
        import vk_contenders

        yield _side_by_side, vk_contenders
    finally:
        sys.path.remove(str(BENCH))
        sys.path.remove(str(tmp_path))
        sys.modules.pop("vk_contenders", None)


def test_contenders_run_pinned_to_one_core_warmed_up_in_every_round(
    bench: tuple[Any, Any], tmp_path: Path
) -> None:
    side, module = bench
    log = tmp_path / "log.jsonl"
    contenders = {
        name: side.Contender(module.work, (str(log), name), warmup=(str(log), f"{name} warm-up"))
        for name in ("a", "b")
    }
    runs = side.side_by_side(contenders, rounds=2, threads=1)
    assert list(runs) == ["a", "b"]
    for results in runs.values():
        assert len(results) == 2
        assert all(r["cpu"] > 0 and r["peak RSS MiB"] > 0 for r in results)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    tags = sorted(line["tag"] for line in lines)
    assert tags == sorted(["a", "a warm-up", "b", "b warm-up"] * 2)
    core = max(os.sched_getaffinity(0))
    assert {tuple(line["cores"]) for line in lines} == {(core,)}


def _failure(bench: tuple[Any, Any], tmp_path: Path, name: str, function: str) -> str:
    """The error of one round of a working contender beside ``function`` named ``name``."""
    side, module = bench
    log = str(tmp_path / "log.jsonl")
    contenders = {
        "fine": side.Contender(module.work, (log, "fine")),
        name: side.Contender(getattr(module, function), (log, name)),
    }
    with pytest.raises(RuntimeError) as error:
        side.side_by_side(contenders, rounds=1, threads=1)
    return str(error.value)


def test_a_failing_contender_names_itself_and_releases_the_others(
    bench: tuple[Any, Any], tmp_path: Path
) -> None:
    message = _failure(bench, tmp_path, "broken", "fail")
    assert message.startswith("round 0 failed: broken (exit code 0): Traceback")
    assert "ValueError: planted failure in broken" in message
    assert "fine" not in message  # released from the barrier, not failed


def test_a_contender_that_dies_without_a_result_releases_the_others(
    bench: tuple[Any, Any], tmp_path: Path
) -> None:
    message = _failure(bench, tmp_path, "killed", "die")
    assert message == "round 0 failed: killed (exit code 3): it exited without a result"


def test_cores_are_the_highest_this_process_may_use(bench: tuple[Any, Any]) -> None:
    side, _ = bench
    allowed = sorted(os.sched_getaffinity(0))
    assert side.cores(1) == {allowed[-1]}
    assert side.cores(len(allowed)) == set(allowed)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_fixed_heap_is_set_through_glibc(bench: tuple[Any, Any]) -> None:
    side, _ = bench
    assert side.FIXED_HEAP == {side.M_MMAP_THRESHOLD: 32 * 2**20, side.M_TRIM_THRESHOLD: 2**30}
    # in a process of its own: the heap settings would stay with the test process
    code = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import _side_by_side as s; "
    code += "print(s.fix_heap())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "True", done.stderr


def test_a_contender_returning_a_dict_reports_its_figures_with_the_cpu_time(
    bench: tuple[Any, Any], tmp_path: Path
) -> None:
    side, module = bench
    contender = side.Contender(module.figures, (str(tmp_path), "timed"), (str(tmp_path), "warm"))
    runs = side.side_by_side({"a": contender}, rounds=1, threads=1)
    (result,) = runs["a"]
    assert {k: result[k] for k in ("cpu", "accuracies", "tag")} == {
        "cpu": 0.25,
        "accuracies": [0.5, 0.75],
        "tag": "timed",
    }
    assert result["peak RSS MiB"] > 0
