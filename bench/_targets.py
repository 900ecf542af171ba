"""Every target the benchmarks are checked against, and the verdict of each check."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

from _common import Result, Runs, paired

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


def check(name: str, value: float, target: str) -> dict[str, Any]:
    """A target check; ``target`` is e.g. ``">= 2.5"``, or ``"-"`` for a figure without one."""
    op, _, limit = target.partition(" ")
    ok = _COMPARE[op](value, float(limit)) if op in _COMPARE else None
    return {"check": name, "value": value, "target": target, "ok": ok}


def data_checks(
    vk: dict[str, float], tv: dict[str, float], hand: dict[str, float], memory: float
) -> list[dict[str, Any]]:
    """The data path against (a) the W1 tutorial's pipeline and (b) the preloaded hand loop."""
    return [
        check("speed-up over (a), CPU time", tv["epoch_cpu_s"] / vk["epoch_cpu_s"], ">= 2.5"),
        check("speed-up over (a), wall time", tv["epoch_s"] / vk["epoch_s"], ">= 2.5"),
        check("time / (b), CPU time", vk["epoch_cpu_s"] / hand["epoch_cpu_s"], "<= 1.10"),
        check("RSS rise / uint8 data size", memory, "< 2"),
    ]


def loop_checks(workload: str, runs: Runs) -> list[dict[str, Any]]:
    """The Trainer against the hand loop (and Lightning), median of the paired runs."""
    ratio = paired(runs, "visionkit Trainer", "hand loop")
    checks = [check(f"{workload}: Trainer / hand loop, CPU time", ratio, "<= 1.05")]
    if "Lightning Trainer" in runs:
        vs = paired(runs, "visionkit Trainer", "Lightning Trainer")
        checks.append(check(f"{workload}: Trainer / Lightning, CPU time", vs, "<= 1.0"))
    return checks


def prediction_checks(title: str, speeds: dict[str, float]) -> list[dict[str, Any]]:
    """``Predictor.predict`` against the hand loop and one image per call (MNIST only)."""
    checks = []
    if title.startswith("MNIST"):
        for key, target in (("hand", ">= 0.95"), ("single", ">= 5")):
            label = "hand loop" if key == "hand" else "one image per call"
            ratio = speeds["predict"] / speeds[key]
            checks.append(check(f"{title}: predict / {label}", ratio, target))
    return checks


def gpu_checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: Trainer overhead in fp32, fast-path speed-up, and against Lightning."""
    checks = []
    for name in dict.fromkeys(row["model"] for row in rows):
        speed = {r["variant"]: r["images/s"] for r in rows if r["model"] == name}
        plain, hand = speed["Trainer, fp32 eager (plain)"], speed["hand loop, fp32 eager"]
        fast = speed["+ compile (full fast path)"]
        overhead = hand / plain
        checks.append(check(f"{name}: Trainer / hand loop time, fp32", overhead, "<= 1.05"))
        target = ">= 2" if name == "resnet_deep" else "-"
        checks.append(
            check(f"{name}: fast path / plain fp32 eager, images/s", fast / plain, target)
        )
        lightning = [v for k, v in speed.items() if k.startswith("Lightning")]
        if lightning:
            versus = fast / max(lightning)
            checks.append(check(f"{name}: fast path / best Lightning, images/s", versus, ">= 1.0"))
    return checks


def all_checks(report: Result) -> Iterator[dict[str, Any]]:
    """Every check of every benchmark of ``report``, with its benchmark and verdict."""
    for name, result in report["benchmarks"].items():
        for item in result.get("checks", []):
            yield {"benchmark": name, **item, "ok": verdict(item["ok"])}


def verdict(ok: bool | None) -> str:
    """A check's verdict as the report writes it."""
    return "-" if ok is None else "met" if ok else "NOT MET"
