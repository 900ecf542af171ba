"""The benchmark report's ratios and checks, against hand computations.

``bench/`` is a folder of scripts, not a package: its modules are imported from it the way
``bench/run_all.py`` imports them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[Any]:
    sys.path.insert(0, str(BENCH))
    try:
        import _common
        import _targets

        yield _common, _targets
    finally:
        sys.path.remove(str(BENCH))


def test_rounds_rotate_so_no_variant_always_runs_first(bench: Any) -> None:
    common, _ = bench
    names = ["visionkit", "torchvision", "hand"]
    orders = [common.rotated(names, repeat) for repeat in range(4)]
    assert orders == [
        ["visionkit", "torchvision", "hand"],
        ["torchvision", "hand", "visionkit"],
        ["hand", "visionkit", "torchvision"],
        ["visionkit", "torchvision", "hand"],
    ]


def test_data_checks_are_medians_of_per_round_ratios(bench: Any) -> None:
    _, targets = bench
    # Round by round: (a)/visionkit CPU = 3.0, 2.0, 4.0 -> median 3.0; a ratio of medians
    # would give 6 / 2 = 3.0 too, so the wall times are chosen to tell them apart:
    # (a)/visionkit wall = 10/2, 6/3, 12/4 = 5.0, 2.0, 3.0 -> median 3.0, not 10 / 3.
    runs = {
        "visionkit": [
            {"epoch_cpu_s": 2.0, "epoch_s": 2.0},
            {"epoch_cpu_s": 3.0, "epoch_s": 3.0},
            {"epoch_cpu_s": 1.0, "epoch_s": 4.0},
        ],
        "torchvision": [
            {"epoch_cpu_s": 6.0, "epoch_s": 10.0},
            {"epoch_cpu_s": 6.0, "epoch_s": 6.0},
            {"epoch_cpu_s": 4.0, "epoch_s": 12.0},
        ],
        "hand": [
            {"epoch_cpu_s": 2.0, "epoch_s": 2.0},
            {"epoch_cpu_s": 2.0, "epoch_s": 2.0},
            {"epoch_cpu_s": 1.0, "epoch_s": 5.0},
        ],
    }
    checks = {c["check"]: c for c in targets.data_checks(runs, 1.5)}
    assert checks["speed-up over (a), CPU time"]["value"] == 3.0
    assert checks["speed-up over (a), wall time"]["value"] == 3.0
    assert checks["time / (b), CPU time"]["value"] == 1.0  # 1.0, 1.5, 1.0
    assert checks["time / (b), wall time"]["value"] == 1.0  # 1.0, 1.5, 0.8
    assert checks["(b)'s speed-up over (a), CPU time: a loop with no data work"]["value"] == 3.0
    assert [c["ok"] for c in checks.values()] == [True, True, True, True, None, True]


def test_the_lightning_target_is_checked_against_the_tuned_configuration(bench: Any) -> None:
    common, targets = bench

    def runs(*cpu: float) -> list[dict[str, float]]:
        return [{"cpu": value} for value in cpu]

    checks = targets.loop_checks(
        "mlp",
        {
            "hand loop": runs(1.0, 2.0, 1.0),
            "visionkit Trainer": runs(1.0, 2.2, 1.1),  # 1.0, 1.1, 1.1 -> 1.1
            targets.LIGHTNING_TUNED: runs(1.0, 2.0, 1.0),  # 1.0, 1.1, 1.1 -> 1.1
            targets.LIGHTNING_TYPICAL: runs(2.0, 4.4, 2.2),  # 0.5, 0.5, 0.5
            common.AGAIN: runs(1.02, 1.96, 1.0),  # 1.02, 0.98, 1.0 -> 1.0
        },
    )
    assert [(c["check"], round(c["value"], 9), c["target"], c["ok"]) for c in checks] == [
        ("mlp: Trainer / hand loop, CPU time", 1.1, "<= 1.05", False),
        ("mlp: Trainer / Lightning tuned, CPU time", 1.1, "<= 1.0", False),
        ("mlp: Trainer / Lightning typical, CPU time", 0.5, "-", None),
        ("mlp: hand loop again / hand loop, CPU time (noise)", 1.0, "-", None),
    ]


def test_runs_with_the_default_heap_are_figures_beside_the_checks(bench: Any) -> None:
    common, targets = bench
    heap = common.DEFAULT_HEAP
    checks = targets.loop_checks(
        "convnet",
        {
            "hand loop": [{"cpu": 1.0}, {"cpu": 2.0}, {"cpu": 1.0}],
            "visionkit Trainer": [{"cpu": 1.0}, {"cpu": 2.0}, {"cpu": 1.0}],
            common.AGAIN: [{"cpu": 1.0}, {"cpu": 2.0}, {"cpu": 1.0}],
            f"hand loop{heap}": [{"cpu": 1.2}, {"cpu": 2.2}, {"cpu": 1.1}],  # 1.2, 1.1, 1.1
            f"visionkit Trainer{heap}": [{"cpu": 1.8}, {"cpu": 2.2}, {"cpu": 1.1}],  # 1.5, 1, 1
        },
    )
    figures = {c["check"]: (round(c["value"], 9), c["target"], c["ok"]) for c in checks}
    assert figures["convnet: Trainer / hand loop, CPU time"] == (1.0, "<= 1.05", True)
    assert figures["convnet: Trainer / hand loop, both with the default heap"] == (
        1.0,
        "-",
        None,
    )
    assert figures["convnet: hand loop, default heap / fixed heap, CPU time"] == (1.1, "-", None)


def test_prediction_targets_are_checked_on_cpu_time_side_by_side(bench: Any) -> None:
    _, targets = bench
    speeds = {
        "hand": 100.0,
        "predict": 90.0,
        "single": 10.0,
        "predict/hand cpu rounds": [0.97, 0.96, 0.99],
        "predict/hand wall rounds": [0.80, 0.90, 0.85],
        "predict/single cpu rounds": [11.0, 12.0, 10.0],
        "predict/single wall rounds": [4.0, 4.0, 4.0],
        "noise cpu rounds": [1.01, 0.99, 1.0],
    }
    checks = targets.prediction_checks("MNIST digits as PIL images", speeds)
    assert [(c["check"].split(": ", 1)[1], c["value"], c["target"], c["ok"]) for c in checks] == [
        ("predict / vectorised hand loop, CPU time", 0.97, ">= 0.95", True),
        ("predict / vectorised hand loop, wall time, alone", 0.85, "-", None),
        ("predict / one image per call, CPU time", 11.0, ">= 5", True),
        ("predict / one image per call, wall time, alone", 4.0, "-", None),
        ("hand loop again / hand loop, CPU time (noise)", 1.0, "-", None),
    ]
    flowers = targets.prediction_checks("80 flower JPEGs", speeds)
    assert {c["target"] for c in flowers} == {"-"}


def test_a_check_of_several_rounds_records_its_median_and_middle_half(bench: Any) -> None:
    _, targets = bench
    # sorted: 0.90, 0.96, 1.00, 1.02, 1.10; quartiles (inclusive) 0.96 and 1.02
    result = targets.check("x", [1.02, 0.90, 1.10, 1.00, 0.96], "<= 1.0")
    assert result == {
        "check": "x",
        "value": 1.0,
        "target": "<= 1.0",
        "ok": True,
        "middle half of rounds": "0.960 to 1.020",
        "rounds": 5,
    }
    assert targets.check("y", 2.4, ">= 2.5") == {
        "check": "y",
        "value": 2.4,
        "target": ">= 2.5",
        "ok": False,
    }


def test_gpu_checks_take_the_rounds_median_and_leave_out_a_failed_lightning_run(
    bench: Any,
) -> None:
    _, targets = bench
    speed = {
        "hand loop, fp32 eager": 80.0,
        "Trainer, fp32 eager (plain)": 80.0,
        "+ compile (full fast path)": 120.0,
        "Lightning, fp32 eager": float("nan"),
        "Lightning, bf16-mixed + channels_last + compile + data on GPU": 60.0,
    }
    rows = [{"model": "net", "variant": k, "images/s": v} for k, v in speed.items()]
    checks = targets.gpu_checks(rows, {"net": [0.9, 1.02, 1.1]})
    assert [(c["check"], c["value"], c["target"], c["ok"]) for c in checks] == [
        ("net: Trainer / hand loop time, fp32", 1.02, "<= 1.05", True),
        ("net: fast path / plain fp32 eager, images/s", 1.5, "-", None),
        ("net: fast path / best Lightning, images/s", 2.0, ">= 1.0", True),
    ]
    assert checks[0]["rounds"] == 3


def test_a_gpu_check_whose_variant_failed_is_not_met(bench: Any) -> None:
    _, targets = bench
    speed = {
        "hand loop, fp32 eager": 80.0,
        "Trainer, fp32 eager (plain)": 80.0,
        "+ compile (full fast path)": float("nan"),
    }
    rows = [{"model": "resnet_deep", "variant": k, "images/s": v} for k, v in speed.items()]
    checks = targets.gpu_checks(rows, {"resnet_deep": [1.0]})
    assert checks[1]["check"] == "resnet_deep: fast path / plain fp32 eager, images/s"
    assert checks[1]["target"] == ">= 2"
    assert checks[1]["ok"] is False


def test_accuracy_ratios_skip_rounds_that_missed_98_and_the_note_compares_every_run(
    bench: Any,
) -> None:
    import _accuracy

    runs = {
        "hand loop": [{"cpu": 2.0, "accuracies": [0.97, 0.99]}, {"cpu": None, "accuracies": [0.9]}],
        "visionkit Trainer": [
            {"cpu": 2.1, "accuracies": [0.97, 0.99]},
            {"cpu": 4.0, "accuracies": [0.97, 0.99]},
        ],
    }
    common, _ = bench
    assert common.round_ratios(runs, "visionkit Trainer", "hand loop", "cpu") == [1.05]
    assert _accuracy._same_run_note("cpu", runs) == (
        "cpu: the loops' test accuracies differ (epochs per run: [1, 2]); compare the "
        "accuracy columns before the times."
    )
    runs["hand loop"][1] = {"cpu": 3.0, "accuracies": [0.97, 0.99]}
    assert _accuracy._same_run_note("cpu", runs).startswith(
        "cpu: every loop reached the same test accuracy after every epoch, in every round "
        "(2 epoch(s))"
    )
