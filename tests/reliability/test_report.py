"""The counts on docs/reliability.md are the output of scripts/reliability.py, unedited."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "reports" / "reliability.json"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reliability", REPO / "scripts/reliability.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_table_is_the_scripts_rendering_of_the_committed_counts() -> None:
    report = json.loads(REPORT.read_text())
    table = (REPO / "reports" / "reliability.md").read_text()
    assert _script().render(report) == table
    assert '--8<-- "reports/reliability.md"' in (REPO / "docs" / "reliability.md").read_text()


def test_the_committed_counts_come_from_the_long_suite_and_meet_the_issue() -> None:
    report = json.loads(REPORT.read_text())
    counts = report["counts"]
    assert report["command"] == "pytest tests/reliability --long -m 'not slow'"
    assert counts["process_kills"] >= 20
    phases = ["forward", "before-step", "validation", "mid-write", "replace"]
    assert sum(counts[f"process_kills.{phase}"] for phase in phases) == counts["process_kills"]
    assert counts["io_faults"] >= 200
    assert counts["hostile_checkpoints"] >= 10
    assert counts["elastic_restarts"] >= 6  # the fast kill and the long ones, ranks 0 and 1
    assert counts["elastic_restarts.rank0"] > 0
    assert counts["elastic_restarts.rank1"] > 0
    assert counts["preemption"] > 0
    assert counts["run_collisions"] > 0
    for area in ["hostile_archives", "hostile_images", "numerics", "fuzz_cases"]:
        assert counts[area] > 0, area
