"""Every target the benchmarks are checked against, and the verdict of each check."""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from _common import AGAIN, DEFAULT_HEAP, Result, round_ratios

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


def check(name: str, value: float | Sequence[float], target: str) -> dict[str, Any]:
    """A target check; ``target`` is e.g. ``">= 2.5"``, or ``"-"`` for a figure without one.

    ``value`` is one figure, or the ratio of each round: then the check is on their median,
    and the middle half of the rounds (first to third quartile) and their number are
    recorded beside it, the noise of the figure.
    """
    values = [float(value)] if isinstance(value, (int, float)) else list(value)
    median = statistics.median(values)
    op, _, limit = target.partition(" ")
    ok = _COMPARE[op](median, float(limit)) if op in _COMPARE else None
    result: dict[str, Any] = {"check": name, "value": median, "target": target, "ok": ok}
    if len(values) > 1:
        low, _, high = statistics.quantiles(values, n=4, method="inclusive")
        result["middle half of rounds"] = f"{low:.3f} to {high:.3f}"
        result["rounds"] = len(values)
    return result


def data_checks(runs: dict[str, list[dict[str, float]]], memory: float) -> list[dict[str, Any]]:
    """The data path against (a) the W1 tutorial's pipeline and (b) the preloaded hand loop.

    Each ratio is the median over rounds of the ratio within one round (``runs`` holds each
    pipeline's runs in round order).
    """
    checks = []
    for clock, key in (("CPU time", "epoch_cpu_s"), ("wall time", "epoch_s")):
        speedup = round_ratios(runs, "torchvision", "visionkit", key)
        checks.append(check(f"speed-up over (a), {clock}", speedup, ">= 2.5"))
    for clock, key in (("CPU time", "epoch_cpu_s"), ("wall time", "epoch_s")):
        overhead = round_ratios(runs, "visionkit", "hand", key)
        checks.append(check(f"time / (b), {clock}", overhead, "<= 1.10"))
    no_data_work = round_ratios(runs, "torchvision", "hand", "epoch_cpu_s")
    checks.append(
        check("(b)'s speed-up over (a), CPU time: a loop with no data work", no_data_work, "-")
    )
    checks.append(check("RSS rise / uint8 data size", memory, "< 2"))
    return checks


LIGHTNING_TUNED = "Lightning, tuned (epoch logging)"
LIGHTNING_TYPICAL = "Lightning, typical (per-step logging)"


def loop_checks(workload: str, together: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The Trainer against the hand loop and Lightning both ways, and the method's noise.

    ``together`` holds each loop's rounds side by side (``_side_by_side.py``); a ratio is
    the median of the per-round ratios of CPU time. The target against Lightning is checked
    against its tuned configuration, the faster one; the typical configuration, the hand
    loop against its second copy and the runs with glibc's default heap (the ConvNet's) are
    figures without a target.
    """
    ratios = round_ratios(together, "visionkit Trainer", "hand loop", "cpu")
    checks = [check(f"{workload}: Trainer / hand loop, CPU time", ratios, "<= 1.05")]
    if LIGHTNING_TUNED in together:
        vs = round_ratios(together, "visionkit Trainer", LIGHTNING_TUNED, "cpu")
        checks.append(check(f"{workload}: Trainer / Lightning tuned, CPU time", vs, "<= 1.0"))
    if LIGHTNING_TYPICAL in together:
        vs = round_ratios(together, "visionkit Trainer", LIGHTNING_TYPICAL, "cpu")
        checks.append(check(f"{workload}: Trainer / Lightning typical, CPU time", vs, "-"))
    checks.append(noise_check(workload, together, "hand loop"))
    trainer, hand = f"visionkit Trainer{DEFAULT_HEAP}", f"hand loop{DEFAULT_HEAP}"
    if trainer in together and hand in together:
        vs = round_ratios(together, trainer, hand, "cpu")
        checks.append(
            check(f"{workload}: Trainer / hand loop, both with the default heap", vs, "-")
        )
        cost = round_ratios(together, hand, "hand loop", "cpu")
        checks.append(
            check(f"{workload}: hand loop, default heap / fixed heap, CPU time", cost, "-")
        )
    return checks


def noise_check(title: str, together: dict[str, list[dict[str, Any]]], base: str) -> dict[str, Any]:
    """``base`` against its second copy (`AGAIN`) side by side: the noise of the method."""
    ratios = round_ratios(together, AGAIN, base, "cpu")
    return check(f"{title}: hand loop again / hand loop, CPU time (noise)", ratios, "-")


def prediction_checks(title: str, speeds: dict[str, Any]) -> list[dict[str, Any]]:
    """``Predictor.predict`` against the vectorised hand loop and one image per call.

    For every MNIST input kind (``uint8`` arrays, PIL images, ``uint8`` tensors) the target
    is checked on the speed ratio in CPU time, the median of the per-round ratios of the
    methods side by side (``_side_by_side.py``); the wall-time ratio of the methods run
    alone, the hand loop against its second copy (the noise) and the flower JPEGs' figures
    are given without a target.
    """
    checks = []
    mnist = title.startswith("MNIST")
    for key, label, target in (
        ("hand", "vectorised hand loop", ">= 0.95"),
        ("single", "one image per call", ">= 5"),
    ):
        for unit, name in (("cpu", "CPU time"), ("wall", "wall time, alone")):
            ratio = speeds.get(f"predict/{key} {unit} rounds", speeds["predict"] / speeds[key])
            goal = target if mnist and unit == "cpu" else "-"
            checks.append(check(f"{title}: predict / {label}, {name}", ratio, goal))
    if "noise cpu rounds" in speeds:
        noise = speeds["noise cpu rounds"]
        checks.append(check(f"{title}: hand loop again / hand loop, CPU time (noise)", noise, "-"))
    return checks


def gpu_checks(
    rows: list[dict[str, Any]], overhead: dict[str, list[float]]
) -> list[dict[str, Any]]:
    """Per model: Trainer overhead in fp32, fast-path speed-up, and against Lightning.

    ``overhead[model]`` holds the Trainer's time over the hand loop's in each round. A
    variant that failed has ``nan`` images/s: a check that needs it is not met, and a failed
    Lightning variant is left out of "best Lightning".
    """
    checks = []
    for name in dict.fromkeys(row["model"] for row in rows):
        speed = {r["variant"]: r["images/s"] for r in rows if r["model"] == name}
        plain, fast = speed["Trainer, fp32 eager (plain)"], speed["+ compile (full fast path)"]
        label = f"{name}: Trainer / hand loop time, fp32"
        checks.append(check(label, overhead[name], "<= 1.05"))
        target = ">= 2" if name == "resnet_deep" else "-"
        checks.append(
            check(f"{name}: fast path / plain fp32 eager, images/s", fast / plain, target)
        )
        lightning = [v for k, v in speed.items() if k.startswith("Lightning") and v == v]
        if lightning:
            versus = fast / max(lightning)
            checks.append(check(f"{name}: fast path / best Lightning, images/s", versus, ">= 1.0"))
    return checks


def features_checks(speedup: float, head_gap: float, metric_gap: float) -> list[dict[str, Any]]:
    """Feature caching: later epochs' speed-up, and the same head and metrics as uncached."""
    return [
        check("features: per-epoch speed-up after the first epoch, cached", speedup, ">= 5"),
        check("features: largest head weight difference, cached vs not", head_gap, "<= 1e-4"),
        check("features: largest final metric difference, cached vs not", metric_gap, "<= 1e-4"),
    ]


def all_checks(report: Result) -> Iterator[dict[str, Any]]:
    """Every check of every benchmark of ``report``, with its benchmark and verdict."""
    for name, result in report["benchmarks"].items():
        for item in result.get("checks", []):
            yield {"benchmark": name, **item, "ok": verdict(item["ok"])}


def verdict(ok: bool | None) -> str:
    """A check's verdict as the report writes it."""
    return "-" if ok is None else "met" if ok else "NOT MET"
